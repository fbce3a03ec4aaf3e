//! `otlp` (gRPC) exporter against a fake downstream.

use std::time::Duration;

use bytes::Bytes;
use tonic::Code;

use super::*;
use crate::export::config::ExporterCfg;

fn cfg_for(addr: SocketAddr) -> OtlpCfg {
    otlp_cfg(&addr.to_string())
}

#[tokio::test]
async fn sends_the_request_bytes_gzipped_with_headers() {
    let mut down = grpc_downstream(listen().await, vec![]).await;
    let mut cfg = cfg_for(down.addr);
    cfg.headers
        .insert("X-Scope-OrgID".into(), "tenant-7".into());
    let ex = start("otlp/tempo", ExporterCfg::Otlp(cfg));
    let req = request("checkout", 3);
    ex.send(batch_of(&req)).await;
    let got = down.next().await;
    assert_eq!(got.request, req);
    assert_eq!(
        got.metadata
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    assert_eq!(
        got.metadata
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok()),
        Some("tenant-7")
    );
    assert!(got
        .metadata
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .starts_with("casefile/"));
    assert_eq!(ex.clone().shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 3,
            ..Default::default()
        }
    );
    assert_eq!(ex.names(), vec!["otlp/tempo".to_owned()]);
}

#[tokio::test]
async fn sends_uncompressed_and_with_an_http_scheme() {
    let mut down = grpc_downstream(listen().await, vec![]).await;
    let mut cfg = otlp_cfg(&format!("http://{}/", down.addr));
    cfg.compression = "none".into();
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    let req = request("plain", 1);
    ex.send(batch_of(&req)).await;
    let got = down.next().await;
    assert_eq!(got.request, req);
    assert!(got.metadata.get("grpc-encoding").is_none());
    ex.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn retries_unavailable_then_delivers_once() {
    let unavailable = Reply::Fail(Code::Unavailable, Bytes::new());
    let mut down = grpc_downstream(listen().await, vec![unavailable.clone(), unavailable]).await;
    let ex = start("otlp", ExporterCfg::Otlp(cfg_for(down.addr)));
    let req = request("retried", 2);
    ex.send(batch_of(&req)).await;
    assert_eq!(down.next().await.request, req);
    assert_eq!(ex.clone().shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(down.calls(), 3);
    assert!(down.got.try_recv().is_err(), "delivered once");
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 2,
            retries: 2,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn invalid_argument_is_not_retried() {
    let mut down = grpc_downstream(
        listen().await,
        vec![Reply::Fail(Code::InvalidArgument, Bytes::new())],
    )
    .await;
    let mut cfg = cfg_for(down.addr);
    cfg.sending_queue.num_consumers = 1;
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    // One span: nothing to split, it is dropped (larger batches: tests/split.rs).
    ex.send(batch_of(&request("bad", 1))).await;
    // The next batch goes through: the exporter moved on.
    let good = request("good", 1);
    ex.send(batch_of(&good)).await;
    assert_eq!(down.next().await.request, good);
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(down.calls(), 2);
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 1,
            failed_spans: 1,
            dropped_spans: 1,
            ..Default::default()
        }
    );
}

/// `google.rpc.Status` details carrying a `RetryInfo` of `delay`, as the receivers write it.
fn retry_info(delay: Duration) -> Bytes {
    Bytes::from(crate::wire::encode::status_with_retry_info(
        Code::ResourceExhausted as i32,
        delay,
    ))
}

#[test]
fn retry_info_is_read_from_status_details() {
    use crate::export::grpc::retry_info_delay;
    assert_eq!(
        retry_info_delay(&retry_info(Duration::from_millis(1500))),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(retry_info_delay(&[]), None);
    assert_eq!(retry_info_delay(&[0xff, 0xff]), None);
}

#[tokio::test]
async fn resource_exhausted_is_retried_only_with_retry_info() {
    let with_info = Reply::Fail(
        Code::ResourceExhausted,
        retry_info(Duration::from_millis(20)),
    );
    let without = Reply::Fail(Code::ResourceExhausted, Bytes::new());
    let mut down = grpc_downstream(listen().await, vec![with_info, without]).await;
    let mut cfg = cfg_for(down.addr);
    cfg.sending_queue.num_consumers = 1;
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    // First call: RetryInfo -> retried, then the second call fails for good (one span:
    // nothing to split).
    ex.send(batch_of(&request("throttled", 1))).await;
    let next = request("next", 1);
    ex.send(batch_of(&next)).await;
    assert_eq!(down.next().await.request, next);
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 1,
            failed_spans: 1,
            dropped_spans: 1,
            retries: 1,
            rejected_spans: 0
        }
    );
}

