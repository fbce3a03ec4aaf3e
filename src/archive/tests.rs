//! Archive round trips: records found by summary, spans and key across sealed segments and
//! the active one, time filters and limits, records of a trace merged, rescues marked.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use prost::Message;

use super::*;
use crate::fixture::{self, kv, Gen, Shape};
use crate::model::Span;
use crate::support::index::{Decision, TraceKeys};
use crate::wire::decode::decode_request;

pub(super) const HOUR: Duration = Duration::from_secs(3600);

pub(super) fn cfg(dir: &Path, traces: Traces) -> ArchiveCfg {
    ArchiveCfg {
        dir: dir.to_owned(),
        // The fixture's traces start on 2026-01-01: far from the wall clock.
        retention: 100 * 365 * 24 * HOUR,
        max_bytes: 1 << 30,
        traces,
        attributes: vec!["user.id".into(), "session.id".into()],
        hash_key: None,
    }
}

/// Small blocks and segments, so a few hundred traces make many segments.
pub(super) fn small() -> Tuning {
    Tuning {
        segment_bytes: Some(32 << 10),
        block_bytes: 8 << 10,
        ..Tuning::default()
    }
}

/// A clock tests move by hand (Unix milliseconds).
pub(super) fn clock(at: &Arc<AtomicU64>) -> Clock {
    let at = Arc::clone(at);
    Arc::new(move || UNIX_EPOCH + Duration::from_millis(at.load(Relaxed)))
}

pub(super) fn decoded(t: &fixture::Trace) -> Vec<Span> {
    decode_request(&fixture::request_for(std::slice::from_ref(t)).encode_to_vec())
        .unwrap()
        .spans
}

/// `n` traces of 10 spans, user `user-{i % users}`.
pub(super) fn traces(g: &mut Gen, n: usize, users: usize) -> Vec<(TraceId, Vec<Span>)> {
    (0..n)
        .map(|i| {
            let mut t = g.trace(Shape::default(), 10);
            t.set_user(&format!("user-{}", i % users));
            (t.trace_id, decoded(&t))
        })
        .collect()
}

/// A kept trace as the decider hands it on: `casefile.policy` on its root.
pub(super) fn kept(g: &mut Gen, user: &str, policy: &str) -> (TraceId, Vec<Span>) {
    let mut t = g.trace(Shape::ERROR, 10);
    t.set_user(user);
    t.spans[0].1.attributes.push(kv("casefile.policy", policy));
    t.spans[1]
        .1
        .attributes
        .push(kv("session.id", &format!("sess-of-{user}")));
    (t.trace_id, decoded(&t))
}

pub(super) fn bytes_of(spans: &[Span]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = spans.iter().map(|s| s.bytes.to_vec()).collect();
    v.sort();
    v
}

#[test]
fn round_trip_across_sealed_segments_and_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    let mut g = Gen::new(1);
    let dropped = traces(&mut g, 300, 10);
    let kept: Vec<_> = (0..30)
        .map(|i| kept(&mut g, &format!("user-{}", i % 10), "errors,latency"))
        .collect();
    for chunk in dropped.chunks(50) {
        a.record_dropped(chunk.to_vec());
    }
    a.record_kept(kept.iter().flat_map(|(_, s)| s.clone()).collect());
    a.flush();
    let st = a.stats();
    assert!(st.segments >= 4, "{st:?}");
    assert_eq!(st.traces, 330);
    // Oldest and newest trace starts, from the segments' headers and the active index.
    let starts: Vec<u64> = dropped
        .iter()
        .chain(&kept)
        .map(|(_, s)| s.iter().map(|s| s.start_unix_nano).min().unwrap())
        .collect();
    assert_eq!(st.oldest_trace_start, starts.iter().min().copied());
    assert_eq!(st.newest_trace_start, starts.iter().max().copied());
    assert!(a
        .handle
        .inner
        .state
        .read()
        .active
        .as_ref()
        .is_some_and(|v| !v.index.is_empty()));

    for (id, spans) in &dropped {
        let s = a.summary(id).expect("summary");
        assert_eq!(s.decision, Decision::Dropped);
        assert_eq!(s.span_count, 10);
        assert_eq!(s.root_service.as_ref(), "frontend");
        assert_eq!(bytes_of(&a.spans(id).expect("spans")), bytes_of(spans));
    }
    for (id, spans) in &kept {
        let s = a.summary(id).unwrap();
        assert_eq!(s.decision, Decision::Sampled);
        assert!(s.error);
        let reasons: Vec<&str> = s.reasons.iter().map(|r| r.as_ref()).collect();
        assert_eq!(reasons, ["errors", "latency"]);
        assert_eq!(bytes_of(&a.spans(id).unwrap()), bytes_of(spans));
    }
    assert!(a.summary(&[7; 16]).is_none());
    assert!(a.spans(&[7; 16]).is_none());

    // user-3: 30 dropped and 3 kept traces, spread over every segment.
    let key = a.key("user.id", "user-3");
    let all = a.lookup(&key, None, None, 1000);
    assert_eq!(all.len(), 33);
    assert!(all
        .windows(2)
        .all(|w| w[0].start_unix_nano >= w[1].start_unix_nano));
    let limited = a.lookup(&key, None, None, 5);
    assert_eq!(limited, all[..5].to_vec());
    let (lo, hi) = (all[20].start_unix_nano, all[10].start_unix_nano);
    let window = a.lookup(&key, Some(lo), Some(hi), 1000);
    assert_eq!(window, all[10..=20].to_vec());
    let sess = a.key("session.id", "sess-of-user-3");
    assert_eq!(a.lookup(&sess, None, None, 100).len(), 3);
    assert!(a
        .lookup(&a.key("user.id", "nobody"), None, None, 10)
        .is_empty());
    assert_eq!(
        a.lookup(&a.key("session.id", "user-3"), None, None, 10)
            .len(),
        0
    );
    let names: Vec<String> = a.keys_of(&kept[3].0).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["user.id", "session.id"]);

    // Modes: a 0700 directory of 0600 files.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700);
    for e in std::fs::read_dir(dir.path()).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o600);
    }
    a.close();
}

