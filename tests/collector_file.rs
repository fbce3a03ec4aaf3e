//! A Collector config file pasted whole (service, pipelines, batch, extensions, a `not`
//! inside an `and`): `casefile check` accepts it and says what it does not run, with the
//! file and line, and the daemon runs it with a real OTLP client and downstream.

mod common;

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
    let stdout = check_ok(&path, &[]);
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

/// The three features a Collector config may bring at once: `ottl_condition`, a `not`
/// inside an `and`, and a probabilistic policy whose kept traces carry OTEP 235
/// thresholds, the latter two switched on by the Collector's own feature gates on the
/// command line (`usetracestate`, `recordpolicy`). Sent over OTLP/HTTP with zstd, as a
/// Collector in front with `compression: zstd` sends; the downstream checks which traces
/// arrived and what they carry, against values computed here from the percentage.
fn collector_file_with_every_feature(downstream: std::net::SocketAddr) -> String {
    format!(
        r#"receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  batch: {{}}
  tail_sampling:
    decision_wait: 300ms
    policies:
      - name: server-errors
        type: ottl_condition
        ottl_condition:
          error_mode: ignore
          span:
            - 'attributes["http.status_code"] != nil and attributes["http.status_code"] >= 500'
      - name: errors-not-health
        type: and
        and:
          and_sub_policy:
            - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}
            - name: not-health
              type: not
              not: {{ not_sub_policy: {{ name: health, type: string_attribute, string_attribute: {{ key: http.route, values: [/health] }} }} }}
      - {{ name: baseline, type: probabilistic, probabilistic: {{ sampling_percentage: 25 }} }}
exporters:
  otlp:
    endpoint: "{downstream}"
    compression: zstd
    tls: {{ insecure: true }}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling, batch]
      exporters: [otlp]
"#
    )
}

const GATES: &str =
    "processor.tailsamplingprocessor.usetracestate,processor.tailsamplingprocessor.recordpolicy";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_file_with_ottl_not_in_and_and_adjusted_counts_runs_unchanged() {
    use prost::Message;
    let (down, addr) = Downstream::start().await;
    let text = collector_file_with_every_feature(addr);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otelcol.yaml");
    std::fs::write(&path, &text).unwrap();

    // `casefile check` with the Collector's command line: the gates in force, and one
    // this daemon does not have named and ignored.
    let gates = format!("--feature-gates={GATES},exporter.otlp.somegate");
    let stdout = check_ok(&path, &[&gates]);
    for want in [
        "warning: --feature-gates: \"exporter.otlp.somegate\" is not a gate casefile has",
        "tailsampling.policy/.composite_policy/.cached_decision on the scope",
        "ot=th thresholds on spans kept by probabilistic decisions",
        "server-errors: ottl_condition (error_mode ignore)",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }

    // The daemon, in this process, with the same gates.
    let (gates, warnings) = casefile::config::gates::parse(&[GATES]);
    assert!(warnings.is_empty());
    casefile::config::gates::set(gates);
    let daemon = start(casefile::config::load_str(&text, "otelcol.yaml").unwrap()).await;

    // 25 %: T = 2^56 - 2^56/4 = 0xc0000000000000, written `th:c`; a trace's randomness is
    // its id's low 56 bits (no `ot=rv` sent).
    const M: u64 = 1 << 56;
    let t = M - M / 4;
    let randomness = |id: &[u8; 16]| u64::from_be_bytes(id[8..].try_into().unwrap()) & (M - 1);
    let mut g = Gen::new(11);
    let mut below = |shape: Shape, n: usize| loop {
        let tr = g.trace(shape, n);
        if randomness(&tr.trace_id) < t {
            return tr;
        }
    };
    // Kept by ottl_condition (no ERROR status), by the and (ERROR, not /health), and one
    // the and drops (ERROR on /health): none of them within the 25 %.
    let mut server_error = below(Shape::default(), 3);
    server_error.spans[1]
        .1
        .attributes
        .push(fixture::kv_int("http.status_code", 503));
    let error = below(Shape::ERROR, 3);
    let mut health = below(Shape::ERROR, 3);
    for (_, s) in &mut health.spans {
        s.attributes.push(kv("http.route", "/health"));
    }
    let plain: Vec<_> = (0..60).map(|_| g.trace(Shape::default(), 2)).collect();
    let mut all = vec![server_error.clone(), error.clone(), health.clone()];
    all.extend(plain.iter().cloned());
    let body = fixture::request_for(&all).encode_to_vec();
    let (status, _, answer) = http_post(
        daemon.http_addr.unwrap(),
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "zstd"),
        ],
        zstd::encode_all(&body[..], 3).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));

    // What must arrive, and the policy the Collector would name for it.
    let mut want: std::collections::HashMap<String, (&str, usize)> = [
        (&server_error, "server-errors"),
        (&error, "errors-not-health"),
    ]
    .into_iter()
    .map(|(tr, p)| (hex::encode(tr.trace_id), (p, tr.spans.len())))
    .collect();
    for tr in plain.iter().filter(|tr| randomness(&tr.trace_id) >= t) {
        want.insert(hex::encode(tr.trace_id), ("baseline", tr.spans.len()));
    }
    assert!(want.len() > 5, "some plain traces fall in the 25 %");
    down.wait_for("every trace the policies keep", |d| {
        let got = d.spans_by_trace();
        want.iter()
            .all(|(id, (_, n))| got.get(id).map(Vec::len) == Some(*n))
    })
    .await;
    until_all_decided(&daemon).await;

    let mut seen = std::collections::HashSet::new();
    for req in down.requests.lock().iter() {
        for ss in req.resource_spans.iter().flat_map(|r| &r.scope_spans) {
            let policy = scope_string(&ss.scope, "tailsampling.policy");
            for span in &ss.spans {
                let id = hex::encode(&span.trace_id);
                let Some((name, _)) = want.get(&id) else {
                    panic!("{id} arrived but no policy keeps it");
                };
                seen.insert(id.clone());
                assert_eq!(policy.as_deref(), Some(*name), "{id}: tailsampling.policy");
                let th = if *name == "baseline" { "ot=th:c" } else { "" };
                assert_eq!(span.trace_state, th, "{id}: {name}");
            }
        }
    }
    assert_eq!(seen.len(), want.len());
    assert!(!seen.contains(&hex::encode(health.trace_id)));
    daemon.shutdown().await;
}
