//! Validation (every problem at once, each at its path), the YAML shape, and what `names` and `describe` print.

use super::tests::build;
use super::*;

fn cfgs(yaml: &str) -> Vec<PolicyCfg> {
    serde_yaml_ng::from_str(yaml).expect("yaml")
}

/// `(path, message)` of every problem; also checks that `validate` agrees with `build`.
fn problems(yaml: &str) -> Vec<(String, String)> {
    let c = cfgs(yaml);
    let from_build = Policies::build(&c, false).expect_err("problems expected");
    let from_validate = validate(&c);
    let pairs = |ps: Vec<Problem>| {
        ps.into_iter()
            .map(|p| (p.path, p.message))
            .collect::<Vec<_>>()
    };
    let got = pairs(from_build);
    assert_eq!(got, pairs(from_validate), "validate and build disagree");
    got
}

fn paths(yaml: &str) -> Vec<String> {
    problems(yaml).into_iter().map(|(p, _)| p).collect()
}

fn message_at(yaml: &str, path: &str) -> String {
    problems(yaml)
        .into_iter()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("no problem at {path}"))
        .1
}

#[test]
fn reports_every_problem_at_once_with_its_path() {
    let yaml = r#"
- { name: "", type: always_sample }
- { name: a, type: latency, latency: { threshold_ms: -1, upper_threshold_ms: -5 } }
- { name: a, type: probabilistic, probabilistic: { sampling_percentage: 150 } }
- { name: b, type: numeric_attribute, numeric_attribute: { key: k, min_value: 10, max_value: 5 } }
- { name: c, type: status_code, status_code: { status_codes: [ERROR, FAILED] } }
- { name: d, type: string_attribute, string_attribute: { key: "", values: [ok, "a(b"], enabled_regex_matching: true } }
- { name: e, type: rate_limiting, rate_limiting: { spans_per_second: -3 } }
- { name: f, type: span_count, span_count: { min_spans: 10, max_spans: 2 } }
- { name: g, type: latency, latency: { threshold_ms: 500, upper_threshold_ms: 500 } }
- { name: h, type: string_attribute, string_attribute: { key: k, values: [] } }
- { name: i, type: bytes_limiting, bytes_limiting: { bytes_per_second: 0, burst_capacity: -1 } }
"#;
    assert_eq!(
        paths(yaml),
        [
            "policies[0].name",
            "policies[1].latency.threshold_ms",
            "policies[1].latency.upper_threshold_ms",
            "policies[2].name",
            "policies[3].numeric_attribute.min_value",
            "policies[4].status_code.status_codes[1]",
            "policies[5].string_attribute.key",
            "policies[5].string_attribute.values[1]",
            "policies[6].rate_limiting.spans_per_second",
            "policies[7].span_count.min_spans",
            "policies[8].latency.upper_threshold_ms",
            "policies[10].bytes_limiting.bytes_per_second",
            "policies[10].bytes_limiting.burst_capacity",
        ]
    );
    assert!(message_at(yaml, "policies[2].name")
        .contains("duplicate policy name \"a\" (also policies[1])"));
    assert!(message_at(yaml, "policies[4].status_code.status_codes[1]")
        .contains("unknown status code \"FAILED\"; supported: OK, ERROR, UNSET"));
    let regex = message_at(yaml, "policies[5].string_attribute.values[1]");
    assert!(
        regex.starts_with("invalid regex \"a(b\": ") && regex.contains("unclosed group"),
        "{regex}"
    );
}

#[test]
fn ottl_condition_is_a_leaf_type_checked_with_the_others() {
    let yaml = r#"
- { name: o, type: ottl_condition, ottl_condition: { error_mode: ignore, span: ['name == "x"'] } }
- { name: p, type: ottl_condition, ottl_condition: { span: ['name = "x"'] }, latency: { threshold_ms: 1 } }
- { name: q, type: and, and: { and_sub_policy: [{ name: r, type: ottl_condition, ottl_condition: { spanevent: ['nam == "exception"'] } }] } }
"#;
    assert_eq!(
        problems(yaml),
        [
            (
                "policies[1].latency".to_owned(),
                "a policy of type ottl_condition takes no latency block (set type: latency, or remove the block)".to_owned()
            ),
            (
                "policies[2].and.and_sub_policy[0].ottl_condition.spanevent[0]".to_owned(),
                "line 1, column 1: unknown path nam in a spanevent condition; known: name, attributes[\"k\"], time_unix_nano (the event's), span.<any span path> (the enclosing span's), resource.attributes[\"k\"], instrumentation_scope.name, instrumentation_scope.version".to_owned()
            ),
        ]
    );
}

