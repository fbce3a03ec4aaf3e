//! A Collector config file pasted whole (service, pipelines, batch, extensions, a `not`
//! inside an `and`): `casefile check` accepts it and says what it does not run, with the
//! file and line, and the daemon runs it with a real OTLP client and downstream.

mod common;

use std::process::Command;

use casefile::fixture::{self, kv, Gen, Shape};
use common::*;

fn collector_file(downstream: std::net::SocketAddr) -> String {
    format!(
        r#"extensions:
  health_check:
  zpages:
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  batch:
    send_batch_max_size: 2
    timeout: 200ms
  tail_sampling:
    decision_wait: 200ms
    policies:
      - name: errors-not-health
        type: and
        and:
          and_sub_policy:
            - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}
            - name: not-health
              type: not
              not: {{ not_sub_policy: {{ name: health, type: string_attribute, string_attribute: {{ key: http.route, values: [/health] }} }} }}
      - {{ name: nothing-yet, type: string_attribute, string_attribute: {{ key: team, values: [] }} }}
exporters:
  otlp/backend:
    endpoint: "{downstream}"
    tls: {{ insecure: true }}
service:
  extensions: [health_check, zpages]
  telemetry:
    metrics: {{ level: basic }}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling, batch]
      exporters: [otlp/backend]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_collector_file_is_checked_and_runs() {
    let (down, addr) = Downstream::start().await;
    let text = collector_file(addr);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otelcol.yaml");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_casefile"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = path.display().to_string();
    for want in [
        format!("warning: {file}:2: extensions.health_check: accepted and not run: casefile serves /healthz"),
        format!("warning: {file}:3: extensions.zpages"),
        format!("warning: {file}:12: processors.batch.timeout"),
        format!("warning: {file}:24: processors.tail_sampling.policies[1].string_attribute.values: no values"),
        format!("warning: {file}:31: service.telemetry"),
    ] {
        assert!(stdout.contains(&want), "missing {want:?} in:\n{stdout}");
    }

    let cfg = casefile::config::load_str(&text, "otelcol.yaml").unwrap();
    let daemon = start(cfg).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(5);
    let kept = g.trace(Shape::ERROR, 5);
    let mut health = g.trace(Shape::ERROR, 3);
    for (_, s) in &mut health.spans {
        s.attributes.push(kv("http.route", "/health"));
    }
    let plain = g.trace(Shape::default(), 3);
    client
        .export(fixture::request_for(&[
            kept.clone(),
            health.clone(),
            plain.clone(),
        ]))
        .await
        .unwrap();
    down.wait_for("the error trace", |d| {
        d.has_all(std::slice::from_ref(&kept))
    })
    .await;
    until_all_decided(&daemon).await;
    let got = down.spans_by_trace();
    assert!(
        !got.contains_key(&hex::encode(health.trace_id)),
        "not inside and drops health checks"
    );
    assert!(!got.contains_key(&hex::encode(plain.trace_id)));
    // batch.send_batch_max_size: 2 spans a request at most.
    assert!(
        down.requests.lock().iter().all(|r| r
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum::<usize>()
            <= 2),
        "requests bounded by the batch processor"
    );
    daemon.shutdown().await;
}
