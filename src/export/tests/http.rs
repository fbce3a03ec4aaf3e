//! `otlphttp` exporter against a fake downstream.

use std::time::Duration;

use super::*;
use crate::export::config::ExporterCfg;

fn cfg_for(addr: SocketAddr) -> OtlpCfg {
    otlp_cfg(&format!("http://{addr}"))
}

#[tokio::test]
async fn posts_gzipped_protobuf_to_v1_traces() {
    let mut down = http_downstream(listen().await, vec![]).await;
    let mut cfg = cfg_for(down.addr);
    cfg.headers
        .insert("Authorization".into(), "Bearer t0ken".into());
    let ex = start("otlphttp/vendor", ExporterCfg::OtlpHttp(cfg));
    let req = request("checkout", 3);
    ex.send(batch_of(&req)).await;
    let got = down.next().await;
    assert_eq!(got.request, req);
    assert_eq!(got.path, "/v1/traces");
    assert_eq!(got.headers["content-type"], "application/x-protobuf");
    assert_eq!(got.headers["content-encoding"], "gzip");
    assert_eq!(got.headers["authorization"], "Bearer t0ken");
    assert_eq!(ex.clone().shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 3,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn traces_endpoint_and_no_compression() {
    let mut down = http_downstream(listen().await, vec![]).await;
    let mut cfg = otlp_cfg("http://unused.invalid:1");
    cfg.traces_endpoint = Some(format!("http://{}/otlp/v1/traces", down.addr));
    cfg.compression = "none".into();
    let ex = start("otlphttp", ExporterCfg::OtlpHttp(cfg));
    let req = request("custom", 1);
    ex.send(batch_of(&req)).await;
    let got = down.next().await;
    assert_eq!((got.path.as_str(), got.request), ("/otlp/v1/traces", req));
    assert!(got.headers.get("content-encoding").is_none());
    ex.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn endpoint_with_a_path_gets_v1_traces_appended() {
    let mut down = http_downstream(listen().await, vec![]).await;
    let ex = start(
        "otlphttp",
        ExporterCfg::OtlpHttp(otlp_cfg(&format!("http://{}/tenant/", down.addr))),
    );
    ex.send(batch_of(&request("pathed", 1))).await;
    assert_eq!(down.next().await.path, "/tenant/v1/traces");
    ex.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn retries_503_then_delivers() {
    let script = vec![
        Reply::Status(503, None),
        Reply::Status(429, Some(0)),
        Reply::Status(502, None),
    ];
    let mut down = http_downstream(listen().await, script).await;
    let ex = start("otlphttp", ExporterCfg::OtlpHttp(cfg_for(down.addr)));
    let req = request("retried", 2);
    ex.send(batch_of(&req)).await;
    assert_eq!(down.next().await.request, req);
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(down.calls(), 4);
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 2,
            retries: 3,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let mut down = http_downstream(listen().await, vec![Reply::Status(429, Some(1))]).await;
    let ex = start("otlphttp", ExporterCfg::OtlpHttp(cfg_for(down.addr)));
    let t0 = tokio::time::Instant::now();
    ex.send(batch_of(&request("throttled", 1))).await;
    down.next().await;
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "retried after {:?}",
        t0.elapsed()
    );
    ex.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn bad_request_is_not_retried() {
    let mut down = http_downstream(listen().await, vec![Reply::Status(400, None)]).await;
    let mut cfg = cfg_for(down.addr);
    cfg.sending_queue.num_consumers = 1;
    let ex = start("otlphttp", ExporterCfg::OtlpHttp(cfg));
    // One span: nothing to split, it is dropped (larger batches: tests/split.rs).
    ex.send(batch_of(&request("bad", 1))).await;
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

#[tokio::test]
async fn partial_success_is_read_from_the_response() {
    let mut down = http_downstream(listen().await, vec![Reply::Partial(1)]).await;
    let ex = start("otlphttp", ExporterCfg::OtlpHttp(cfg_for(down.addr)));
    ex.send(batch_of(&request("partly", 3))).await;
    down.next().await;
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 2,
            rejected_spans: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn bad_settings_fail_at_start() {
    let err = |cfg: OtlpCfg| {
        Exporters::start(&[("otlphttp".into(), ExporterCfg::OtlpHttp(cfg))])
            .err()
            .unwrap()
            .to_string()
    };
    assert!(err(otlp_cfg("https://vendor.example")).contains("contradicts the https://"));
    let mut c = otlp_cfg("http://vendor.example");
    c.tls.cert_file = Some("/etc/client.pem".into());
    assert!(err(c).contains("use https:// for TLS"));
    assert!(err(otlp_cfg("vendor.example:4318")).contains("invalid endpoint"));
    assert!(err(otlp_cfg("http://")).contains("invalid endpoint"));
    let mut c = otlp_cfg("http://vendor.example");
    c.compression = "br".into();
    let e = err(c);
    assert!(
        e.contains("unknown compression \"br\"")
            && e.contains("gzip, zstd, zlib, deflate, snappy, x-snappy-framed, lz4 or none"),
        "{e}"
    );
    let mut c = otlp_cfg("http://vendor.example");
    c.headers.insert("bad header".into(), "s3cret".into());
    let e = err(c);
    assert!(e.contains("bad header") && !e.contains("s3cret"), "{e}");
}

#[tokio::test]
async fn large_bodies_are_gzipped_too() {
    let mut down = http_downstream(listen().await, vec![]).await;
    let ex = start("otlphttp", ExporterCfg::OtlpHttp(cfg_for(down.addr)));
    let req = request("large", 4000);
    let batch = batch_of(&req);
    assert!(
        batch.request.len() > 256 * 1024,
        "{} bytes",
        batch.request.len()
    );
    ex.send(batch).await;
    let got = down.next().await;
    assert_eq!(got.headers["content-encoding"], "gzip");
    assert_eq!(got.request, req);
    ex.shutdown(Duration::from_secs(5)).await;
}

/// Every `compression:` the Collector's otlphttp exporter takes reaches a downstream that
/// decodes it with the format named in Content-Encoding (the fake downstream decodes each
/// with its crate directly, not through casefile's decoder).
#[tokio::test]
async fn every_compression_choice_reaches_the_downstream() {
    for choice in crate::wire::compression::HTTP_EXPORTER_CHOICES {
        let mut down = http_downstream(listen().await, vec![]).await;
        let mut cfg = cfg_for(down.addr);
        cfg.compression = (*choice).into();
        let ex = start("otlphttp", ExporterCfg::OtlpHttp(cfg));
        let req = request(choice, 40);
        ex.send(batch_of(&req)).await;
        let got = down.next().await;
        assert_eq!(got.request, req, "{choice}");
        assert_eq!(got.headers["content-encoding"], *choice);
        assert_eq!(ex.shutdown(Duration::from_secs(5)).await, 0, "{choice}");
    }
}
