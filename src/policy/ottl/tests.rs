//! ottl_condition: every operator, converter, path and error mode, the parse and type errors
//! with line and column, and the shapes found in public Collector configs at top level and
//! inside and/drop/not/composite. Spans are encoded as OTLP and decoded by the ingest path.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span as ProtoSpan};
use prost::Message;

use super::lexer::CmpOp;
use super::value::{compare, V};
use crate::fixture::{kv, kv_int};
use crate::model::Span;
use crate::policy::tests::{build, kv_bool, kv_double, span, spans, trace, verdict, SpanExt};
use crate::policy::{validate, PolicyCfg};
use crate::wire::decode::decode_request;

/// A policy YAML, as in the Collector's docs, with `span` and `spanevent` conditions.
fn policy(mode: &str, span: &[&str], spanevent: &[&str]) -> String {
    let list = |cs: &[&str]| {
        cs.iter()
            .map(|c| format!("\n        - '{}'", c.replace('\'', "''")))
            .collect::<String>()
    };
    let mode = if mode.is_empty() {
        String::new()
    } else {
        format!("\n      error_mode: {mode}")
    };
    format!(
        "- name: ottl\n  type: ottl_condition\n  ottl_condition:{mode}\n      span:{}\n      spanevent:{}\n",
        if span.is_empty() { " []".into() } else { list(span) },
        if spanevent.is_empty() { " []".into() } else { list(spanevent) },
    )
}

/// Whether the span condition `c` keeps the trace (error_mode propagate).
fn holds(c: &str, spans: &[Span]) -> bool {
    verdict(&build(&policy("", &[c], &[])), spans).sampled
}

fn one(s: ProtoSpan) -> Vec<Span> {
    spans(vec![s])
}

/// `(path, message)` of every problem of the policy YAML.
fn problems(yaml: &str) -> Vec<(String, String)> {
    let cfgs: Vec<PolicyCfg> = serde_yaml_ng::from_str(yaml).expect("yaml");
    validate(&cfgs)
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

fn kv_map(key: &str, entries: Vec<KeyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: entries,
            })),
        }),
        ..Default::default()
    }
}

fn kv_bytes(key: &str, b: &[u8]) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BytesValue(b.to_vec())),
        }),
        ..Default::default()
    }
}

fn event(name: &str, time: u64, attributes: Vec<KeyValue>) -> Event {
    Event {
        name: name.into(),
        time_unix_nano: time,
        attributes,
        ..Default::default()
    }
}

/// One span under a named scope and a resource.
fn scoped(resource: Vec<KeyValue>, scope: (&str, &str), s: ProtoSpan) -> Vec<Span> {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: scope.0.into(),
                    version: scope.1.into(),
                    attributes: vec![kv("scope.k", "sv")],
                    ..Default::default()
                }),
                spans: vec![s],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    decode_request(&req.encode_to_vec()).expect("valid").spans
}

// --- operators and comparison rules ---

#[test]
fn comparison_rules_across_types() {
    use CmpOp::*;
    let s = |x: &'static str| V::Str(x.into());
    let all = [Eq, Ne, Lt, Le, Gt, Ge];
    let check = |a: V<'_>, b: V<'_>, want: [bool; 6]| {
        for (op, w) in all.iter().zip(want) {
            assert_eq!(compare(&a, *op, &b), w, "{a:?} {op} {b:?}");
        }
    };
    check(
        V::Int(1),
        V::Int(2),
        [false, true, true, true, false, false],
    );
    check(
        V::Int(2),
        V::Double(2.0),
        [true, false, false, true, false, true],
    );
    check(
        V::Double(2.5),
        V::Int(2),
        [false, true, false, false, true, true],
    );
    check(s("a"), s("b"), [false, true, true, true, false, false]);
    check(V::Nil, V::Nil, [true, false, false, false, false, false]);
    check(V::Nil, V::Int(0), [false, true, false, false, false, false]);
    check(V::Int(0), V::Nil, [false, true, false, false, false, false]);
    check(s("1"), V::Int(1), [false, true, false, false, false, false]);
    check(
        V::Bool(true),
        V::Bool(true),
        [true, false, false, false, false, false],
    );
    check(
        V::Bool(true),
        V::Bool(false),
        [false, true, false, false, false, false],
    );
    check(
        V::Bool(true),
        V::Int(1),
        [false, true, false, false, false, false],
    );
    check(
        V::Bytes(vec![1].into()),
        V::Bytes(vec![2].into()),
        [false, true, true, true, false, false],
    );
    check(
        V::Double(f64::NAN),
        V::Double(f64::NAN),
        [false, true, false, false, false, false],
    );
}

