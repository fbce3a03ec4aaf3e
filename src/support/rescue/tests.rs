//! Rescue buffer behaviour: round trips, eviction by bytes and by time, compression.

use std::time::Duration;

use prost::Message;
use tokio::time::{advance, Instant};

use super::*;
use crate::fixture::{self, Gen, Shape};
use crate::model::Span;

const MIN: Duration = Duration::from_secs(60);

fn spans(t: &fixture::Trace) -> Vec<Span> {
    decode_request(&fixture::request_for(std::slice::from_ref(t)).encode_to_vec())
        .unwrap()
        .spans
}

/// `n` realistic traces (5–20 spans, the fixture's mix), decoded as the receiver would.
fn traces(seed: u64, n: usize) -> Vec<(TraceId, Vec<Span>)> {
    let mut g = Gen::new(seed);
    (0..n)
        .map(|_| {
            let t = g.mixed();
            (t.trace_id, spans(&t))
        })
        .collect()
}

/// What must survive a rescue, sorted (grouping by resource may reorder spans).
fn key(spans: &[Span]) -> Vec<String> {
    let mut v: Vec<String> = spans
        .iter()
        .map(|s| {
            format!(
                "{:?}",
                (
                    s.trace_id(),
                    s.start_unix_nano,
                    s.end_unix_nano,
                    s.flags,
                    s.status,
                    s.root,
                    &s.bytes,
                    &s.resource().message,
                    &s.resource().schema_url,
                    &s.scope().message,
                    &s.scope().schema_url,
                )
            )
        })
        .collect();
    v.sort();
    v
}

fn assert_same(got: &[Span], want: &[Span]) {
    assert_eq!(got.len(), want.len());
    assert_eq!(key(got), key(want));
}

#[test]
fn round_trip_from_staging() {
    let r = RescueBuffer::new(10 * MIN, 64 << 20);
    let ts = traces(1, 3);
    let now = Instant::now();
    for (id, s) in &ts {
        r.insert(*id, s, now);
    }
    assert_eq!(r.stats().sealed_blocks, 0, "still in the staging block");
    assert_eq!(r.held_traces(), 3);
    for (id, s) in &ts {
        assert!(r.contains(id));
        let got = r.take(id).expect("held");
        assert_same(&got, s);
        assert!(!r.contains(id));
    }
    assert_eq!(r.held_traces(), 0);
    assert_eq!(r.stats().rescued, 3);
}

#[test]
fn round_trip_from_a_sealed_block() {
    let r = RescueBuffer::with_block_size(10 * MIN, 64 << 20, 2048);
    let ts = traces(2, 40);
    let now = Instant::now();
    r.insert_many(ts.iter().map(|(id, s)| (*id, s.as_slice())), now);
    let st = r.stats();
    assert!(st.sealed_blocks >= 5, "{st:?}");
    assert_eq!(st.held_traces, 40);
    // Out of order, so the decompressed-block cache is both hit and missed.
    for i in (0..40).rev().step_by(3).chain((0..40).step_by(2)) {
        let (id, s) = &ts[i];
        match r.take(id) {
            Some(got) => assert_same(&got, s),
            None => assert_eq!(i % 3, 0, "only the already taken are missing"),
        }
    }
}

#[test]
fn a_trace_is_rescued_once() {
    let r = RescueBuffer::with_block_size(10 * MIN, 64 << 20, 1024);
    let ts = traces(3, 10);
    let now = Instant::now();
    r.insert_many(ts.iter().map(|(id, s)| (*id, s.as_slice())), now);
    let (id, spans) = &ts[0];
    // A peek reads the trace and leaves it held.
    assert_same(&r.peek(id).unwrap(), spans);
    assert!(r.contains(id));
    assert_eq!(r.stats().rescued, 0);
    assert!(r.take(id).is_some());
    assert!(r.take(id).is_none());
    assert!(r.peek(id).is_none());
    assert!(!r.contains(id));
    assert!(r.take(&[7; 16]).is_none(), "never inserted");
    assert_eq!(r.stats().rescued, 1);
    assert_eq!(r.held_traces(), 9);
}