#[test]
fn records_of_a_trace_in_two_segments_merge_and_a_rescue_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    // Every block seals its segment.
    let tuning = Tuning {
        segment_bytes: Some(1),
        ..Tuning::default()
    };
    let a = Archive::open_with(cfg(dir.path(), Traces::All), tuning).unwrap();
    let mut g = Gen::new(2);
    let (id, spans) = kept(&mut g, "ann", "complaint");
    let (first, late) = spans.split_at(6);
    a.record_dropped(vec![(id, first.to_vec())]);
    a.flush();
    a.record_dropped(vec![(id, late.to_vec())]);
    a.flush();
    assert_eq!(a.stats().segments, 2);
    let s = a.summary(&id).unwrap();
    assert_eq!((s.span_count, s.decision), (10, Decision::Dropped));
    assert_eq!(
        s.start_unix_nano,
        spans.iter().map(|s| s.start_unix_nano).min().unwrap()
    );
    let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap();
    // Sealed rows hold durations in microseconds.
    assert!((s.duration_ms - (end - s.start_unix_nano) as f64 / 1e6).abs() < 0.001);
    assert_eq!(s.root_service.as_ref(), "frontend");
    assert_eq!(bytes_of(&a.spans(&id).unwrap()), bytes_of(&spans));

    // The daemon pushes a rescued trace through the kept path.
    a.record_kept(spans.clone());
    a.flush();
    let s = a.summary(&id).unwrap();
    assert_eq!(s.decision, Decision::Rescued);
    assert_eq!(s.reasons, vec![Arc::<str>::from("complaint")]);
    // The rescue archived the same spans again: each counts and reads back once, as the
    // rescue sent it.
    assert_eq!(s.span_count, 10);
    assert_eq!(bytes_of(&a.spans(&id).unwrap()), bytes_of(&spans));
    assert_eq!(a.lookup(&a.key("user.id", "ann"), None, None, 10), vec![s]);
    a.close();
}

#[test]
fn kept_traces_keep_only_their_summary_with_traces_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open(cfg(dir.path(), Traces::Dropped)).unwrap();
    let mut g = Gen::new(3);
    let (id, spans) = kept(&mut g, "bob", "errors");
    let (did, dspans) = traces(&mut g, 1, 1).remove(0);
    a.record_kept(spans);
    a.record_dropped(vec![(did, dspans.clone())]);
    a.flush();
    assert_eq!(a.summary(&id).unwrap().decision, Decision::Sampled);
    assert!(a.spans(&id).is_none());
    assert_eq!(bytes_of(&a.spans(&did).unwrap()), bytes_of(&dspans));
    assert_eq!(a.lookup(&a.key("user.id", "bob"), None, None, 10).len(), 1);
    a.close();
}

#[test]
fn the_handle_is_send_and_sync() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<Archive>();
}

