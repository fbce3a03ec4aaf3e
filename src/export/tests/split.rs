//! A batch the downstream refuses for its content is split until the refused spans are
//! alone: everything else is delivered once, the refused spans are dropped and counted by
//! reason, in O(k log n) requests.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use tonic::Code;

use super::*;
use crate::export::config::ExporterCfg;

/// `request(name, n)` with the spans at `poisoned` renamed `poison-<i>`.
fn poisoned_request(n: usize, poisoned: &[usize]) -> ExportTraceServiceRequest {
    let mut req = request("good", n);
    for &i in poisoned {
        let span = &mut req.resource_spans[0].scope_spans[0].spans[i];
        span.name = format!("poison-{i}");
    }
    req
}

/// Span ids of every span accepted, each once (a second delivery fails the test).
fn accepted_once(
    requests: impl IntoIterator<Item = ExportTraceServiceRequest>,
) -> HashSet<Vec<u8>> {
    let mut ids = HashSet::new();
    for req in requests {
        assert!(!has_poison(&req), "a refused span was accepted");
        for span in req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            assert!(
                ids.insert(span.span_id.clone()),
                "{} delivered twice",
                span.name
            );
        }
    }
    ids
}

fn expected_ids(n: usize, poisoned: &[usize]) -> HashSet<Vec<u8>> {
    (0..n)
        .filter(|i| !poisoned.contains(i))
        .map(|i| vec![i as u8 + 1; 8])
        .collect()
}

/// ≤ 2·k·⌈log2 n⌉ + 1: every level of the bisection sends at most two halves per refused span.
fn bound(n: usize, k: usize) -> usize {
    2 * k * (n.next_power_of_two().trailing_zeros() as usize) + 1
}

fn dropped(ex: &Exporters) -> Vec<(&'static str, u64)> {
    ex.dropped_by_reason().remove(0).1
}

#[tokio::test]
async fn grpc_refusals_isolate_the_refused_spans_and_deliver_the_rest_once() {
    let (n, poisoned) = (64, [5, 6, 40]);
    let mut down = grpc_poison_downstream(Reply::Fail(Code::InvalidArgument, Bytes::new())).await;
    let ex = start("otlp", ExporterCfg::Otlp(otlp_cfg(&down.addr.to_string())));
    ex.send(batch_of(&poisoned_request(n, &poisoned))).await;
    // Shutdown waits for the batch: the dropped spans are its undelivered ones.
    assert_eq!(ex.clone().shutdown(Duration::from_secs(5)).await, 3);
    let mut got = Vec::new();
    while let Ok(g) = down.got.try_recv() {
        got.push(g.request);
    }
    assert_eq!(accepted_once(got), expected_ids(n, &poisoned));
    assert!(down.calls() <= bound(n, 3), "{} requests", down.calls());
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 61,
            failed_spans: 3,
            dropped_spans: 3,
            ..Default::default()
        }
    );
    assert_eq!(dropped(&ex), [("invalid_argument", 3)]);
    assert_eq!(ex.oldest_unfinished(), None, "the batch is finished");
}

#[tokio::test]
async fn every_content_refusal_code_splits_and_names_its_reason() {
    for (code, reason) in [
        (Code::InvalidArgument, "invalid_argument"),
        (Code::ResourceExhausted, "resource_exhausted"),
        (Code::Internal, "internal"),
        (Code::FailedPrecondition, "failed_precondition"),
    ] {
        let mut down = grpc_poison_downstream(Reply::Fail(code, Bytes::new())).await;
        let ex = start("otlp", ExporterCfg::Otlp(otlp_cfg(&down.addr.to_string())));
        ex.send(batch_of(&poisoned_request(8, &[3]))).await;
        ex.clone().shutdown(Duration::from_secs(5)).await;
        let mut got = Vec::new();
        while let Ok(g) = down.got.try_recv() {
            got.push(g.request);
        }
        assert_eq!(accepted_once(got), expected_ids(8, &[3]), "{code:?}");
        assert_eq!(dropped(&ex), [(reason, 1)]);
        assert!(down.calls() <= bound(8, 1));
    }
}

