//! The support client over https: the `casefile` binary runs `lookup` against an
//! in-process daemon whose API serves TLS with a test CA (and mTLS): with `--ca-file` (and
//! a client certificate) it prints the trace; without them it fails with a sentence that
//! names the certificate problem, never a panic.

mod common;

use std::process::Output;

use casefile::config;
use casefile::fixture::{self, Gen, Shape};
use common::certs::{s, Certs};
use common::*;

/// A config whose API serves TLS with the test server certificate (mTLS when `mtls`).
fn yaml(c: &Certs, mtls: bool) -> String {
    let client_ca = if mtls {
        format!(", client_ca_file: \"{}\"", s(&c.ca))
    } else {
        String::new()
    };
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: 1h
{POLICIES}
exporters:
  file: {{ path: "{}" }}
support:
  api:
    endpoint: "127.0.0.1:0"
    auth_token: tok_cli
    tls: {{ cert_file: "{}", key_file: "{}"{client_ca} }}
shutdown_timeout: 5s
"#,
        s(&c.dir.path().join("kept.jsonl")),
        s(&c.server_cert),
        s(&c.server_key)
    )
}

/// Runs the binary with `args` (off the runtime's threads), the token in its environment.
async fn casefile(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_casefile"))
            .args(&args)
            .env("CASEFILE_API_TOKEN", "tok_cli")
            .env_remove("CASEFILE_API")
            .env_remove("CASEFILE_API_CA_FILE")
            .env_remove("CASEFILE_API_CERT_FILE")
            .env_remove("CASEFILE_API_KEY_FILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Starts the daemon, sends a trace of user `usr_cli`: the API's https URL and the trace id.
async fn daemon_with_a_trace(c: &Certs, mtls: bool) -> (casefile::Daemon, String, String) {
    let daemon = start(config::load_str(&yaml(c, mtls), "cli.yaml").unwrap()).await;
    let mut t = Gen::new(5).trace(Shape::default(), 3);
    t.set_user("usr_cli");
    client(&daemon)
        .await
        .export(fixture::request_for(std::slice::from_ref(&t)))
        .await
        .unwrap();
    let url = format!("https://localhost:{}", daemon.api_addr.unwrap().port());
    (daemon, url, hex::encode(t.trace_id))
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_over_https_with_the_ca_file_and_a_clear_error_without_it() {
    let c = Certs::new();
    let (daemon, url, id) = daemon_with_a_trace(&c, false).await;
    let lookup = |extra: &[&str]| {
        let mut args: Vec<String> = ["lookup", "--api", &url, "user.id=usr_cli"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        casefile(args)
    };

    let out = lookup(&["--ca-file", &s(&c.ca)]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&id), "the trace is printed: {stdout}");

    let out = lookup(&["--json", "--ca-file", &s(&c.ca)]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["traces"][0]["trace_id"], id.as_str());

    // Without --ca-file the system trust store does not know the test CA.
    let out = lookup(&[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("certificate"),
        "names the problem: {stderr}"
    );
    assert!(stderr.contains("--ca-file"), "names the option: {stderr}");

    // A CA file that is not one: refused before connecting, naming the option and file.
    let bad = c.write("bad.pem", "not a CA");
    let out = lookup(&["--ca-file", &s(&bad)]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--ca-file") && stderr.contains(&s(&bad)),
        "{stderr}"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_and_complain_over_mtls_with_a_client_certificate() {
    let c = Certs::new();
    let (daemon, url, id) = daemon_with_a_trace(&c, true).await;
    let args = |cmd: &[&str], with_cert: bool| {
        let mut v: Vec<String> = cmd.iter().map(|a| a.to_string()).collect();
        v.extend(["--api".into(), url.clone(), "--ca-file".into(), s(&c.ca)]);
        if with_cert {
            v.extend([
                "--cert-file".into(),
                s(&c.client_cert),
                "--key-file".into(),
                s(&c.client_key),
            ]);
        }
        v
    };
    let out = casefile(args(&["lookup", "user.id=usr_cli"], true)).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&id), "{stdout}");

    let complain = ["complain", "--ticket", "T-1", "--trace", id.as_str()];
    let out = casefile(args(&complain, true)).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("filed"), "{stdout}");

    let out = casefile(args(&["lookup", "user.id=usr_cli"], false)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("client certificate"), "{stderr}");
    daemon.shutdown().await;
}
