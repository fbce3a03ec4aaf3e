//! End to end: the daemon on port 0, a real tonic OTLP client in front, a real OTLP/gRPC
//! receiver behind. Windows are short; waits end on events.

mod common;

use std::collections::HashSet;

use casefile::fixture::{self, Gen, Shape};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_errors_slow_and_premium_and_drops_the_rest() {
    let (down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "300ms", "")).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(11);
    let shapes = [
        (Shape::ERROR, Some("errors")),
        (
            Shape {
                slow: true,
                ..Default::default()
            },
            Some("slow"),
        ),
        (
            Shape {
                premium: true,
                ..Default::default()
            },
            Some("premium"),
        ),
        (
            Shape {
                error: true,
                slow: true,
                ..Default::default()
            },
            Some("errors,slow"),
        ),
        (Shape::default(), None),
        (Shape::default(), None),
        (Shape::default(), None),
    ];
    let traces: Vec<_> = shapes.iter().map(|(s, _)| g.trace(*s, 7)).collect();
    client.export(fixture::request_for(&traces)).await.unwrap();

    until_all_decided(&daemon).await;
    daemon.shutdown().await;

    let got = down.spans_by_trace();
    let kept: HashSet<_> = got.keys().cloned().collect();
    let want: HashSet<_> = traces
        .iter()
        .zip(&shapes)
        .filter(|(_, s)| s.1.is_some())
        .map(|(t, _)| hex::encode(t.trace_id))
        .collect();
    assert_eq!(kept, want);
    for (t, (_, policy)) in traces.iter().zip(&shapes) {
        let Some(policy) = policy else { continue };
        let spans = &got[&hex::encode(t.trace_id)];
        assert_eq!(spans.len(), 7, "every span of a kept trace arrives");
        assert_eq!(
            root_attr(spans, "casefile.policy").as_deref(),
            Some(*policy)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_spread_over_requests_and_transports_arrives_whole() {
    let (down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "400ms", "")).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(12);
    let t = g.trace(Shape::ERROR, 12);
    let (a, rest) = t.spans.split_at(4);
    let (b, c) = rest.split_at(4);
    client.export(fixture::request(a.iter())).await.unwrap();
    // The second part over OTLP/HTTP protobuf.
    let body = prost::Message::encode_to_vec(&fixture::request(b.iter()));
    let resp = reqwest_post(daemon.http_addr.unwrap(), "application/x-protobuf", body).await;
    assert_eq!(resp.0, 200);
    client.export(fixture::request(c.iter())).await.unwrap();

    let id = hex::encode(t.trace_id);
    down.wait_for("the whole trace", |d| {
        d.spans_by_trace().get(&id).map(Vec::len) == Some(12)
    })
    .await;
    daemon.shutdown().await;
    assert_eq!(
        down.spans_by_trace()[&id].len(),
        12,
        "no duplicates after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_spans_follow_the_decision() {
    let (down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "200ms", "")).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(13);
    let kept = g.trace(Shape::ERROR, 6);
    let dropped = g.trace(Shape::default(), 6);
    // The fixture puts the error on the last span: hold back the first span as the late one.
    let (kept_late, kept_early) = kept.spans.split_at(1);
    let (dropped_late, dropped_early) = dropped.spans.split_at(1);
    client
        .export(fixture::request(kept_early.iter().chain(dropped_early)))
        .await
        .unwrap();
    until_all_decided(&daemon).await;
    let kid = hex::encode(kept.trace_id);
    down.wait_for("kept trace", |d| {
        d.spans_by_trace().get(&kid).map(Vec::len) == Some(5)
    })
    .await;

    client
        .export(fixture::request(kept_late.iter().chain(dropped_late)))
        .await
        .unwrap();
    down.wait_for("late span of kept trace", |d| {
        d.spans_by_trace().get(&kid).map(Vec::len) == Some(6)
    })
    .await;
    until_all_decided(&daemon).await;
    daemon.shutdown().await;
    assert!(
        !down
            .spans_by_trace()
            .contains_key(&hex::encode(dropped.trace_id)),
        "late span of a dropped trace stays dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_decides_pending_traces_and_flushes() {
    let (down, addr) = Downstream::start().await;
    // A window far longer than the test: only shutdown can decide these.
    let daemon = start(config(addr, "1h", "")).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(14);
    let traces = vec![g.trace(Shape::ERROR, 5), g.trace(Shape::default(), 5)];
    client.export(fixture::request_for(&traces)).await.unwrap();
    assert_eq!(daemon.buffer.held_traces(), 2);
    daemon.shutdown().await;
    let got = down.spans_by_trace();
    assert_eq!(got.len(), 1);
    assert_eq!(got[&hex::encode(traces[0].trace_id)].len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_span_shortens_the_wait() {
    let (down, addr) = Downstream::start().await;
    let daemon = start(config(
        addr,
        "1h",
        "    decision_wait_after_root_received: 100ms",
    ))
    .await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(15);
    let t = g.trace(Shape::ERROR, 4);
    client
        .export(fixture::request_for(std::slice::from_ref(&t)))
        .await
        .unwrap();
    let id = hex::encode(t.trace_id);
    down.wait_for("trace decided after its root arrived", |d| {
        d.spans_by_trace().contains_key(&id)
    })
    .await;
    daemon.shutdown().await;
}
