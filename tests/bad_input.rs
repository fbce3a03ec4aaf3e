//! Bad input gets a clear error, the right status code, and the daemon keeps serving.

mod common;

use std::io::Write;

use casefile::fixture::{self, Gen, Shape};
use common::*;
use prost::Message;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn still_serving(daemon: &casefile::Daemon) {
    let mut g = Gen::new(99);
    let body = fixture::request_for(&[g.trace(Shape::default(), 3)]).encode_to_vec();
    let (code, _, _) =
        reqwest_post(daemon.http_addr.unwrap(), "application/x-protobuf", body).await;
    assert_eq!(code, 200, "daemon still accepts good data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_have_their_status_codes() {
    let (_down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "1h", "")).await;
    let http = daemon.http_addr.unwrap();

    let (code, _, body) =
        reqwest_post(http, "application/x-protobuf", vec![0x0a, 0xff, 0x01]).await;
    assert_eq!(code, 400, "malformed protobuf");
    assert!(!body.is_empty());

    let (code, _, body) =
        reqwest_post(http, "application/json", b"{\"resourceSpans\": [".to_vec()).await;
    assert_eq!(code, 400, "malformed JSON");
    let msg = String::from_utf8_lossy(&body);
    assert!(msg.contains("message"), "{msg}");

    let (code, _, _) = reqwest_post(http, "text/plain", b"hello".to_vec()).await;
    assert_eq!(code, 415, "wrong content type");

    let (code, _, _) = reqwest_post(http, "application/x-protobuf", vec![0u8; 2 << 20]).await;
    assert_eq!(code, 413, "oversized body");

    // A gzip bomb: small on the wire, over the limit once decompressed.
    let bomb = gzip(&vec![0u8; 4 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (code, _, _) = http_post(
        http,
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        bomb,
    )
    .await;
    assert_eq!(code, 413, "size limit applies after decompression");

    let (code, _, _) = http_post(
        http,
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "br"),
        ],
        vec![1, 2],
    )
    .await;
    assert_eq!(code, 415, "unsupported content encoding");

    // Charset parameters are fine; gzip bodies are fine.
    let mut g = Gen::new(5);
    let good = fixture::request_for(&[g.trace(Shape::default(), 3)]).encode_to_vec();
    let (code, headers, _) = http_post(
        http,
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf; charset=utf-8"),
            ("content-encoding", "gzip"),
        ],
        gzip(&good),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(headers["content-type"], "application/x-protobuf");

    still_serving(&daemon).await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ids_are_reported_through_partial_success() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    let (_down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "1h", "")).await;
    let mut g = Gen::new(6);
    let mut t = g.trace(Shape::default(), 4);
    t.spans[0].1.trace_id = vec![0; 16];
    t.spans[1].1.span_id = vec![7; 4];
    let req = fixture::request_for(&[t]);

    let (code, _, body) = reqwest_post(
        daemon.http_addr.unwrap(),
        "application/x-protobuf",
        req.encode_to_vec(),
    )
    .await;
    assert_eq!(code, 200);
    let resp = ExportTraceServiceResponse::decode(&body[..]).unwrap();
    let partial = resp.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("trace_id"),
        "{}",
        partial.error_message
    );

    let resp = client(&daemon)
        .await
        .export(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 2);
    assert_eq!(daemon.buffer.held_traces(), 1, "the valid spans were kept");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_malformed_is_invalid_argument_and_gzip_is_accepted() {
    let (_down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "1h", "")).await;
    // A request whose first span is cut: valid gRPC framing, invalid protobuf.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", daemon.grpc_addr.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    let status = raw
        .unary::<bytes::Bytes, bytes::Bytes, _>(
            tonic::Request::new(bytes::Bytes::from_static(&[0x0a, 0x10, 0x12])),
            path,
            casefile::receiver::grpc::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let mut client = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::new(channel)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let mut g = Gen::new(8);
    client
        .export(fixture::request_for(&[g.trace(Shape::default(), 3)]))
        .await
        .unwrap();
    assert_eq!(daemon.buffer.held_traces(), 1);
    still_serving(&daemon).await;
    daemon.shutdown().await;
}
