//! OTEP 235 at the policy level: consistent probabilistic decisions with `use_tracestate`,
//! the threshold a kept trace carries (the lowest of the policies that kept it), and the
//! policy the Collector's `tailsampling.*` attributes name.

use tokio::time::Instant;

use super::otep235::threshold_of;
use super::tests::{build, span, spans, ID};
use super::*;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;

fn on(p: Policies) -> Policies {
    p.with_output(Output {
        use_tracestate: true,
        ..Output::default()
    })
}

fn prob(name: &str, pct: &str) -> String {
    format!("- {{ name: {name}, type: probabilistic, probabilistic: {{ sampling_percentage: {pct} }} }}\n")
}

/// One span of trace [`ID`] with `tracestate`.
fn with_state(ts: &str) -> Vec<Span> {
    spans(vec![ProtoSpan {
        trace_state: ts.into(),
        ..span(0, 1)
    }])
}

fn eval(p: &Policies, s: &[Span]) -> Verdict {
    p.evaluate(&ID, s, Instant::now())
}

#[test]
fn without_use_tracestate_the_collector_hash_decides_and_the_threshold_is_reported() {
    // The trace id's randomness (0x0a0b0c0d0e0f10 / 2^56 = 3.9 %) would need 96.1 %; the
    // Collector's FNV hash of it keeps it from 86 % on.
    let p = build(&prob("p", "86"));
    let v = eval(&p, &with_state(""));
    assert!(v.sampled);
    assert_eq!(v.threshold, threshold_of(86.0), "for what-if estimates");
}

#[test]
fn with_use_tracestate_the_trace_id_randomness_decides() {
    let s = with_state("");
    assert!(!eval(&on(build(&prob("p", "86"))), &s).sampled);
    assert!(!eval(&on(build(&prob("p", "96"))), &s).sampled);
    let v = eval(&on(build(&prob("p", "96.1"))), &s);
    assert!(v.sampled);
    assert_eq!(v.threshold, threshold_of(96.1));
}

#[test]
fn an_rv_on_any_span_is_the_randomness() {
    let p = on(build(&prob("half", "50")));
    assert!(eval(&p, &with_state("ot=rv:80000000000000")).sampled);
    assert!(!eval(&p, &with_state("ot=rv:7fffffffffffff")).sampled);
    // An rv that cannot be read leaves the trace id's randomness (3.9 %: not kept).
    assert!(!eval(&p, &with_state("ot=rv:ffff")).sampled);
    let two = spans(vec![
        span(0, 1),
        ProtoSpan {
            trace_state: "vendor=x,ot=th:0;rv:ff000000000000".into(),
            ..span(0, 1)
        },
    ]);
    assert!(eval(&p, &two).sampled);
}

#[test]
fn the_least_strict_sampler_gives_the_threshold_and_the_recorded_name() {
    let keep_all = "ot=rv:ffffffffffffff";
    let p = on(build(&format!(
        "{}{}",
        prob("quarter", "25"),
        prob("half", "50")
    )));
    let v = eval(&p, &with_state(keep_all));
    assert_eq!(v.policies, [Arc::from("quarter"), Arc::from("half")]);
    assert_eq!(v.threshold, threshold_of(50.0));
    assert_eq!(v.recorded.as_deref(), Some("half"));
    // A non-probabilistic sampler keeps the trace whatever its randomness: no threshold.
    let p = on(build(&format!(
        "{}- {{ name: all, type: always_sample }}\n",
        prob("quarter", "25")
    )));
    let v = eval(&p, &with_state(keep_all));
    assert_eq!((v.threshold, v.recorded.as_deref()), (0, Some("all")));
    // Without use_tracestate the Collector names the first that sampled.
    let p = build(&format!(
        "{}- {{ name: all, type: always_sample }}\n",
        prob("p", "100")
    ));
    assert_eq!(eval(&p, &with_state("")).recorded.as_deref(), Some("p"));
}

#[test]
fn and_carries_its_strictest_part_and_not_or_composite_none() {
    let keep_all = with_state("ot=rv:ffffffffffffff");
    let and = on(build(
        "- { name: both, type: and, and: { and_sub_policy: [
             { name: q, type: probabilistic, probabilistic: { sampling_percentage: 25 } },
             { name: h, type: probabilistic, probabilistic: { sampling_percentage: 50 } },
             { name: a, type: always_sample } ] } }",
    ));
    assert_eq!(eval(&and, &keep_all).threshold, threshold_of(25.0));
    let not = on(build(
        "- { name: rest, type: not, not: { not_sub_policy: { name: q, type: probabilistic, probabilistic: { sampling_percentage: 25 } } } }",
    ));
    let v = eval(&not, &with_state("ot=rv:00000000000000"));
    assert!(v.sampled);
    assert_eq!(v.threshold, 0);
}

#[test]
fn a_composite_names_the_sub_policy_that_sampled() {
    let p = build(
        "- { name: mix, type: composite, composite: { max_total_spans_per_second: 100,
             composite_sub_policy: [
               { name: never, type: probabilistic, probabilistic: { sampling_percentage: 0 } },
               { name: everything, type: always_sample } ],
             rate_allocation: [ { policy: never, percent: 50 }, { policy: everything, percent: 50 } ] } }",
    );
    let v = eval(&p, &with_state(""));
    assert_eq!(v.recorded.as_deref(), Some("mix"));
    assert_eq!(v.composite.as_deref(), Some("everything"));
    assert_eq!(v.threshold, 0);
}
