//! Figures, not checks (`cargo test --lib archive::tests_bench -- --ignored --nocapture`):
//! disk bytes per span by zstd level, start-up time, lookup latency.

use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message;

use super::tests::{cfg, decoded};
use super::*;
use crate::fixture::{Gen, Shape};
use crate::model::Span;
use crate::support::index::Summary;

fn disk(dir: &Path) -> (u64, u64) {
    let (mut data, mut index) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let n = std::fs::metadata(&p).unwrap().len();
        match p.extension().and_then(|e| e.to_str()) {
            Some("data") => data += n,
            Some("index") => index += n,
            _ => {}
        }
    }
    (data, index)
}

/// The load tool's traffic: its shape mix, 10 spans a trace, decoded 100 traces a request
/// (so a request's traces share their resource and scope blocks, as in the daemon).
fn load_traces(n: usize) -> Vec<(TraceId, Vec<Span>)> {
    let mut g = Gen::new(42);
    let all: Vec<_> = (0..n)
        .map(|_| {
            let m = g.mixed();
            let shape = Shape {
                error: m
                    .spans
                    .iter()
                    .any(|(_, s)| s.status.as_ref().is_some_and(|st| st.code == 2)),
                slow: m.spans[0].1.end_time_unix_nano - m.spans[0].1.start_time_unix_nano
                    >= 500_000_000,
                premium: false,
            };
            g.trace(shape, 10)
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for chunk in all.chunks(100) {
        let req = crate::fixture::request_for(chunk).encode_to_vec();
        let spans = crate::wire::decode::decode_request(&req).unwrap().spans;
        out.extend(super::batch::group(spans));
    }
    out
}

/// CPU time of the archive writer threads alive (Linux `schedstat`, ns; exact at each
/// switch and tick): the figures are taken on shared cores, where wall time is not theirs.
fn writer_cpu_ns() -> u64 {
    let mut ns = 0;
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let p = t.unwrap().path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.starts_with("casefile-archiv") {
            let st = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
            ns += st
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns
}

/// The best of five runs of `f`, in ns per span.
fn best(spans: usize, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / spans as f64
        })
        .fold(f64::MAX, f64::min)
}

#[test]
#[ignore]
fn bytes_per_span_by_level() {
    let ts = load_traces(30_000);
    let spans: usize = ts.iter().map(|(_, s)| s.len()).sum();
    let raw: usize = ts
        .iter()
        .flat_map(|(_, s)| s.iter().map(|s| s.bytes.len()))
        .sum();
    println!(
        "{} traces, {spans} spans, {:.0} B/span as span bytes",
        ts.len(),
        raw as f64 / spans as f64
    );
    let runs: Vec<(i32, usize)> = match std::env::var("ARCHIVE_BENCH_LEVELS") {
        Ok(v) => v
            .split(',')
            .map(|r| {
                let (l, b) = r.split_once(':').unwrap_or((r, "1024"));
                (l.parse().unwrap(), b.parse::<usize>().unwrap() << 10)
            })
            .collect(),
        Err(_) => vec![
            (-1, 1 << 20),
            (1, 1 << 20),
            (3, 1 << 20),
            (6, 1 << 20),
            (9, 1 << 20),
            (3, 4 << 20),
        ],
    };
    for (level, block_bytes) in runs {
        let dir = tempfile::tempdir().unwrap();
        let tuning = Tuning {
            level,
            block_bytes,
            segment_bytes: Some(64 << 20),
            ..Tuning::default()
        };
        let a = Archive::open_with(cfg(dir.path(), Traces::All), tuning).unwrap();
        let t = Instant::now();
        for c in ts.chunks(200) {
            a.record_dropped(c.to_vec());
        }
        a.flush();
        a.close();
        let took = t.elapsed();
        let (data, index) = disk(dir.path());
        println!(
            "level {level:2}, blocks of {} KiB: {:.1} B/span ({:.1} data + {:.1} index), writer {:.2} µs/span",
            block_bytes >> 10,
            (data + index) as f64 / spans as f64,
            data as f64 / spans as f64,
            index as f64 / spans as f64,
            took.as_secs_f64() * 1e6 / spans as f64
        );
    }
}

/// ~1 M traces (summaries and keys; 10 traces per user), then start-up and lookups.
#[test]
#[ignore]
fn startup_and_lookup_latency() {
    let n: usize = std::env::var("ARCHIVE_BENCH_TRACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let users = n / 10;
    let dir = tempfile::tempdir().unwrap();
    let tuning = || Tuning {
        segment_bytes: Some(512 << 10),
        queue: 1 << 16,
        ..Tuning::default()
    };
    let a = Archive::open_with(cfg(dir.path(), Traces::Dropped), tuning()).unwrap();
    let mut g = Gen::new(7);
    let templates: Vec<Vec<Span>> = (0..users.min(100_000))
        .map(|i| {
            let mut t = g.trace(Shape::default(), 10);
            t.set_user(&format!("user-{i}"));
            decoded(&t)
        })
        .collect();
    let t = Instant::now();
    let mut batch = Vec::new();
    for i in 0..n {
        let mut spans = templates[i % templates.len()].clone();
        let mut id = [0u8; 16];
        id.copy_from_slice(&(fastrand::u128(..)).to_be_bytes());
        for s in &mut spans {
            s.bytes[2..18].copy_from_slice(&id);
            s.start_unix_nano += i as u64 * 1_000_000;
        }
        batch.extend(spans);
        if batch.len() >= 2000 {
            a.record_kept(std::mem::take(&mut batch));
        }
        if i % 50_000 == 0 {
            a.flush();
        }
    }
    a.record_kept(batch);
    a.close();
    let (data, index) = disk(dir.path());
    println!(
        "wrote {n} traces in {:?}: {} MiB data, {} MiB index",
        t.elapsed(),
        data >> 20,
        index >> 20
    );
    let t = Instant::now();
    let a = Archive::open_with(cfg(dir.path(), Traces::Dropped), tuning()).unwrap();
    let open = t.elapsed();
    let st = a.stats();
    println!(
        "open: {open:?} for {} segments, {} traces, {} MiB",
        st.segments,
        st.traces,
        st.bytes >> 20
    );
    let mut lat = Vec::new();
    for i in 0..2000 {
        let key = a.key(
            "user.id",
            &format!("user-{}", fastrand::usize(..templates.len())),
        );
        let t = Instant::now();
        let found = a.lookup(&key, None, None, 100);
        lat.push(t.elapsed());
        if i == 0 {
            println!("a user has {} traces", found.len());
        }
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "lookup by user.id (limit 100): p50 {:?} p99 {:?} max {:?}",
        pct(0.5),
        pct(0.99),
        lat.last().unwrap()
    );
    let mut lat: Vec<Duration> = Vec::new();
    for _ in 0..2000 {
        let id: TraceId = fastrand::u128(..).to_be_bytes();
        let t = Instant::now();
        let _ = a.summary(&id);
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "summary by id (miss): p50 {:?} p99 {:?}",
        lat[1000], lat[1980]
    );
    a.close();
}

/// Where the writer's time goes, per span (best of three).
#[test]
#[ignore]
fn writer_cost_by_step() {
    let ts = load_traces(30_000);
    let spans: usize = ts.iter().map(|(_, s)| s.len()).sum();
    let summary = best(spans, || {
        for (id, s) in &ts {
            std::hint::black_box(Summary::of(
                *id,
                s,
                crate::support::index::Decision::Dropped,
                Vec::new(),
            ));
        }
    });
    println!("summary: {summary:.0} ns/span");
    let hasher = keys::Hasher::Seeded(7);
    let attrs = vec!["user.id".to_owned(), "session.id".to_owned()];
    let k = best(spans, || {
        let mut resources = Default::default();
        for (_, s) in &ts {
            std::hint::black_box(hasher.keys_of(&attrs, s, &mut resources));
        }
    });
    println!("keys: {k:.0} ns/span");
    let mut blocks = Vec::new();
    let p = best(spans, || {
        let mut dict = pack::Dict::default();
        let mut buf = Vec::new();
        blocks.clear();
        for (id, s) in &ts {
            let base = s.iter().map(|s| s.start_unix_nano).min().unwrap();
            pack::pack(id, base, s, &mut dict, &mut buf);
            if buf.len() >= 1 << 20 {
                blocks.push(dict.block(&buf));
                buf.clear();
            }
        }
    });
    println!("pack: {p:.0} ns/span");
    for level in [1, 3] {
        let mut c = zstd::bulk::Compressor::new(level).unwrap();
        let mut out = 0;
        let z = best(spans, || {
            out = blocks
                .iter()
                .map(|b| c.compress(b).unwrap().len())
                .sum::<usize>();
        });
        println!("zstd {level}: {z:.0} ns/span, {out} bytes");
    }
    // ARCHIVE_BENCH_ZSTD="level:min_match:hash_log:window_log;..." (0: the level's own).
    if let Ok(v) = std::env::var("ARCHIVE_BENCH_ZSTD") {
        use zstd::zstd_safe::CParameter as P;
        for run in v.split(';') {
            let n: Vec<i64> = run.split(':').map(|x| x.parse().unwrap()).collect();
            let mut c = zstd::bulk::Compressor::new(n[0] as i32).unwrap();
            if n[1] > 0 {
                c.set_parameter(P::MinMatch(n[1] as u32)).unwrap();
            }
            if n[2] > 0 {
                c.set_parameter(P::HashLog(n[2] as u32)).unwrap();
            }
            if n[3] > 0 {
                c.set_parameter(P::WindowLog(n[3] as u32)).unwrap();
            }
            if let Some(&t) = n.get(4) {
                c.set_parameter(P::TargetLength(t as u32)).unwrap();
            }
            let mut out = 0;
            let z = best(spans, || {
                out = blocks
                    .iter()
                    .map(|b| c.compress(b).unwrap().len())
                    .sum::<usize>();
            });
            println!(
                "zstd {run}: {z:.0} ns/span, {:.2} B/span",
                out as f64 / spans as f64
            );
        }
    }
    let c = best(spans, || {
        for (_, s) in &ts {
            std::hint::black_box(s.clone());
        }
    });
    println!("clone (the caller's copy): {c:.0} ns/span");
    // The whole writer thread (its CPU time): batches handed in (copied beforehand), then
    // flushed.
    let whole = (0..5)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let tuning = Tuning {
                segment_bytes: Some(64 << 20),
                queue: 1 << 12,
                ..Tuning::default()
            };
            let a = Archive::open_with(cfg(dir.path(), Traces::All), tuning).unwrap();
            let batches: Vec<Vec<(TraceId, Vec<Span>)>> =
                ts.chunks(200).map(|c| c.to_vec()).collect();
            std::thread::sleep(Duration::from_millis(20));
            let t = writer_cpu_ns();
            for b in batches {
                a.record_dropped(b);
            }
            a.flush();
            let took = (writer_cpu_ns() - t) as f64 / spans as f64;
            a.close();
            took
        })
        .fold(f64::MAX, f64::min);
    println!("whole writer (its CPU, record_dropped to flushed): {whole:.0} ns/span");
}
