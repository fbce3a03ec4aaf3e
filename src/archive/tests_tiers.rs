//! The archive beside the rescue ring: reads by id see a trace dropped a moment ago, and
//! the ring takes what the archive cannot write.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::tests::{bytes_of, cfg, kept, small, traces};
use super::*;
use crate::fixture::Gen;
use crate::support::rescue::RescueBuffer;

/// A trace dropped a moment ago sits in the block being filled (written when full or after
/// a second): a read by id has the block written first.
#[test]
fn a_trace_dropped_a_moment_ago_is_read_by_id_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open_with(cfg(dir.path(), Traces::All), small()).unwrap();
    let mut g = Gen::new(41);
    let ts = traces(&mut g, 3, 1);
    a.record_dropped(ts.clone());
    let (id, spans) = &ts[1];
    let s = a.summary(id).expect("found before its block was due");
    assert_eq!(s.span_count, 10);
    assert_eq!(
        bytes_of(&a.spans(&ts[2].0).expect("spans")),
        bytes_of(&ts[2].1)
    );
    assert_eq!(bytes_of(&a.spans(id).expect("spans")), bytes_of(spans));
    a.close();
}

/// While the archive writes, dropped traces go to disk only; the dropped traces of blocks
/// it cannot write (disk full, another error, a full queue) go to the ring, whole, and
/// kept traces never do.
#[test]
fn the_ring_takes_the_dropped_traces_the_archive_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(AtomicU8::new(0));
    let tuning = Tuning {
        faults: Arc::clone(&faults),
        ..small()
    };
    let a = Archive::open_with(cfg(dir.path(), Traces::All), tuning).unwrap();
    let ring = Arc::new(RescueBuffer::new(Duration::from_secs(600), 64 << 20));
    a.spill_to(Arc::clone(&ring));
    let mut g = Gen::new(42);
    let written = traces(&mut g, 5, 2);
    a.record_dropped(written.clone());
    a.flush();
    assert_eq!(
        ring.held_traces(),
        0,
        "nothing spilled while the disk works"
    );
    faults.store(1, Relaxed);
    let full = traces(&mut g, 5, 2);
    a.record_dropped(full.clone());
    let (kept_id, kept_spans) = kept(&mut g, "k", "errors");
    a.record_kept(kept_spans);
    a.flush();
    faults.store(2, Relaxed);
    let failed = traces(&mut g, 4, 2);
    a.record_dropped(failed.clone());
    a.flush();
    faults.store(0, Relaxed);
    assert_eq!(a.stats().spilled_to_ring, 9);
    assert!(!ring.contains(&kept_id), "kept traces went out already");
    for (id, spans) in full.iter().chain(&failed) {
        assert!(a.summary(id).is_none());
        let back = ring.take(id).expect("in the ring");
        assert_eq!(bytes_of(&back), bytes_of(spans));
        // Each span with its resource and scope, as received.
        let mut want: Vec<_> = spans.iter().map(|s| s.resource().message.clone()).collect();
        let mut got: Vec<_> = back.iter().map(|s| s.resource().message.clone()).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }
    for (id, _) in &written {
        assert!(!ring.contains(id) && a.summary(id).is_some());
    }
    a.close();
}

/// A full queue drops a block at once: its dropped traces go to the ring.
#[test]
fn a_block_dropped_busy_goes_to_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        queue: 1,
        block_bytes: 1,
        ..small()
    };
    let a = Archive::open_with(cfg(dir.path(), Traces::All), tuning).unwrap();
    let ring = Arc::new(RescueBuffer::new(Duration::from_secs(600), 64 << 20));
    a.spill_to(Arc::clone(&ring));
    let mut g = Gen::new(43);
    let ts = traces(&mut g, 6, 2);
    {
        let _paused = a.pause();
        for t in &ts {
            a.record_dropped(vec![t.clone()]);
        }
    }
    a.flush();
    let busy = a.stats().dropped_busy;
    assert!(busy >= 4, "{busy}");
    assert_eq!(a.stats().spilled_to_ring, busy);
    for (id, spans) in &ts {
        match a.summary(id) {
            Some(_) => assert!(!ring.contains(id)),
            None => assert_eq!(bytes_of(&ring.take(id).expect("spilled")), bytes_of(spans)),
        }
    }
    a.close();
}
