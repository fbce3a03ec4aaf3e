//! The archive on a real disk: restart and kill recovery (torn tail, flipped byte at the
//! end or in the middle, zero-filled tail, lost or garbled index, a sealed block that fails
//! its checksum), retention by age and by bytes, keys that never
//! put a raw value on disk, failing writes and a full queue.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{bytes_of, cfg, clock, kept, small, traces, HOUR};
use super::*;
use crate::fixture::Gen;
use crate::model::Span;

fn files_of(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn all_found(a: &Archive, ts: &[(TraceId, Vec<Span>)]) {
    for (id, spans) in ts {
        assert_eq!(a.summary(id).map(|s| s.span_count), Some(10));
        assert_eq!(bytes_of(&a.spans(id).expect("spans")), bytes_of(spans));
    }
}

#[test]
fn everything_is_found_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(10);
    let ts = traces(&mut g, 200, 5);
    let a = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    a.record_dropped(ts.clone());
    a.close();
    let before = files_of(dir.path(), "index").len();
    let a = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    assert_eq!(a.stats().traces, 200);
    assert_eq!(a.stats().corrupt_records, 0);
    all_found(&a, &ts);
    assert_eq!(
        a.lookup(&a.key("user.id", "user-2"), None, None, 100).len(),
        40
    );
    // Writing goes on in a new segment.
    let more = traces(&mut g, 10, 5);
    a.record_dropped(more.clone());
    a.close();
    let a = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    all_found(&a, &more);
    assert!(files_of(dir.path(), "index").len() > before);
}

/// Writes `n` traces in blocks and stops the writer as a kill would; returns the traces
/// and the data file of the unsealed segment.
fn killed(dir: &Path, n: usize) -> (Vec<(TraceId, Vec<Span>)>, PathBuf) {
    let tuning = Tuning {
        block_bytes: 8 << 10,
        ..Tuning::default()
    };
    let a = Archive::open_with(cfg(dir, Traces::All), tuning).unwrap();
    let ts = traces(&mut Gen::new(11), n, 3);
    a.record_dropped(ts.clone());
    a.flush();
    a.abort();
    let data = files_of(dir, "data");
    assert_eq!(data.len(), 1);
    assert!(files_of(dir, "index").is_empty());
    (ts, data[0].clone())
}

fn reopen(dir: &Path) -> Archive {
    Archive::open_with(cfg(dir, Traces::All), Tuning::default()).unwrap()
}

#[test]
fn a_torn_tail_is_counted_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (ts, data) = killed(dir.path(), 100);
    let len = std::fs::metadata(&data).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&data)
        .unwrap();
    // A record header promising 5000 bytes, and only 100 of them.
    f.write_all(&5000u32.to_le_bytes()).unwrap();
    f.write_all(&[1, 2, 3, 4]).unwrap();
    f.write_all(&[7u8; 100]).unwrap();
    drop(f);
    let a = reopen(dir.path());
    assert_eq!(a.stats().corrupt_records, 1);
    assert_eq!(std::fs::metadata(&data).unwrap().len(), len);
    all_found(&a, &ts);
    assert_eq!(files_of(dir.path(), "index").len(), 1);
}

#[test]
fn a_zero_filled_tail_is_counted_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (ts, data) = killed(dir.path(), 100);
    let len = std::fs::metadata(&data).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.set_len(len + 8192).unwrap();
    drop(f);
    let a = reopen(dir.path());
    assert_eq!(a.stats().corrupt_records, 1);
    assert_eq!(std::fs::metadata(&data).unwrap().len(), len);
    all_found(&a, &ts);
}