#[tokio::test]
async fn http_400_and_413_split_too() {
    for (status, reason) in [(400, "http_400"), (413, "http_413")] {
        let (n, poisoned) = (32, [0, 31]);
        let mut down = http_poison_downstream(Reply::Status(status, None)).await;
        let ex = start(
            "otlphttp",
            ExporterCfg::OtlpHttp(otlp_cfg(&format!("http://{}", down.addr))),
        );
        ex.send(batch_of(&poisoned_request(n, &poisoned))).await;
        ex.clone().shutdown(Duration::from_secs(5)).await;
        let mut got = Vec::new();
        while let Ok(g) = down.got.try_recv() {
            got.push(g.request);
        }
        assert_eq!(accepted_once(got), expected_ids(n, &poisoned));
        assert!(down.calls() <= bound(n, 2), "{} requests", down.calls());
        let s = stats(&ex);
        assert_eq!((s.sent_spans, s.failed_spans, s.dropped_spans), (30, 2, 2));
        assert_eq!(dropped(&ex), [(reason, 2)]);
    }
}

#[tokio::test]
async fn endpoint_errors_drop_the_batch_without_splitting() {
    let mut down = grpc_poison_downstream(Reply::Fail(Code::Unauthenticated, Bytes::new())).await;
    let ex = start("otlp", ExporterCfg::Otlp(otlp_cfg(&down.addr.to_string())));
    ex.send(batch_of(&poisoned_request(8, &[2]))).await;
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(down.calls(), 1);
    assert!(down.got.try_recv().is_err());
    let s = stats(&ex);
    assert_eq!((s.sent_spans, s.failed_spans, s.dropped_spans), (0, 8, 0));

    let down = http_poison_downstream(Reply::Status(401, None)).await;
    let ex = start(
        "otlphttp",
        ExporterCfg::OtlpHttp(otlp_cfg(&format!("http://{}", down.addr))),
    );
    ex.send(batch_of(&poisoned_request(8, &[2]))).await;
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(down.calls(), 1);
    assert_eq!(stats(&ex).failed_spans, 8);
}

/// A half that fails with a retryable error is retried on its own; the other half is
/// sent once.
#[tokio::test]
async fn a_half_is_retried_on_its_own() {
    let script = vec![
        Reply::Fail(Code::InvalidArgument, Bytes::new()),
        Reply::Fail(Code::Unavailable, Bytes::new()),
    ];
    let mut down = grpc_downstream(listen().await, script).await;
    let mut cfg = otlp_cfg(&down.addr.to_string());
    cfg.sending_queue.num_consumers = 1;
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    ex.send(batch_of(&request("pair", 2))).await;
    assert_eq!(first_name(&down.next().await.request), "pair-0");
    assert_eq!(first_name(&down.next().await.request), "pair-1");
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(down.calls(), 4, "whole, first half twice, second half");
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 2,
            retries: 1,
            ..Default::default()
        }
    );
}

/// The batch is not finished (for the write-ahead log) while a part is undelivered; at the
/// shutdown deadline only that part counts as failed.
#[tokio::test]
async fn the_batch_stays_open_until_every_part_is_done() {
    let script = vec![
        Reply::Fail(Code::InvalidArgument, Bytes::new()),
        Reply::Ok,
        Reply::Hang,
    ];
    let mut down = grpc_downstream(listen().await, script).await;
    let mut cfg = otlp_cfg(&down.addr.to_string());
    cfg.timeout = ms(0); // the second half waits for an answer forever
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    let mut batch = (*batch_of(&request("pair", 2))).clone();
    batch.seq = ex.next_batch();
    ex.send(Arc::new(batch)).await;
    assert_eq!(first_name(&down.next().await.request), "pair-0");
    assert_eq!(ex.oldest_unfinished(), Some(0), "half of it is still out");
    assert_eq!(ex.clone().shutdown(Duration::from_millis(100)).await, 1);
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 1,
            failed_spans: 1,
            ..Default::default()
        },
        "sent + failed = the spans handed"
    );
}
