//! Backpressure and self-metrics end to end: a downstream that never answers fills the
//! exporter queue, and casefile then refuses new data with the OTLP throttling codes
//! (HTTP 503 + Retry-After, gRPC UNAVAILABLE) and counts it; `/metrics` shows the flow.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use casefile::config;
use casefile::fixture::{self, Gen, Shape};
use common::*;
use prost::Message;

/// Accepts connections and never answers (holds them open until the test ends).
async fn silent_downstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr
}

fn stuck_config(downstream: SocketAddr) -> config::Config {
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: 50ms
{POLICIES}
exporters:
  otlp:
    endpoint: "{downstream}"
    tls: {{ insecure: true }}
    timeout: 60s
    sending_queue: {{ num_consumers: 1, queue_size: 1 }}
support:
  api: {{ endpoint: "127.0.0.1:0" }}
shutdown_timeout: 1s
"#
    );
    config::load_str(&yaml, "stuck.yaml").unwrap_or_else(|e| panic!("{e}"))
}

async fn send_error_trace(client: &mut Client, g: &mut Gen) {
    let t = g.trace(Shape::ERROR, 3);
    client.export(fixture::request_for(&[t])).await.unwrap();
}

type Client =
    opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient<
        tonic::transport::Channel,
    >;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_exporter_makes_receivers_throttle() {
    let down = silent_downstream().await;
    let daemon = start(stuck_config(down)).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(31);
    // The first kept batch is taken by the only worker, which then waits on the silent
    // downstream; the second fills the one-slot queue.
    send_error_trace(&mut client, &mut g).await;
    until_all_decided(&daemon).await;
    send_error_trace(&mut client, &mut g).await;
    until_all_decided(&daemon).await;

    let body = fixture::request_for(&[g.trace(Shape::default(), 2)]).encode_to_vec();
    eventually("HTTP refuses with 503", || {
        let body = body.clone();
        let addr = daemon.http_addr.unwrap();
        async move {
            let (code, headers, _) = reqwest_post(addr, "application/x-protobuf", body).await;
            if code == 503 {
                assert_eq!(
                    headers["retry-after"], "1",
                    "clients are told when to retry"
                );
                return true;
            }
            false
        }
    })
    .await;
    let status = client
        .export(fixture::request_for(&[g.trace(Shape::default(), 2)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    let metrics = api_call(daemon.api_addr.unwrap(), "GET", "/metrics", None, None)
        .await
        .1;
    let busy = metrics
        .lines()
        .filter(|l| {
            l.starts_with("casefile_receiver_refused_requests_total")
                && l.contains("reason=\"busy\"")
        })
        .count();
    assert!(busy >= 1, "refusals are counted:\n{metrics}");
    tokio::time::timeout(Duration::from_secs(10), daemon.shutdown())
        .await
        .expect("shutdown ends within its grace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_describe_the_flow() {
    let (down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "100ms", "")).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(32);
    let kept = g.trace(Shape::ERROR, 4);
    let dropped = g.trace(Shape::default(), 4);
    client
        .export(fixture::request_for(&[kept.clone(), dropped]))
        .await
        .unwrap();
    let id = hex::encode(kept.trace_id);
    down.wait_for("the kept trace", |d| {
        d.spans_by_trace().get(&id).map(Vec::len) == Some(4)
    })
    .await;

    let api = daemon.api_addr.unwrap();
    // Exporter counters appear once the worker has finished the send; poll, bounded.
    let mut text = String::new();
    for _ in 0..500 {
        text = api_call(api, "GET", "/metrics", None, None).await.1;
        if text.contains("casefile_exporter_sent_spans_total") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for name in [
        "casefile_receiver_accepted_spans_total",
        "casefile_processor_tail_sampling_count_traces_sampled",
        "casefile_processor_tail_sampling_sampling_decision_total",
        "casefile_processor_tail_sampling_sampling_decision_delay_seconds_bucket",
        "casefile_processor_tail_sampling_sampling_traces_on_memory",
        "casefile_processor_tail_sampling_sampling_bytes_on_memory",
        "casefile_exporter_sent_spans_total",
        "casefile_exporter_queue_size",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert!(
        text.contains("policy=\"errors\""),
        "decisions are labelled by policy:\n{text}"
    );
    assert_eq!(
        api_call(api, "GET", "/healthz", None, None).await.1,
        r#"{"status":"ok"}"#
    );
    daemon.shutdown().await;
}
