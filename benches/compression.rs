//! Exporter (and receiver) CPU per span for each compression, on the fixture's requests:
//! 500 spans (what the load test sends in one request) and 4096 spans (a full export
//! request at the default `sending_queue.batch`). Prints each codec's compressed size once.
//! `cargo bench --bench compression`; figures in BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use casefile::fixture::{self, Gen};
use casefile::wire::compression::{compress, decompress, Codec};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;

/// `n` spans from the fixture's mixed traces (10 spans each, several services).
fn request(seed: u64, spans: usize) -> Vec<u8> {
    let mut g = Gen::new(seed);
    let traces: Vec<_> = (0..spans / 10)
        .map(|_| {
            let mut t = g.mixed();
            t.spans.truncate(10);
            t
        })
        .collect();
    fixture::request_for(&traces).encode_to_vec()
}

const CODECS: &[(&str, Codec)] = &[
    ("gzip", Codec::Gzip),
    ("zstd", Codec::Zstd),
    ("snappy_framed", Codec::SnappyFramed),
    ("snappy_block", Codec::Snappy),
    ("lz4", Codec::Lz4),
    ("zlib", Codec::Zlib),
];

fn bench(c: &mut Criterion) {
    for spans in [500usize, 4096] {
        let req = request(7, spans);
        for (name, codec) in CODECS {
            let z = compress(*codec, &req).unwrap();
            println!(
                "{spans} spans, {name}: {} -> {} bytes ({:.1}%, {:.1} B/span)",
                req.len(),
                z.len(),
                100.0 * z.len() as f64 / req.len() as f64,
                z.len() as f64 / spans as f64
            );
        }
        let mut g = c.benchmark_group(format!("compress_{spans}_spans"));
        g.throughput(Throughput::Elements(spans as u64));
        for (name, codec) in CODECS {
            g.bench_function(*name, |b| {
                b.iter(|| compress(*codec, black_box(&req)).unwrap())
            });
        }
        g.finish();
        let mut g = c.benchmark_group(format!("decompress_{spans}_spans"));
        g.throughput(Throughput::Elements(spans as u64));
        for (name, codec) in CODECS {
            let z = compress(*codec, &req).unwrap();
            g.bench_function(*name, |b| {
                b.iter(|| decompress(*codec, black_box(&z), 64 << 20).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
