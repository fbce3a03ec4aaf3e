//! Exporter tests against real servers on 127.0.0.1: a fake OTLP/gRPC downstream (the
//! opentelemetry-proto tonic server) and a fake OTLP/HTTP downstream (axum).

mod file;
mod grpc;
mod http;
mod limits;
mod queue;
mod split;
mod units;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::config::{ExporterCfg, OtlpCfg, QueueCfg, RetryCfg, TlsCfg};
use super::{ExportBatch, ExporterStats, Exporters};
use crate::config::duration::GoDuration;

/// Longest any test waits for something that should happen.
pub(super) const PATIENCE: Duration = Duration::from_secs(10);

pub(super) fn ms(n: u64) -> GoDuration {
    GoDuration(Duration::from_millis(n))
}

/// A request with `spans` spans named `<name>-<i>` in one trace.
pub(super) fn request(name: &str, spans: usize) -> ExportTraceServiceRequest {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: vec![0xab; 16],
            span_id: vec![(i % 255) as u8 + 1; 8],
            name: format!("{name}-{i}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            end_time_unix_nano: 1_700_000_000_100_000_000 + i as u64,
            attributes: vec![kv("http.route", "/checkout")],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "shop")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

pub(super) fn batch_of(req: &ExportTraceServiceRequest) -> Arc<ExportBatch> {
    let spans = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    Arc::new(ExportBatch {
        request: Bytes::from(req.encode_to_vec()),
        spans,
        traces: 1,
        seq: 0,
    })
}

/// The name of the first span of a request (tests name each batch).
pub(super) fn first_name(req: &ExportTraceServiceRequest) -> String {
    req.resource_spans[0].scope_spans[0].spans[0].name.clone()
}

/// OTLP exporter settings with fast retries (10 ms, doubling, up to 50 ms; never give up).
pub(super) fn otlp_cfg(endpoint: &str) -> OtlpCfg {
    OtlpCfg {
        endpoint: endpoint.into(),
        traces_endpoint: None,
        tls: TlsCfg {
            insecure: true,
            ..Default::default()
        },
        compression: "gzip".into(),
        headers: Default::default(),
        timeout: ms(2000),
        retry_on_failure: RetryCfg {
            enabled: true,
            initial_interval: ms(10),
            max_interval: ms(50),
            max_elapsed_time: ms(0),
            randomization_factor: 0.0,
            multiplier: 2.0,
        },
        sending_queue: QueueCfg {
            enabled: true,
            num_consumers: 2,
            queue_size: 100,
            ..QueueCfg::default()
        },
    }
}

pub(super) fn start(name: &str, cfg: ExporterCfg) -> Exporters {
    Exporters::start(&[(name.to_owned(), cfg)]).expect("exporter starts")
}

pub(super) fn stats(ex: &Exporters) -> ExporterStats {
    ex.stats()[0].1
}

/// Waits (bounded) until `cond` holds.
pub(super) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let wait = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// A port nothing listens on (yet).
pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the fake downstreams do with one request.
#[derive(Debug, Clone)]
pub(super) enum Reply {
    Ok,
    /// Accept with a partial success rejecting this many spans.
    Partial(i64),
    /// gRPC: fail with this code (and these `grpc-status-details-bin` bytes).
    Fail(tonic::Code, Bytes),
    /// HTTP: answer with this status (and `Retry-After` seconds).
    Status(u16, Option<u64>),
    /// Never answer.
    Hang,
}

/// A running fake downstream; what it accepted arrives on `got`.
pub(super) struct Downstream<T> {
    pub addr: SocketAddr,
    pub got: mpsc::UnboundedReceiver<T>,
    /// Requests seen, accepted or not.
    pub calls: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl<T> Downstream<T> {
    pub async fn next(&mut self) -> T {
        tokio::time::timeout(PATIENCE, self.got.recv())
            .await
            .expect("downstream got nothing in time")
            .expect("open")
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<T> Drop for Downstream<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request the fake gRPC downstream accepted.
pub(super) struct GrpcGot {
    pub request: ExportTraceServiceRequest,
    pub metadata: tonic::metadata::MetadataMap,
}

struct FakeGrpc {
    script: parking_lot::Mutex<VecDeque<Reply>>,
    /// The answer to any request holding a span named `poison…` (after the script).
    poison: Option<Reply>,
    got: mpsc::UnboundedSender<GrpcGot>,
    calls: Arc<AtomicUsize>,
}

/// Whether a request holds a span whose name starts with `poison`.
pub(super) fn has_poison(req: &ExportTraceServiceRequest) -> bool {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .any(|s| s.name.starts_with("poison"))
}

#[tonic::async_trait]
impl TraceService for FakeGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let scripted = self.script.lock().pop_front();
        let reply = match (scripted, &self.poison) {
            (Some(r), _) => r,
            (None, Some(p)) if has_poison(request.get_ref()) => p.clone(),
            (None, _) => Reply::Ok,
        };
        let rejected = match reply {
            Reply::Ok => 0,
            Reply::Partial(n) => n,
            Reply::Fail(code, details) => {
                return Err(tonic::Status::with_details(
                    code,
                    "scripted failure",
                    details,
                ))
            }
            Reply::Hang => std::future::pending().await,
            Reply::Status(..) => unreachable!("HTTP reply in a gRPC script"),
        };
        let metadata = request.metadata().clone();
        let _ = self.got.send(GrpcGot {
            request: request.into_inner(),
            metadata,
        });
        let partial_success = (rejected != 0).then(|| ExportTracePartialSuccess {
            rejected_spans: rejected,
            error_message: "some spans had no ids".into(),
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success,
        }))
    }
}

/// A fake OTLP/gRPC downstream on `listener` answering as `script` says, then OK.
pub(super) async fn grpc_downstream(
    listener: TcpListener,
    script: Vec<Reply>,
) -> Downstream<GrpcGot> {
    grpc_downstream_with(listener, script, None).await
}

/// A fake OTLP/gRPC downstream that answers `poison` to every request holding a span
/// named `poison…`, and accepts the others.
pub(super) async fn grpc_poison_downstream(poison: Reply) -> Downstream<GrpcGot> {
    grpc_downstream_with(listen().await, vec![], Some(poison)).await
}

async fn grpc_downstream_with(
    listener: TcpListener,
    script: Vec<Reply>,
    poison: Option<Reply>,
) -> Downstream<GrpcGot> {
    let addr = listener.local_addr().unwrap();
    let (tx, got) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let fake = FakeGrpc {
        script: parking_lot::Mutex::new(script.into()),
        poison,
        got: tx,
        calls: Arc::clone(&calls),
    };
    let service = SnappyUnwrap(
        TraceServiceServer::new(fake)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Zstd),
    );
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    Downstream {
        addr,
        got,
        calls,
        task,
    }
}

