//! Behaviour of the non-attribute basic policies, and the test helpers: spans built as OTLP protobuf and decoded by the ingest path, as in production.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    status, ResourceSpans, ScopeSpans, Span as ProtoSpan, Status,
};
use prost::Message;
use tokio::time::Instant;

use super::*;
use crate::wire::decode::decode_request;

pub const ID: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const T0: u64 = 1_767_225_600_000_000_000;

pub fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(value)),
        }),
        ..Default::default()
    }
}

pub fn kv_double(key: &str, value: f64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::DoubleValue(value)),
        }),
        ..Default::default()
    }
}

/// A span of trace [`ID`] lasting `[start_ms, end_ms]` after a fixed instant, status unset.
pub fn span(start_ms: u64, end_ms: u64) -> ProtoSpan {
    ProtoSpan {
        trace_id: ID.to_vec(),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
        name: "op".into(),
        start_time_unix_nano: T0 + start_ms * 1_000_000,
        end_time_unix_nano: T0 + end_ms * 1_000_000,
        ..Default::default()
    }
}

/// Builder-style tweaks of a proto span.
pub trait SpanExt {
    fn attrs(self, attrs: Vec<KeyValue>) -> Self;
    fn status(self, code: status::StatusCode) -> Self;
}

impl SpanExt for ProtoSpan {
    fn attrs(mut self, attrs: Vec<KeyValue>) -> Self {
        self.attributes = attrs;
        self
    }
    fn status(mut self, code: status::StatusCode) -> Self {
        self.status = Some(Status {
            code: code as i32,
            message: String::new(),
        });
        self
    }
}

