//! Faults end to end, counted: the backend down then up, a full export queue pushing back
//! on clients, and a policy reload in the middle of a stream. Each test counts the spans
//! its clients had acknowledged for kept traces against what the downstream received (a
//! row of RELIABILITY.md, see `common::report`), and fails if one is missing.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use casefile::config;
use casefile::fixture::{self, Gen, Shape, Trace};
use casefile::policy::PolicyCfg;
use common::report::Row;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::Notify;

/// A downstream that can hold every answer until resumed, on an address of the test's
/// choosing (so it can come up where the exporter already points).
#[derive(Clone, Default)]
struct Gated {
    inner: Downstream,
    paused: Arc<AtomicBool>,
    resumed: Arc<Notify>,
}

#[tonic::async_trait]
impl TraceService for Gated {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        loop {
            let resumed = self.resumed.notified();
            if !self.paused.load(Ordering::SeqCst) {
                break;
            }
            resumed.await;
        }
        self.inner.export(request).await
    }
}

impl Gated {
    async fn start_on(addr: SocketAddr, paused: bool) -> Gated {
        let g = Gated::default();
        g.paused.store(paused, Ordering::SeqCst);
        serve_otlp(
            g.clone(),
            tokio::net::TcpListener::bind(addr).await.unwrap(),
        );
        g
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.resumed.notify_waiters();
    }
}

/// A loopback address nothing listens on (yet).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn spans(ts: &[Trace]) -> usize {
    ts.iter().map(|t| t.spans.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_down_then_up_gets_every_kept_span() {
    let addr = free_addr();
    let daemon = start(config(addr, "50ms", "")).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(71);
    let (mut kept, mut sent) = (Vec::new(), 0);
    for _ in 0..20 {
        let (e, p) = (g.trace(Shape::ERROR, 4), g.trace(Shape::default(), 4));
        client
            .export(fixture::request_for(&[e.clone(), p]))
            .await
            .unwrap();
        sent += 8;
        kept.push(e);
    }
    // Every trace decided and handed to the exporter, which retries a refused connection.
    eventually("all decided", || {
        let b = daemon.buffer.clone();
        async move { b.held_traces() == 0 }
    })
    .await;
    // The exporter has tried and failed, and is backing off.
    let api = daemon.api_addr.unwrap();
    eventually("the exporter retrying", || async move {
        let metrics = api_call(api, "GET", "/metrics", None, None).await.1;
        metrics
            .lines()
            .any(|l| l.starts_with("casefile_exporter_retries_total") && !l.ends_with(" 0"))
    })
    .await;
    let down = Gated::start_on(addr, false).await;
    down.inner
        .wait_for("every kept trace", |d| d.has_all(&kept))
        .await;
    daemon.shutdown().await;
    Row {
        test: "backend down, then up".into(),
        sent,
        accepted: sent,
        ..Row::default()
    }
    .count(&down.inner, &kept)
    .report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_pushes_back_and_loses_nothing_it_accepted() {
    let addr = free_addr();
    let down = Gated::start_on(addr, true).await;
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: 20ms
{POLICIES}
exporters:
  otlp:
    endpoint: "{addr}"
    tls: {{ insecure: true }}
    timeout: 30s
    sending_queue: {{ num_consumers: 1, queue_size: 2 }}
support:
  api: {{ endpoint: "" }}
shutdown_timeout: 5s
"#
    );
    let cfg = config::load_str(&yaml, "queue.yaml").unwrap_or_else(|e| panic!("{e}"));
    let daemon = start(cfg).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(72);
    let (mut kept, mut refused_traces) = (Vec::new(), Vec::new());
    let mut row = Row {
        test: "export queue full: clients pushed back".into(),
        ..Row::default()
    };
    // Bounded: at most 200 requests, until 5 have been refused.
    for _ in 0..200 {
        let batch: Vec<Trace> = (0..3).map(|_| g.trace(Shape::ERROR, 3)).collect();
        row.sent += spans(&batch);
        match client.export(fixture::request_for(&batch)).await {
            Ok(_) => {
                row.accepted += spans(&batch);
                kept.extend(batch);
                eventually("the batch decided", || {
                    let b = daemon.buffer.clone();
                    async move { b.held_traces() == 0 }
                })
                .await;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                row.refused += spans(&batch);
                refused_traces.extend(batch);
                if refused_traces.len() >= 15 {
                    break;
                }
            }
        }
    }
    assert!(row.refused > 0, "the full queue never pushed back");
    down.resume();
    down.inner
        .wait_for("every accepted kept trace", |d| {
            let got = d.spans_by_trace();
            kept.iter()
                .all(|t| got.contains_key(&hex::encode(t.trace_id)))
        })
        .await;
    daemon.shutdown().await;
    let got = down.inner.spans_by_trace();
    assert!(
        refused_traces
            .iter()
            .all(|t| !got.contains_key(&hex::encode(t.trace_id))),
        "a refused request is not taken in part"
    );
    row.count(&down.inner, &kept).report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reload_mid_stream_loses_nothing() {
    let (down, addr) = Downstream::start().await;
    let started = config(addr, "30ms", "");
    let daemon = start(started.clone()).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(73);
    let mut new = started.clone();
    new.tail_sampling.policies =
        vec![
            serde_yaml_ng::from_str::<PolicyCfg>("{ name: everything, type: always_sample }")
                .unwrap(),
        ];
    let (mut errors, mut after, mut sent) = (Vec::new(), Vec::new(), 0);
    for i in 0..40 {
        if i == 20 {
            daemon.reload(&started, &new).unwrap();
        }
        let (e, p) = (g.trace(Shape::ERROR, 3), g.trace(Shape::default(), 3));
        client
            .export(fixture::request_for(&[e.clone(), p.clone()]))
            .await
            .unwrap();
        sent += 6;
        errors.push(e);
        if i >= 20 {
            after.push(p);
        }
    }
    // Kept for sure: every error trace (both policy sets keep it) and every plain trace
    // sent after the reload.
    let kept: Vec<Trace> = errors.into_iter().chain(after).collect();
    down.wait_for("every trace both policy sets keep", |d| d.has_all(&kept))
        .await;
    daemon.shutdown().await;
    Row {
        test: "policy reload mid-stream".into(),
        sent,
        accepted: sent,
        ..Row::default()
    }
    .count(&down, &kept)
    .report();
}
