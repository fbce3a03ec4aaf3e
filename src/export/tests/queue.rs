//! Queueing, back-pressure and shutdown.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::export::config::ExporterCfg;

#[tokio::test]
async fn saturates_blocks_and_recovers_when_the_downstream_comes_up() {
    let port = free_port();
    let mut cfg = otlp_cfg(&format!("127.0.0.1:{port}"));
    cfg.sending_queue = QueueCfg {
        enabled: true,
        num_consumers: 1,
        queue_size: 2,
        ..QueueCfg::default()
    };
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    assert!(!ex.saturated());
    // The worker takes the first batch and keeps failing to deliver it.
    ex.send(batch_of(&request("b0", 1))).await;
    eventually("a few failed attempts", || stats(&ex).retries >= 3).await;
    assert!(!ex.saturated());
    ex.send(batch_of(&request("b1", 1))).await;
    assert!(!ex.saturated(), "1 of 2 is below 90 %");
    ex.send(batch_of(&request("b2", 1))).await;
    assert!(ex.saturated());
    // A full queue makes the sender wait.
    let blocked = tokio::time::timeout(
        Duration::from_millis(200),
        ex.send(batch_of(&request("b3", 1))),
    )
    .await;
    assert!(blocked.is_err(), "send returned on a full queue");
    // The downstream comes up: everything queued arrives, and the waiting send gets through.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let mut down = grpc_downstream(listener, vec![]).await;
    tokio::time::timeout(PATIENCE, ex.send(batch_of(&request("b3", 1))))
        .await
        .expect("send proceeds");
    let mut names = BTreeSet::new();
    for _ in 0..4 {
        names.insert(first_name(&down.next().await.request));
    }
    assert_eq!(
        names,
        ["b0-0", "b1-0", "b2-0", "b3-0"].map(String::from).into()
    );
    assert!(!ex.saturated());
    assert_eq!(ex.clone().shutdown(Duration::from_secs(5)).await, 0);
    assert!(down.got.try_recv().is_err());
    assert_eq!(stats(&ex).sent_spans, 4);
}

#[tokio::test]
async fn saturation_is_any_exporter_at_90_percent() {
    let port = free_port();
    let mut slow = otlp_cfg(&format!("127.0.0.1:{port}"));
    slow.sending_queue = QueueCfg {
        enabled: true,
        num_consumers: 1,
        queue_size: 10,
        ..QueueCfg::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = crate::export::config::FileCfg {
        path: dir.path().join("f.jsonl").to_str().unwrap().into(),
        flush_every_line: true,
    };
    let ex = Exporters::start(&[
        ("file".into(), ExporterCfg::File(file)),
        ("otlp".into(), ExporterCfg::Otlp(slow)),
    ])
    .unwrap();
    ex.send(batch_of(&request("first", 1))).await;
    eventually("the first batch in flight", || ex.stats()[1].1.retries >= 1).await;
    for i in 0..8 {
        ex.send(batch_of(&request(&format!("q{i}"), 1))).await;
        assert!(!ex.saturated(), "{} of 10 queued", i + 1);
    }
    ex.send(batch_of(&request("q8", 1))).await;
    assert!(ex.saturated(), "9 of 10 queued");
    eventually("the file exporter done", || {
        ex.stats()[0].1.sent_spans == 10
    })
    .await;
    // Down for good: shutdown gives up on the in-flight batch and the nine queued ones.
    assert_eq!(ex.clone().shutdown(Duration::from_millis(100)).await, 10);
    assert_eq!(ex.stats()[0].1.sent_spans, 10);
}

#[tokio::test]
async fn shutdown_drains_what_is_queued() {
    let unavailable = Reply::Fail(tonic::Code::Unavailable, Bytes::new());
    let mut down = grpc_downstream(
        listen().await,
        vec![unavailable.clone(), unavailable.clone(), unavailable],
    )
    .await;
    let mut cfg = otlp_cfg(&down.addr.to_string());
    cfg.sending_queue = QueueCfg {
        enabled: true,
        num_consumers: 1,
        queue_size: 10,
        ..QueueCfg::default()
    };
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    for i in 0..5 {
        ex.send(batch_of(&request(&format!("d{i}"), 2))).await;
    }
    assert_eq!(ex.clone().shutdown(Duration::from_secs(5)).await, 0);
    // Everything arrived before shutdown returned.
    let mut names = BTreeSet::new();
    while let Ok(got) = down.got.try_recv() {
        names.insert(first_name(&got.request));
    }
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 10,
            retries: 3,
            ..Default::default()
        }
    );
    // Closed now: further batches are refused and counted.
    ex.send(batch_of(&request("late", 3))).await;
    assert_eq!(stats(&ex).failed_spans, 3);
    assert_eq!(
        ex.shutdown(Duration::from_secs(1)).await,
        0,
        "a second shutdown has nothing left"
    );
}

#[tokio::test]
async fn shutdown_with_a_dead_downstream_returns_within_grace() {
    let mut cfg = otlp_cfg(&format!("127.0.0.1:{}", free_port()));
    cfg.sending_queue = QueueCfg {
        enabled: true,
        num_consumers: 2,
        queue_size: 10,
        ..QueueCfg::default()
    };
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    for i in 0..4 {
        ex.send(batch_of(&request(&format!("x{i}"), 3))).await;
    }
    let t0 = tokio::time::Instant::now();
    let undelivered = ex.clone().shutdown(Duration::from_millis(300)).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    assert_eq!(undelivered, 12);
    assert_eq!(stats(&ex).failed_spans, 12);
    assert_eq!(stats(&ex).sent_spans, 0);
    assert!(!ex.saturated());
}

#[tokio::test]
async fn gives_up_after_max_elapsed_time() {
    let mut cfg = otlp_cfg(&format!("127.0.0.1:{}", free_port()));
    cfg.retry_on_failure.max_elapsed_time = ms(100);
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    ex.send(batch_of(&request("doomed", 2))).await;
    eventually("the batch given up", || stats(&ex).failed_spans == 2).await;
    assert!(stats(&ex).retries >= 1);
    assert_eq!(
        ex.shutdown(Duration::from_secs(1)).await,
        0,
        "failed before shutdown began"
    );
}

#[tokio::test]
async fn retry_disabled_fails_at_once() {
    let mut cfg = otlp_cfg(&format!("127.0.0.1:{}", free_port()));
    cfg.retry_on_failure.enabled = false;
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    ex.send(batch_of(&request("once", 2))).await;
    eventually("the batch failed", || stats(&ex).failed_spans == 2).await;
    assert_eq!(stats(&ex).retries, 0);
    ex.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn no_exporters_is_a_no_op() {
    let ex = Exporters::start(&[]).unwrap();
    ex.send(batch_of(&request("nowhere", 1))).await;
    assert!(!ex.saturated() && ex.names().is_empty());
    assert_eq!(ex.shutdown(Duration::from_secs(1)).await, 0);
}

#[test]
fn start_needs_a_runtime() {
    let e = Exporters::start(&[]).err().unwrap();
    assert!(matches!(e, crate::export::ExportError::NoRuntime));
}
