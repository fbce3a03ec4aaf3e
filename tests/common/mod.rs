//! Test harness: a real downstream OTLP/gRPC receiver, configs on port 0, and waits
//! that end on an event (with a bounded timeout), never on a fixed sleep.
#![allow(dead_code)]

pub mod certs;
pub mod process;
pub mod report;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use casefile::config::{self, Config};
use casefile::Daemon;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// A downstream OTLP/gRPC receiver that records every request; with `refuse` set, it
/// refuses (INVALID_ARGUMENT) any request holding a span of that name, as a backend
/// refuses a batch for one span it will not take.
#[derive(Clone, Default)]
pub struct Downstream {
    pub requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    pub notify: Arc<Notify>,
    pub refuse: Arc<Mutex<Option<String>>>,
    /// Export calls answered, refused ones included.
    pub calls: Arc<std::sync::atomic::AtomicUsize>,
    /// Spans of the refuse name seen in refused requests (a span sent twice counts twice).
    pub refused_spans: Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl TraceService for Downstream {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        use std::sync::atomic::Ordering;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let request = request.into_inner();
        if let Some(name) = self.refuse.lock().as_deref() {
            let marked = request
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .filter(|s| s.name == name)
                .count();
            if marked > 0 {
                self.refused_spans.fetch_add(marked, Ordering::Relaxed);
                self.notify.notify_waiters();
                return Err(tonic::Status::invalid_argument(format!(
                    "{marked} span(s) named {name:?} are not accepted"
                )));
            }
        }
        self.requests.lock().push(request);
        self.notify.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves `svc` as an OTLP/gRPC trace receiver (gzip and zstd accepted) on `listener`.
pub fn serve_otlp<S: TraceService>(svc: S, listener: tokio::net::TcpListener) {
    let svc = TraceServiceServer::new(svc)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
}

impl Downstream {
    /// Starts on 127.0.0.1:0 and returns its address.
    pub async fn start() -> (Downstream, SocketAddr) {
        let d = Downstream::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        serve_otlp(d.clone(), listener);
        (d, addr)
    }

    /// Starts on 127.0.0.1:0, refusing any request that holds a span named `name`.
    pub async fn start_refusing(name: &str) -> (Downstream, SocketAddr) {
        let (d, addr) = Downstream::start().await;
        *d.refuse.lock() = Some(name.to_owned());
        (d, addr)
    }

    /// Every span received, by trace id (hex).
    pub fn spans_by_trace(&self) -> HashMap<String, Vec<Span>> {
        let mut out: HashMap<String, Vec<Span>> = HashMap::new();
        for r in self.requests.lock().iter() {
            for rs in &r.resource_spans {
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.entry(hex::encode(&s.trace_id))
                            .or_default()
                            .push(s.clone());
                    }
                }
            }
        }
        out
    }

    /// Whether every span of every trace of `traces` has arrived (at least once).
    pub fn has_all(&self, traces: &[casefile::fixture::Trace]) -> bool {
        let got = self.spans_by_trace();
        traces.iter().all(|t| {
            got.get(&hex::encode(t.trace_id))
                .is_some_and(|s| s.len() >= t.spans.len())
        })
    }

    pub fn span_count(&self) -> usize {
        self.spans_by_trace().values().map(Vec::len).sum()
    }

    /// Waits (at most 10 s) until `cond` holds on what was received.
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&Downstream) -> bool) {
        let fut = async {
            loop {
                let notified = self.notify.notified();
                if cond(self) {
                    return;
                }
                // Re-check at least every 50 ms in case the event raced the registration.
                let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .is_err()
        {
            panic!(
                "timed out waiting for {what}; downstream has traces {:?}",
                self.spans_by_trace().keys().collect::<Vec<_>>()
            );
        }
    }
}

/// Polls `cond` every 10 ms, for at most 10 s.
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let fut = async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .is_err()
    {
        panic!("timed out waiting for {what}");
    }
}

pub const POLICIES: &str = r#"
    policies:
      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
      - { name: slow, type: latency, latency: { threshold_ms: 500 } }
      - name: premium
        type: string_attribute
        string_attribute: { key: user.tier, values: [premium, vip] }
"#;

/// A config on port 0 exporting to `downstream` over OTLP/gRPC.
pub fn config(downstream: SocketAddr, decision_wait: &str, extra_tail_sampling: &str) -> Config {
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0", max_request_body_size: 1048576 }}
processors:
  tail_sampling:
    decision_wait: {decision_wait}
{extra_tail_sampling}
{POLICIES}
exporters:
  otlp:
    endpoint: "{downstream}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}
support:
  api: {{ endpoint: "127.0.0.1:0" }}
shutdown_timeout: 5s
"#
    );
    config::load_str(&yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// Starts casefile with `config`.
///
/// A config that leaves the support API on its default address (a pasted Collector file,
/// a chain's front) gets an ephemeral port instead: tests run in parallel, and two
/// daemons on 127.0.0.1:8990 make one of them fail to start.
pub async fn start(mut config: Config) -> Daemon {
    if config.support.api.endpoint.as_deref() == Some("127.0.0.1:8990") {
        config.support.api.endpoint = Some("127.0.0.1:0".into());
    }
    Daemon::start(config).await.expect("daemon starts")
}

pub async fn client(daemon: &Daemon) -> TraceServiceClient<tonic::transport::Channel> {
    TraceServiceClient::connect(format!("http://{}", daemon.grpc_addr.unwrap()))
        .await
        .unwrap()
}

/// Waits until the daemon holds no pending trace and has handed everything on.
pub async fn until_all_decided(daemon: &Daemon) {
    let b = daemon.buffer.clone();
    eventually("all traces decided", || {
        let b = b.clone();
        async move { b.held_traces() == 0 && b.outbox_bytes() == 0 }
    })
    .await;
}

/// Minimal HTTP/1.1 POST over hyper, returning (status, headers, body).
pub async fn reqwest_post(
    addr: std::net::SocketAddr,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    http_post(addr, "/v1/traces", &[("content-type", content_type)], body).await
}

pub async fn http_post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    let client: Client<_, Full<bytes::Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut req = http::Request::post(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(bytes::Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

/// One HTTP/1.1 request over a plain socket (the API's real listener): status and body.
pub async fn api_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = json.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    )
}

/// GET on the support API, the body as JSON (Null when it is not JSON).
pub async fn api_get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let (code, body) = api_call(addr, "GET", path, token, None).await;
    (
        code,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// POST of a JSON body on the support API.
pub async fn api_post(addr: SocketAddr, path: &str, json: &str) -> (u16, serde_json::Value) {
    let (code, body) = api_call(addr, "POST", path, None, Some(json)).await;
    (
        code,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// A string attribute of the root span.
pub fn root_attr(spans: &[Span], key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value;
    let root = spans.iter().find(|s| s.parent_span_id.is_empty())?;
    root.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

/// `casefile check --config path [extra...]` through the binary: its stdout, after
/// asserting it succeeded (stderr in the message when not).
pub fn check_ok(path: &std::path::Path, extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_casefile"))
        .args(["check", "--config"])
        .arg(path)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A string attribute of an instrumentation scope (`tailsampling.policy`, ...).
pub fn scope_string(
    scope: &Option<opentelemetry_proto::tonic::common::v1::InstrumentationScope>,
    key: &str,
) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let a = scope.as_ref()?.attributes.iter().find(|a| a.key == key)?;
    match a.value.as_ref()?.value.as_ref()? {
        Value::StringValue(v) => Some(v.clone()),
        _ => None,
    }
}
