//! The write-ahead log on its own: records round-trip, segments rotate, a torn or corrupt
//! tail is detected and skipped, truncation follows the watermark.

use std::time::Duration;

use tokio::time::Instant;

use super::wal::{list_segments, read_segment, segment_path, Damage};
use super::{Storage, MARGIN};
use crate::config::{Fsync, StorageCfg};

fn cfg(dir: &std::path::Path, segment_size: u64) -> StorageCfg {
    StorageCfg {
        dir: dir.to_owned(),
        segment_size,
        fsync: Fsync::Never,
    }
}

fn records(path: &std::path::Path) -> (Vec<Vec<u8>>, Option<Damage>) {
    let mut out = Vec::new();
    let damage = read_segment(path, |p| out.push(p.to_vec())).unwrap();
    (out, damage)
}

fn payload(i: u32) -> Vec<u8> {
    format!("record {i:02} ").repeat(10).into_bytes()
}

#[test]
fn records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap();
    for i in 0..5 {
        s.append(&payload(i)).unwrap();
    }
    let (got, damage) = records(&segment_path(dir.path(), 1));
    assert_eq!(damage, None);
    assert_eq!(got, (0..5).map(payload).collect::<Vec<_>>());
    assert!(s.append(&[]).is_err(), "an empty record is refused");
}

#[test]
fn segments_rotate_at_the_size_and_reopen_after_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(&cfg(dir.path(), 300), Duration::from_secs(1)).unwrap();
    for i in 0..10 {
        s.append(&payload(i)).unwrap(); // 8 + 100 bytes each: 3 per segment
    }
    let segs = list_segments(dir.path()).unwrap();
    assert_eq!(
        segs.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let all: Vec<Vec<u8>> = segs.iter().flat_map(|(_, p)| records(p).0).collect();
    assert_eq!(all, (0..10).map(payload).collect::<Vec<_>>());
    assert_eq!(s.usage(), (4, 10 * 108));
    drop(s);
    let s = Storage::open(&cfg(dir.path(), 300), Duration::from_secs(1)).unwrap();
    s.append(&payload(10)).unwrap();
    assert!(
        segment_path(dir.path(), 5).exists(),
        "appends go after the old segments"
    );
}

#[test]
fn a_torn_tail_is_reported_and_the_records_before_it_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap();
    for i in 0..3 {
        s.append(&payload(i)).unwrap();
    }
    let path = segment_path(dir.path(), 1);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(2 * 108 + 50).unwrap();
    let (got, damage) = records(&path);
    assert_eq!(got, [payload(0), payload(1)]);
    assert_eq!(
        damage,
        Some(Damage {
            offset: 216,
            reason: "torn record"
        })
    );
    f.set_len(2 * 108 + 3).unwrap();
    assert_eq!(records(&path).1.unwrap().reason, "torn record header");
}

#[test]
fn a_flipped_byte_is_reported_and_what_follows_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap();
    for i in 0..3 {
        s.append(&payload(i)).unwrap();
    }
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[108 + 20] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let (got, damage) = records(&path);
    assert_eq!(got, [payload(0)]);
    assert_eq!(
        damage,
        Some(Damage {
            offset: 108,
            reason: "checksum mismatch"
        })
    );
    // Zeros where a record should start (a file system's hole) are not a record either.
    std::fs::write(&path, [0u8; 64]).unwrap();
    assert_eq!(records(&path).1.unwrap().reason, "invalid record length");
}

#[test]
fn truncation_deletes_only_segments_past_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let wait = Duration::from_secs(1);
    let s = Storage::open(&cfg(dir.path(), 200), wait).unwrap();
    let t0 = Instant::now();
    for i in 0..4 {
        s.append(&payload(i)).unwrap(); // one segment each after the first two
    }
    let on_disk = || list_segments(dir.path()).unwrap().len();
    assert_eq!(on_disk(), 3, "segments 1 and 2 closed, 3 active");
    let horizon = wait + MARGIN + Duration::from_millis(100);
    // Before the horizon nothing goes, whatever the exporters say.
    assert_eq!(s.checkpoint(t0, 0, None), 0);
    assert_eq!(s.checkpoint(t0 + Duration::from_millis(10), 5, None), 0);
    // Past it: the checkpoint after the first one past the horizon fixes the batches that
    // must finish (those numbered below 9, handed on by then).
    assert_eq!(s.checkpoint(t0 + horizon, 7, Some(3)), 0);
    assert_eq!(
        s.checkpoint(t0 + horizon + Duration::from_millis(10), 9, Some(3)),
        0
    );
    assert_eq!(on_disk(), 3, "batch 3 is not finished");
    assert_eq!(
        s.checkpoint(t0 + horizon + Duration::from_millis(20), 12, Some(8)),
        0
    );
    assert_eq!(on_disk(), 3, "batch 8 is not finished");
    assert_eq!(
        s.checkpoint(t0 + horizon + Duration::from_millis(30), 12, Some(9)),
        2
    );
    let left: Vec<u64> = list_segments(dir.path())
        .unwrap()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(left, [3], "the active segment stays");
}