#[test]
fn each_operator_and_boolean_logic() {
    let s = one(span(0, 1).attrs(vec![kv_int("n", 5), kv("s", "b")]));
    for (c, want) in [
        (r#"attributes["n"] == 5"#, true),
        (r#"attributes["n"] != 5"#, false),
        (r#"attributes["n"] < 6"#, true),
        (r#"attributes["n"] <= 5"#, true),
        (r#"attributes["n"] > 5"#, false),
        (r#"attributes["n"] >= 5.0"#, true),
        (r#"attributes["n"] > 4.5"#, true),
        (r#"attributes["n"] > -1"#, true),
        (r#"attributes["s"] > "a""#, true),
        (r#"attributes["s"] == 5"#, false),
        (r#"attributes["s"] != 5"#, true),
        (r#"attributes["missing"] == nil"#, true),
        (r#"attributes["n"] == nil"#, false),
        (r#"attributes["missing"] > 1"#, false),
        (r#"attributes["n"] == 5 and attributes["s"] == "b""#, true),
        (r#"attributes["n"] == 5 and attributes["s"] == "c""#, false),
        (r#"attributes["n"] == 6 or attributes["s"] == "b""#, true),
        (r#"not attributes["n"] == 6"#, true),
        (r#"not (attributes["n"] == 5 or false)"#, false),
        // and binds tighter than or
        (r#"true or false and false"#, true),
        (r#"(true or false) and false"#, false),
        ("true", true),
        ("false", false),
    ] {
        assert_eq!(holds(c, &s), want, "{c}");
    }
}

// --- paths ---

#[test]
fn span_paths_read_the_encoded_span() {
    let mut p = span(0, 1).attrs(vec![
        kv("http.route", "/cart"),
        kv_map(
            "m",
            vec![kv("inner", "x"), kv_map("deep", vec![kv_int("j", 7)])],
        ),
    ]);
    p.name = "GET /cart".into();
    p.kind = SpanKind::Server as i32;
    p.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        code: status::StatusCode::Error as i32,
        message: "boom".into(),
    });
    p.parent_span_id = vec![9, 9, 9, 9, 9, 9, 9, 9];
    p.trace_state = "ot=th:8".into();
    let start = p.start_time_unix_nano;
    let s = scoped(
        vec![kv("service.name", "checkout")],
        ("io.otel.http", "1.2.0"),
        p,
    );
    for c in [
        r#"name == "GET /cart""#.to_owned(),
        r#"span.name == "GET /cart""#.into(),
        "kind == SPAN_KIND_SERVER".into(),
        "kind == 2".into(),
        "span.kind != SPAN_KIND_CLIENT".into(),
        "status.code == STATUS_CODE_ERROR".into(),
        r#"status.message == "boom""#.into(),
        r#"attributes["http.route"] == "/cart""#.into(),
        r#"attributes["m"]["inner"] == "x""#.into(),
        r#"attributes["m"]["deep"]["j"] == 7"#.into(),
        r#"attributes["m"]["nope"] == nil"#.into(),
        r#"attributes["nope"]["deeper"] == nil"#.into(),
        r#"span.attributes["http.route"] == "/cart""#.into(),
        r#"resource.attributes["service.name"] == "checkout""#.into(),
        r#"instrumentation_scope.name == "io.otel.http""#.into(),
        r#"instrumentation_scope.version == "1.2.0""#.into(),
        r#"instrumentation_scope.attributes["scope.k"] == "sv""#.into(),
        "trace_id == TraceID(0x0102030405060708090a0b0c0d0e0f10)".into(),
        "span_id == SpanID(0x0000000000000001)".into(),
        "parent_span_id == SpanID(0x0909090909090909)".into(),
        format!("start_time_unix_nano == {start}"),
        format!("end_time_unix_nano == {}", start + 1_000_000),
        "end_time_unix_nano - 1 > 0".replace(" - 1", ""),
        r#"trace_state == "ot=th:8""#.into(),
        "IsMap(attributes)".into(),
        "Len(attributes) == 2".into(),
    ] {
        assert!(holds(&c, &s), "{c}");
    }
    // A root span's parent id is all zeros, as pdata reads it.
    assert!(holds(
        "parent_span_id == SpanID(0x0000000000000000)",
        &one(span(0, 1))
    ));
    assert!(!holds("kind == SPAN_KIND_SERVER", &one(span(0, 1))));
    assert!(holds("kind == SPAN_KIND_UNSPECIFIED", &one(span(0, 1))));
    assert!(holds("status.code == STATUS_CODE_UNSET", &one(span(0, 1))));
}

#[test]
fn indexing_a_non_map_is_an_evaluation_error() {
    let s = one(span(0, 1).attrs(vec![kv("s", "x")]));
    assert!(!holds(r#"attributes["s"]["k"] == nil or true"#, &s));
    let ignore = build(&policy(
        "ignore",
        &[r#"attributes["s"]["k"] == nil"#, "true"],
        &[],
    ));
    assert!(verdict(&ignore, &s).sampled);
}

#[test]
fn span_event_conditions_see_the_event_and_the_enclosing_span() {
    let mut p = span(0, 1);
    p.name = "checkout".into();
    p.events = vec![
        event("log", 11, vec![kv("level", "info")]),
        event(
            "exception",
            42,
            vec![kv("exception.type", "java.lang.NullPointerException")],
        ),
    ];
    let s = one(p);
    let keeps = |c: &str| verdict(&build(&policy("", &[], &[c])), &s).sampled;
    assert!(keeps(r#"name == "exception""#));
    assert!(keeps(r#"spanevent.name == "exception""#));
    assert!(keeps(
        r#"IsMatch(attributes["exception.type"], "NullPointer")"#
    ));
    assert!(keeps("time_unix_nano == 42"));
    assert!(keeps(r#"span.name == "checkout" and name == "log""#));
    assert!(!keeps(r#"name == "checkout""#), "name is the event's");
    assert!(!keeps(
        r#"name == "exception" and attributes["level"] == "info""#
    ));
    assert!(
        !verdict(
            &build(&policy("", &[], &[r#"name == "exception""#])),
            &one(span(0, 1))
        )
        .sampled
    );
    // span and spanevent lists are ORed.
    let both = build(&policy(
        "",
        &[r#"name == "nope""#],
        &[r#"name == "exception""#],
    ));
    assert!(verdict(&both, &s).sampled);
}

#[test]
fn any_span_of_the_trace_may_match_and_resources_are_per_span() {
    let t = trace(vec![
        (vec![kv("service.name", "frontend")], vec![span(0, 1)]),
        (
            vec![kv("service.name", "checkout")],
            vec![span(0, 1), span(1, 2)],
        ),
    ]);
    assert!(holds(
        r#"resource.attributes["service.name"] == "checkout""#,
        &t
    ));
    assert!(!holds(
        r#"resource.attributes["service.name"] == "cart""#,
        &t
    ));
    assert!(!holds(
        r#"resource.attributes["service.name"] == "frontend" and attributes["x"] == 1"#,
        &t
    ));
}

// --- converters ---

#[test]
fn each_converter() {
    let s = one(span(0, 1).attrs(vec![
        kv("route", "/Health/Live"),
        kv("num", "42"),
        kv("fnum", "0.25"),
        kv_int("i", 7),
        kv_double("d", 2.75),
        kv_bool("b", true),
        kv_bytes("raw", &[0xab, 0xcd]),
        kv_map("m", vec![kv("a", "1"), kv("b", "2")]),
    ]));
    for (c, want) in [
        (r#"IsMatch(attributes["route"], "^/Health")"#, true),
        (r#"IsMatch(attributes["route"], "Live$")"#, true),
        (r#"IsMatch(attributes["route"], "live")"#, false),
        (r#"IsMatch(attributes["i"], "^7$")"#, true),
        (r#"IsMatch(attributes["d"], "^2.75$")"#, true),
        (r#"IsMatch(attributes["b"], "true")"#, true),
        (r#"IsMatch(attributes["raw"], "^abcd$")"#, true),
        (r#"IsMatch(attributes["missing"], ".*")"#, false),
        (r#"IsString(attributes["route"])"#, true),
        (r#"IsString(attributes["i"])"#, false),
        (r#"IsInt(attributes["i"])"#, true),
        (r#"IsInt(attributes["d"])"#, false),
        (r#"IsDouble(attributes["d"])"#, true),
        (r#"IsBool(attributes["b"])"#, true),
        (r#"IsBool(attributes["missing"])"#, false),
        (r#"IsMap(attributes["m"])"#, true),
        (r#"IsMap(attributes["route"])"#, false),
        (r#"Int(attributes["num"]) == 42"#, true),
        (r#"Int(attributes["d"]) == 2"#, true),
        (r#"Int(attributes["b"]) == 1"#, true),
        (r#"Int(attributes["route"]) == nil"#, true),
        (r#"Int(attributes["missing"]) == nil"#, true),
        (r#"Double(attributes["fnum"]) > 0.1"#, true),
        (r#"Double(attributes["i"]) == 7.0"#, true),
        (r#"Double(attributes["route"]) == nil"#, true),
        (r#"String(attributes["i"]) == "7""#, true),
        (r#"String(attributes["d"]) == "2.75""#, true),
        (r#"String(attributes["missing"]) == nil"#, true),
        (r#"Len(attributes["route"]) == 12"#, true),
        (r#"Len(attributes["m"]) == 2"#, true),
        (
            r#"Concat([attributes["route"], attributes["i"], "x"], "|") == "/Health/Live|7|x""#,
            true,
        ),
        (
            r#"Concat([attributes["missing"], "x"], "-") == "<nil>-x""#,
            true,
        ),
        (r#"HasPrefix(attributes["route"], "/Health")"#, true),
        (r#"HasPrefix(attributes["route"], "/Ready")"#, false),
        (r#"HasSuffix(attributes["route"], "Live")"#, true),
        (
            r#"ToLowerCase(attributes["route"]) == "/health/live""#,
            true,
        ),
        (r#"ToUpperCase(name) == "OP""#, true),
        (r#"Substring(attributes["route"], 1, 6) == "Health""#, true),
        (r#"Substring(name, 0, 2) == "op""#, true),
        (
            "TraceID(0x0102030405060708090a0b0c0d0e0f10) == trace_id",
            true,
        ),
        ("SpanID(0x0000000000000002) == span_id", false),
    ] {
        assert_eq!(holds(c, &s), want, "{c}");
    }
}

#[test]
fn converter_type_errors_at_run_time_follow_error_mode() {
    let s = one(span(0, 1).attrs(vec![kv_int("i", 7), kv("s", "abc"), kv_bytes("raw", &[1])]));
    // Each of these errors on this span; with propagate the trace is not sampled even though
    // the next condition holds.
    for c in [
        r#"HasPrefix(attributes["i"], "7")"#,
        r#"HasSuffix(attributes["missing"], "7")"#,
        r#"ToLowerCase(attributes["i"]) == "7""#,
        r#"Len(attributes["i"]) == 1"#,
        r#"Len(attributes["missing"]) == 0"#,
        r#"Len(attributes["raw"]) == 1"#,
        r#"Substring(attributes["s"], 2, 5) == "c""#,
        r#"Substring(attributes["s"], -1, 1) == "c""#,
        r#"Substring(attributes["s"], 0, 0) == """#,
        r#"Substring(attributes["s"], attributes["s"], 1) == "a""#,
        r#"Int(attributes["m"]) == 1 or IsMatch(attributes["i"], "x") or Len(1.5) == 0"#,
    ] {
        let propagate = build(&policy("", &[c, "true"], &[]));
        assert!(!verdict(&propagate, &s).sampled, "propagate: {c}");
        let explicit = build(&policy("propagate", &[c, "true"], &[]));
        assert!(!verdict(&explicit, &s).sampled, "propagate: {c}");
        for mode in ["ignore", "silent"] {
            let p = build(&policy(mode, &[c, "true"], &[]));
            assert!(verdict(&p, &s).sampled, "{mode}: {c}");
            let alone = build(&policy(mode, &[c], &[]));
            assert!(!verdict(&alone, &s).sampled, "{mode} alone: {c}");
        }
    }
}

#[test]
fn propagate_error_on_one_policy_does_not_stop_the_others() {
    let p = build(&format!(
        "{}- {{ name: all, type: always_sample }}\n",
        policy("", &[r#"HasPrefix(attributes["i"], "7")"#], &[])
    ));
    let v = verdict(&p, &one(span(0, 1).attrs(vec![kv_int("i", 7)])));
    assert!(v.sampled);
    assert_eq!(v.policies, vec![std::sync::Arc::<str>::from("all")]);
}

// --- load-time errors ---

#[test]
fn every_problem_is_reported_with_its_line_and_column() {
    let yaml = r#"
- name: bad
  type: ottl_condition
  ottl_condition:
    error_mode: loud
    span:
      - 'Foo(name) == "x"'
      - 'attributes["a"] == 1 and nme == "x"'
      - 'IsMatch(attributes["a"], "(unclosed")'
      - 'HasPrefix(kind, "x") and Substring(name, "1", 2) == "a" and Len(name, 1) == 1'
      - |
        name == "a" and
          kind = SPAN_KIND_SERVER
      - 'attributes["a"]'
      - 'kind == SPAN_KIND_SERVERS'
      - 'name == "unterminated'
      - 'name == ''single'''
      - 'name == "a" and'
      - 'set(name, "x")'
      - 'TraceID(0x0102) == trace_id'
      - 'attributes["a"][0] == 1'
      - 'IsMatch(name, pattern)'
    spanevent:
      - 'kind == SPAN_KIND_SERVER'
"#;
    let got = problems(yaml);
    let at = |path: &str| -> Vec<String> {
        got.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, m)| m.clone())
            .collect()
    };
    let base = "policies[0].ottl_condition";
    assert_eq!(at(&format!("{base}.error_mode")).len(), 1, "{got:#?}");
    let first = |i: usize| at(&format!("{base}.span[{i}]")).join(" | ");
    assert!(
        first(0).starts_with(
            "line 1, column 1: unknown function Foo; casefile supports the converters IsMatch,"
        ),
        "{}",
        first(0)
    );
    assert!(
        first(1)
            .starts_with("line 1, column 26: unknown path nme in a span condition; known: name,"),
        "{}",
        first(1)
    );
    assert!(
        first(2).starts_with("line 1, column 26: invalid regex \"(unclosed\": "),
        "{}",
        first(2)
    );
    // Three type errors in one condition, all reported.
    let three = at(&format!("{base}.span[3]"));
    assert_eq!(
        three,
        [
            "line 1, column 11: HasPrefix expects a string here, got an int",
            "line 1, column 42: Substring expects an int here, got a string",
            "line 1, column 61: Len takes 1 argument, got 2",
        ]
    );
    assert_eq!(
        first(4),
        "line 2, column 8: \"=\" is assignment; compare with \"==\""
    );
    assert!(
        first(5).starts_with("line 1, column 1: a path is not a condition"),
        "{}",
        first(5)
    );
    assert!(
        first(6).starts_with("line 1, column 9: unknown enum SPAN_KIND_SERVERS;"),
        "{}",
        first(6)
    );
    assert_eq!(first(7), "line 1, column 9: unterminated string");
    assert_eq!(
        first(8),
        "line 1, column 9: unexpected character '\\'' (strings are double-quoted)"
    );
    assert_eq!(
        first(9),
        "line 1, column 16: expected a value, found end of condition"
    );
    assert!(
        first(10).starts_with("line 1, column 1: unknown function set (editors such as set"),
        "{}",
        first(10)
    );
    assert_eq!(first(11), "line 1, column 9: TraceID needs 16 bytes, got 2");
    assert!(
        first(12).starts_with("line 1, column 17: casefile does not support slice indexes"),
        "{}",
        first(12)
    );
    assert_eq!(
        first(13),
        "line 1, column 15: IsMatch takes its pattern as a string literal"
    );
    assert!(at(&format!("{base}.spanevent[0]"))[0]
        .starts_with("line 1, column 1: unknown path kind in a spanevent condition"));
    assert_eq!(got.len(), 18, "{got:#?}");
}

#[test]
fn an_empty_block_and_unknown_keys_are_refused() {
    let got = problems("- { name: o, type: ottl_condition, ottl_condition: {} }");
    assert_eq!(got[0].0, "policies[0].ottl_condition");
    assert!(got[0].1.contains("at least one condition"));
    let r: Result<Vec<PolicyCfg>, _> = serde_yaml_ng::from_str(
        "- { name: o, type: ottl_condition, ottl_condition: { spans: ['true'] } }",
    );
    assert!(r.is_err());
}

#[test]
fn describe_lists_the_conditions() {
    let p = build(&policy(
        "ignore",
        &[r#"name == "a""#],
        &[r#"name == "exception""#],
    ));
    assert_eq!(
        p.describe(),
        [
            "ottl: ottl_condition (error_mode ignore): any condition holds for a span or span event:",
            r#"  span: name == "a""#,
            r#"  spanevent: name == "exception""#,
        ]
    );
}

// --- shapes from public Collector configs, in every place a policy may sit ---

fn http(status: Option<i64>, route: &str) -> Vec<Span> {
    let mut attrs = vec![kv("http.route", route)];
    if let Some(code) = status {
        attrs.push(kv_int("http.response.status_code", code));
    }
    one(span(0, 1).attrs(attrs))
}

#[test]
fn numeric_threshold_with_a_nil_guard() {
    let c = r#"attributes["http.response.status_code"] != nil and attributes["http.response.status_code"] >= 500"#;
    assert!(holds(c, &http(Some(503), "/cart")));
    assert!(!holds(c, &http(Some(404), "/cart")));
    assert!(!holds(c, &http(None, "/cart")));
}

#[test]
fn shapes_inside_and_drop_not_and_composite() {
    let yaml = r#"
- name: drop-health
  type: drop
  drop:
    drop_sub_policy:
      - name: health-route
        type: ottl_condition
        ottl_condition:
          span:
            - 'IsMatch(attributes["http.route"], "^/(health|ready)")'
- name: checkout-errors
  type: and
  and:
    and_sub_policy:
      - name: checkout
        type: ottl_condition
        ottl_condition:
          span:
            - 'resource.attributes["service.name"] == "checkout"'
      - name: server-errors
        type: ottl_condition
        ottl_condition:
          error_mode: ignore
          span:
            - 'kind == SPAN_KIND_SERVER and attributes["http.response.status_code"] >= 500'
      - name: half
        type: probabilistic
        probabilistic: { sampling_percentage: 100 }
- name: not-cart
  type: not
  not:
    not_sub_policy:
      name: cart
      type: ottl_condition
      ottl_condition:
        span:
          - 'name == "GET /cart"'
- name: budget
  type: composite
  composite:
    max_total_spans_per_second: 1000
    policy_order: [slow-ratio, exceptions]
    composite_sub_policy:
      - name: slow-ratio
        type: ottl_condition
        ottl_condition:
          span:
            - 'Double(attributes["x"]) > 0.1'
      - name: exceptions
        type: ottl_condition
        ottl_condition:
          spanevent:
            - 'name == "exception"'
    rate_allocation:
      - { policy: slow-ratio, percent: 50 }
      - { policy: exceptions, percent: 50 }
"#;
    let p = build(yaml);
    let named = |s: &[Span]| -> Vec<String> {
        verdict(&p, s)
            .policies
            .iter()
            .map(|n| n.to_string())
            .collect()
    };
    let mk =
        |name: &str, kind: SpanKind, attrs: Vec<KeyValue>, service: &str, events: Vec<Event>| {
            let mut s = span(0, 1).attrs(attrs);
            s.name = name.into();
            s.kind = kind as i32;
            s.events = events;
            trace(vec![(vec![kv("service.name", service)], vec![s])])
        };
    use SpanKind::{Client, Server};
    // Health checks are dropped whatever else matches.
    let health = mk(
        "GET /cart",
        Server,
        vec![
            kv("http.route", "/health/live"),
            kv_int("http.response.status_code", 500),
        ],
        "checkout",
        vec![],
    );
    assert!(!verdict(&p, &health).sampled);
    // checkout server errors: and; the cart span is not kept by not-cart.
    let err = mk(
        "GET /cart",
        Server,
        vec![kv_int("http.response.status_code", 502)],
        "checkout",
        vec![],
    );
    assert_eq!(named(&err), ["checkout-errors"]);
    let client_err = mk(
        "GET /cart",
        Client,
        vec![kv_int("http.response.status_code", 502)],
        "checkout",
        vec![],
    );
    assert!(!verdict(&p, &client_err).sampled);
    // not: anything but GET /cart.
    let other = mk("GET /pay", Client, vec![], "frontend", vec![]);
    assert_eq!(named(&other), ["not-cart"]);
    // composite: Double cast, then exception events.
    let ratio = mk(
        "GET /cart",
        Client,
        vec![kv("x", "0.5")],
        "frontend",
        vec![],
    );
    assert_eq!(named(&ratio), ["budget"]);
    let exc = mk(
        "GET /cart",
        Client,
        vec![],
        "frontend",
        vec![event("exception", 5, vec![])],
    );
    assert_eq!(named(&exc), ["budget"]);
    let nothing = mk(
        "GET /cart",
        Client,
        vec![kv("x", "0.05")],
        "frontend",
        vec![event("log", 5, vec![])],
    );
    assert!(!verdict(&p, &nothing).sampled);
}

#[test]
fn resource_only_conditions_are_evaluated_once_per_block_with_the_same_result() {
    // Many spans under one resource: the answer is the same as for one.
    let many: Vec<ProtoSpan> = (0..50).map(|i| span(i, i + 1)).collect();
    let t = trace(vec![
        (vec![kv("service.name", "a")], many),
        (vec![kv("service.name", "b")], vec![span(0, 1)]),
    ]);
    assert!(holds(r#"resource.attributes["service.name"] == "b""#, &t));
    assert!(!holds(r#"resource.attributes["service.name"] == "c""#, &t));
}

#[test]
fn repeated_paths_read_once_give_the_same_answers_beyond_the_memo_slots() {
    let s = one(span(0, 1).attrs(vec![
        kv_int("a", 1),
        kv_int("b", 2),
        kv_int("c", 3),
        kv_int("d", 4),
        kv_int("e", 5),
    ]));
    let c = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                r#"attributes["{k}"] >= {} and attributes["{k}"] <= {}"#,
                i + 1,
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" and ");
    assert!(holds(&c, &s));
    assert!(!holds(&c.replace("<= 5", "<= 4"), &s));
    // A converter result is not memoised by mistake: two different converters on one path.
    assert!(holds(
        r#"ToUpperCase(name) == "OP" and ToLowerCase(name) == "op" and name == "op""#,
        &one(span(0, 1))
    ));
}

#[test]
fn fused_attribute_tests_keep_order_flips_and_mixed_groups() {
    let s = one(span(0, 1).attrs(vec![kv_int("n", 503), kv("s", "b")]));
    for (c, want) in [
        (r#"500 <= attributes["n"] and 599 >= attributes["n"]"#, true),
        (r#"500 < attributes["n"] and attributes["n"] < 503"#, false),
        (
            r#"attributes["s"] == "a" or attributes["s"] == "b" or attributes["n"] == 1"#,
            true,
        ),
        (
            r#"attributes["s"] == "a" or attributes["n"] == 1 or attributes["s"] == "c""#,
            false,
        ),
        (
            r#"(attributes["n"] >= 500 and attributes["n"] <= 599) or attributes["n"] == 1"#,
            true,
        ),
        (
            r#"not (attributes["n"] == 1 or attributes["n"] == 2)"#,
            true,
        ),
        (
            r#"attributes["n"] != nil and attributes["n"] >= 500 and attributes["missing"] == nil"#,
            true,
        ),
        (
            r#"resource.attributes["n"] == nil and attributes["n"] == 503"#,
            true,
        ),
    ] {
        assert_eq!(holds(c, &s), want, "{c}");
    }
}