#[test]
fn late_spans_of_a_held_trace_join_it() {
    let r = RescueBuffer::with_block_size(10 * MIN, 64 << 20, 1024);
    let ts = traces(4, 12);
    let (id, s) = &ts[0];
    let (first, late) = s.split_at(s.len() / 2);
    let t0 = Instant::now();
    r.insert(*id, first, t0);
    // Enough others in between that the two chunks land in different blocks.
    r.insert_many(ts[1..].iter().map(|(id, s)| (*id, s.as_slice())), t0);
    r.insert(*id, late, t0);
    assert_eq!(r.held_traces(), 12);
    assert_same(&r.take(id).unwrap(), s);
    assert_eq!(r.held_traces(), 11);
}

#[test]
fn the_byte_bound_evicts_oldest_first() {
    let max = 64 << 10;
    let r = RescueBuffer::with_block_size(10 * MIN, max, 4096);
    let ts = traces(5, 2000);
    let now = Instant::now();
    for chunk in ts.chunks(50) {
        r.insert_many(chunk.iter().map(|(id, s)| (*id, s.as_slice())), now);
        assert!(r.held_bytes() <= max, "{} > {max}", r.held_bytes());
    }
    let st = r.stats();
    assert!(st.evicted_bytes > 0, "{st:?}");
    assert_eq!(st.evicted_window, 0);
    assert_eq!(st.evicted() as usize + st.held_traces, ts.len());
    // Held are exactly the newest traces.
    let held: Vec<bool> = ts.iter().map(|(id, _)| r.contains(id)).collect();
    let first_held = held.iter().position(|h| *h).unwrap();
    assert!(held[first_held..].iter().all(|h| *h));
    assert_eq!(ts.len() - first_held, st.held_traces);
    assert_same(&r.take(&ts[1999].0).unwrap(), &ts[1999].1);
    assert!(r.take(&ts[0].0).is_none());
}

#[tokio::test(start_paused = true)]
async fn the_window_evicts_with_time() {
    let r = RescueBuffer::with_block_size(Duration::from_secs(30), 64 << 20, 4096);
    let ts = traces(6, 200);
    let (old, new) = ts.split_at(100);
    r.insert_many(
        old.iter().map(|(id, s)| (*id, s.as_slice())),
        Instant::now(),
    );
    advance(Duration::from_secs(20)).await;
    r.insert_many(
        new.iter().map(|(id, s)| (*id, s.as_slice())),
        Instant::now(),
    );
    assert_eq!(r.expire(Instant::now()), 0);
    assert_eq!(r.held_traces(), 200);

    advance(Duration::from_secs(11)).await;
    assert_eq!(r.expire(Instant::now()), 100);
    assert!(old.iter().all(|(id, _)| !r.contains(id)));
    assert!(new.iter().all(|(id, _)| r.contains(id)));
    let st = r.stats();
    assert_eq!((st.evicted_window, st.evicted_bytes), (100, 0));

    advance(Duration::from_secs(20)).await;
    assert_eq!(r.expire(Instant::now()), 100);
    let st = r.stats();
    assert_eq!((st.held_traces, st.sealed_blocks, st.held_bytes), (0, 0, 0));
}

#[test]
fn an_old_staging_block_is_sealed_and_still_found() {
    let r = RescueBuffer::new(10 * MIN, 64 << 20);
    let ts = traces(7, 5);
    let t0 = Instant::now();
    r.insert_many(ts.iter().map(|(id, s)| (*id, s.as_slice())), t0);
    assert_eq!(r.stats().sealed_blocks, 0);
    r.expire(t0 + Duration::from_millis(500));
    assert_eq!(r.stats().sealed_blocks, 0);
    r.expire(t0 + Duration::from_secs(2));
    assert_eq!(r.stats().sealed_blocks, 1);
    for (id, s) in &ts {
        assert_same(&r.take(id).unwrap(), s);
    }
    // A window younger than the seal age still seals before it evicts.
    let r = RescueBuffer::new(Duration::from_millis(100), 64 << 20);
    r.insert(ts[0].0, &ts[0].1, t0);
    assert_eq!(r.expire(t0 + Duration::from_millis(50)), 0);
    assert!(r.contains(&ts[0].0));
    assert_eq!(r.expire(t0 + Duration::from_millis(150)), 1);
    assert_eq!(r.held_bytes(), 0);
}

