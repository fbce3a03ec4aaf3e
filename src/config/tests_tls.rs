//! `tls:` blocks in the loader: good blocks become validated settings, and every missing
//! key, contradiction and unreadable or broken file is a problem with its line and path,
//! all reported at once.

use std::collections::HashMap;

use super::*;
use crate::tls::test_certs::{s, Certs};

/// A config with a tls block on both receivers and the API, and `exporter` as exporters.
fn config(grpc_tls: &str, http_tls: &str, api_tls: &str, exporter: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
        tls: {grpc_tls}
      http:
        endpoint: 127.0.0.1:4318
        tls: {http_tls}
processors:
  tail_sampling:
    policies:
      - {{ name: all, type: always_sample }}
exporters:
  {exporter}
support:
  api:
    endpoint: 127.0.0.1:8990
    tls: {api_tls}
"
    )
}

fn load(text: &str) -> Result<Config, Vec<Located>> {
    match load_with_env(text, "tls.yaml", &HashMap::<String, String>::new()) {
        Ok(c) => Ok(c),
        Err(ConfigError::Invalid { problems, .. }) => Err(problems),
        Err(e) => panic!("unexpected error {e}"),
    }
}

const FILE: &str = "file: { path: /tmp/out.jsonl }";

#[test]
fn tls_blocks_load_and_show_in_the_summary() {
    let c = Certs::new();
    let server = format!(
        "{{ cert_file: {}, key_file: {} }}",
        s(&c.server_cert),
        s(&c.server_key)
    );
    let mtls = format!(
        "{{ cert_file: {}, key_file: {}, client_ca_file: {} }}",
        s(&c.server_cert),
        s(&c.server_key),
        s(&c.ca)
    );
    let exporter = format!(
        "otlp: {{ endpoint: tempo:4317, tls: {{ ca_file: {}, cert_file: {}, key_file: {} }} }}",
        s(&c.ca),
        s(&c.client_cert),
        s(&c.client_key)
    );
    let cfg = load(&config(&server, "null", &mtls, &exporter)).unwrap_or_else(|p| panic!("{p:?}"));
    let grpc = cfg.receivers.grpc.as_ref().unwrap().tls.as_ref().unwrap();
    assert_eq!(grpc.cert_file, s(&c.server_cert));
    assert_eq!(grpc.client_ca_file, None);
    assert!(cfg.receivers.http.as_ref().unwrap().tls.is_none());
    assert_eq!(
        cfg.support.api.tls.as_ref().unwrap().client_ca_file,
        Some(s(&c.ca))
    );
    let summary = cfg.summary().join("\n");
    assert!(
        summary.contains("OTLP/gRPC 127.0.0.1:4317 (max message 16MiB, TLS)"),
        "{summary}"
    );
    assert!(
        summary.contains("over TLS, client certificates required"),
        "{summary}"
    );
    assert!(
        summary.contains("TLS with a client certificate"),
        "{summary}"
    );
}

#[test]
fn incomplete_blocks_are_reported_at_once_with_lines_and_paths() {
    let c = Certs::new();
    let problems = load(&config(
        &format!("{{ cert_file: {} }}", s(&c.server_cert)),
        &format!("{{ client_ca_file: {} }}", s(&c.ca)),
        &format!(
            "{{ cert_file: {}, key_file: {}, ca_file: {} }}",
            s(&c.server_cert),
            s(&c.server_key),
            s(&c.ca)
        ),
        FILE,
    ))
    .unwrap_err();
    let at: Vec<(Option<usize>, &str)> = problems
        .iter()
        .map(|l| (l.line, l.problem.path.as_str()))
        .collect();
    assert_eq!(
        at,
        vec![
            (Some(6), "receivers.otlp.protocols.grpc.tls.key_file"),
            (Some(9), "receivers.otlp.protocols.http.tls.cert_file"),
            (Some(19), "support.api.tls.ca_file"),
        ],
        "{problems:?}"
    );
    assert!(problems[0].problem.message.contains("cert_file needs"));
    assert!(problems[1]
        .problem
        .message
        .contains("client_ca_file (mTLS) needs"));
    assert!(problems[2].problem.message.contains("client_ca_file"));
}

#[test]
fn unreadable_and_broken_files_are_reported_with_their_paths() {
    let c = Certs::new();
    let garbage = s(&c.write("garbage.pem", "not PEM at all\n"));
    let problems = load(&config(
        &format!(
            "{{ cert_file: /nonexistent/cert.pem, key_file: {} }}",
            s(&c.server_key)
        ),
        &format!("{{ cert_file: {garbage}, key_file: {} }}", s(&c.server_key)),
        &format!(
            "{{ cert_file: {}, key_file: {} }}",
            s(&c.server_cert),
            s(&c.client_key)
        ),
        FILE,
    ))
    .unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    let p = &problems[0];
    assert_eq!(
        p.problem.path,
        "receivers.otlp.protocols.grpc.tls.cert_file"
    );
    assert_eq!(p.line, Some(6));
    assert!(
        p.problem
            .message
            .starts_with("\"/nonexistent/cert.pem\": cannot read it"),
        "{p:?}"
    );
    let p = &problems[1];
    assert_eq!(
        p.problem.path,
        "receivers.otlp.protocols.http.tls.cert_file"
    );
    assert!(p.problem.message.contains(&garbage), "{p:?}");
    assert!(p.problem.message.contains("no certificate in it"), "{p:?}");
    let p = &problems[2];
    assert_eq!(p.problem.path, "support.api.tls.key_file");
    assert!(p.problem.message.contains("does not belong"), "{p:?}");
}

#[test]
fn exporter_tls_must_agree_with_the_endpoint() {
    let c = Certs::new();
    let check = |exporter: &str| match load(&config("null", "null", "null", exporter)) {
        Ok(_) => Vec::new(),
        Err(ps) => ps
            .into_iter()
            .map(|l| (l.problem.path, l.problem.message))
            .collect(),
    };
    let ps = check("otlp: { endpoint: \"https://tempo:4317\", tls: { insecure: true } }");
    assert_eq!(ps[0].0, "exporters.otlp.tls.insecure");
    let ps = check(&format!(
        "otlphttp: {{ endpoint: \"http://gw:4318\", tls: {{ ca_file: {} }} }}",
        s(&c.ca)
    ));
    assert_eq!(ps[0].0, "exporters.otlphttp.tls.ca_file");
    assert!(ps[0].1.contains("use https://"), "{ps:?}");
    let ps =
        check("otlp/tempo: { endpoint: \"tempo:4317\", tls: { ca_file: /nonexistent/ca.pem } }");
    assert_eq!(ps[0].0, "exporters.otlp/tempo.tls.ca_file");
    assert!(ps[0].1.contains("/nonexistent/ca.pem"), "{ps:?}");
    let ps = check(&format!(
        "otlphttp: {{ endpoint: \"https://gw\", tls: {{ cert_file: {} }} }}",
        s(&c.client_cert)
    ));
    assert_eq!(ps[0].0, "exporters.otlphttp.tls.key_file");
    // Without files: the system trust store, read at start, not by `check`.
    assert!(check("otlp: { endpoint: \"tempo:4317\" }").is_empty());
    assert!(
        check("otlphttp: { endpoint: \"https://gw\", tls: { insecure_skip_verify: true } }")
            .is_empty()
    );
}
