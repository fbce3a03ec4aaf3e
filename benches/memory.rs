//! Heap bytes per buffered span, counted exactly: the buffer holds 1 M spans of the load
//! tool's traces (10 spans, several services, 500 spans a request) under a counting
//! allocator around mimalloc (the daemon's allocator), so the figure is what the data
//! structures ask for; the RSS figure of `scripts/bench-e2e.sh` adds the allocator's
//! size-class rounding and pages. Run: `cargo bench --bench memory`.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use casefile::buffer::{Buffer, BufferCfg};
use casefile::fixture::{self, Gen, Shape};
use casefile::policy::{Policies, PolicyCfg};
use casefile::wire::decode::decode_request;
use prost::Message;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

// SAFETY: every call forwards to mimalloc with the caller's arguments unchanged; the
// counter is the only addition.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Relaxed);
        INNER.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        INNER.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Relaxed);
        LIVE.fetch_sub(l.size(), Relaxed);
        INNER.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// This process's resident bytes, as the memory guard reads them.
fn rss() -> usize {
    casefile::memory::Rss::new(&casefile::memory::Host::system())
        .read()
        .unwrap_or(0) as usize
}

const SPANS: usize = 1_000_000;

fn main() {
    // The requests, built the way casefile-load builds them, before counting starts.
    let mut g = Gen::new(42);
    let requests: Vec<Vec<u8>> = (0..256)
        .map(|_| {
            let mut traces = Vec::new();
            let mut n = 0;
            while n < 500 {
                let t = g.trace(Shape::default(), 10);
                n += t.spans.len();
                traces.push(t);
            }
            fixture::request_for(&traces).encode_to_vec()
        })
        .collect();
    let cfgs: Vec<PolicyCfg> =
        serde_yaml_ng::from_str("[{ name: all, type: always_sample }]").unwrap();
    let cfg = BufferCfg {
        decision_wait: Duration::from_secs(3600),
        decision_wait_after_root_received: None,
        num_traces: 10 * SPANS,
        max_bytes: usize::MAX,
        sampled_cache_size: 0,
        non_sampled_cache_size: 0,
        num_shards: 64,
        maximum_trace_size_bytes: None,
    };
    let buffer = Buffer::new(cfg, Policies::build(&cfgs, false).unwrap());
    let now = tokio::time::Instant::now();
    let (heap0, rss0) = (LIVE.load(Relaxed), rss());
    let (mut spans, mut encoded, mut i) = (0usize, 0usize, 0usize);
    while spans < SPANS {
        // Fresh trace ids per pass so every span is buffered.
        let mut req = requests[i % requests.len()].clone();
        let pass = (i / requests.len()) as u8;
        let d = decode_request(&req).unwrap();
        for s in &d.spans {
            let id = s.trace_id();
            let mut at = 0;
            while let Some(p) = req[at..].windows(16).position(|w| w == id) {
                req[at + p] ^= pass;
                at += p + 16;
            }
        }
        let d = decode_request(&req).unwrap();
        spans += d.spans.len();
        encoded += d.spans.iter().map(|s| s.bytes.len()).sum::<usize>();
        buffer.ingest(d.spans, now);
        i += 1;
    }
    let (heap, rss) = (LIVE.load(Relaxed) - heap0, rss() - rss0);
    let enc = encoded as f64 / spans as f64;
    println!(
        "{spans} spans buffered in {} traces, {enc:.0} B encoded each (target <= 1.2 x + 64 = {:.0} B)",
        buffer.held_traces(),
        1.2 * enc + 64.0
    );
    println!(
        "heap asked for: {:.0} B a span ({:.0} B over the encoded bytes); RSS grew {:.0} B a span",
        heap as f64 / spans as f64,
        (heap - encoded) as f64 / spans as f64,
        rss as f64 / spans as f64
    );
}
