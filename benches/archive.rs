//! The archive at scale (issue 10): an archive of N traces (10 spans each, every tenth
//! user one of 100 000, spans of every trace archived as the daemon does with
//! `traces: all`), then start-up (open) time, lookup latency by `user.id` (p50/p99, limit
//! 100, newest first), the disk read of a rescue (a dropped trace's spans by id) and a
//! rescue to the exporter (a complaint resolved on a buffer over the archive: read, ticket
//! stamped on the root, spans taken from the outbox and encoded as the export request; the
//! decider's tick, 5–25 ms, comes on top).
//! Not criterion: each figure is a distribution over 2 000 queries of one built archive.
//!
//!   ARCHIVE_TRACES=1000000 cargo bench --bench archive
//!
//! Writes to a temporary directory (about 30 B a span: ~290 MB for 1 M traces), removed after.

use std::time::{Duration, Instant};

use casefile::archive::{Archive, ArchiveCfg, Traces, Tuning};
use casefile::buffer::{Buffer, BufferCfg, Resolved};
use casefile::fixture::{self, Gen, Shape};
use casefile::model::{Span, TraceId};
use casefile::support::marks::Mark;
use casefile::wire::encode::encode_request;
use prost::Message;

fn cfg(dir: &std::path::Path) -> ArchiveCfg {
    ArchiveCfg {
        dir: dir.to_owned(),
        retention: Duration::from_secs(72 * 3600),
        max_bytes: 20 << 30,
        traces: Traces::All,
        attributes: vec!["user.id".into(), "session.id".into()],
        hash_key: None,
    }
}

/// 1 000 trace templates of 10 spans, decoded as the daemon decodes a request.
fn templates() -> Vec<Vec<Span>> {
    let mut g = Gen::new(7);
    let traces: Vec<_> = (0..1000).map(|_| g.trace(Shape::default(), 10)).collect();
    let req = fixture::request_for(&traces).encode_to_vec();
    let spans = casefile::wire::decode::decode_request(&req).unwrap().spans;
    let mut by_trace: Vec<Vec<Span>> = vec![Vec::new(); traces.len()];
    for s in spans {
        let i = traces
            .iter()
            .position(|t| t.trace_id == s.trace_id())
            .unwrap();
        by_trace[i].push(s);
    }
    by_trace
}

/// Sets a span's user.id value in place when it has the template's length.
fn with_user(spans: &[Span], id: &TraceId, user: &str, shift: u64) -> Vec<Span> {
    spans
        .iter()
        .map(|s| {
            let mut s = s.clone();
            let mut b = s.bytes.to_vec();
            b[2..18].copy_from_slice(id);
            // The fixture writes user.id = "usr_NNNNNN" (10 bytes): overwrite the value.
            if let Some(at) = b.windows(8).position(|w| w == b"user.id\x12") {
                let v = at + 8 + 3; // AnyValue length, string tag, string length
                if b.len() >= v + 10 {
                    b[v..v + 10].copy_from_slice(user.as_bytes());
                }
            }
            s.bytes = b.into_boxed_slice();
            s.start_unix_nano += shift;
            s.end_unix_nano += shift;
            s
        })
        .collect()
}

/// A buffer whose support hooks hold only the archive (no index, no ring): a complaint
/// finds its trace on disk.
fn rescuing_buffer(a: &Archive) -> Buffer {
    let policies: Vec<casefile::policy::PolicyCfg> = serde_yaml_ng::from_str(
        "- { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }",
    )
    .unwrap();
    let cfg = BufferCfg {
        decision_wait: Duration::from_secs(10),
        decision_wait_after_root_received: None,
        num_traces: 1000,
        max_bytes: 64 << 20,
        sampled_cache_size: 10_000,
        non_sampled_cache_size: 10_000,
        num_shards: 4,
        maximum_trace_size_bytes: None,
    };
    let hooks = casefile::support::Hooks {
        archive: Some(a.clone()),
        ..Default::default()
    };
    Buffer::new(
        cfg,
        casefile::policy::Policies::build(&policies, false).unwrap(),
    )
    .with_hooks(hooks)
}

fn pct(lat: &mut [Duration], p: f64) -> Duration {
    lat.sort();
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
}

fn main() {
    let n: usize = std::env::var("ARCHIVE_TRACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let tuning = || Tuning {
        queue: 1 << 14,
        ..Tuning::default()
    };
    let a = Archive::open_with(cfg(dir.path()), tuning()).unwrap();
    let tpl = templates();
    let users = 100_000;
    let t = Instant::now();
    let mut dropped: Vec<TraceId> = Vec::new();
    let mut batch = Vec::new();
    for i in 0..n {
        let id: TraceId = fastrand::u128(1..).to_be_bytes();
        let user = format!("usr_{:06}", i % users);
        let spans = with_user(&tpl[i % tpl.len()], &id, &user, i as u64 * 100_000);
        if i % 100 == 0 && dropped.len() < 10_000 {
            dropped.push(id);
        }
        batch.push((id, spans));
        if batch.len() == 500 {
            a.record_dropped(std::mem::take(&mut batch));
            // Keep the queue from overflowing: the writer is the bottleneck here.
            if i % 50_000 == 0 {
                a.flush();
            }
        }
    }
    a.record_dropped(batch);
    a.flush();
    let busy = a.stats().dropped_busy;
    a.close();
    let wrote = t.elapsed();
    let st = casefile::archive::offline::stats(dir.path()).unwrap();
    println!(
        "archive of {n} traces ({} spans): {} segments, {:.1} MiB, {:.1} B a span; written in {wrote:.1?} (dropped: {})",
        n * 10,
        st.segments,
        st.bytes as f64 / 1048576.0,
        st.bytes as f64 / (n * 10) as f64,
        busy
    );
    let t = Instant::now();
    let a = Archive::open_with(cfg(dir.path()), tuning()).unwrap();
    println!("start-up (open): {:?}", t.elapsed());
    let mut lat = Vec::new();
    let mut rows = 0;
    for _ in 0..2000 {
        let key = a.key("user.id", &format!("usr_{:06}", fastrand::usize(..users)));
        let t = Instant::now();
        rows += a.lookup(&key, None, None, 100).len();
        lat.push(t.elapsed());
    }
    println!(
        "lookup by user.id ({} traces a user, limit 100): p50 {:?} p99 {:?}",
        rows / 2000,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    let mut lat = Vec::new();
    for _ in 0..2000 {
        let id = dropped[fastrand::usize(..dropped.len())];
        let t = Instant::now();
        let spans = a.spans(&id).expect("archived");
        lat.push(t.elapsed());
        assert_eq!(spans.len(), 10);
    }
    println!(
        "rescue read (a dropped trace's spans by id): p50 {:?} p99 {:?}",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    let buffer = rescuing_buffer(&a);
    let mark = Mark::new("complaint", "cs_bench", None);
    let mut lat = Vec::new();
    // Each trace once: a rescued trace is then in the decision cache as kept.
    for id in dropped.iter().take(2000) {
        let t = Instant::now();
        let outcome = buffer.resolve(id, &mark);
        let out = buffer.take_outbox();
        let request = encode_request(&out.spans);
        lat.push(t.elapsed());
        assert_eq!(outcome, Resolved::Rescued);
        assert_eq!(out.spans.len(), 10);
        assert!(!request.is_empty());
    }
    println!(
        "rescue to the exporter (complaint by id, archive read, export request encoded): p50 {:?} p99 {:?}",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    a.close();
}