#[test]
fn a_flipped_byte_loses_its_record_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ts, data) = killed(dir.path(), 100);
    // Where the last record starts: walk the framing.
    let bytes = std::fs::read(&data).unwrap();
    let mut at = 0;
    let mut last = 0;
    while at < bytes.len() {
        last = at;
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    let mut damaged = bytes.clone();
    damaged[last + 8 + (bytes.len() - last - 8) / 2] ^= 0x40;
    std::fs::write(&data, &damaged).unwrap();
    let a = reopen(dir.path());
    assert_eq!(a.stats().corrupt_records, 1);
    assert_eq!(std::fs::metadata(&data).unwrap().len(), last as u64);
    let found = ts.iter().filter(|(id, _)| a.summary(id).is_some()).count();
    assert!(found > 50 && found < 100, "{found}");
    // What is found is whole, and in order: only the last block's traces are gone.
    all_found(&a, &ts[..found]);
}

/// Record starts of a data file, walking its framing.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut starts = Vec::new();
    while at < bytes.len() {
        starts.push(at);
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    starts
}

/// Re-indexing skips a damaged record in the middle of a segment and reads on after it.
#[test]
fn a_flipped_byte_mid_segment_loses_that_block_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ts, data) = killed(dir.path(), 100);
    let bytes = std::fs::read(&data).unwrap();
    let starts = record_starts(&bytes);
    assert!(starts.len() >= 4, "{}", starts.len());
    let mut damaged = bytes.clone();
    damaged[starts[1] + 8 + 10] ^= 0x40;
    std::fs::write(&data, &damaged).unwrap();
    let a = reopen(dir.path());
    assert_eq!(a.stats().corrupt_records, 1);
    let found: Vec<_> = ts
        .iter()
        .filter(|(id, _)| a.summary(id).is_some())
        .cloned()
        .collect();
    let lost = ts.len() - found.len();
    assert!(lost > 0 && lost < 40, "one block's traces: {lost}");
    // Traces of the blocks after the damage are there, whole.
    assert!(a.summary(&ts[99].0).is_some());
    all_found(&a, &found);
}

/// A sealed segment's block that fails its checksum is not read: its traces' spans are
/// missing, never garbled; the other blocks read as before.
#[test]
fn a_sealed_block_that_fails_its_checksum_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let ts = traces(&mut Gen::new(13), 100, 3);
    let tuning = Tuning {
        block_bytes: 8 << 10,
        ..Tuning::default()
    };
    let a = Archive::open_with(cfg(dir.path(), Traces::All), tuning).unwrap();
    a.record_dropped(ts.clone());
    a.close();
    let data = files_of(dir.path(), "data").remove(0);
    let bytes = std::fs::read(&data).unwrap();
    let starts = record_starts(&bytes);
    let mut damaged = bytes.clone();
    damaged[starts[0] + 8 + (starts[1] - starts[0] - 8) / 2] ^= 0x08;
    std::fs::write(&data, &damaged).unwrap();
    let a = reopen(dir.path());
    let mut unreadable = 0;
    for (id, spans) in &ts {
        assert!(a.summary(id).is_some(), "summaries are in the index");
        match a.spans(id) {
            Some(got) => assert_eq!(bytes_of(&got), bytes_of(spans)),
            None => unreadable += 1,
        }
    }
    assert!(unreadable > 0 && unreadable < 40, "{unreadable}");
}

#[test]
fn a_lost_or_garbled_index_is_rebuilt_from_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let ts = traces(&mut Gen::new(12), 400, 4);
    let a = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    a.record_dropped(ts.clone());
    a.close();
    let idx = files_of(dir.path(), "index");
    assert!(idx.len() >= 3);
    std::fs::remove_file(&idx[0]).unwrap();
    let mut garbled = std::fs::read(&idx[1]).unwrap();
    garbled[20] ^= 0xff;
    std::fs::write(&idx[1], garbled).unwrap();
    // Truncated: its header no longer matches its length.
    let short = std::fs::read(&idx[2]).unwrap();
    std::fs::write(&idx[2], &short[..short.len() - 10]).unwrap();
    let a = reopen(dir.path());
    assert_eq!(a.stats().corrupt_records, 0);
    all_found(&a, &ts);
    // Keys are read again from the spans.
    assert_eq!(
        a.lookup(&a.key("user.id", "user-1"), None, None, 1000)
            .len(),
        100
    );
    assert_eq!(files_of(dir.path(), "index").len(), idx.len());
}

