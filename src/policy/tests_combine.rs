//! The Collector's decision precedence, sample_on_first_match, the and/not/drop/composite combinators, and the per-policy metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as Code;
use tokio::time::Instant;

use super::tests::{build, build_with, kv_bool, span, spans, trace, verdict, SpanExt, ID};
use super::*;
use crate::fixture::kv;

fn names(v: &Verdict) -> Vec<&str> {
    v.policies.iter().map(|n| &**n).collect()
}

/// A trace with one error span carrying `tier`, and a `drop_me` flag.
fn error_trace(tier: &str, drop_me: bool) -> Vec<Span> {
    spans(vec![span(0, 10)
        .status(Code::Error)
        .attrs(vec![kv("tier", tier), kv_bool("drop_me", drop_me)])])
}

const ERRORS: &str =
    "- { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }\n";
const VETO_FREE: &str =
    "- { name: not-free, type: string_attribute, string_attribute: { key: tier, values: [free], invert_match: true } }\n";
const DROP: &str =
    "- { name: drop-flagged, type: drop, drop: { drop_sub_policy: [ { name: d, type: boolean_attribute, boolean_attribute: { key: drop_me, value: true } } ] } }\n";
const NEVER: &str = "- { name: never, type: span_count, span_count: { min_spans: 1000 } }\n";

#[test]
fn drop_wins_over_sampling_even_when_listed_last() {
    let p = build(&format!(
        "{ERRORS}- {{ name: all, type: always_sample }}\n{DROP}"
    ));
    assert_eq!(
        verdict(&p, &error_trace("gold", true)),
        Verdict {
            sampled: false,
            policies: vec![],
            ..Verdict::default()
        }
    );
    assert_eq!(
        names(&verdict(&p, &error_trace("gold", false))),
        ["errors", "all"]
    );
}

#[test]
fn inverted_not_sampled_wins_over_sampled() {
    let p = build(&format!("{ERRORS}{VETO_FREE}"));
    assert!(!verdict(&p, &error_trace("free", false)).sampled);
    assert_eq!(
        names(&verdict(&p, &error_trace("gold", false))),
        ["errors", "not-free"]
    );
}

#[test]
fn sampled_wins_over_plain_not_sampled() {
    let p = build(&format!("{NEVER}{ERRORS}"));
    assert_eq!(names(&verdict(&p, &error_trace("gold", false))), ["errors"]);
}

#[test]
fn inverted_sampled_keeps_only_without_a_plain_not_sampled() {
    assert_eq!(
        names(&verdict(&build(VETO_FREE), &error_trace("gold", false))),
        ["not-free"]
    );
    let p = build(&format!("{VETO_FREE}{NEVER}"));
    assert!(
        !verdict(&p, &error_trace("gold", false)).sampled,
        "a plain no outweighs an inverted yes"
    );
    // With a plain sample as well the trace is kept, and only the plain sampler is a reason.
    let p = build(&format!("{VETO_FREE}{NEVER}{ERRORS}"));
    assert_eq!(
        verdict(&p, &error_trace("gold", false)),
        Verdict {
            sampled: true,
            policies: vec!["errors".into()],
            recorded: Some("errors".into()),
            ..Verdict::default()
        }
    );
}

#[test]
fn sample_on_first_match_stops_at_the_first_sampler() {
    let yaml = format!("{ERRORS}- {{ name: one-span-a-second, type: rate_limiting, rate_limiting: {{ spans_per_second: 1, burst_capacity: 1 }} }}\n");
    let plain = spans(vec![span(0, 1)]);
    let t0 = Instant::now();
    // Without it, the error trace also takes the only token, so the next trace is refused.
    let all = build_with(&yaml, false);
    assert_eq!(
        names(&all.evaluate(&ID, &error_trace("x", false), t0)),
        ["errors", "one-span-a-second"]
    );
    assert!(!all.evaluate(&ID, &plain, t0).sampled);
    // With it, the rate limiter is never asked about the error trace.
    let first = build_with(&yaml, true);
    assert_eq!(
        names(&first.evaluate(&ID, &error_trace("x", false), t0)),
        ["errors"]
    );
    assert_eq!(
        names(&first.evaluate(&ID, &plain, t0)),
        ["one-span-a-second"]
    );
}

#[test]
fn sample_on_first_match_still_runs_drop_policies_first() {
    let p = build_with(&format!("{ERRORS}{DROP}"), true);
    assert!(!verdict(&p, &error_trace("gold", true)).sampled);
    assert!(verdict(&p, &error_trace("gold", false)).sampled);
}

#[test]
fn and_needs_every_sub_policy() {
    let p = build(
        "- name: gold-errors
  type: and
  and:
    and_sub_policy:
      - { name: e, type: status_code, status_code: { status_codes: [ERROR] } }
      - { name: g, type: string_attribute, string_attribute: { key: tier, values: [gold] } }",
    );
    assert_eq!(
        names(&verdict(&p, &error_trace("gold", false))),
        ["gold-errors"]
    );
    assert!(!verdict(&p, &error_trace("silver", false)).sampled);
    assert!(!verdict(&p, &spans(vec![span(0, 1).attrs(vec![kv("tier", "gold")])])).sampled);
}

#[test]
fn and_treats_inverted_decisions_as_their_plain_meaning() {
    let p = build(
        "- name: errors-not-free
  type: and
  and: { and_sub_policy: [ { name: e, type: status_code, status_code: { status_codes: [ERROR] } },
                           { name: f, type: string_attribute, string_attribute: { key: tier, values: [free], invert_match: true } } ] }
- { name: all, type: always_sample }",
    );
    // The inverted match inside `and` is only a plain "no" for the and: always_sample still keeps.
    assert_eq!(names(&verdict(&p, &error_trace("free", false))), ["all"]);
    assert_eq!(
        names(&verdict(&p, &error_trace("gold", false))),
        ["errors-not-free", "all"]
    );
}

