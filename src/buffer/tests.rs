//! Buffer behaviour with time driven by `tokio::time::pause`.

use std::time::Duration;

use prost::Message;
use tokio::time::{advance, Instant};

use super::*;
use crate::fixture::{self, Gen, Shape};
use crate::policy::{Policies, PolicyCfg};
use crate::wire::decode::decode_request;

fn policies() -> Policies {
    let cfgs: Vec<PolicyCfg> = serde_yaml_ng::from_str(
        r#"
- { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
- { name: slow, type: latency, latency: { threshold_ms: 500 } }
"#,
    )
    .unwrap();
    Policies::build(&cfgs, false).unwrap()
}

fn cfg() -> BufferCfg {
    BufferCfg {
        decision_wait: Duration::from_secs(10),
        decision_wait_after_root_received: None,
        num_traces: 1000,
        max_bytes: 64 << 20,
        sampled_cache_size: 1000,
        non_sampled_cache_size: 1000,
        num_shards: 4,
        maximum_trace_size_bytes: None,
    }
}

fn spans(t: &fixture::Trace) -> Vec<Span> {
    decode_request(&fixture::request_for(std::slice::from_ref(t)).encode_to_vec())
        .unwrap()
        .spans
}

fn ids(out: &Outbox) -> std::collections::HashSet<TraceId> {
    out.spans.iter().map(|s| s.trace_id()).collect()
}

#[tokio::test(start_paused = true)]
async fn decides_at_the_deadline_not_before() {
    let b = Buffer::new(cfg(), policies());
    let mut g = Gen::new(1);
    let err = g.trace(Shape::ERROR, 5);
    let ok = g.trace(Shape::default(), 5);
    b.ingest(spans(&err), Instant::now());
    b.ingest(spans(&ok), Instant::now());
    assert_eq!(b.held_traces(), 2);
    advance(Duration::from_millis(9_990)).await;
    assert_eq!(b.decide_due(Instant::now()), 0);
    advance(Duration::from_millis(10)).await;
    assert_eq!(b.decide_due(Instant::now()), 2);
    assert_eq!(b.held_traces(), 0);
    assert_eq!(b.held_bytes(), 0);
    let out = b.take_outbox();
    assert_eq!(ids(&out), [err.trace_id].into());
    assert_eq!(out.spans.len(), 5);
    assert_eq!(out.traces, 1);
}

#[tokio::test(start_paused = true)]
async fn spans_of_one_trace_across_batches_are_decided_together() {
    let b = Buffer::new(cfg(), policies());
    let mut g = Gen::new(2);
    let t = g.trace(Shape::ERROR, 10);
    let all = spans(&t);
    let (a, c) = all.split_at(3);
    b.ingest(a.to_vec(), Instant::now());
    advance(Duration::from_secs(5)).await;
    b.ingest(c.to_vec(), Instant::now());
    assert_eq!(b.held_traces(), 1);
    advance(Duration::from_secs(5)).await;
    b.decide_due(Instant::now());
    assert_eq!(
        b.take_outbox().spans.len(),
        10,
        "the window runs from the first span"
    );
}

#[tokio::test(start_paused = true)]
async fn root_span_brings_the_deadline_forward() {
    let mut c = cfg();
    c.decision_wait_after_root_received = Some(Duration::from_secs(1));
    let b = Buffer::new(c, policies());
    let mut g = Gen::new(3);
    let t = g.trace(Shape::ERROR, 4);
    let mut s = spans(&t);
    let root = s.iter().position(Span::is_root).unwrap();
    let root_span = s.remove(root);
    b.ingest(s, Instant::now());
    advance(Duration::from_secs(2)).await;
    assert_eq!(b.decide_due(Instant::now()), 0, "no root yet");
    b.ingest(vec![root_span], Instant::now());
    advance(Duration::from_millis(999)).await;
    assert_eq!(b.decide_due(Instant::now()), 0);
    advance(Duration::from_millis(1)).await;
    assert_eq!(b.decide_due(Instant::now()), 1);
    assert_eq!(b.take_outbox().spans.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn late_spans_follow_the_cached_decision() {
    let b = Buffer::new(cfg(), policies());
    let mut g = Gen::new(4);
    let kept = g.trace(Shape::ERROR, 3);
    let dropped = g.trace(Shape::default(), 3);
    let (k, d) = (spans(&kept), spans(&dropped));
    // The error is on the last span: hold back the first one as the late span.
    b.ingest(k[1..].to_vec(), Instant::now());
    b.ingest(d[1..].to_vec(), Instant::now());
    advance(Duration::from_secs(10)).await;
    b.decide_due(Instant::now());
    b.take_outbox();
    let s = b.ingest(vec![k[0].clone(), d[0].clone()], Instant::now());
    assert_eq!((s.late_kept, s.late_dropped, s.new_traces), (1, 1, 0));
    assert_eq!(b.held_traces(), 0);
    let out = b.take_outbox();
    assert_eq!(out.spans.len(), 1);
    assert_eq!(out.spans[0].span_id(), k[0].span_id());
}

#[tokio::test(start_paused = true)]
async fn num_traces_bound_decides_the_oldest_early() {
    let mut c = cfg();
    c.num_traces = 4;
    c.num_shards = 1;
    let b = Buffer::new(c, policies());
    let mut g = Gen::new(5);
    let traces: Vec<_> = (0..6).map(|_| g.trace(Shape::ERROR, 2)).collect();
    let mut early = 0;
    for t in &traces {
        early += b.ingest(spans(t), Instant::now()).decided_early;
        advance(Duration::from_millis(1)).await;
    }
    assert_eq!(early, 2);
    assert_eq!(b.held_traces(), 4);
    let out = b.take_outbox();
    assert_eq!(
        ids(&out),
        [traces[0].trace_id, traces[1].trace_id].into(),
        "the oldest, decided with the policies"
    );
}

#[tokio::test(start_paused = true)]
async fn byte_bound_decides_early_and_is_exact() {
    let mut c = cfg();
    c.num_shards = 1;
    let mut g = Gen::new(6);
    let traces: Vec<_> = (0..10).map(|_| g.trace(Shape::default(), 5)).collect();
    let one: usize = spans(&traces[0]).iter().map(Span::size).sum();
    c.max_bytes = one * 3;
    let b = Buffer::new(c.clone(), policies());
    for t in &traces {
        b.ingest(spans(t), Instant::now());
        assert!(
            b.held_bytes() <= c.max_bytes,
            "{} > {}",
            b.held_bytes(),
            c.max_bytes
        );
    }
    assert!(b.held_traces() >= 2);
}

#[tokio::test(start_paused = true)]
async fn shutdown_decides_everything_pending() {
    let b = Buffer::new(cfg(), policies());
    let mut g = Gen::new(7);
    let t = g.trace(
        Shape {
            slow: true,
            ..Default::default()
        },
        5,
    );
    b.ingest(spans(&t), Instant::now());
    assert_eq!(b.decide_all(Instant::now(), false), 1);
    assert_eq!(b.take_outbox().spans.len(), 5);
    b.ingest(spans(&g.trace(Shape::ERROR, 2)), Instant::now());
    assert_eq!(b.decide_all(Instant::now(), true), 1);
    assert!(
        b.take_outbox().spans.is_empty(),
        "drop_pending_traces_on_shutdown drops"
    );
}

#[tokio::test(start_paused = true)]
async fn kept_root_carries_the_policy_names() {
    let b = Buffer::new(cfg(), policies());
    let mut g = Gen::new(8);
    let t = g.trace(
        Shape {
            error: true,
            slow: true,
            premium: false,
        },
        3,
    );
    b.ingest(spans(&t), Instant::now());
    b.decide_all(Instant::now(), false);
    let out = b.take_outbox();
    let root = out.spans.iter().find(|s| s.is_root()).unwrap();
    assert_eq!(
        root.attribute("casefile.policy").and_then(|v| v.as_str()),
        Some("errors,slow")
    );
    let child = out.spans.iter().find(|s| !s.is_root()).unwrap();
    assert!(child.attribute("casefile.policy").is_none());
}

#[tokio::test(start_paused = true)]
async fn pending_traces_hold_no_spare_capacity() {
    let b = Buffer::new(cfg(), policies());
    let mut g = Gen::new(9);
    let t = g.trace(Shape::default(), 10);
    let all = spans(&t);
    // Interleave with another trace, as requests mix traces.
    let other = spans(&g.trace(Shape::default(), 7));
    let mixed: Vec<Span> = all[..6]
        .iter()
        .chain(&other)
        .chain(&all[6..])
        .cloned()
        .collect();
    b.ingest(mixed, Instant::now());
    let shard = b.shards[b.shard_of(&t.trace_id)].lock();
    let p = &shard.traces[&t.trace_id];
    assert_eq!(p.spans.len(), 10);
    assert_eq!(
        p.spans.capacity(),
        10,
        "room for exactly the spans that arrived"
    );
    let names: Vec<&str> = p.spans.iter().map(Span::name).collect();
    let want: Vec<&str> = all.iter().map(Span::name).collect();
    assert_eq!(names, want, "spans of a trace keep their order");
}

#[tokio::test(start_paused = true)]
async fn a_memory_cap_decides_the_oldest_early_and_lifting_it_stops_that() {
    let b = Buffer::new(cfg(), policies());
    let mut g = Gen::new(9);
    let traces: Vec<_> = (0..40).map(|_| g.trace(Shape::ERROR, 5)).collect();
    for t in &traces {
        b.ingest(spans(t), Instant::now());
    }
    let held = b.held_bytes();
    assert_eq!(b.relieve(Instant::now()), 0, "no cap, nothing to relieve");
    b.set_memory_cap(Some(held / 2));
    let decided = b.relieve(Instant::now());
    assert!(
        decided > 0 && b.held_bytes() <= held / 2,
        "{decided} {}",
        b.held_bytes()
    );
    // Decided early, not dropped: the kept traces are in the outbox, whole.
    let out = b.take_outbox();
    assert_eq!(out.traces, decided);
    assert_eq!(out.spans.len(), decided * 5);
    // Ingest keeps to the cap too.
    let more = g.trace(Shape::ERROR, 5);
    b.ingest(spans(&more), Instant::now());
    assert!(b.held_bytes() <= held / 2 + 4096);
    b.set_memory_cap(None);
    let before = b.held_traces();
    for _ in 0..5 {
        b.ingest(spans(&g.trace(Shape::ERROR, 5)), Instant::now());
    }
    assert_eq!(
        b.held_traces(),
        before + 5,
        "without the cap nothing is decided early"
    );
}

/// Dropped traces reach the archive with the keys the index computed at ingest (the same
/// digests). A trace whose index entry left while it was pending came back with its later
/// spans' keys only: its keys are read from all its spans instead.
#[tokio::test(start_paused = true)]
async fn the_archive_gets_the_index_keys_of_dropped_traces_whole() {
    use crate::archive::{Archive, ArchiveCfg, Traces};
    use crate::support::index::Index;
    let dir = tempfile::tempdir().unwrap();
    let attributes: Vec<String> = vec!["user.id".into()];
    let index = Arc::new(Index::new(&crate::config::IndexCfg {
        attributes: attributes.clone(),
        retention: Duration::from_secs(3600),
        max_traces: 2,
        max_bytes: 1 << 20,
        hash_values: false,
        hash_key: None,
    }));
    let archive = Archive::open(ArchiveCfg {
        dir: dir.path().join("a"),
        retention: Duration::from_secs(100 * 365 * 24 * 3600),
        max_bytes: 1 << 30,
        traces: Traces::All,
        attributes,
        hash_key: None,
    })
    .unwrap();
    index.set_key_hash(archive.key_hash());
    let hooks = crate::support::Hooks {
        index: Some(Arc::clone(&index)),
        archive: Some(archive.clone()),
        ..Default::default()
    };
    let b = Buffer::new(cfg(), policies()).with_hooks(hooks);
    let mut g = Gen::new(9);
    let req = |t: &fixture::Trace, from: usize, to: usize| {
        let r = fixture::request(t.spans[from..to].iter()).encode_to_vec();
        decode_request(&r).unwrap().spans
    };
    // Whole in the index: its keys come from there.
    let mut whole = g.trace(Shape::default(), 3);
    whole.set_user("u-whole");
    b.ingest(req(&whole, 0, 3), Instant::now());
    // Split: its first span's entry is pushed out of the index (max 2 traces) before the
    // rest arrive with another user id.
    let mut split = g.trace(Shape::default(), 3);
    split.set_user("u-first");
    b.ingest(req(&split, 0, 1), Instant::now());
    for _ in 0..2 {
        let other = g.trace(Shape::default(), 2);
        b.ingest(req(&other, 0, 2), Instant::now());
    }
    split.set_user("u-later");
    b.ingest(req(&split, 1, 3), Instant::now());
    // Kept: its keys go ahead of its spans, which leave through the outbox.
    let mut kept = g.trace(Shape::ERROR, 3);
    kept.set_user("u-kept");
    b.ingest(req(&kept, 0, 3), Instant::now());
    advance(Duration::from_secs(11)).await;
    b.decide_due(Instant::now());
    archive.record_kept(b.take_outbox().spans);
    archive.flush();
    for (user, id) in [
        ("u-kept", kept.trace_id),
        ("u-whole", whole.trace_id),
        ("u-first", split.trace_id),
        ("u-later", split.trace_id),
    ] {
        let key = archive.key("user.id", user);
        assert_eq!(index.query_key("user.id", user), Some(key));
        let found: Vec<TraceId> = archive
            .lookup(&key, None, None, 10)
            .iter()
            .map(|s| s.trace_id)
            .collect();
        assert_eq!(found, vec![id], "{user}");
    }
    archive.close();
}
