//! Every compression a Collector upstream may send, and every one casefile's exporters
//! offer: bodies compressed here with each crate directly (the format named by the
//! Collector's confighttp/configgrpc), sent to a running daemon, decoded within the size
//! limit; bombs refused; unknown encodings named. The Python interop test
//! (tests/interop.rs) sends the same with independent libraries.

mod common;

use std::io::Write;

use casefile::fixture::{self, Gen, Shape};
use common::*;
use prost::Message;

/// `data` compressed as a Collector sends it under `encoding` (`snappy-framed-legacy`:
/// framed snappy under the name `snappy`, as Collectors before v0.125 sent it).
fn encode(encoding: &str, data: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zlib" | "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zstd" => zstd::encode_all(data, 3).unwrap(),
        "snappy" => snap::raw::Encoder::new().compress_vec(data).unwrap(),
        "x-snappy-framed" | "snappy-framed-legacy" | "grpc-snappy" => {
            let mut e = snap::write::FrameEncoder::new(Vec::new());
            e.write_all(data).unwrap();
            e.into_inner().unwrap()
        }
        "lz4" => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        other => panic!("no encoder for {other}"),
    }
}

/// Takes input chunks, then `None` to finish and hand back the compressed bytes.
type Sink = Box<dyn FnMut(Option<&[u8]>) -> Option<Vec<u8>>>;

/// `n` bytes of zeros compressed as `encoding`, streamed (never held whole).
fn bomb(encoding: &str, n: usize) -> Vec<u8> {
    let chunk = vec![0u8; 1 << 20];
    let mut w: Sink = match encoding {
        "gzip" => {
            let mut e = Some(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            ));
            Box::new(move |d| match d {
                Some(d) => e.as_mut().unwrap().write_all(d).map(|_| None).unwrap(),
                None => Some(e.take().unwrap().finish().unwrap()),
            })
        }
        "zlib" | "deflate" => {
            let mut e = Some(flate2::write::ZlibEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            ));
            Box::new(move |d| match d {
                Some(d) => e.as_mut().unwrap().write_all(d).map(|_| None).unwrap(),
                None => Some(e.take().unwrap().finish().unwrap()),
            })
        }
        "zstd" => {
            let mut e = Some(zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap());
            Box::new(move |d| match d {
                Some(d) => e.as_mut().unwrap().write_all(d).map(|_| None).unwrap(),
                None => Some(e.take().unwrap().finish().unwrap()),
            })
        }
        "x-snappy-framed" | "snappy-framed-legacy" | "grpc-snappy" => {
            let mut e = Some(snap::write::FrameEncoder::new(Vec::new()));
            Box::new(move |d| match d {
                Some(d) => e.as_mut().unwrap().write_all(d).map(|_| None).unwrap(),
                None => Some(e.take().unwrap().into_inner().unwrap()),
            })
        }
        "lz4" => {
            let mut e = Some(lz4_flex::frame::FrameEncoder::new(Vec::new()));
            Box::new(move |d| match d {
                Some(d) => e.as_mut().unwrap().write_all(d).map(|_| None).unwrap(),
                None => Some(e.take().unwrap().finish().unwrap()),
            })
        }
        // A block declares its length up front; it is refused before anything is decoded.
        "snappy" => return snap::raw::Encoder::new().compress_vec(&vec![0; n]).unwrap(),
        other => panic!("no bomb for {other}"),
    };
    for _ in 0..n >> 20 {
        w(Some(&chunk));
    }
    w(None).unwrap()
}