#[test]
fn unknown_missing_and_mismatched_types() {
    let m = message_at("- { name: x, type: latancy }", "policies[0].type");
    assert!(
        m.starts_with("unknown policy type \"latancy\"; supported: always_sample, latency,")
            && m.ends_with("and, composite, not, drop"),
        "{m}"
    );
    assert!(
        message_at("- { name: x }", "policies[0].type").starts_with("a policy type is required")
    );
    assert_eq!(
        problems("- { name: x, type: latency, string_attribute: { key: k, values: [v] } }"),
        [
            ("policies[0].string_attribute".to_owned(), "a policy of type latency takes no string_attribute block (set type: string_attribute, or remove the block)".to_owned()),
            ("policies[0].latency".to_owned(), "a policy of type latency needs a latency block".to_owned()),
        ]
    );
}

#[test]
fn nested_policies_are_checked_with_their_own_paths() {
    let yaml = "
- name: combo
  type: and
  and:
    and_sub_policy:
      - { name: ok, type: always_sample }
      - { name: bad, type: status_code, status_code: { status_codes: [] } }
      - { name: nested, type: composite, composite: { max_total_spans_per_second: 1, composite_sub_policy: [ { name: a, type: always_sample } ] } }
- { name: empty-drop, type: drop, drop: { drop_sub_policy: [] } }
- { name: lonely-not, type: not, not: {} }
";
    let got = problems(yaml);
    assert_eq!(
        got.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        [
            "policies[0].and.and_sub_policy[1].status_code.status_codes",
            "policies[0].and.and_sub_policy[2].type",
            "policies[1].drop.drop_sub_policy",
            "policies[2].not.not_sub_policy",
        ]
    );
    assert!(
        got[1].1.starts_with(
            "a composite policy cannot be used in and_sub_policy; allowed there: always_sample,"
        ),
        "{}",
        got[1].1
    );
}

#[test]
fn composite_allocations_and_order_are_checked() {
    let yaml = "
- name: c
  type: composite
  composite:
    max_total_spans_per_second: 0
    policy_order: [a, ghost, a]
    composite_sub_policy:
      - { name: a, type: always_sample }
      - { name: a, type: always_sample }
      - { type: always_sample }
    rate_allocation:
      - { policy: a, percent: 80 }
      - { policy: nobody, percent: 30 }
      - { policy: a, percent: -5 }
";
    assert_eq!(
        paths(yaml),
        [
            "policies[0].composite.max_total_spans_per_second",
            "policies[0].composite.composite_sub_policy[1].name",
            "policies[0].composite.composite_sub_policy[2].name",
            "policies[0].composite.policy_order[1]",
            "policies[0].composite.policy_order[2]",
            "policies[0].composite.rate_allocation[1].policy",
            "policies[0].composite.rate_allocation[2].percent",
            "policies[0].composite.rate_allocation[2].policy",
            "policies[0].composite.rate_allocation",
        ]
    );
    assert_eq!(
        message_at(yaml, "policies[0].composite.rate_allocation"),
        "percents add up to 110%, more than 100%"
    );
}

#[test]
fn numeric_attribute_needs_a_non_zero_bound() {
    let yaml =
        "- { name: n, type: numeric_attribute, numeric_attribute: { key: k, min_value: 0 } }";
    assert!(
        message_at(yaml, "policies[0].numeric_attribute").starts_with("set min_value or max_value")
    );
}

#[test]
fn unknown_fields_are_yaml_errors() {
    let err = serde_yaml_ng::from_str::<Vec<PolicyCfg>>(
        "- { name: x, type: latency, latency: { threshold: 5 } }",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `threshold`"),
        "{err}"
    );
    let err =
        serde_yaml_ng::from_str::<Vec<PolicyCfg>>("- { name: x, type: latency, latencyy: {} }")
            .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `latencyy`"),
        "{err}"
    );
}

