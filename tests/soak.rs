//! The short overload soak CI runs (the long one is `scripts/soak.sh`): the real binary
//! with a small memory limit and a buffer bound far above it, driven as fast as three
//! in-process clients can send for a bounded time. Resident memory, read from
//! `/proc/<pid>/statm` every 50 ms, stays under the limit plus a margin; every request the
//! clients saw refused is counted by the daemon; afterwards it answers and accepts again.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use casefile::fixture::{self, Gen, Shape};
use common::api_call;
use common::process::Process;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

const LIMIT_MIB: u64 = 96;
/// What the guard may overshoot by between two checks (20 ms) plus requests in flight.
const MARGIN_MIB: u64 = 24;
const LOAD_FOR: Duration = Duration::from_secs(12);

/// A downstream that counts spans and keeps nothing.
#[derive(Clone, Default)]
struct CountingSink(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for CountingSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn start_sink() -> (CountingSink, SocketAddr) {
    let sink = CountingSink::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(sink.clone())
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(64 << 20);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (sink, addr)
}

fn write_config(dir: &Path, sink: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("soak.yaml");
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0", max_recv_msg_size_mib: 4 }}
processors:
  tail_sampling:
    decision_wait: 1h
    num_traces: 1000000
    max_buffer_bytes: 512MiB
    decision_cache: {{ sampled_cache_size: 10000, non_sampled_cache_size: 10000 }}
    policies:
      - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}
  memory_limiter: {{ check_interval: 20ms, limit_mib: {LIMIT_MIB}, spike_limit_mib: 8 }}
exporters:
  otlp: {{ endpoint: "{sink}", tls: {{ insecure: true }} }}
support:
  api: {{ endpoint: "127.0.0.1:0" }}
  index: {{ max_traces: 1000 }}
  complaints: {{ rescue_max_bytes: 1MiB }}
shutdown_timeout: 5s
"#
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A request of `base`'s spans under fresh trace ids.
fn salted(base: &ExportTraceServiceRequest, salt: u64) -> ExportTraceServiceRequest {
    let mut r = base.clone();
    for s in r
        .resource_spans
        .iter_mut()
        .flat_map(|r| &mut r.scope_spans)
        .flat_map(|s| &mut s.spans)
    {
        for (b, x) in s.trace_id[..8].iter_mut().zip(salt.to_be_bytes()) {
            *b ^= x;
        }
    }
    r
}

#[derive(Default)]
struct Seen {
    accepted: AtomicU64,
    refused: AtomicU64,
}

async fn drive(grpc: SocketAddr, seed: u64, until: Instant, seen: Arc<Seen>) {
    let mut client = TraceServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let mut g = Gen::new(seed);
    let traces: Vec<_> = (0..50)
        .map(|i| {
            let shape = if i % 10 == 0 {
                Shape::ERROR
            } else {
                Shape::default()
            };
            g.trace(shape, 10)
        })
        .collect();
    let base = fixture::request_for(&traces);
    let mut n = 0u64;
    while Instant::now() < until && n < 100_000 {
        n += 1;
        match client.export(salted(&base, seed << 32 | n)).await {
            Ok(_) => seen.accepted.fetch_add(1, Ordering::Relaxed),
            // A refusal is an answer from the daemon (it has response headers).
            Err(s) if s.code() == tonic::Code::Unavailable && !s.metadata().is_empty() => {
                seen.refused.fetch_add(1, Ordering::Relaxed)
            }
            Err(s) => panic!("not a throttling answer: {s:?}"),
        };
    }
}

/// The sum of the series of `name` carrying `label`, from /metrics.
async fn counter(api: SocketAddr, name: &str, label: &str) -> u64 {
    let text = api_call(api, "GET", "/metrics", None, None).await.1;
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_keeps_memory_under_the_limit_and_counts_every_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, sink_addr) = start_sink().await;
    let mut daemon = Process::start(&write_config(dir.path(), sink_addr));
    let grpc: SocketAddr = daemon.addr("OTLP/gRPC receiver").await.parse().unwrap();
    let api: SocketAddr = daemon.addr("support API").await.parse().unwrap();
    let idle = daemon.resident();
    assert!(idle < (LIMIT_MIB << 20) / 2, "idle {idle} B");

    let seen = Arc::new(Seen::default());
    let until = Instant::now() + LOAD_FOR;
    let clients: Vec<_> = (1..=3)
        .map(|seed| tokio::spawn(drive(grpc, seed, until, Arc::clone(&seen))))
        .collect();
    let mut max = 0;
    while clients.iter().any(|c| !c.is_finished()) {
        max = max.max(daemon.resident());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in clients {
        c.await.unwrap();
    }
    let (accepted, refused) = (
        seen.accepted.load(Ordering::Relaxed),
        seen.refused.load(Ordering::Relaxed),
    );
    eprintln!(
        "idle {:.1} MiB, max {:.1} MiB, accepted {accepted} requests, refused {refused}, delivered {} spans",
        idle as f64 / 1048576.0,
        max as f64 / 1048576.0,
        sink.0.load(Ordering::Relaxed)
    );
    assert!(accepted > 0);
    assert!(
        max <= (LIMIT_MIB + MARGIN_MIB) << 20,
        "resident memory peaked at {max} B, limit {LIMIT_MIB} MiB"
    );
    let counted = counter(
        api,
        "casefile_receiver_refused_requests_total",
        "transport=\"grpc\"",
    )
    .await;
    assert_eq!(counted, refused, "every refused request is counted");
    if max > LIMIT_MIB << 20 {
        assert!(
            refused > 0,
            "memory passed the limit, so requests were refused"
        );
    }

    // Afterwards it answers, and accepts again once its memory is back under the limit.
    assert_eq!(api_call(api, "GET", "/healthz", None, None).await.0, 200);
    let mut client = TraceServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let mut g = Gen::new(99);
    let mut accepted_again = false;
    for _ in 0..300 {
        let req = fixture::request_for(&[g.trace(Shape::ERROR, 3)]);
        if client.export(req).await.is_ok() {
            accepted_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted_again, "the daemon accepts again after the load");
    let (ok, log) = daemon.stop();
    assert!(ok, "clean exit after the overload:\n{}", log.join("\n"));
}