/// Content-Encoding → how the test compresses it.
const HTTP: &[(&str, &str)] = &[
    ("gzip", "gzip"),
    ("zstd", "zstd"),
    ("zlib", "zlib"),
    ("deflate", "deflate"),
    ("snappy", "snappy"),
    ("snappy", "snappy-framed-legacy"),
    ("x-snappy-framed", "x-snappy-framed"),
    ("lz4", "lz4"),
    ("ZSTD", "zstd"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_accepts_every_collector_encoding_within_the_limit() {
    let (_down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "1h", "")).await;
    let http = daemon.http_addr.unwrap();
    for (i, (header, how)) in HTTP.iter().enumerate() {
        let mut g = Gen::new(100 + i as u64);
        let body = fixture::request_for(&[g.trace(Shape::default(), 12)]).encode_to_vec();
        let (code, _, resp) = http_post(
            http,
            "/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", header),
            ],
            encode(how, &body),
        )
        .await;
        assert_eq!(
            code,
            200,
            "{header} ({how}): {}",
            String::from_utf8_lossy(&resp)
        );
        assert_eq!(daemon.buffer.held_traces(), i + 1, "{header} ({how})");
    }

    // 64 MiB of zeros (16 MiB for snappy, whose ratio is at most ~21) against a 1 MiB
    // limit, in every encoding: 413, as for gzip before.
    for how in ["gzip", "zstd", "zlib", "snappy", "x-snappy-framed", "lz4"] {
        let size = if how.contains("snappy") {
            16 << 20
        } else {
            64 << 20
        };
        let b = bomb(how, size);
        assert!(b.len() < 1 << 20, "{how}: the bomb passes the raw limit");
        let (code, _, resp) = http_post(
            http,
            "/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", how),
            ],
            b,
        )
        .await;
        assert_eq!(code, 413, "{how}");
        let msg = String::from_utf8_lossy(&resp);
        assert!(msg.contains("after decompression"), "{how}: {msg}");
    }

    for unknown in ["br", "gzip, zstd", "compress"] {
        let (code, _, resp) = http_post(
            http,
            "/v1/traces",
            &[
                ("content-type", "application/json"),
                ("content-encoding", unknown),
            ],
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(code, 415, "{unknown}");
        let msg = String::from_utf8_lossy(&resp);
        assert!(
            msg.contains("gzip, zstd, zlib, deflate, snappy, x-snappy-framed, lz4"),
            "{unknown}: {msg}"
        );
    }

    let (code, _, resp) = http_post(
        http,
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "zstd"),
        ],
        b"not zstd at all".to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(daemon.buffer.held_traces(), HTTP.len());
    daemon.shutdown().await;
}