#[test]
fn retention_reads_the_archive_clock_not_the_clients() {
    // Traces stamped a year ago (a client's clock, a replayed capture) written now are
    // kept for the whole retention.
    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(14);
    g.now_ns -= 365 * 24 * 3_600_000_000_000;
    let mut c = cfg(dir.path(), Traces::All);
    c.retention = 72 * HOUR;
    let a = Archive::open_with(c, small()).unwrap();
    let old = traces(&mut g, 300, 3);
    a.record_dropped(old.clone());
    a.flush();
    assert!(a.stats().segments >= 3);
    assert_eq!(a.stats().evicted_retention, 0);
    all_found(&a, &old);
    a.close();
}

#[test]
fn retention_deletes_whole_segments_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(13);
    let t0 = g.now_ns / 1_000_000;
    let now = Arc::new(AtomicU64::new(t0));
    let tuning = Tuning {
        clock: clock(&now),
        ..small()
    };
    let mut c = cfg(dir.path(), Traces::All);
    c.retention = 72 * HOUR;
    let a = Archive::open_with(c, tuning).unwrap();
    let old = traces(&mut g, 300, 3);
    a.record_dropped(old.clone());
    a.flush();
    let segments = a.stats().segments;
    assert!(segments >= 3);
    now.store(t0 + 71 * 3_600_000, Relaxed);
    a.flush();
    assert_eq!(a.stats().segments, segments);
    // Two hours later, new traces; then the old ones pass 72 h.
    g.now_ns += 2 * 3_600_000_000_000;
    let young = traces(&mut g, 20, 3);
    a.record_dropped(young.clone());
    a.flush();
    now.store(t0 + 73 * 3_600_000, Relaxed);
    a.flush();
    let st = a.stats();
    // Whole segments only: old traces sharing the active segment with young ones stay.
    assert!(st.evicted_retention >= 200, "{st:?}");
    let left = old.iter().filter(|(id, _)| a.summary(id).is_some()).count() as u64;
    assert_eq!(left, 300 - st.evicted_retention);
    assert!(old[..200].iter().all(|(id, _)| a.summary(id).is_none()));
    all_found(&a, &young);
    // The active segment goes too once it was last written longer ago than retention
    // (its young traces were written at 71 h).
    now.store(t0 + 142 * 3_600_000, Relaxed);
    a.flush();
    assert!(a.stats().segments > 0, "written 71 h ago: kept");
    now.store(t0 + 144 * 3_600_000, Relaxed);
    a.flush();
    let st = a.stats();
    assert_eq!((st.traces, st.segments, st.bytes), (0, 0, 0), "{st:?}");
    assert!(files_of(dir.path(), "data").is_empty());
    assert_eq!(offline::stats(dir.path()).unwrap().traces, 0);
    // Reloaded bounds apply.
    a.set_bounds(HOUR, 1 << 30);
    a.close();
}

#[test]
fn max_bytes_is_never_exceeded_by_more_than_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), Traces::All);
    c.max_bytes = 200 << 10;
    let seg = 32 << 10;
    let a = Archive::open_with(c, small()).unwrap();
    let mut g = Gen::new(14);
    let mut all = Vec::new();
    for _ in 0..40 {
        let ts = traces(&mut g, 20, 3);
        a.record_dropped(ts.clone());
        all.extend(ts);
        a.flush();
        let st = a.stats();
        assert!(st.bytes <= (200 << 10) + seg + (8 << 10), "{st:?}");
        // Segment files only (not the seed nor the lock).
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
            .map(|e| e.metadata().unwrap().len())
            .sum::<u64>();
        assert_eq!(on_disk, st.bytes);
    }
    let st = a.stats();
    assert!(st.evicted_bytes > 0 && st.evicted_retention == 0, "{st:?}");
    // Oldest first: what is left is a suffix of what was written.
    let kept: Vec<bool> = all.iter().map(|(id, _)| a.summary(id).is_some()).collect();
    let first = kept.iter().position(|k| *k).unwrap();
    assert!(first > 0 && kept[first..].iter().all(|k| *k));
    a.close();
}