#[tokio::test]
async fn a_silent_downstream_times_out_and_is_retried() {
    let mut down = grpc_downstream(listen().await, vec![Reply::Hang]).await;
    let mut cfg = cfg_for(down.addr);
    cfg.timeout = ms(200);
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    let req = request("slow", 1);
    ex.send(batch_of(&req)).await;
    assert_eq!(down.next().await.request, req);
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats(&ex).retries, 1);
}

#[tokio::test]
async fn partial_success_counts_rejected_spans() {
    let mut down = grpc_downstream(listen().await, vec![Reply::Partial(2)]).await;
    let ex = start("otlp", ExporterCfg::Otlp(cfg_for(down.addr)));
    ex.send(batch_of(&request("partly", 5))).await;
    down.next().await;
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 3,
            rejected_spans: 2,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn bad_settings_fail_at_start() {
    let err = |cfg: OtlpCfg| {
        Exporters::start(&[("otlp/x".into(), ExporterCfg::Otlp(cfg))])
            .err()
            .unwrap()
            .to_string()
    };
    assert!(err(otlp_cfg("https://tempo:4317")).contains("contradicts the https://"));
    assert!(err(otlp_cfg("ftp://tempo:4317")).contains("invalid endpoint"));
    assert!(err(otlp_cfg("")).contains("invalid endpoint"));
    assert!(err(otlp_cfg("tempo:4317/v1/traces")).contains("no path"));
    let mut c = otlp_cfg("tempo:4317");
    c.compression = "brotli".into();
    let e = err(c);
    assert!(
        e.contains("unknown compression") && e.contains("gzip, zstd, snappy or none"),
        "{e}"
    );
    let mut c = otlp_cfg("tempo:4317");
    c.headers
        .insert("authorization".into(), "Bearer sécret\n".into());
    let e = err(c);
    assert!(e.contains("authorization") && !e.contains("cret"), "{e}");
    let mut c = otlp_cfg("tempo:4317");
    c.tls.ca_file = Some("/etc/ca.pem".into());
    assert!(err(c).contains("insecure: true sends in plaintext"));
    let mut c = otlp_cfg("tempo:4317");
    c.tls.insecure = false;
    c.tls.ca_file = Some("/nonexistent/ca.pem".into());
    let e = err(c);
    assert!(
        e.contains("ca_file \"/nonexistent/ca.pem\": cannot read it"),
        "{e}"
    );
}

#[tokio::test]
async fn sends_zstd_when_configured() {
    let mut down = grpc_downstream(listen().await, vec![]).await;
    let mut cfg = cfg_for(down.addr);
    cfg.compression = "zstd".into();
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    let req = request("zstd", 2);
    ex.send(batch_of(&req)).await;
    let got = down.next().await;
    assert_eq!(got.request, req);
    assert_eq!(
        got.metadata
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("zstd")
    );
    ex.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn sends_snappy_framed_when_configured() {
    let mut down = grpc_downstream(listen().await, vec![]).await;
    let mut cfg = cfg_for(down.addr);
    cfg.compression = "snappy".into();
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    let req = request("snappy", 30);
    ex.send(batch_of(&req)).await;
    let got = down.next().await;
    assert_eq!(got.request, req);
    assert_eq!(
        got.metadata
            .get("x-test-grpc-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("snappy")
    );
    assert_eq!(ex.shutdown(Duration::from_secs(5)).await, 0);
}
