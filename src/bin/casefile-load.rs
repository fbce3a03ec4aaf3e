//! End-to-end load tool: sends realistic traces (several services, 5–20 spans, user ids,
//! 5 % errors, 5 % slow, 5 % premium) over OTLP/gRPC with gzip to a target, and runs a
//! downstream OTLP/gRPC sink that counts what arrives. Reports accepted spans/s and
//! whether every trace the example policies must keep arrived whole. Bounded in time and
//! in request count; meant for loopback only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use casefile::fixture::{self, Gen};
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use parking_lot::Mutex;
use prost::Message;

#[derive(Debug, Parser)]
#[command(
    about = "Drive casefile (or any OTLP collector) with realistic traces and count what comes out."
)]
struct Args {
    /// OTLP/gRPC endpoint of the system under test.
    #[arg(long, default_value = "127.0.0.1:4317")]
    target: String,
    /// Address for the downstream sink the system under test exports to.
    #[arg(long, default_value = "127.0.0.1:14317")]
    sink: SocketAddr,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    #[arg(long, default_value_t = 500)]
    spans_per_request: usize,
    /// Spans per trace (0 = the realistic 5–20 mix).
    #[arg(long, default_value_t = 10)]
    spans_per_trace: usize,
    /// How long to send (at most 1800 s).
    #[arg(long, default_value = "20")]
    seconds: u64,
    /// Stop after this many requests in all (a bound, whatever the time).
    #[arg(long, default_value_t = 200_000)]
    max_requests: u64,
    /// After sending, wait this long at most for the sink to go quiet.
    #[arg(long, default_value = "30")]
    drain_seconds: u64,
    /// Every trace is expected downstream (a pass-through collector).
    #[arg(long)]
    expect_all: bool,
    /// Mixed into every trace id, so runs with different values send different traces.
    #[arg(long, default_value_t = 0)]
    id_salt: u16,
    /// Spans a second to offer in all, spread over the connections (0 = as fast as the
    /// target answers). A connection that falls behind sends at once, without sleeping.
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[derive(Default)]
struct Sink {
    spans: AtomicU64,
    by_trace: Mutex<HashMap<[u8; 16], u32>>,
    last: Mutex<Option<Instant>>,
}

#[derive(Clone)]
struct SinkSvc(Arc<Sink>);

#[tonic::async_trait]
impl TraceService for SinkSvc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let mut n = 0;
        let mut map = self.0.by_trace.lock();
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    if let Ok(id) = <[u8; 16]>::try_from(&s.trace_id[..]) {
                        *map.entry(id).or_default() += 1;
                    }
                    n += 1;
                }
            }
        }
        drop(map);
        self.0.spans.fetch_add(n, Ordering::Relaxed);
        *self.0.last.lock() = Some(Instant::now());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind(args.sink)
        .await
        .expect("bind sink");
    let svc = TraceServiceServer::new(SinkSvc(Arc::clone(&sink)))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(64 << 20);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    // Pre-build the requests so the generator costs nothing during the run.
    let mut g = Gen::new(42);
    let mut must_keep: HashMap<[u8; 16], u32> = HashMap::new();
    let mut all: HashMap<[u8; 16], u32> = HashMap::new();
    let n_requests = 256usize;
    let mut requests = Vec::with_capacity(n_requests);
    for _ in 0..n_requests {
        let mut traces = Vec::new();
        let mut spans = 0;
        while spans < args.spans_per_request {
            let mut t = g.mixed();
            if args.spans_per_trace > 0 {
                let shape = fixture::Shape {
                    error: t
                        .spans
                        .iter()
                        .any(|(_, s)| s.status.as_ref().is_some_and(|st| st.code == 2)),
                    slow: t.spans[0].1.end_time_unix_nano - t.spans[0].1.start_time_unix_nano
                        >= 500_000_000,
                    premium: t.spans[0].1.attributes.iter().any(|a| {
                        a.key == "user.tier" && format!("{:?}", a.value).contains("premium")
                    }),
                };
                t = g.trace(shape, args.spans_per_trace);
            }
            spans += t.spans.len();
            traces.push(t);
        }
        let bytes = fixture::request_for(&traces).encode_to_vec();
        requests.push((bytes, traces));
    }
    // Where each trace id sits in the encoded requests.
    let offsets: Arc<Vec<Vec<usize>>> = Arc::new(
        requests
            .iter()
            .map(|(bytes, traces)| {
                let mut offs = Vec::new();
                for t in traces {
                    let mut from = 0;
                    while let Some(p) = bytes[from..].windows(16).position(|w| w == t.trace_id) {
                        offs.push(from + p);
                        from += p + 16;
                    }
                }
                offs
            })
            .collect(),
    );
    // Each pre-built request is sent once; later rounds reuse its bytes with fresh trace ids.
    let sent_spans = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let sent_requests = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(requests);
    let refused_requests = Arc::new(AtomicU64::new(0));
    let failed_requests = Arc::new(AtomicU64::new(0));
    let accepted_requests = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds.min(1800));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let expected = Arc::new(Mutex::new(Vec::<([u8; 16], u32, bool)>::new()));
    for c in 0..args.connections {
        let offsets = Arc::clone(&offsets);
        let (target, requests, sent_spans, refused, sent_requests, expected) = (
            args.target.clone(),
            Arc::clone(&requests),
            Arc::clone(&sent_spans),
            Arc::clone(&refused),
            Arc::clone(&sent_requests),
            Arc::clone(&expected),
        );
        let max_requests = args.max_requests;
        let args_salt = args.id_salt;
        let (refused_requests, failed_requests, accepted_requests) = (
            Arc::clone(&refused_requests),
            Arc::clone(&failed_requests),
            Arc::clone(&accepted_requests),
        );
        // Seconds between this connection's requests at the asked rate.
        let per_conn = args.rate as f64 / args.connections.max(1) as f64;
        let pace = (args.rate > 0).then(|| args.spans_per_request as f64 / per_conn);
        tasks.push(tokio::spawn(async move {
            let channel = tonic::transport::Channel::from_shared(format!("http://{target}"))
                .expect("target URL")
                .connect()
                .await
                .expect("connect to target");
            let mut client = tonic::client::Grpc::new(channel)
                .send_compressed(tonic::codec::CompressionEncoding::Gzip);
            let mut round: u32 = 0;
            let mut i = c;
            let mut sent_here: u32 = 0;
            let began = tokio::time::Instant::now();
            while Instant::now() < deadline
                && sent_requests.fetch_add(1, Ordering::Relaxed) < max_requests
            {
                if let Some(p) = pace {
                    let at = began + Duration::from_secs_f64(p * sent_here as f64);
                    tokio::time::sleep_until(at).await;
                    sent_here += 1;
                }
                let (bytes, traces) = &requests[i % requests.len()];
                // Fresh ids each round: XOR the high bytes of every trace id in the encoded bytes.
                let salt =
                    ((args_salt as u64) << 48 | (round as u64) << 16 | c as u64).to_be_bytes();
                let mut req = bytes.clone();
                for &off in &offsets[i % offsets.len()] {
                    for (b, x) in req[off..off + 8].iter_mut().zip(salt) {
                        *b ^= x;
                    }
                }
                let n: u64 = traces.iter().map(|t| t.spans.len() as u64).sum();
                match raw_export(&mut client, req).await {
                    Ok(_) => {
                        accepted_requests.fetch_add(1, Ordering::Relaxed);
                        sent_spans.fetch_add(n, Ordering::Relaxed);
                        let mut e = expected.lock();
                        for t in traces {
                            let mut id = t.trace_id;
                            for (b, x) in id[..8].iter_mut().zip(salt) {
                                *b ^= x;
                            }
                            let root = &t.spans[0].1;
                            let keep = t
                                .spans
                                .iter()
                                .any(|(_, s)| s.status.as_ref().is_some_and(|st| st.code == 2))
                                || root.end_time_unix_nano - root.start_time_unix_nano
                                    >= 500_000_000
                                || root.attributes.iter().any(|a| {
                                    a.key == "user.tier"
                                        && format!("{:?}", a.value).contains("premium")
                                });
                            e.push((id, t.spans.len() as u32, keep));
                        }
                    }
                    Err(status) => {
                        refused.fetch_add(n, Ordering::Relaxed);
                        // The OTLP throttling codes in an answer from the target (a
                        // transport failure has no response headers).
                        let throttled = matches!(
                            status.code(),
                            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                        ) && !status.metadata().is_empty();
                        let counter = if throttled {
                            &refused_requests
                        } else {
                            &failed_requests
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += args_step();
                if i >= requests.len() * (round as usize + 1) {
                    round += 1;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    // Wait for the sink to go quiet (decision window + export), bounded.
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let quiet = sink
            .last
            .lock()
            .is_some_and(|l| l.elapsed() > Duration::from_secs(3));
        if quiet || Instant::now() > drain_deadline {
            break;
        }
    }
    let got = sink.by_trace.lock();
    for (id, n, keep) in expected.lock().iter() {
        all.insert(*id, *n);
        if *keep {
            must_keep.insert(*id, *n);
        }
    }
    let check = if args.expect_all { &all } else { &must_keep };
    let whole = check
        .iter()
        .filter(|(id, n)| got.get(*id) == Some(n))
        .count();
    let sent = sent_spans.load(Ordering::Relaxed);
    let report = serde_json::json!({
        "seconds": elapsed.as_secs_f64(),
        "accepted_spans": sent,
        "accepted_spans_per_sec": sent as f64 / elapsed.as_secs_f64(),
        "refused_spans": refused.load(Ordering::Relaxed),
        "accepted_requests": accepted_requests.load(Ordering::Relaxed),
        "refused_requests": refused_requests.load(Ordering::Relaxed),
        "failed_requests": failed_requests.load(Ordering::Relaxed),
        "downstream_spans": sink.spans.load(Ordering::Relaxed),
        "downstream_traces": got.len(),
        "expected_traces": check.len(),
        "expected_traces_whole": whole,
    });
    println!("{report}");
}

fn args_step() -> usize {
    1
}

/// Sends pre-encoded request bytes (no re-encoding on the client).
async fn raw_export(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    req: Vec<u8>,
) -> Result<(), tonic::Status> {
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    client
        .unary::<bytes::Bytes, bytes::Bytes, _>(
            tonic::Request::new(bytes::Bytes::from(req)),
            path,
            casefile::receiver::grpc::RawCodec,
        )
        .await
        .map(|_| ())
}