#[test]
fn not_swaps_plain_decisions_and_passes_inverted_ones_through() {
    let p = build("- { name: ok-traces, type: not, not: { not_sub_policy: { name: e, type: status_code, status_code: { status_codes: [ERROR] } } } }");
    assert!(!verdict(&p, &error_trace("x", false)).sampled);
    assert!(verdict(&p, &spans(vec![span(0, 1)])).sampled);
    let p = build(&format!(
        "- {{ name: n, type: not, not: {{ not_sub_policy: {{ name: f, type: string_attribute, string_attribute: {{ key: tier, values: [free], invert_match: true }} }} }} }}\n{ERRORS}"
    ));
    assert!(
        !verdict(&p, &error_trace("free", false)).sampled,
        "still an inverted veto"
    );
}

#[test]
fn drop_needs_every_sub_policy_to_match() {
    let p = build(
        "- name: drop-free-errors
  type: drop
  drop: { drop_sub_policy: [ { name: e, type: status_code, status_code: { status_codes: [ERROR] } },
                             { name: f, type: string_attribute, string_attribute: { key: tier, values: [free] } } ] }
- { name: all, type: always_sample }",
    );
    assert!(!verdict(&p, &error_trace("free", false)).sampled);
    assert_eq!(names(&verdict(&p, &error_trace("gold", false))), ["all"]);
}

const COMPOSITE: &str = "
- name: budget
  type: composite
  composite:
    max_total_spans_per_second: 10
    policy_order: [errors, rest]
    composite_sub_policy:
      - { name: rest, type: always_sample }
      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
      - { name: unfunded, type: always_sample }
    rate_allocation:
      - { policy: errors, percent: 50 }
      - { policy: rest, percent: 30 }
";

#[test]
fn composite_first_sampling_sub_policy_decides_within_its_budget() {
    let p = build(COMPOSITE);
    let t0 = Instant::now();
    let three_errors = || {
        trace(vec![(
            vec![],
            (0..3).map(|_| span(0, 1).status(Code::Error)).collect(),
        )])
    };
    let three_ok = || spans((0..3).map(|_| span(0, 1)).collect());
    // errors (policy_order puts it first): 5 spans a second.
    assert_eq!(names(&p.evaluate(&ID, &three_errors(), t0)), ["budget"]);
    assert!(
        !p.evaluate(&ID, &three_errors(), t0).sampled,
        "6 > 5, and rest is not tried"
    );
    // rest: 3 spans a second.
    assert!(p.evaluate(&ID, &three_ok(), t0).sampled);
    assert!(
        !p.evaluate(&ID, &three_ok(), t0 + Duration::from_millis(999))
            .sampled
    );
    // A new second resets every budget.
    assert!(
        p.evaluate(&ID, &three_errors(), t0 + Duration::from_secs(1))
            .sampled
    );
    assert!(
        p.evaluate(&ID, &three_ok(), t0 + Duration::from_secs(1))
            .sampled
    );
}

#[test]
fn composite_sub_policy_without_allocation_never_samples() {
    let yaml = COMPOSITE.replace("policy_order: [errors, rest]", "policy_order: [unfunded]");
    let p = build(&yaml);
    assert!(
        !p.evaluate(&ID, &spans(vec![span(0, 1)]), Instant::now())
            .sampled
    );
}

#[test]
fn composite_equal_share_for_zero_percent() {
    let yaml = COMPOSITE
        .replace("percent: 30", "percent: 0")
        .replace("policy_order: [errors, rest]", "policy_order: [rest]");
    let p = build(&yaml);
    let t0 = Instant::now();
    // 10 / 3 sub-policies = 3 spans a second.
    assert!(
        p.evaluate(&ID, &spans((0..3).map(|_| span(0, 1)).collect()), t0)
            .sampled
    );
    assert!(!p.evaluate(&ID, &spans(vec![span(0, 1)]), t0).sampled);
}

// --- metrics ---

#[derive(Default)]
struct Counts(Mutex<BTreeMap<String, Arc<Count>>>);

#[derive(Default)]
struct Count(AtomicU64);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Recorder for Counts {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        Counter::from_arc(Arc::clone(self.0.lock().unwrap().entry(id).or_default()))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn counts_each_top_level_decision_by_policy() {
    let counts = Counts::default();
    let p = build(&format!("{ERRORS}{NEVER}"));
    metrics::with_local_recorder(&counts, || {
        verdict(&p, &error_trace("x", false));
        verdict(&p, &error_trace("x", false));
        verdict(&p, &spans(vec![span(0, 1)]));
    });
    let got: BTreeMap<String, u64> = counts
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.0.load(Ordering::Relaxed)))
        .collect();
    let name = "casefile_processor_tail_sampling_count_traces_sampled";
    let want: BTreeMap<String, u64> = [
        (format!("{name}{{policy=errors,sampled=true}}"), 2),
        (format!("{name}{{policy=errors,sampled=false}}"), 1),
        (format!("{name}{{policy=never,sampled=false}}"), 3),
        (format!("{name}{{policy=never,sampled=true}}"), 0),
    ]
    .into();
    assert_eq!(got, want);
}

#[test]
fn a_drop_policy_that_does_not_match_is_a_plain_not_sampled() {
    // As in the Collector: the unmatched drop answers NotSampled, which outweighs an inverted
    // sample.
    let p = build(&format!("{VETO_FREE}{DROP}"));
    assert!(!verdict(&p, &error_trace("gold", false)).sampled);
    assert!(verdict(&build(VETO_FREE), &error_trace("gold", false)).sampled);
}