#[test]
fn the_collector_readme_composite_example_builds() {
    build(
        "
- name: composite-policy-1
  type: composite
  composite:
    max_total_spans_per_second: 1000
    policy_order: [test-composite-policy-1, test-composite-policy-2, test-composite-policy-3]
    composite_sub_policy:
      - { name: test-composite-policy-1, type: numeric_attribute, numeric_attribute: { key: key1, min_value: 50 } }
      - { name: test-composite-policy-2, type: string_attribute, string_attribute: { key: key2, values: [value1, value2] } }
      - { name: test-composite-policy-3, type: always_sample }
    rate_allocation:
      - { policy: test-composite-policy-1, percent: 50 }
      - { policy: test-composite-policy-2, percent: 25 }
",
    );
}

#[test]
fn names_and_describe() {
    let p = build(
        "
- { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
- { name: slow, type: latency, latency: { threshold_ms: 500 } }
- name: gold
  type: and
  and:
    and_sub_policy:
      - { name: tier, type: string_attribute, string_attribute: { key: user.tier, values: [gold], invert_match: true } }
      - { name: some, type: probabilistic, probabilistic: { sampling_percentage: 5 } }
- { name: c, type: composite, composite: { max_total_spans_per_second: 100, composite_sub_policy: [ { name: all, type: always_sample } ], rate_allocation: [ { policy: all, percent: 50 } ] } }
",
    );
    assert_eq!(p.names(), ["errors", "slow", "gold", "c"]);
    assert_eq!(
        p.describe(),
        [
            "errors: status_code in [ERROR]",
            "slow: latency >= 500ms (no upper bound)",
            "gold: and: all of:",
            "  tier: string_attribute user.tier not in [gold] (exact; invert_match: a match vetoes sampling)",
            "  some: probabilistic 5% of trace ids (hash_salt: default \"default-hash-seed\")",
            "c: composite: first sub-policy that samples, within max 100 spans/s:",
            "  all: always_sample [50% = 50 spans/s]",
        ]
    );
}

/// `casefile check` shows each policy as it runs: defaults filled in, zero bounds read as the
/// Collector reads them, out-of-range values clamped, ignored settings said to be ignored.
#[test]
fn describe_shows_the_effective_shape() {
    let p = Policies::build(
        &cfgs(
            r#"
- { name: band, type: latency, latency: { threshold_ms: 500, upper_threshold_ms: 2000 } }
- { name: over, type: probabilistic, probabilistic: { sampling_percentage: 150, hash_salt: s } }
- { name: routes, type: string_attribute, string_attribute: { key: http.route, values: ["^/health", /metrics], enabled_regex_matching: true, cache_max_size: 128, invert_match: true } }
- { name: none, type: string_attribute, string_attribute: { key: k, values: [] } }
- { name: all, type: string_attribute, string_attribute: { key: k, values: [], invert_match: true } }
- { name: codes, type: numeric_attribute, numeric_attribute: { key: http.status_code, min_value: 500, max_value: 0 } }
- { name: rate, type: rate_limiting, rate_limiting: { spans_per_second: 100 } }
- { name: bytes, type: bytes_limiting, bytes_limiting: { bytes_per_second: 1000, burst_capacity: 5000 } }
- { name: big, type: span_count, span_count: { min_spans: 50 } }
- { name: ts, type: trace_state, trace_state: { key: vendor, values: [] } }
- { name: exc, type: ottl_condition, ottl_condition: { span: ['status.code == STATUS_CODE_ERROR'], spanevent: ['name == "exception"'] } }
- name: quiet
  type: drop
  drop:
    drop_sub_policy:
      - { name: health, type: string_attribute, string_attribute: { key: http.route, values: [/health] } }
      - { name: fast, type: not, not: { not_sub_policy: { name: slow, type: latency, latency: { threshold_ms: 100 } } } }
"#,
        ),
        false,
    )
    .expect("runs");
    assert_eq!(
        p.describe(),
        [
            "band: latency in (500ms, 2000ms]",
            "over: probabilistic 100% of trace ids (sampling_percentage 150 clamped, as the Collector does; hash_salt: \"s\")",
            "routes: string_attribute http.route matches none of [^/health, /metrics] (regex, unanchored; cache_max_size 128 unused: no cache needed; invert_match: a match vetoes sampling)",
            "none: string_attribute k in [] (exact; no values: never samples)",
            "all: string_attribute k not in [] (exact; no values: samples every trace; invert_match: a match vetoes sampling)",
            "codes: numeric_attribute http.status_code in [500, +inf] (max_value 0 = no bound, as in the Collector)",
            "rate: rate_limiting 100 spans/s (burst 200 spans: default, twice the rate)",
            "bytes: bytes_limiting 1000 bytes/s (burst 5000 bytes; a trace costs its OTLP size)",
            "big: span_count >= 50 (no upper bound)",
            "ts: trace_state vendor in [] (no values: never samples)",
            "exc: ottl_condition (error_mode propagate (default)): any condition holds for a span or span event:",
            "  span: status.code == STATUS_CODE_ERROR",
            "  spanevent: name == \"exception\"",
            "quiet: drop (evaluated first; wins over every other policy) when all of:",
            "  health: string_attribute http.route in [/health] (exact)",
            "  fast: not: the opposite of:",
            "    slow: latency >= 100ms (no upper bound)",
        ]
    );
}

#[test]
fn policies_can_be_shared_between_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Policies>();
}

