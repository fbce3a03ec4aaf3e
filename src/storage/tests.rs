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
