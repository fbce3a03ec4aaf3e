//! Support-layer benchmarks: index memory per indexed trace, lookup latency with 1 M
//! traces indexed (p50/p99 printed, plus criterion's mean), and rescue-buffer insertion.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use casefile::config::IndexCfg;
use casefile::fixture::{self, Gen};
use casefile::support::index::{Decision, Index, Summary};
use casefile::support::rescue::RescueBuffer;
use casefile::wire::decode::decode_request;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;

const TRACES: usize = 1_000_000;
const USERS: usize = 100_000;

/// This process's resident bytes, as the memory guard reads them.
fn rss_bytes() -> usize {
    casefile::memory::Rss::new(&casefile::memory::Host::system())
        .read()
        .unwrap_or(0) as usize
}

/// An index of 1 M traces from 100 k users (10 traces each), every trace decided.
fn build_index() -> (Index, Vec<String>) {
    let cfg = IndexCfg {
        attributes: vec!["user.id".into(), "enduser.id".into(), "session.id".into()],
        retention: Duration::from_secs(86_400),
        max_traces: TRACES,
        max_bytes: 1 << 30,
        hash_values: false,
        hash_key: None,
    };
    let ix = Index::new(&cfg);
    let users: Vec<String> = (0..USERS).map(|i| format!("usr_{i:07}")).collect();
    // One realistic decoded trace as the template for summaries.
    let mut g = Gen::new(1);
    let t = g.trace(fixture::Shape::default(), 10);
    let spans = decode_request(&fixture::request_for(&[t]).encode_to_vec())
        .unwrap()
        .spans;
    let before = rss_bytes();
    for chunk in 0..(TRACES / 1000) {
        let mut pairs = casefile::support::index::Found::default();
        let mut summaries = Vec::with_capacity(1000);
        for j in 0..1000 {
            let n = chunk * 1000 + j;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(n as u64 + 1).to_le_bytes());
            id[8..].copy_from_slice(&(n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            pairs.push(id, ix.query_key("user.id", &users[n % USERS]).unwrap());
            summaries.push(Summary::of(
                id,
                &spans,
                Decision::Dropped,
                vec![Arc::from("baseline")],
            ));
        }
        ix.add_at(pairs, 1_000 + chunk as u64);
        ix.decided(summaries);
    }
    let after = rss_bytes();
    println!(
        "index: {} traces from {} users; RSS grew {:.0} bytes per indexed trace (summary, keys, maps); the index counts {:.0} (what max_bytes bounds)",
        ix.len(),
        USERS,
        (after - before) as f64 / TRACES as f64,
        ix.bytes() as f64 / TRACES as f64
    );
    (ix, users)
}

fn bench(c: &mut Criterion) {
    let (ix, users) = build_index();
    // Latency distribution of single lookups (a user with 10 traces), as the API does them.
    let mut lat = Vec::with_capacity(20_000);
    for i in 0..20_000 {
        let user = &users[(i * 7919) % USERS];
        let t0 = Instant::now();
        let key = ix.query_key("user.id", user).unwrap();
        black_box(ix.lookup(&key));
        lat.push(t0.elapsed());
    }
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "lookup of one user among 1 M traces: p50 {:?}, p99 {:?}, max {:?}",
        q(0.5),
        q(0.99),
        lat[lat.len() - 1]
    );

    let mut g = c.benchmark_group("index");
    g.bench_function("lookup_user_10_traces_in_1M", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            let key = ix.query_key("user.id", &users[(i * 7919) % USERS]).unwrap();
            black_box(ix.lookup(&key))
        })
    });
    // Keys of one realistic request (50 traces of 10 spans), as ingest computes them.
    let mut gen = Gen::new(2);
    let traces: Vec<_> = (0..50)
        .map(|_| gen.trace(fixture::Shape::default(), 10))
        .collect();
    let req = decode_request(&fixture::request_for(&traces).encode_to_vec())
        .unwrap()
        .spans;
    g.throughput(Throughput::Elements(req.len() as u64));
    g.bench_function("keys_of_500_spans", |b| {
        b.iter(|| black_box(ix.keys_of(black_box(&req))))
    });
    g.finish();

    let mut g = c.benchmark_group("rescue");
    g.throughput(Throughput::Elements(req.len() as u64));
    let mut by_trace: std::collections::HashMap<_, Vec<_>> = std::collections::HashMap::new();
    for s in &req {
        by_trace.entry(s.trace_id()).or_default().push(s.clone());
    }
    let rescue = RescueBuffer::new(Duration::from_secs(600), 64 << 20);
    g.bench_function("insert_500_spans", |b| {
        b.iter(|| {
            rescue.insert_many(
                by_trace.iter().map(|(id, s)| (*id, s.as_slice())),
                tokio::time::Instant::now(),
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