/// tonic has no snappy: requests with `grpc-encoding: snappy` have their messages decoded
/// here (the snappy framing format, with the `snap` crate directly, as grpc-go's snappy
/// codec in the Collector writes it) and reach the service uncompressed, with the encoding
/// they came in moved to `x-test-grpc-encoding`.
#[derive(Clone)]
struct SnappyUnwrap<S>(S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for SnappyUnwrap<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<::http::Request<tonic::body::Body>> for SnappyUnwrap<S>
where
    S: tower::Service<
            ::http::Request<tonic::body::Body>,
            Response = ::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = ::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: ::http::Request<tonic::body::Body>) -> Self::Future {
        use http_body_util::BodyExt;
        use std::io::Read;
        let mut inner = self.0.clone();
        Box::pin(async move {
            if req.headers().get("grpc-encoding").map(|v| v.as_bytes()) != Some(b"snappy") {
                return inner.call(req).await;
            }
            let (mut parts, body) = req.into_parts();
            parts.headers.remove("grpc-encoding");
            parts
                .headers
                .insert("x-test-grpc-encoding", "snappy".parse().unwrap());
            let raw = body.collect().await.unwrap().to_bytes();
            assert_eq!(raw[0], 1, "the message is flagged compressed");
            let len = u32::from_be_bytes(raw[1..5].try_into().unwrap()) as usize;
            assert_eq!(raw.len(), 5 + len, "one message");
            let mut plain = Vec::new();
            snap::read::FrameDecoder::new(&raw[5..])
                .read_to_end(&mut plain)
                .expect("the snappy framing format");
            let mut framed = vec![0u8];
            framed.extend_from_slice(&(plain.len() as u32).to_be_bytes());
            framed.extend_from_slice(&plain);
            let body = tonic::body::Body::new(http_body_util::Full::new(Bytes::from(framed)));
            inner.call(::http::Request::from_parts(parts, body)).await
        })
    }
}

