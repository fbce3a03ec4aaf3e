//! Criterion benchmarks of the hot path: decode, policy evaluation, buffer insert and
//! decide, encode. Inputs are the fixture's realistic traces (10 spans, several services).

use std::hint::black_box;
use std::time::Duration;

use casefile::buffer::{Buffer, BufferCfg};
use casefile::fixture::{self, Gen};
use casefile::policy::{Policies, PolicyCfg};
use casefile::wire::decode::decode_request;
use casefile::wire::encode::encode_request;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;

const EXAMPLE_POLICIES: &str = r#"
- { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
- { name: slow, type: latency, latency: { threshold_ms: 500 } }
- { name: premium, type: string_attribute, string_attribute: { key: user.tier, values: [premium, vip] } }
- { name: baseline, type: probabilistic, probabilistic: { sampling_percentage: 5 } }
"#;

/// Three typed policies, and below the same logic as three `ottl_condition` policies (the
/// attribute policies look at the resource too, so the OTTL forms do).
const TYPED_THREE: &str = r#"
- { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
- { name: premium, type: string_attribute, string_attribute: { key: user.tier, values: [premium, vip] } }
- { name: server-errors, type: numeric_attribute, numeric_attribute: { key: http.status_code, min_value: 500, max_value: 599 } }
"#;

const OTTL_THREE: &str = r#"
- name: errors
  type: ottl_condition
  ottl_condition:
    span: ['status.code == STATUS_CODE_ERROR']
- name: premium
  type: ottl_condition
  ottl_condition:
    span:
      - 'attributes["user.tier"] == "premium" or attributes["user.tier"] == "vip"'
      - 'resource.attributes["user.tier"] == "premium" or resource.attributes["user.tier"] == "vip"'
- name: server-errors
  type: ottl_condition
  ottl_condition:
    span:
      - 'attributes["http.status_code"] >= 500 and attributes["http.status_code"] <= 599'
      - 'resource.attributes["http.status_code"] >= 500 and resource.attributes["http.status_code"] <= 599'
"#;

fn policies() -> Policies {
    build(EXAMPLE_POLICIES)
}

fn build(yaml: &str) -> Policies {
    let cfgs: Vec<PolicyCfg> = serde_yaml_ng::from_str(yaml).unwrap();
    Policies::build(&cfgs, false).unwrap()
}

/// 50 traces of 10 spans: 500 spans, as the load test sends them.
fn request(seed: u64) -> Vec<u8> {
    let mut g = Gen::new(seed);
    let traces: Vec<_> = (0..50)
        .map(|_| {
            let mut t = g.mixed();
            t.spans.truncate(10);
            t
        })
        .collect();
    fixture::request_for(&traces).encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let req = request(1);
    let spans = decode_request(&req).unwrap().spans;
    let n = spans.len() as u64;

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(n));
    g.bench_function("fast_path_500_spans", |b| {
        b.iter(|| decode_request(black_box(&req)).unwrap())
    });
    g.bench_function("prost_full_500_spans", |b| {
        b.iter(|| {
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                black_box(&req[..]),
            )
            .unwrap()
        })
    });
    g.finish();

    let p = policies();
    let mut by_trace: std::collections::HashMap<_, Vec<_>> = std::collections::HashMap::new();
    for s in &spans {
        by_trace.entry(s.trace_id()).or_default().push(s.clone());
    }
    let traces: Vec<_> = by_trace.into_iter().collect();
    let now = tokio::time::Instant::now();
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(traces.len() as u64));
    g.bench_function("evaluate_example_policies_50_traces", |b| {
        b.iter(|| {
            for (id, s) in &traces {
                black_box(p.evaluate(id, s, now));
            }
        })
    });
    // The same decisions, typed or in OTTL: the OTTL cost over the typed one is the ratio.
    let (typed, ottl) = (build(TYPED_THREE), build(OTTL_THREE));
    for (id, s) in &traces {
        assert_eq!(typed.evaluate(id, s, now), ottl.evaluate(id, s, now));
    }
    for (name, p) in [("typed", &typed), ("ottl", &ottl)] {
        g.bench_function(format!("evaluate_three_{name}_policies_50_traces"), |b| {
            b.iter(|| {
                for (id, s) in &traces {
                    black_box(p.evaluate(id, s, now));
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("buffer");
    g.throughput(Throughput::Elements(n));
    g.bench_function("ingest_and_decide_500_spans", |b| {
        let cfg = BufferCfg {
            decision_wait: Duration::ZERO,
            decision_wait_after_root_received: None,
            num_traces: 100_000,
            max_bytes: 1 << 30,
            // No decision cache: the 64 requests repeat, and each pass must be new traces.
            sampled_cache_size: 0,
            non_sampled_cache_size: 0,
            num_shards: 16,
            maximum_trace_size_bytes: None,
        };
        let buf = Buffer::new(cfg, policies());
        let mut seed = 0;
        let reqs: Vec<_> = (0..64)
            .map(|_| {
                seed += 1;
                decode_request(&request(seed)).unwrap().spans
            })
            .collect();
        let mut i = 0;
        b.iter(|| {
            let now = tokio::time::Instant::now();
            buf.ingest(reqs[i % reqs.len()].clone(), now);
            buf.decide_due(now);
            black_box(buf.take_outbox());
            i += 1;
        })
    });
    g.bench_function("encode_500_spans", |b| {
        b.iter(|| encode_request(black_box(&spans)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