#[test]
fn restore_replays_spans_into_the_buffer_and_skips_a_damaged_tail() {
    use crate::buffer::{Buffer, BufferCfg};
    use crate::fixture::{self, Gen, Shape};
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(3);
    let traces = [g.trace(Shape::ERROR, 4), g.trace(Shape::default(), 3)];
    {
        let s = Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap();
        for t in &traces {
            s.append(&fixture::request_for(std::slice::from_ref(t)).encode_to_vec())
                .unwrap();
        }
    }
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[7, 0, 0, 0, 1, 2]); // a torn third record
    std::fs::write(&path, &bytes).unwrap();
    let s = Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap();
    let policies = crate::policy::Policies::build(&[], false).unwrap();
    let cfg = crate::config::embedded_default().tail_sampling;
    let buffer = Buffer::new(BufferCfg::from_config(&cfg, 512 << 20), policies);
    let r = s.restore(&buffer);
    assert_eq!((r.segments, r.records, r.spans, r.damaged), (1, 2, 7, 1));
    assert_eq!(buffer.held_traces(), 2);
}

/// A buffer fed by `s` as the daemon feeds it: requests appended, then ingested; its
/// decisions logged to `s`.
fn logged_buffer(s: &std::sync::Arc<Storage>, policies: &str) -> crate::buffer::Buffer {
    use crate::buffer::{Buffer, BufferCfg};
    let cfgs: Vec<crate::policy::PolicyCfg> = serde_yaml_ng::from_str(policies).unwrap();
    let policies = crate::policy::Policies::build(&cfgs, false).unwrap();
    let cfg = crate::config::embedded_default().tail_sampling;
    let b = Buffer::new(BufferCfg::from_config(&cfg, 512 << 20), policies);
    b.set_decision_log(s.clone());
    b
}

const KEEP_ALL: &str = "[{ name: everything, type: always_sample }]";
const KEEP_NONE: &str =
    "[{ name: errors_only, type: status_code, status_code: { status_codes: [ERROR] } }]";

fn ingest_logged(s: &Storage, b: &crate::buffer::Buffer, t: &crate::fixture::Trace) {
    use prost::Message;
    let bytes = crate::fixture::request_for(std::slice::from_ref(t)).encode_to_vec();
    s.append(&bytes).unwrap();
    b.ingest(
        crate::wire::decode::decode_request(&bytes).unwrap().spans,
        Instant::now(),
    );
}

#[test]
fn a_replay_decides_as_before_not_by_the_policies_again() {
    use crate::fixture::{Gen, Shape};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(11);
    let (kept, dropped) = (g.trace(Shape::default(), 3), g.trace(Shape::ERROR, 2));
    {
        let s = Arc::new(Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap());
        // Before the crash: everything kept; then the policies change (a reload, or a
        // rate limit that would answer differently after the restart).
        let b = logged_buffer(&s, KEEP_ALL);
        ingest_logged(&s, &b, &kept);
        b.decide_all(Instant::now(), false);
        b.set_policies(crate::policy::Policies::build(&[], false).unwrap());
        ingest_logged(&s, &b, &dropped);
        b.decide_all(Instant::now(), false);
        assert_eq!(b.take_outbox().spans.len(), 3, "only the first trace kept");
    } // killed: nothing exported, nothing truncated
    let s = Arc::new(Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap());
    // After the restart the policies would keep the error trace and drop the other.
    let b = logged_buffer(&s, KEEP_NONE);
    let r = s.restore(&b);
    assert_eq!((r.spans, r.decisions), (5, 2));
    b.decide_all(Instant::now(), false);
    let out = b.take_outbox();
    let ids: std::collections::HashSet<_> = out.spans.iter().map(|s| s.trace_id()).collect();
    assert_eq!(ids, [kept.trace_id].into(), "decided as before the crash");
    assert_eq!(out.spans.len(), 3);
    let root = out.spans.iter().find(|s| s.is_root()).unwrap();
    assert_eq!(
        root.attribute("casefile.policy").and_then(|v| v.as_str()),
        Some("everything"),
        "with the reasons given before the crash"
    );
}