#[test]
fn many_traces_across_many_blocks() {
    let r = RescueBuffer::with_block_size(10 * MIN, 256 << 20, 16 << 10);
    let ts = traces(8, 5000);
    let t0 = Instant::now();
    for (i, chunk) in ts.chunks(100).enumerate() {
        r.insert_many(
            chunk.iter().map(|(id, s)| (*id, s.as_slice())),
            t0 + Duration::from_millis(100 * i as u64),
        );
    }
    r.expire(t0 + Duration::from_secs(10));
    let st = r.stats();
    assert!(st.sealed_blocks > 50, "{st:?}");
    assert_eq!(st.held_traces, 5000);
    assert_eq!(st.evicted(), 0);
    for (i, (id, s)) in ts.iter().enumerate() {
        if i % 7 == 0 {
            assert_same(&r.take(id).unwrap(), s);
        }
    }
    assert!(ts
        .iter()
        .enumerate()
        .all(|(i, (id, _))| r.contains(id) == (i % 7 != 0)));
}

#[test]
fn compression_shrinks_realistic_traces() {
    let r = RescueBuffer::new(10 * MIN, 256 << 20);
    let ts = traces(9, 3000);
    let raw: usize = ts.iter().map(|(_, s)| encode_request(s).len()).sum();
    let t0 = Instant::now();
    r.insert_many(ts.iter().map(|(id, s)| (*id, s.as_slice())), t0);
    r.expire(t0 + Duration::from_secs(2));
    let st = r.stats();
    assert_eq!(st.held_traces, 3000);
    assert!(st.sealed_blocks > 10, "{st:?}");
    // Records without repeated resources are smaller than requests, then compressed.
    assert!(st.sealed_raw_bytes < raw);
    let ratio = raw as f64 / st.held_bytes as f64;
    eprintln!(
        "requests {raw} B, records {} B, compressed {} B, held {} B with dictionaries and bookkeeping (ratio {ratio:.2})",
        st.sealed_raw_bytes, st.sealed_compressed_bytes, st.held_bytes
    );
    assert!(ratio > 4.0, "ratio {ratio:.2}");
    for (id, s) in ts.iter().step_by(97) {
        assert_same(&r.take(id).unwrap(), s);
    }
}

#[test]
fn a_disabled_buffer_holds_nothing() {
    let ts = traces(10, 5);
    let now = Instant::now();
    for r in [
        RescueBuffer::new(Duration::ZERO, 64 << 20),
        RescueBuffer::new(10 * MIN, 0),
    ] {
        assert!(!r.is_enabled());
        r.insert_many(ts.iter().map(|(id, s)| (*id, s.as_slice())), now);
        r.insert(ts[0].0, &ts[0].1, now);
        assert_eq!((r.held_bytes(), r.held_traces()), (0, 0));
        assert!(!r.contains(&ts[0].0));
        assert!(r.take(&ts[0].0).is_none());
        assert_eq!(r.expire(now + MIN), 0);
    }
}

#[test]
fn a_trace_larger_than_half_the_bound_is_not_kept() {
    let r = RescueBuffer::with_block_size(10 * MIN, 4096, 1024);
    let mut g = Gen::new(11);
    let t = g.trace(Shape::default(), 40);
    let s = spans(&t);
    r.insert(t.trace_id, &s, Instant::now());
    assert_eq!((r.held_traces(), r.held_bytes()), (0, 0));
    assert_eq!(r.stats().evicted_bytes, 1);
}

#[test]
fn inserts_from_threads() {
    let r = std::sync::Arc::new(RescueBuffer::with_block_size(10 * MIN, 256 << 20, 8192));
    let ts = std::sync::Arc::new(traces(12, 800));
    let now = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let (r, ts) = (r.clone(), ts.clone());
            std::thread::spawn(move || {
                for chunk in ts[k * 200..(k + 1) * 200].chunks(10) {
                    r.insert_many(chunk.iter().map(|(id, s)| (*id, s.as_slice())), now);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(r.held_traces(), 800);
    for (id, s) in ts.iter().step_by(13) {
        assert_same(&r.take(id).unwrap(), s);
    }
}

#[test]
fn new_limits_apply_at_the_next_expiry_and_zero_values_are_ignored() {
    let r = RescueBuffer::with_block_size(10 * MIN, 256 << 20, 4096);
    let now = Instant::now();
    for (id, s) in traces(13, 50) {
        r.insert(id, &s, now);
    }
    assert_eq!(r.held_traces(), 50);
    r.set_limits(Duration::ZERO, 0);
    assert_eq!(r.window(), 10 * MIN, "zero values do not turn it off");
    r.set_limits(MIN, 256 << 20);
    assert_eq!(r.window(), MIN);
    r.expire(now + 2 * MIN);
    assert_eq!(r.held_traces(), 0, "the shorter window evicted them");
}