/// One gRPC Export call over HTTP/2 with `grpc-encoding` and a hand-made frame: (grpc
/// status, message, response headers).
async fn grpc_call(
    addr: std::net::SocketAddr,
    encoding: Option<&str>,
    compressed: bool,
    payload: Vec<u8>,
) -> (i32, String, http::HeaderMap) {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let mut req = http::Request::post(format!(
        "http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    if let Some(e) = encoding {
        req = req.header("grpc-encoding", e);
    }
    let resp = client
        .request(req.body(Full::new(frame.into())).unwrap())
        .await
        .unwrap();
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let get = |k: &str| {
        trailers
            .get(k)
            .or_else(|| headers.get(k))
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let status = get("grpc-status").expect("grpc-status").parse().unwrap();
    let message = get("grpc-message").unwrap_or_default();
    let message = percent_decode(&message);
    (status, message, headers)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_accepts_what_collector_exporters_send_within_the_limit() {
    let (_down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "1h", "")).await;
    let grpc = daemon.grpc_addr.unwrap();
    // grpc-encoding → how the test compresses it (gRPC's snappy is the framing format;
    // deflate is grpc's zlib, which grpcio offers).
    let cases = [
        ("gzip", "gzip"),
        ("zstd", "zstd"),
        ("snappy", "grpc-snappy"),
        ("deflate", "zlib"),
    ];
    for (i, (name, how)) in cases.iter().enumerate() {
        let mut g = Gen::new(200 + i as u64);
        let body = fixture::request_for(&[g.trace(Shape::default(), 12)]).encode_to_vec();
        let (status, message, _) = grpc_call(grpc, Some(name), true, encode(how, &body)).await;
        assert_eq!((status, message.as_str()), (0, ""), "{name}");
        assert_eq!(daemon.buffer.held_traces(), i + 1, "{name}");
    }
    // An uncompressed message under a grpc-encoding header is fine too (flag 0).
    let mut g = Gen::new(299);
    let body = fixture::request_for(&[g.trace(Shape::default(), 2)]).encode_to_vec();
    let (status, _, _) = grpc_call(grpc, Some("snappy"), false, body).await;
    assert_eq!(status, 0);

    // The receiver's limit is 16 MiB: 64 MiB of zeros is RESOURCE_EXHAUSTED, as tonic
    // answered for gzip and zstd before.
    for (name, how) in cases {
        let (status, message, _) = grpc_call(grpc, Some(name), true, bomb(how, 64 << 20)).await;
        assert_eq!(
            status,
            tonic::Code::ResourceExhausted as i32,
            "{name}: {message}"
        );
        assert!(message.contains("size limit"), "{name}: {message}");
    }

    let (status, message, headers) = grpc_call(grpc, Some("br"), true, vec![1, 2, 3]).await;
    assert_eq!(status, tonic::Code::Unimplemented as i32, "{message}");
    assert!(message.contains("gzip, zstd, snappy"), "{message}");
    assert_eq!(headers["grpc-accept-encoding"], "gzip,zstd,snappy,deflate");

    let (status, message, _) = grpc_call(grpc, Some("zstd"), true, b"garbage".to_vec()).await;
    assert_eq!(status, tonic::Code::InvalidArgument as i32, "{message}");
    assert_eq!(daemon.buffer.held_traces(), cases.len() + 1);
    daemon.shutdown().await;
}

/// A config whose `otlp` or `otlphttp` exporter sends to `endpoint` with `compression`.
fn chain_config(kind: &str, endpoint: &str, compression: &str) -> casefile::config::Config {
    let tls = if kind == "otlp" {
        "tls: { insecure: true }"
    } else {
        ""
    };
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: 100ms
{POLICIES}
exporters:
  {kind}:
    endpoint: "{endpoint}"
    compression: {compression}
    {tls}
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}
shutdown_timeout: 5s
"#
    );
    casefile::config::load_str(&yaml, "chain.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// casefile in front of casefile, as a Collector in front would be: every exporter
/// compression reaches the second one's receiver, which decodes it and passes the kept
/// trace on to the real downstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exporter_compression_reaches_a_casefile_downstream() {
    let (down, addr) = Downstream::start().await;
    let back = start(config(addr, "100ms", "")).await;
    let cases = [
        ("otlp", "gzip"),
        ("otlp", "zstd"),
        ("otlp", "snappy"),
        ("otlp", "none"),
        ("otlphttp", "gzip"),
        ("otlphttp", "zstd"),
        ("otlphttp", "zlib"),
        ("otlphttp", "deflate"),
        ("otlphttp", "snappy"),
        ("otlphttp", "x-snappy-framed"),
        ("otlphttp", "lz4"),
        ("otlphttp", "none"),
    ];
    for (i, (kind, compression)) in cases.iter().enumerate() {
        let endpoint = match *kind {
            "otlp" => back.grpc_addr.unwrap().to_string(),
            _ => format!("http://{}", back.http_addr.unwrap()),
        };
        let front = start(chain_config(kind, &endpoint, compression)).await;
        let mut g = Gen::new(300 + i as u64);
        let trace = g.trace(Shape::ERROR, 20);
        let id = hex::encode(trace.trace_id);
        client(&front)
            .await
            .export(fixture::request_for(&[trace]))
            .await
            .unwrap();
        down.wait_for(&format!("{kind} {compression}"), |d| {
            d.spans_by_trace().get(&id).map(Vec::len) == Some(20)
        })
        .await;
        front.shutdown().await;
    }
    back.shutdown().await;
}

#[test]
fn exporter_compression_is_checked_per_exporter_kind() {
    let yaml = |kind: &str, compression: &str| {
        format!(
            r#"
receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }} }} }} }}
processors:
  tail_sampling:
{POLICIES}
exporters:
  {kind}:
    endpoint: "http://127.0.0.1:4317"
    compression: {compression}
"#
        )
    };
    for c in ["gzip", "zstd", "snappy", "none"] {
        casefile::config::load_str(&yaml("otlp", c), "t.yaml")
            .unwrap_or_else(|e| panic!("{c}: {e}"));
    }
    for c in [
        "gzip",
        "zstd",
        "zlib",
        "deflate",
        "snappy",
        "x-snappy-framed",
        "lz4",
        "none",
    ] {
        casefile::config::load_str(&yaml("otlphttp", c), "t.yaml")
            .unwrap_or_else(|e| panic!("{c}: {e}"));
    }
    let e = casefile::config::load_str(&yaml("otlp", "lz4"), "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("exporters.otlp.compression")
            && e.contains("\"lz4\" is not supported by an otlp (gRPC) exporter: use gzip, zstd, snappy or none"),
        "{e}"
    );
    let e = casefile::config::load_str(&yaml("otlphttp", "br"), "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("exporters.otlphttp.compression")
            && e.contains("use gzip, zstd, zlib, deflate, snappy, x-snappy-framed, lz4 or none"),
        "{e}"
    );
}