#[test]
fn a_decision_whose_spans_are_gone_steers_late_spans() {
    use crate::buffer::{Decided, DecisionLog};
    use crate::fixture::{Gen, Shape};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(12);
    let (kept, dropped) = (g.trace(Shape::default(), 2), g.trace(Shape::ERROR, 2));
    {
        let s = Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap();
        s.record(&[
            Decided {
                id: kept.trace_id,
                sampled: true,
                reasons: vec![Arc::from("everything")],
            },
            Decided {
                id: dropped.trace_id,
                sampled: false,
                reasons: vec![],
            },
        ]);
    }
    let s = Arc::new(Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap());
    let b = logged_buffer(&s, KEEP_NONE);
    let r = s.restore(&b);
    assert_eq!((r.spans, r.decisions), (0, 0), "no pending trace to preset");
    // Late spans after the restart follow the decisions from before it.
    ingest_logged(&s, &b, &kept);
    ingest_logged(&s, &b, &dropped);
    assert_eq!(b.held_traces(), 0);
    let out = b.take_outbox();
    assert_eq!(out.spans.len(), 2);
    assert!(out.spans.iter().all(|s| s.trace_id() == kept.trace_id));
}

#[test]
fn rescues_and_late_kept_spans_are_logged_as_keeps() {
    use crate::buffer::Decided;
    use crate::fixture::{Gen, Shape};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(13);
    let t = g.trace(Shape::ERROR, 4);
    let (mut first, mut late) = (t.clone(), t.clone());
    first.spans.truncate(2);
    late.spans.drain(..2);
    let s = Arc::new(Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap());
    let b = logged_buffer(&s, KEEP_ALL);
    ingest_logged(&s, &b, &first);
    b.decide_all(Instant::now(), false);
    ingest_logged(&s, &b, &late);
    assert_eq!(b.take_outbox().spans.len(), 4);
    drop(b);
    let logged: Vec<Decided> = list_segments(dir.path())
        .unwrap()
        .iter()
        .flat_map(|(_, p)| records(p).0)
        .filter_map(|r| match super::records::decode_meta(&r) {
            Some(super::records::Meta::Decisions(d)) => Some(d),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        logged.len(),
        2,
        "the decision, then the keep after the late spans"
    );
    assert!(logged.iter().all(|d| d.id == t.trace_id && d.sampled));
    assert_eq!(&*logged[0].reasons[0], "everything");
    assert!(logged[1].reasons.is_empty());
}

#[test]
fn spans_delivered_before_a_crash_are_not_replayed() {
    use crate::fixture::{Gen, Shape};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(14);
    let (a, b, c) = (
        g.trace(Shape::default(), 3),
        g.trace(Shape::default(), 2),
        g.trace(Shape::default(), 4),
    );
    {
        let s = Arc::new(Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap());
        let buf = logged_buffer(&s, KEEP_ALL);
        ingest_logged(&s, &buf, &a);
        ingest_logged(&s, &buf, &b);
        buf.decide_all(Instant::now(), false);
        s.handed(0, &buf.take_outbox().spans);
        ingest_logged(&s, &buf, &c);
        buf.decide_all(Instant::now(), false);
        s.handed(1, &buf.take_outbox().spans);
        // Batch 0 finished by every exporter, batch 1 still in flight.
        s.checkpoint(Instant::now(), 2, Some(1));
    } // killed
    let s = Arc::new(Storage::open(&cfg(dir.path(), 1 << 20), Duration::from_secs(1)).unwrap());
    let buf = logged_buffer(&s, KEEP_ALL);
    let r = s.restore(&buf);
    assert_eq!((r.spans, r.delivered), (9, 5));
    assert_eq!(
        buf.held_traces(),
        1,
        "only the undelivered trace is replayed"
    );
    buf.decide_all(Instant::now(), false);
    let out = buf.take_outbox();
    assert_eq!(out.spans.len(), 4);
    assert!(out.spans.iter().all(|s| s.trace_id() == c.trace_id));
}