pub(super) async fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A request the fake HTTP downstream accepted (body already un-gzipped).
pub(super) struct HttpGot {
    pub path: String,
    pub headers: ::http::HeaderMap,
    pub request: ExportTraceServiceRequest,
}

#[derive(Clone)]
struct FakeHttp {
    script: Arc<parking_lot::Mutex<VecDeque<Reply>>>,
    /// The answer to any request holding a span named `poison…` (after the script).
    poison: Option<Reply>,
    got: mpsc::UnboundedSender<HttpGot>,
    calls: Arc<AtomicUsize>,
}

async fn http_handler(
    axum::extract::State(fake): axum::extract::State<FakeHttp>,
    uri: ::http::Uri,
    headers: ::http::HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use std::io::Read;
    fake.calls.fetch_add(1, Ordering::SeqCst);
    let status = |code: u16, retry_after: Option<u64>| {
        let mut r = (
            ::http::StatusCode::from_u16(code).unwrap(),
            "scripted failure",
        )
            .into_response();
        if let Some(s) = retry_after {
            r.headers_mut()
                .insert(::http::header::RETRY_AFTER, s.into());
        }
        r
    };
    let scripted = fake.script.lock().pop_front();
    let rejected = match scripted.clone().unwrap_or(Reply::Ok) {
        Reply::Ok => 0,
        Reply::Partial(n) => n,
        Reply::Status(code, retry_after) => return status(code, retry_after),
        Reply::Hang => std::future::pending().await,
        Reply::Fail(..) => unreachable!("gRPC reply in an HTTP script"),
    };
    // Each Content-Encoding decoded with its crate and the framing the Collector uses.
    let encoding = headers
        .get(::http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap().to_owned());
    let mut out = Vec::new();
    match encoding.as_deref() {
        None => out = body.to_vec(),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .expect("valid gzip");
        }
        Some("zlib" | "deflate") => {
            flate2::read::ZlibDecoder::new(&body[..])
                .read_to_end(&mut out)
                .expect("valid zlib");
        }
        Some("zstd") => out = zstd::decode_all(&body[..]).expect("valid zstd"),
        Some("snappy") => {
            out = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .expect("a snappy block")
        }
        Some("x-snappy-framed") => {
            snap::read::FrameDecoder::new(&body[..])
                .read_to_end(&mut out)
                .expect("framed snappy");
        }
        Some("lz4") => {
            lz4_flex::frame::FrameDecoder::new(&body[..])
                .read_to_end(&mut out)
                .expect("an lz4 frame");
        }
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
    let body = out;
    let request = ExportTraceServiceRequest::decode(&body[..]).expect("protobuf body");
    if let (None, Some(Reply::Status(code, retry_after))) = (&scripted, &fake.poison) {
        if has_poison(&request) {
            return status(*code, *retry_after);
        }
    }
    let _ = fake.got.send(HttpGot {
        path: uri.path().to_owned(),
        headers,
        request,
    });
    let partial_success = (rejected != 0).then(|| ExportTracePartialSuccess {
        rejected_spans: rejected,
        error_message: "nope".into(),
    });
    let response = ExportTraceServiceResponse { partial_success }.encode_to_vec();
    (
        [(::http::header::CONTENT_TYPE, "application/x-protobuf")],
        response,
    )
        .into_response()
}

/// A fake OTLP/HTTP downstream accepting POSTs on any path.
pub(super) async fn http_downstream(
    listener: TcpListener,
    script: Vec<Reply>,
) -> Downstream<HttpGot> {
    http_downstream_with(listener, script, None).await
}

/// A fake OTLP/HTTP downstream that answers `poison` (a `Reply::Status`) to every request
/// holding a span named `poison…`, and accepts the others.
pub(super) async fn http_poison_downstream(poison: Reply) -> Downstream<HttpGot> {
    http_downstream_with(listen().await, vec![], Some(poison)).await
}

async fn http_downstream_with(
    listener: TcpListener,
    script: Vec<Reply>,
    poison: Option<Reply>,
) -> Downstream<HttpGot> {
    let addr = listener.local_addr().unwrap();
    let (tx, got) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let fake = FakeHttp {
        script: Arc::new(parking_lot::Mutex::new(script.into())),
        poison,
        got: tx,
        calls: Arc::clone(&calls),
    };
    let app = axum::Router::new()
        .fallback(axum::routing::post(http_handler))
        .with_state(fake);
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Downstream {
        addr,
        got,
        calls,
        task,
    }
}