#[test]
fn one_daemon_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    let second = Archive::open_with(cfg(dir.path(), Traces::All), small());
    let e = second
        .err()
        .expect("a second archive on the directory is refused");
    let msg = e.to_string();
    assert!(
        msg.contains("is held by another process")
            && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    // Closed (its writer stopped), the directory is free again.
    a.close();
    let b = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    b.close();
}

#[test]
fn no_raw_attribute_value_reaches_the_disk() {
    for hash_key in [Some(b"support secret".to_vec()), None] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), Traces::Dropped);
        c.hash_key = hash_key.clone();
        let a = Archive::open_with(c.clone(), small()).unwrap();
        let mut g = Gen::new(15);
        let users: Vec<String> = (0..40).map(|i| format!("usr_secret_{i:04}")).collect();
        let ks: Vec<_> = users.iter().map(|u| kept(&mut g, u, "errors")).collect();
        a.record_kept(ks.iter().flat_map(|(_, s)| s.clone()).collect());
        a.flush();
        // Half sealed (index file), half in the active segment.
        a.close();
        let a = Archive::open_with(c, small()).unwrap();
        let more: Vec<_> = users.iter().map(|u| kept(&mut g, u, "errors")).collect();
        a.record_kept(more.iter().flat_map(|(_, s)| s.clone()).collect());
        a.flush();
        // The index's digest of a user id, as the daemon's index computes it at ingest
        // (`hash_values`: from the hash key alone; else from the seed the archive hands it).
        let index = crate::support::index::Index::new(&crate::config::IndexCfg {
            attributes: vec!["user.id".into()],
            retention: Duration::from_secs(3600),
            max_traces: 100,
            max_bytes: 1 << 20,
            hash_values: hash_key.is_some(),
            hash_key: Some("support secret".into()),
        });
        if hash_key.is_none() {
            index.set_key_hash(a.key_hash());
        }
        let digest = index.query_key("user.id", "usr_secret_0001").unwrap();
        assert_eq!(a.key("user.id", "usr_secret_0001"), digest);
        let mut digest_on_disk = false;
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            digest_on_disk |= p.extension().is_some_and(|e| e == "index")
                && bytes.windows(16).any(|w| w == digest.0);
            for needle in [&b"usr_secret_"[..], b"sess-of-"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds a raw value",
                    p.display()
                );
            }
        }
        assert!(digest_on_disk, "the sealed index holds the index's digest");
        for u in &users {
            assert_eq!(a.lookup(&a.key("user.id", u), None, None, 10).len(), 2);
            let sess = a.key("session.id", &format!("sess-of-{u}"));
            assert_eq!(a.lookup(&sess, None, None, 10).len(), 2);
        }
        if let Some(k) = hash_key {
            // The digest is the documented one: HMAC-SHA256(key, name ‖ 0 ‖ value)[..16].
            use hmac::{KeyInit, Mac};
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&k).unwrap();
            mac.update(b"user.id\0usr_secret_0001");
            let d = mac.finalize().into_bytes();
            assert_eq!(a.key("user.id", "usr_secret_0001").0, d[..16]);
        }
        a.close();
    }
}

