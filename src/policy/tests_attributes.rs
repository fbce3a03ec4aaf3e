//! Behaviour of the attribute policies (numeric, string, boolean): resource and span lookup, typing, regexes and invert_match.

use super::tests::{build, keeps, kv_bool, kv_double, span, spans, trace, verdict, SpanExt};
use super::*;
use crate::fixture::{kv, kv_int};

#[test]
fn numeric_attribute_matches_int_values_on_spans_or_resources() {
    let p = "- { name: n, type: numeric_attribute, numeric_attribute: { key: http.status_code, min_value: 500, max_value: 599 } }";
    assert!(keeps(
        p,
        &spans(vec![
            span(0, 1),
            span(0, 1).attrs(vec![kv_int("http.status_code", 503)])
        ])
    ));
    assert!(keeps(
        p,
        &trace(vec![(
            vec![kv_int("http.status_code", 599)],
            vec![span(0, 1)]
        )])
    ));
    assert!(!keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv_int("http.status_code", 404)])])
    ));
    assert!(
        !keeps(
            p,
            &spans(vec![
                span(0, 1).attrs(vec![kv_double("http.status_code", 503.0)])
            ])
        ),
        "doubles are not ints"
    );
    assert!(!keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv("http.status_code", "503")])])
    ));
}

#[test]
fn numeric_attribute_resource_and_span_are_both_checked() {
    // The resource value is out of range, the span value in range: the Collector checks both.
    let p = "- { name: n, type: numeric_attribute, numeric_attribute: { key: k, min_value: 10 } }";
    assert!(keeps(
        p,
        &trace(vec![(
            vec![kv_int("k", 1)],
            vec![span(0, 1).attrs(vec![kv_int("k", 11)])]
        )])
    ));
}

#[test]
fn numeric_attribute_zero_or_missing_bound_is_unbounded() {
    let p = "- { name: n, type: numeric_attribute, numeric_attribute: { key: k, min_value: 0, max_value: 10 } }";
    assert!(keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv_int("k", -1_000_000)])])
    ));
    let p = "- { name: n, type: numeric_attribute, numeric_attribute: { key: k, min_value: 10 } }";
    assert!(keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv_int("k", i64::MAX)])])
    ));
    assert!(!keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv_int("k", 9)])])
    ));
}

#[test]
fn numeric_attribute_invert_match_vetoes_matches_and_keeps_the_rest() {
    let p = "
- { name: all, type: always_sample }
- { name: not-internal, type: numeric_attribute, numeric_attribute: { key: k, min_value: 1, max_value: 5, invert_match: true } }";
    let v = verdict(
        &build(p),
        &spans(vec![span(0, 1).attrs(vec![kv_int("k", 3)])]),
    );
    assert!(!v.sampled, "an inverted match vetoes even always_sample");
    let v = verdict(
        &build(&p[p.find("- { name: not").unwrap()..]),
        &spans(vec![span(0, 1)]),
    );
    assert_eq!(
        v,
        Verdict {
            sampled: true,
            policies: vec!["not-internal".into()],
            recorded: Some("not-internal".into()),
            ..Verdict::default()
        },
        "no such attribute: inverted sample"
    );
}

#[test]
fn string_attribute_exact_on_resource_or_span_first_duplicate_wins() {
    let p = "- { name: s, type: string_attribute, string_attribute: { key: user.tier, values: [premium, vip] } }";
    assert!(keeps(
        p,
        &trace(vec![(vec![kv("user.tier", "vip")], vec![span(0, 1)])])
    ));
    assert!(keeps(
        p,
        &spans(vec![
            span(0, 1),
            span(0, 1).attrs(vec![kv("user.tier", "premium")])
        ])
    ));
    assert!(
        !keeps(
            p,
            &spans(vec![span(0, 1).attrs(vec![kv("user.tier", "premiumx")])])
        ),
        "exact, not substring"
    );
    assert!(!keeps(
        p,
        &spans(vec![
            span(0, 1).attrs(vec![kv("user.tier", "free"), kv("user.tier", "vip")])
        ])
    ));
    assert!(!keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv_int("user.tier", 1)])])
    ));
}

#[test]
fn string_attribute_regex_is_unanchored() {
    let p = "- { name: s, type: string_attribute, string_attribute: { key: url.path, values: ['/health', '^/v1/name/.+$'], enabled_regex_matching: true } }";
    assert!(keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv("url.path", "/api/healthz")])])
    ));
    assert!(keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv("url.path", "/v1/name/42")])])
    ));
    assert!(!keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv("url.path", "/x/v1/name/42")])])
    ));
}

#[test]
fn string_attribute_invert_match() {
    let p = "- { name: s, type: string_attribute, string_attribute: { key: service.name, values: [team-a], invert_match: true } }";
    assert!(!keeps(
        p,
        &trace(vec![(vec![kv("service.name", "team-a")], vec![span(0, 1)])])
    ));
    assert!(keeps(
        p,
        &trace(vec![(vec![kv("service.name", "team-b")], vec![span(0, 1)])])
    ));
    assert!(keeps(p, &spans(vec![span(0, 1)])), "absent key: sampled");
}

#[test]
fn boolean_attribute_needs_a_real_boolean() {
    let p = "- { name: b, type: boolean_attribute, boolean_attribute: { key: app.force_sample, value: true } }";
    assert!(keeps(
        p,
        &spans(vec![
            span(0, 1).attrs(vec![kv_bool("app.force_sample", true)])
        ])
    ));
    assert!(keeps(
        p,
        &trace(vec![(
            vec![kv_bool("app.force_sample", true)],
            vec![span(0, 1)]
        )])
    ));
    assert!(!keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv("app.force_sample", "true")])])
    ));
    assert!(!keeps(
        p,
        &spans(vec![
            span(0, 1).attrs(vec![kv_bool("app.force_sample", false)])
        ])
    ));
    let p = "- { name: b, type: boolean_attribute, boolean_attribute: { key: k, value: true, invert_match: true } }";
    assert!(!keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv_bool("k", true)])])
    ));
    assert!(keeps(
        p,
        &spans(vec![span(0, 1).attrs(vec![kv_bool("k", false)])])
    ));
}