#[test]
fn segment_size_is_two_percent_clamped() {
    let mut c = cfg(Path::new("/x"), Traces::All);
    c.max_bytes = 10 << 30;
    assert_eq!(c.segment_bytes(), (10u64 << 30) / 50);
    c.max_bytes = 1 << 20;
    assert_eq!(c.segment_bytes(), 1 << 20);
    c.max_bytes = 1 << 40;
    assert_eq!(c.segment_bytes(), 256 << 20);
}

#[test]
fn offline_reads_without_changing_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    let mut g = Gen::new(4);
    let ts = traces(&mut g, 120, 4);
    a.record_dropped(ts.clone());
    a.flush();
    // As a killed daemon leaves it: the last segment has no index.
    a.abort();
    let listing = |d: &Path| {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(dir.path());
    let st = offline::stats(dir.path()).unwrap();
    assert_eq!(st.traces, 120);
    assert!(st.segments >= 2);
    let req = offline::export(dir.path(), &ts[5].0).unwrap().unwrap();
    assert_eq!(
        bytes_of(&decode_request(&req).unwrap().spans),
        bytes_of(&ts[5].1)
    );
    assert!(offline::export(dir.path(), &[9; 16]).unwrap().is_none());
    let since = ts[100].1.iter().map(|s| s.start_unix_nano).min().unwrap();
    let all: Vec<_> = offline::traces(dir.path(), Some(since)).unwrap().collect();
    assert_eq!(all.len(), 20);
    for ((s, spans), (id, want)) in all.iter().zip(&ts[100..]) {
        assert_eq!(&s.trace_id, id);
        assert_eq!(bytes_of(spans), bytes_of(want));
    }
    assert_eq!(listing(dir.path()), before);
}

/// Keys handed over with dropped traces (the index's, computed at ingest) are stored as
/// they are, not read again from the spans; traces without them are read.
#[test]
fn keys_handed_over_are_stored_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    let mut g = Gen::new(21);
    let ts = traces(&mut g, 2, 2);
    let given = Key([7; 16]);
    let known = TraceKeys {
        keys: vec![given],
        ranges: vec![Some((0, 1)), None],
    };
    a.record_dropped_with_keys(ts.clone(), known);
    a.flush();
    let ids = |k: &Key| -> Vec<TraceId> {
        a.lookup(k, None, None, 10)
            .iter()
            .map(|s| s.trace_id)
            .collect()
    };
    assert_eq!(ids(&given), vec![ts[0].0]);
    let users = |spans: &[Span]| -> Vec<Key> {
        let hasher = &a.inner().hasher;
        let keys = hasher.keys_of(&a.inner().cfg.attributes, spans, &mut Default::default());
        keys.into_iter().map(|(_, k)| k).collect()
    };
    for k in users(&ts[0].1) {
        assert!(!ids(&k).contains(&ts[0].0), "the spans were not read again");
    }
    for k in users(&ts[1].1) {
        assert!(ids(&k).contains(&ts[1].0), "read from its spans");
    }
    a.close();
}

/// Kept traces' keys come ahead of their spans; used when the spans come as that many,
/// read from the spans otherwise (late spans in the same batch) or when none came.
#[test]
fn kept_keys_handed_over_ahead_of_the_spans() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    let mut g = Gen::new(22);
    let ks: Vec<_> = (0..3)
        .map(|i| kept(&mut g, &format!("u{i}"), "errors"))
        .collect();
    let given = |i: u8| Key([i + 1; 16]);
    let n = |i: usize| ks[i].1.len() as u32;
    a.kept_keys(
        vec![(ks[0].0, n(0)), (ks[1].0, n(1) - 1)],
        TraceKeys {
            keys: vec![given(0), given(1)],
            ranges: vec![Some((0, 1)), Some((1, 2))],
        },
    );
    a.record_kept(ks.iter().flat_map(|(_, s)| s.clone()).collect());
    a.flush();
    let ids = |k: &Key| -> Vec<TraceId> {
        a.lookup(k, None, None, 10)
            .iter()
            .map(|s| s.trace_id)
            .collect()
    };
    assert_eq!(ids(&given(0)), vec![ks[0].0], "taken as handed over");
    assert!(ids(&given(1)).is_empty(), "another span count: read");
    assert!(ids(&a.key("user.id", "u0")).is_empty(), "not read again");
    assert_eq!(ids(&a.key("user.id", "u1")), vec![ks[1].0]);
    assert_eq!(ids(&a.key("user.id", "u2")), vec![ks[2].0]);
    a.close();
}