#[test]
fn failing_writes_drop_and_count_and_writing_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let tuning = Tuning {
        faults: Arc::clone(&faults),
        ..small()
    };
    let a = Archive::open_with(cfg(dir.path(), Traces::All), tuning).unwrap();
    let mut g = Gen::new(16);
    let before = traces(&mut g, 10, 2);
    a.record_dropped(before.clone());
    a.flush();
    faults.store(1, Relaxed); // ENOSPC
    let t = Instant::now();
    for _ in 0..5 {
        a.record_dropped(traces(&mut g, 10, 2));
    }
    a.record_kept(kept(&mut g, "x", "errors").1);
    assert!(t.elapsed() < Duration::from_millis(500));
    a.flush();
    faults.store(2, Relaxed); // EIO
    let lost = traces(&mut g, 10, 2);
    a.record_dropped(lost.clone());
    a.flush();
    let st = a.stats();
    assert_eq!(st.dropped_disk_full, 51, "{st:?}");
    assert_eq!(st.dropped_write_error, 10, "{st:?}");
    assert!(st.write_errors >= 2);
    assert!(lost.iter().all(|(id, _)| a.summary(id).is_none()));
    // What was written before is still there; writing resumes.
    all_found(&a, &before);
    faults.store(0, Relaxed);
    let after = traces(&mut g, 10, 2);
    a.record_dropped(after.clone());
    a.flush();
    all_found(&a, &after);
    a.close();
    let a = reopen(dir.path());
    assert_eq!(a.stats().corrupt_records, 0);
    all_found(&a, &before);
    all_found(&a, &after);
}

#[test]
fn a_directory_gone_mid_run_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let tuning = Tuning {
        segment_bytes: Some(1),
        ..Tuning::default()
    };
    let a = Archive::open_with(cfg(&root, Traces::All), tuning).unwrap();
    let mut g = Gen::new(17);
    a.record_dropped(traces(&mut g, 5, 1));
    a.flush();
    std::fs::remove_dir_all(&root).unwrap();
    a.record_dropped(traces(&mut g, 5, 1));
    a.flush();
    assert_eq!(a.stats().dropped_write_error, 5);
    std::fs::create_dir(&root).unwrap();
    let back = traces(&mut g, 5, 1);
    a.record_dropped(back.clone());
    a.flush();
    all_found(&a, &back);
    a.close();
}

/// Blocks are filled on the decider's thread: a bug there turns archiving off and never
/// reaches the caller.
#[test]
fn a_panic_while_filling_turns_archiving_off_not_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let tuning = Tuning {
        faults: Arc::clone(&faults),
        ..small()
    };
    let a = Archive::open_with(cfg(dir.path(), Traces::All), tuning).unwrap();
    let mut g = Gen::new(19);
    let before = traces(&mut g, 5, 2);
    a.record_dropped(before.clone());
    faults.store(3, Relaxed);
    a.record_dropped(traces(&mut g, 5, 2));
    a.record_kept(kept(&mut g, "x", "errors").1);
    faults.store(0, Relaxed);
    let after = traces(&mut g, 5, 2);
    a.record_dropped(after.clone());
    a.flush();
    assert!(after.iter().all(|(id, _)| a.summary(id).is_none()));
    a.close();
}

#[test]
fn a_full_queue_drops_at_once_and_counts_busy() {
    let dir = tempfile::tempdir().unwrap();
    // Each record fills a block of its own.
    let tuning = Tuning {
        queue: 4,
        block_bytes: 1,
        ..Tuning::default()
    };
    let a = Archive::open_with(cfg(dir.path(), Traces::All), tuning).unwrap();
    let mut g = Gen::new(18);
    let ts = traces(&mut g, 20, 2);
    let t = Instant::now();
    {
        let _paused = a.pause();
        for t in &ts {
            a.record_dropped(vec![t.clone()]);
        }
        assert!(t.elapsed() < Duration::from_millis(500));
        // The queue holds 4; the writer may hold one more, waiting for the gate.
        let busy = a.stats().dropped_busy;
        assert!(busy == 15 || busy == 16, "{busy}");
    }
    a.flush();
    let found = ts.iter().filter(|(id, _)| a.summary(id).is_some()).count() as u64;
    assert_eq!(found + a.stats().dropped_busy, 20);
    a.close();
}