/// Encodes `(resource attributes, spans)` groups as one request and decodes it; span ids are
/// renumbered so that every span is distinct.
pub fn trace(groups: Vec<(Vec<KeyValue>, Vec<ProtoSpan>)>) -> Vec<Span> {
    let mut n = 0u8;
    let resource_spans = groups
        .into_iter()
        .map(|(attributes, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: spans
                    .into_iter()
                    .map(|mut s| {
                        n += 1;
                        s.span_id = vec![0, 0, 0, 0, 0, 0, 0, n];
                        s
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let req = ExportTraceServiceRequest { resource_spans };
    decode_request(&req.encode_to_vec())
        .expect("valid request")
        .spans
}

/// Spans without resource attributes.
pub fn spans(s: Vec<ProtoSpan>) -> Vec<Span> {
    trace(vec![(Vec::new(), s)])
}

pub fn build(yaml: &str) -> Policies {
    build_with(yaml, false)
}

pub fn build_with(yaml: &str, first_match: bool) -> Policies {
    let cfgs: Vec<PolicyCfg> = serde_yaml_ng::from_str(yaml).expect("yaml");
    match Policies::build(&cfgs, first_match) {
        Ok(p) => p,
        Err(problems) => panic!("unexpected problems: {problems:?}"),
    }
}

pub fn verdict(p: &Policies, spans: &[Span]) -> Verdict {
    p.evaluate(&ID, spans, Instant::now())
}

/// Whether the single policy `yaml` keeps the trace.
pub fn keeps(yaml: &str, spans: &[Span]) -> bool {
    verdict(&build(yaml), spans).sampled
}

#[test]
fn always_sample_keeps_everything_and_names_itself() {
    let v = verdict(
        &build("- { name: all, type: always_sample }"),
        &spans(vec![span(0, 1)]),
    );
    assert_eq!(
        v,
        Verdict {
            sampled: true,
            policies: vec!["all".into()],
            recorded: Some("all".into()),
            ..Verdict::default()
        }
    );
}

#[test]
fn latency_spans_earliest_start_to_latest_end_with_inclusive_threshold() {
    let p = "- { name: slow, type: latency, latency: { threshold_ms: 500 } }";
    // Neither span lasts 500 ms, but the trace does: from 0 to 500.
    assert!(keeps(p, &spans(vec![span(0, 300), span(200, 500)])));
    assert!(!keeps(p, &spans(vec![span(0, 300), span(200, 499)])));
    let mut almost = span(0, 499);
    almost.end_time_unix_nano += 999_999; // 499.999999 ms truncates to 499
    assert!(!keeps(p, &spans(vec![almost])));
}

#[test]
fn latency_with_upper_bound_is_exclusive_below_and_inclusive_above() {
    let p =
        "- { name: band, type: latency, latency: { threshold_ms: 100, upper_threshold_ms: 200 } }";
    assert!(!keeps(p, &spans(vec![span(0, 100)])));
    assert!(keeps(p, &spans(vec![span(0, 101)])));
    assert!(keeps(p, &spans(vec![span(0, 200)])));
    assert!(!keeps(p, &spans(vec![span(0, 201)])));
}

#[test]
fn probabilistic_is_the_collector_hash_against_the_threshold() {
    // FNV-1a("default-hash-seed" ++ 01..10) = 0xdbcf64d5420f4cad = 85.86 % of u64::MAX.
    let one = spans(vec![span(0, 1)]);
    let at = |pct: &str| {
        keeps(&format!("- {{ name: p, type: probabilistic, probabilistic: {{ sampling_percentage: {pct} }} }}"), &one)
    };
    assert!(at("86"));
    assert!(!at("85.8"));
    assert!(at("100"));
    assert!(!at("0"));
    // Another salt moves the hash.
    let salted = |pct: &str| {
        let p = format!("- {{ name: p, type: probabilistic, probabilistic: {{ hash_salt: x, sampling_percentage: {pct} }} }}");
        keeps(&p, &one)
    };
    let h = super::hash::trace_hash(b"x", &ID);
    let pct = (h as f64 / u64::MAX as f64) * 100.0;
    assert!(salted(&format!("{}", (pct + 0.01).min(100.0))));
    assert!(!salted(&format!("{}", (pct - 0.01).max(0.0))));
}

#[test]
fn probabilistic_samples_about_the_configured_share() {
    let p = build("- { name: p, type: probabilistic, probabilistic: { sampling_percentage: 25 } }");
    let s = spans(vec![span(0, 1)]);
    let mut rng = fastrand::Rng::with_seed(7);
    let kept = (0..20_000)
        .filter(|_| {
            p.evaluate(&rng.u128(..).to_be_bytes(), &s, Instant::now())
                .sampled
        })
        .count();
    assert!((4_500..5_500).contains(&kept), "{kept} of 20000 at 25%");
}

#[test]
fn status_code_matches_any_span() {
    let p = "- { name: e, type: status_code, status_code: { status_codes: [ERROR] } }";
    assert!(keeps(
        p,
        &spans(vec![
            span(0, 1),
            span(0, 1).status(status::StatusCode::Error)
        ])
    ));
    assert!(!keeps(
        p,
        &spans(vec![span(0, 1).status(status::StatusCode::Ok)])
    ));
    let p = "- { name: u, type: status_code, status_code: { status_codes: [OK, UNSET] } }";
    assert!(keeps(p, &spans(vec![span(0, 1)])), "no status is UNSET");
}

#[test]
fn rate_limiting_is_a_span_token_bucket_with_twice_the_rate_as_burst() {
    let p = build("- { name: r, type: rate_limiting, rate_limiting: { spans_per_second: 10 } }");
    let fifteen = spans((0..15).map(|_| span(0, 1)).collect());
    let t0 = Instant::now();
    assert!(p.evaluate(&ID, &fifteen, t0).sampled, "burst of 20");
    assert!(!p.evaluate(&ID, &fifteen, t0).sampled, "5 tokens left");
    assert!(
        !p.evaluate(&ID, &fifteen, t0 + Duration::from_millis(900))
            .sampled,
        "14 tokens"
    );
    assert!(
        p.evaluate(&ID, &fifteen, t0 + Duration::from_secs(1))
            .sampled,
        "15 tokens"
    );
    let big = spans((0..21).map(|_| span(0, 1)).collect());
    assert!(
        !p.evaluate(&ID, &big, t0 + Duration::from_secs(3600))
            .sampled,
        "more than the burst never passes"
    );
}

#[test]
fn bytes_limiting_charges_the_traces_otlp_size() {
    let s = spans(vec![span(0, 1), span(0, 2)]);
    // What the Collector's calculateTraceSize counts: the trace as OTLP, resource and scope
    // envelopes included (both present even when empty, as pdata encodes them).
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource::default()),
            scope_spans: vec![ScopeSpans {
                scope: Some(Default::default()),
                spans: vec![span(0, 1), span(0, 2)]
                    .into_iter()
                    .zip(1u8..)
                    .map(|(mut p, n)| {
                        p.span_id = vec![0, 0, 0, 0, 0, 0, 0, n];
                        p
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let size = request.encoded_len();
    assert!(size > s.iter().map(|s| s.bytes.len()).sum::<usize>() + 4);
    assert_eq!(eval::otlp_size(&s), size as u64);
    let p = build(&format!(
        "- {{ name: b, type: bytes_limiting, bytes_limiting: {{ bytes_per_second: {size} }} }}"
    ));
    let t0 = Instant::now();
    assert!(p.evaluate(&ID, &s, t0).sampled);
    assert!(p.evaluate(&ID, &s, t0).sampled, "burst is twice the rate");
    assert!(!p.evaluate(&ID, &s, t0).sampled);
    assert!(p.evaluate(&ID, &s, t0 + Duration::from_secs(1)).sampled);
    let p = build(&format!("- {{ name: b, type: bytes_limiting, bytes_limiting: {{ bytes_per_second: {size}, burst_capacity: {size} }} }}"));
    assert!(p.evaluate(&ID, &s, t0).sampled);
    assert!(
        !p.evaluate(&ID, &s, t0).sampled,
        "explicit burst of one trace"
    );
    let p = build(&format!("- {{ name: b, type: bytes_limiting, bytes_limiting: {{ bytes_per_second: {size}, burst_capacity: {} }} }}", size - 1));
    assert!(
        !p.evaluate(&ID, &s, t0).sampled,
        "a burst one byte short of the trace (the Collector's TestBytesLimitingTokenBucket)"
    );
}

#[test]
fn span_count_bounds_are_inclusive_and_zero_max_is_unbounded() {
    let n = |k: usize| spans((0..k).map(|_| span(0, 1)).collect());
    let p = "- { name: c, type: span_count, span_count: { min_spans: 2, max_spans: 3 } }";
    assert_eq!(
        [1, 2, 3, 4].map(|k| keeps(p, &n(k))),
        [false, true, true, false]
    );
    let p = "- { name: c, type: span_count, span_count: { min_spans: 2 } }";
    assert_eq!([1, 2, 50].map(|k| keeps(p, &n(k))), [false, true, true]);
}

#[test]
fn trace_state_matches_a_valid_header_value() {
    let p = "- { name: t, type: trace_state, trace_state: { key: vendor, values: [premium] } }";
    let with = |ts: &str| {
        let mut s = span(0, 1);
        s.trace_state = ts.into();
        spans(vec![span(0, 1), s])
    };
    assert!(keeps(p, &with("other=1,vendor=premium")));
    assert!(!keeps(p, &with("vendor=basic")));
    assert!(
        !keeps(p, &with("vendor=premium,vendor=premium")),
        "invalid header"
    );
}

#[test]
fn trace_flags_needs_the_sampled_bit_on_some_span() {
    let p = "- { name: f, type: trace_flags }";
    let with = |flags: u32| {
        let mut s = span(0, 1);
        s.flags = flags;
        spans(vec![s])
    };
    assert!(keeps(p, &with(0x101)));
    assert!(!keeps(p, &with(0x100)));
    assert!(keeps(
        "- { name: f, type: trace_flags, trace_flags: {} }",
        &with(0x01)
    ));
}
