//! One client's bad span never costs another client's kept trace. Each poison a careless
//! client sends (invalid UTF-8 in a span name, an attribute key or value, a resource
//! attribute, an event name; arrays or maps nested past the protobuf limit; a 6 MiB trace)
//! goes in between good kept traces, over gRPC and over HTTP, to a downstream that
//! validates as it decodes (prost, and the Python protobuf runtime): every good trace
//! arrives whole, the poison is repaired or refused as documented, and the counters say
//! which. A downstream that refuses any batch holding a marked span costs only that span.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use casefile::fixture::poison::{big_attribute, poisoned_request, Poison, REPAIRED};
use casefile::fixture::{self, Gen, Shape, Trace};
use common::report::Row;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use parking_lot::Mutex;
use prost::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Grpc,
    Http,
}

/// Sends encoded request bytes as they are; returns the partial success (rejected spans,
/// message).
async fn send(daemon: &casefile::Daemon, transport: Transport, body: Vec<u8>) -> (i64, String) {
    let response = match transport {
        Transport::Grpc => {
            let channel = tonic::transport::Channel::from_shared(format!(
                "http://{}",
                daemon.grpc_addr.unwrap()
            ))
            .unwrap()
            .connect()
            .await
            .unwrap();
            let mut raw = tonic::client::Grpc::new(channel);
            raw.ready().await.unwrap();
            let path = http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            );
            raw.unary::<bytes::Bytes, bytes::Bytes, _>(
                tonic::Request::new(body.into()),
                path,
                casefile::receiver::grpc::RawCodec,
            )
            .await
            .unwrap_or_else(|s| panic!("gRPC export refused: {s:?}"))
            .into_inner()
        }
        Transport::Http => {
            let (code, _, body) =
                reqwest_post(daemon.http_addr.unwrap(), "application/x-protobuf", body).await;
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
            body.into()
        }
    };
    let r = ExportTraceServiceResponse::decode(&response[..]).unwrap();
    r.partial_success
        .map(|p| (p.rejected_spans, p.error_message))
        .unwrap_or_default()
}

/// What a downstream received: span ids and names by trace id (hex).
type Received = HashMap<String, Vec<(Vec<u8>, String)>>;

/// A downstream under test: the prost receiver of `common`, or the Python one.
enum Sink {
    Prost(Downstream),
    Python(PyDownstream),
}

impl Sink {
    async fn start(python: bool) -> (Sink, SocketAddr) {
        if python {
            let (d, addr) = PyDownstream::start();
            (Sink::Python(d), addr)
        } else {
            let (d, addr) = Downstream::start().await;
            (Sink::Prost(d), addr)
        }
    }

    fn received(&self) -> Received {
        match self {
            Sink::Prost(d) => d
                .spans_by_trace()
                .into_iter()
                .map(|(t, spans)| (t, spans.into_iter().map(|s| (s.span_id, s.name)).collect()))
                .collect(),
            Sink::Python(d) => d.received.lock().clone(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Sink::Prost(_) => "prost",
            Sink::Python(_) => "Python protobuf",
        }
    }
}

/// `tests/interop/receive.py`: an OTLP/gRPC receiver on the Python protobuf runtime.
struct PyDownstream {
    child: Child,
    received: Arc<Mutex<Received>>,
}

impl PyDownstream {
    fn start() -> (PyDownstream, SocketAddr) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var_os("CASEFILE_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv/bin/python"));
        assert!(
            python.exists(),
            "{} is missing: run scripts/setup-tests.sh",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root.join("tests/interop/receive.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("the receiver prints its port").unwrap();
        let port = serde_json::from_str::<serde_json::Value>(&first).unwrap()["port"]
            .as_u64()
            .unwrap();
        let received: Arc<Mutex<Received>> = Arc::default();
        let r = Arc::clone(&received);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let mut r = r.lock();
                for s in v["spans"].as_array().unwrap() {
                    let (t, id, name) = (
                        s[0].as_str().unwrap(),
                        s[1].as_str().unwrap(),
                        s[2].as_str().unwrap(),
                    );
                    r.entry(t.to_owned())
                        .or_default()
                        .push((hex::decode(id).unwrap(), name.to_owned()));
                }
            }
        });
        (
            PyDownstream { child, received },
            SocketAddr::from(([127, 0, 0, 1], port as u16)),
        )
    }
}

