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

mod load;
mod shapes;

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
fn fused_attribute_comparisons_follow_the_general_rules() {
    use super::expr::{any_value, compare_lit, Lit};
    use crate::wire::AnyValueRef as A;
    let values = [
        A::Empty,
        A::Str(""),
        A::Str("a"),
        A::Str("b"),
        A::Int(5),
        A::Int(-1),
        A::Double(5.0),
        A::Double(f64::NAN),
        A::Bool(true),
        A::Bool(false),
        A::Bytes(&[1, 2]),
        A::Array(&[0x0a, 0x00]),
        A::KvList(&[]),
    ];
    let lits = [
        Lit::Nil,
        Lit::Str("".into()),
        Lit::Str("a".into()),
        Lit::Int(5),
        Lit::Int(-1),
        Lit::Double(5.0),
        Lit::Double(4.5),
        Lit::Bool(true),
        Lit::Bool(false),
        Lit::Bytes(vec![1, 2].into()),
    ];
    let ops = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ];
    for lit in &lits {
        for op in ops {
            assert_eq!(
                compare_lit(None, op, lit),
                compare(&V::Nil, op, &lit.value()),
                "absent {op:?} {lit:?}"
            );
            for v in values {
                assert_eq!(
                    compare_lit(Some(v), op, lit),
                    compare(&any_value(v), op, &lit.value()),
                    "{v:?} {op:?} {lit:?}"
                );
            }
        }
    }
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
