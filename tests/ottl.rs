//! End to end: a config with two `ottl_condition` policies (written as the Collector's docs
//! write them), a real tonic OTLP client in front and a real OTLP/gRPC receiver behind; the
//! daemon keeps exactly the traces the conditions match.

mod common;

use std::collections::HashSet;

use casefile::config;
use casefile::fixture::{self, Gen, Shape};
use common::*;
use opentelemetry_proto::tonic::trace::v1::span::Event;

fn ottl_config(downstream: std::net::SocketAddr) -> casefile::config::Config {
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: 300ms
    policies:
      - name: errors
        type: ottl_condition
        ottl_condition:
          span:
            - 'status.code == STATUS_CODE_ERROR'
            - 'attributes["http.status_code"] != nil and attributes["http.status_code"] >= 500'
      - name: premium-or-exception
        type: ottl_condition
        ottl_condition:
          error_mode: ignore
          span:
            - 'kind == SPAN_KIND_SERVER and attributes["user.tier"] == "premium" and resource.attributes["service.name"] != nil'
          spanevent:
            - 'name == "exception" and IsMatch(attributes["exception.type"], "Timeout")'
exporters:
  otlp:
    endpoint: "{downstream}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}
shutdown_timeout: 5s
"#
    );
    config::load_str(&yaml, "ottl.yaml").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ottl_condition_policies_keep_exactly_the_traces_they_match() {
    let (down, addr) = Downstream::start().await;
    let daemon = start(ottl_config(addr)).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(7);
    let premium = Shape {
        premium: true,
        ..Default::default()
    };
    let slow = Shape {
        slow: true,
        ..Default::default()
    };
    let mut traces = [
        g.trace(Shape::ERROR, 6),
        g.trace(premium, 6),
        g.trace(Shape::default(), 6), // gets a Timeout exception event below
        g.trace(Shape::default(), 6), // gets another exception event: not kept
        g.trace(slow, 6),
        g.trace(Shape::default(), 6),
        g.trace(Shape::default(), 1),
    ];
    let exception = |kind: &str| Event {
        name: "exception".into(),
        time_unix_nano: g.now_ns,
        attributes: vec![fixture::kv("exception.type", kind)],
        ..Default::default()
    };
    traces[2].spans[3]
        .1
        .events
        .push(exception("java.net.SocketTimeoutException"));
    traces[3].spans[3]
        .1
        .events
        .push(exception("java.lang.IllegalStateException"));
    let want: Vec<(usize, &str)> = vec![
        (0, "errors"),
        (1, "premium-or-exception"),
        (2, "premium-or-exception"),
    ];
    // Two requests, so a trace's spans may also arrive apart.
    client
        .export(fixture::request_for(&traces[..4]))
        .await
        .unwrap();
    client
        .export(fixture::request_for(&traces[4..]))
        .await
        .unwrap();

    until_all_decided(&daemon).await;
    daemon.shutdown().await;

    let got = down.spans_by_trace();
    let kept: HashSet<String> = got.keys().cloned().collect();
    let expected: HashSet<String> = want
        .iter()
        .map(|(i, _)| hex::encode(traces[*i].trace_id))
        .collect();
    assert_eq!(kept, expected);
    for (i, policy) in want {
        let spans = &got[&hex::encode(traces[i].trace_id)];
        assert_eq!(
            spans.len(),
            traces[i].spans.len(),
            "every span of a kept trace arrives"
        );
        assert_eq!(root_attr(spans, "casefile.policy").as_deref(), Some(policy));
    }
}