/// Configs the Collector runs as written (its own test tables have them): accepted, run the
/// same way, and warned about.
#[test]
fn what_the_collector_runs_runs_with_a_warning() {
    let yaml = r#"
- { name: over, type: probabilistic, probabilistic: { sampling_percentage: 150 } }
- { name: under, type: probabilistic, probabilistic: { sampling_percentage: -5 } }
- { name: none, type: string_attribute, string_attribute: { key: k, values: [] } }
- { name: all, type: string_attribute, string_attribute: { key: k, values: [], invert_match: true } }
- { name: ts, type: trace_state, trace_state: { key: k, values: [] } }
"#;
    let p = Policies::build(&cfgs(yaml), false).expect("the Collector runs these");
    let warned: Vec<&str> = p.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        warned,
        [
            "policies[0].probabilistic.sampling_percentage",
            "policies[1].probabilistic.sampling_percentage",
            "policies[2].string_attribute.values",
            "policies[3].string_attribute.values",
            "policies[4].trace_state.values",
        ]
    );
    assert!(
        p.warnings[0].message.contains("sampling 100 %"),
        "{:?}",
        p.warnings
    );
    assert!(
        p.warnings[3].message.contains("samples every trace"),
        "{:?}",
        p.warnings
    );
    // And they behave as the Collector's: over 100 keeps everything, under 0 nothing, an
    // empty list matches nothing (inverted: everything), an empty trace_state list nothing.
    let line = |name: &str| {
        yaml.lines()
            .find(|l| l.contains(&format!("name: {name},")))
            .unwrap()
            .to_owned()
    };
    let spans = super::tests::spans(vec![super::tests::span(0, 1)]);
    let keeps = |name: &str| super::tests::keeps(&line(name), &spans);
    assert!(keeps("over"));
    assert!(!keeps("under"));
    assert!(!keeps("none"));
    assert!(keeps("all"));
    assert!(!keeps("ts"));
}

/// As the newest Collector: `not` inside `and` and `drop`; still nothing inside `not`.
#[test]
fn not_nests_inside_and_and_drop() {
    let yaml = r#"
- name: errors-but-not-health
  type: and
  and:
    and_sub_policy:
      - { name: e, type: status_code, status_code: { status_codes: [ERROR] } }
      - name: not-health
        type: not
        not: { not_sub_policy: { name: h, type: string_attribute, string_attribute: { key: http.route, values: [/health] } } }
- name: drop-unless-premium
  type: drop
  drop:
    drop_sub_policy:
      - name: not-premium
        type: not
        not: { not_sub_policy: { name: p, type: string_attribute, string_attribute: { key: user.tier, values: [premium] } } }
"#;
    let p = Policies::build(&cfgs(yaml), false).expect("not inside and/drop is accepted");
    assert!(p.warnings.is_empty());
    let nested = r#"
- name: n
  type: not
  not: { not_sub_policy: { name: m, type: not, not: { not_sub_policy: { name: a, type: always_sample } } } }
"#;
    assert!(paths(nested)
        .iter()
        .any(|p| p.starts_with("policies[0].not.not_sub_policy")));
}