impl Drop for PyDownstream {
    fn drop(&mut self) {
        drop(self.child.stdin.take().map(|mut s| s.write_all(b"")));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A trace of `spans` spans of about 64 KiB each: 96 make a 6 MiB trace, larger than the
/// 4 MiB a default Collector or grpc server accepts in one request.
fn big_trace(g: &mut Gen, spans: usize) -> Trace {
    let mut t = g.trace(Shape::ERROR, spans);
    for (_, s) in &mut t.spans {
        s.attributes.push(big_attribute("payload", 64 << 10));
    }
    t
}

/// Metric `name{labels}`'s value, 0 when absent.
async fn counter(daemon: &casefile::Daemon, name: &str, labels: &str) -> u64 {
    let text = api_call(daemon.api_addr.unwrap(), "GET", "/metrics", None, None)
        .await
        .1;
    text.lines()
        .find(|l| l.starts_with(name) && labels.split(',').all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn names_of(got: &Received, t: &Trace) -> Vec<String> {
    got.get(&hex::encode(t.trace_id))
        .into_iter()
        .flatten()
        .map(|(_, n)| n.clone())
        .collect()
}

/// Every poison in between good kept traces, then a 6 MiB trace: what arrives.
async fn poisons_between_good_traces(transport: Transport, python: bool) {
    let (sink, addr) = Sink::start(python).await;
    let mut cfg = config(addr, "1s", "");
    cfg.receivers.http.as_mut().unwrap().max_request_body_size = 16 << 20;
    let daemon = start(cfg).await;
    let mut g = Gen::new(90 + python as u64 * 2 + (transport == Transport::Http) as u64);
    let mut cases: Vec<(&str, Vec<Trace>)> = Vec::new();
    let mut poisoned: Vec<(Poison, Trace)> = Vec::new();
    let (mut sent, mut accepted) = (0, 0);
    for poison in Poison::ALL {
        let mut good = Vec::new();
        for _ in 0..3 {
            let t = g.trace(Shape::ERROR, 4);
            let (rejected, msg) = send(
                &daemon,
                transport,
                fixture::request_for(std::slice::from_ref(&t)).encode_to_vec(),
            )
            .await;
            assert_eq!(rejected, 0, "{msg}");
            sent += t.spans.len();
            accepted += t.spans.len();
            good.push(t);
        }
        let p = g.trace(Shape::ERROR, 3);
        let (rejected, msg) = send(&daemon, transport, poisoned_request(&p, poison)).await;
        sent += p.spans.len();
        accepted += p.spans.len() - rejected as usize;
        if poison.is_utf8() {
            assert_eq!(rejected, 0, "{poison:?} is repaired, not refused: {msg}");
        } else {
            assert_eq!(rejected, 1, "{poison:?}: only the poisoned span is refused");
            assert!(
                msg.contains("nested deeper than 100 levels"),
                "{poison:?}: {msg}"
            );
        }
        cases.push((poison.name(), good));
        poisoned.push((poison, p));
    }
    // A 6 MiB trace in between too.
    let big = big_trace(&mut g, 96);
    let mut good = Vec::new();
    for _ in 0..3 {
        let t = g.trace(Shape::ERROR, 4);
        send(
            &daemon,
            transport,
            fixture::request_for(std::slice::from_ref(&t)).encode_to_vec(),
        )
        .await;
        sent += t.spans.len();
        accepted += t.spans.len();
        good.push(t);
    }
    let (rejected, msg) = send(
        &daemon,
        transport,
        fixture::request_for(std::slice::from_ref(&big)).encode_to_vec(),
    )
    .await;
    assert_eq!(rejected, 0, "{msg}");
    sent += big.spans.len();
    accepted += big.spans.len();
    good.push(big.clone());
    cases.push(("a 6 MiB trace", good));

    // Everything above is decided in one tick or two: the poison travels with good traces.
    let all_good: Vec<Trace> = cases.iter().flat_map(|(_, g)| g.iter().cloned()).collect();
    let whole = |got: &Received| {
        all_good.iter().all(|t| {
            got.get(&hex::encode(t.trace_id))
                .is_some_and(|s| s.len() >= t.spans.len())
        })
    };
    eventually("every good trace whole downstream", || {
        let ok = whole(&sink.received());
        async move { ok }
    })
    .await;
    until_all_decided(&daemon).await;
    let got = sink.received();
    let ids: HashMap<String, Vec<Vec<u8>>> = got
        .iter()
        .map(|(t, s)| (t.clone(), s.iter().map(|(id, _)| id.clone()).collect()))
        .collect();
    let via = format!("{transport:?} to a {} downstream", sink.name());
    for (case, good) in &cases {
        Row {
            test: format!("poison: {case} ({via})"),
            sent: good.iter().map(|t| t.spans.len()).sum(),
            accepted: good.iter().map(|t| t.spans.len()).sum(),
            ..Row::default()
        }
        .count_span_ids(&ids, good)
        .report();
    }
    // The poisoned traces: repaired ones whole, with U+FFFD where the bytes were bad.
    for (poison, p) in &poisoned {
        let names = names_of(&got, p);
        if poison.is_utf8() {
            assert_eq!(
                names.len(),
                p.spans.len(),
                "{poison:?} arrives whole, repaired"
            );
        } else {
            assert_eq!(
                names.len(),
                p.spans.len() - 1,
                "{poison:?}: the rest of the trace arrives"
            );
        }
        if *poison == Poison::SpanName {
            assert!(names.iter().any(|n| n == REPAIRED), "{names:?}");
        }
    }
    let t = match transport {
        Transport::Grpc => "transport=\"grpc\"",
        Transport::Http => "transport=\"http\"",
    };
    let repaired: usize = poisoned
        .iter()
        .filter(|(p, _)| p.is_utf8())
        .map(|(p, t)| {
            casefile::wire::decode::decode_request(&poisoned_request(t, *p))
                .unwrap()
                .repaired
        })
        .sum();
    assert_eq!(
        counter(
            &daemon,
            "casefile_receiver_repaired_spans_total",
            &format!("{t},reason=\"invalid_utf8\"")
        )
        .await,
        repaired as u64
    );
    assert_eq!(
        counter(
            &daemon,
            "casefile_receiver_refused_spans_total",
            &format!("{t},reason=\"too_deep\"")
        )
        .await,
        2
    );
    assert_eq!(
        counter(&daemon, "casefile_exporter_send_failed_spans_total", "").await,
        0,
        "nothing was given up on"
    );
    eprintln!("{via}: {sent} spans sent, {accepted} accepted");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisons_over_grpc_to_a_prost_downstream() {
    poisons_between_good_traces(Transport::Grpc, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisons_over_http_to_a_prost_downstream() {
    poisons_between_good_traces(Transport::Http, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisons_over_grpc_to_a_python_downstream() {
    poisons_between_good_traces(Transport::Grpc, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisons_over_http_to_a_python_downstream() {
    poisons_between_good_traces(Transport::Http, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_refused_span_by_span_when_told_to() {
    let (down, addr) = Downstream::start().await;
    let mut cfg = config(addr, "300ms", "");
    cfg.receivers.checks.invalid_utf8 = casefile::wire::decode::InvalidUtf8::Reject;
    let daemon = start(cfg).await;
    let mut g = Gen::new(77);
    let good = g.trace(Shape::ERROR, 4);
    let p = g.trace(Shape::ERROR, 3);
    let mut req =
        ExportTraceServiceRequest::decode(&poisoned_request(&p, Poison::AttributeValue)[..]);
    assert!(req.is_err(), "prost refuses the poison");
    req = Ok(fixture::request_for(std::slice::from_ref(&good)));
    send(&daemon, Transport::Grpc, req.unwrap().encode_to_vec()).await;
    let (rejected, msg) = send(
        &daemon,
        Transport::Http,
        poisoned_request(&p, Poison::AttributeValue),
    )
    .await;
    assert_eq!(rejected, 1);
    assert!(
        msg.contains("span.attributes.value.string_value is not valid UTF-8"),
        "{msg}"
    );
    down.wait_for("the good trace and the rest of the poisoned one", |d| {
        d.has_all(std::slice::from_ref(&good))
            && d.spans_by_trace()
                .get(&hex::encode(p.trace_id))
                .map(Vec::len)
                == Some(2)
    })
    .await;
    assert_eq!(
        counter(
            &daemon,
            "casefile_receiver_refused_spans_total",
            "transport=\"http\",reason=\"invalid_utf8\""
        )
        .await,
        1
    );
    daemon.shutdown().await;
}

/// A span the downstream will not take, in a trace the policies keep.
const MARK: &str = "refused-by-the-backend";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_refusing_marked_spans_costs_only_those_spans() {
    use std::sync::atomic::Ordering;
    let (down, addr) = Downstream::start_refusing(MARK).await;
    let daemon = start(config(addr, "1s", "")).await;
    let mut g = Gen::new(61);
    let good: Vec<Trace> = (0..40).map(|_| g.trace(Shape::ERROR, 4)).collect();
    let mut marked: Vec<Trace> = (0..2).map(|_| g.trace(Shape::ERROR, 3)).collect();
    for t in &mut marked {
        t.spans[2].1.name = MARK.into();
    }
    // One decision window: every trace leaves in the same batch of 166 spans.
    let mut all = good.clone();
    all.extend(marked.iter().cloned());
    for chunk in all.chunks(7) {
        let (rejected, msg) = send(
            &daemon,
            Transport::Grpc,
            fixture::request_for(chunk).encode_to_vec(),
        )
        .await;
        assert_eq!(rejected, 0, "{msg}");
    }
    down.wait_for("every good span and the marked traces' other spans", |d| {
        let got = d.spans_by_trace();
        d.has_all(&good)
            && marked
                .iter()
                .all(|t| got.get(&hex::encode(t.trace_id)).map(Vec::len) == Some(2))
    })
    .await;
    until_all_decided(&daemon).await;
    let dropped = "casefile_exporter_dropped_spans_total";
    eventually("the refused spans counted", || {
        let d = &daemon;
        async move { counter(d, dropped, "reason=\"invalid_argument\"").await == 2 }
    })
    .await;
    // Bisection: k = 2 refused spans among n = 166 take at most 2·k·⌈log2 n⌉ + 1 calls.
    let calls = down.calls.load(Ordering::Relaxed);
    assert!(calls <= 2 * 2 * 8 + 1, "{calls} export calls");
    // Every delivered span arrived once: no half was sent again.
    let got = down.spans_by_trace();
    for t in &good {
        assert_eq!(
            got[&hex::encode(t.trace_id)].len(),
            t.spans.len(),
            "no duplicates"
        );
    }
    // The downstream holds the spans before its answer reaches the exporter,
    // which counts them only then: wait for the count rather than read it once.
    eventually("every delivered span counted as sent", || {
        let d = &daemon;
        async move { counter(d, "casefile_exporter_sent_spans_total", "").await == 164 }
    })
    .await;
    Row {
        test: "a downstream refusing any batch with a marked span".into(),
        sent: 166,
        accepted: 166,
        ..Row::default()
    }
    .count(&down, &good)
    .report();
    daemon.shutdown().await;
}
