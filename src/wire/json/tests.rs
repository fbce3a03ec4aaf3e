//! OTLP/JSON transcoding tests: round trips against prost, the spec's conventions, and bad input.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::*;

fn kv(key: &str, v: Option<Value>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: v }),
        key_strindex: 0,
    }
}

fn req(
    resource: Option<Resource>,
    scope: Option<InstrumentationScope>,
    spans: Vec<Span>,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource,
            scope_spans: vec![ScopeSpans {
                scope,
                spans,
                schema_url: "https://s/1".into(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn full_request() -> ExportTraceServiceRequest {
    let nested = Value::KvlistValue(KeyValueList {
        values: vec![
            kv(
                "inner",
                Some(Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(Value::IntValue(-7)),
                        },
                        AnyValue { value: None },
                        AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue::default())),
                        },
                    ],
                })),
            ),
            KeyValue {
                key: "no value".into(),
                value: None,
                key_strindex: 3,
            },
        ],
    });
    let resource = Resource {
        attributes: vec![
            kv(
                "s",
                Some(Value::StringValue("svc \"q\" \\ \n\u{1}é😀".into())),
            ),
            kv("b", Some(Value::BoolValue(true))),
            kv("i", Some(Value::IntValue(i64::MIN))),
            kv("d", Some(Value::DoubleValue(0.1 + 0.2))),
            kv("d2", Some(Value::DoubleValue(f64::MAX))),
            kv("d3", Some(Value::DoubleValue(5e-324))),
            kv("inf", Some(Value::DoubleValue(f64::NEG_INFINITY))),
            kv(
                "bytes",
                Some(Value::BytesValue(vec![0, 1, 2, 250, 251, 252, 253])),
            ),
            kv(
                "arr",
                Some(Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(nested.clone()),
                    }],
                })),
            ),
            kv("kv", Some(nested)),
            kv("zero int", Some(Value::IntValue(0))),
            kv("false", Some(Value::BoolValue(false))),
            kv("empty str", Some(Value::StringValue(String::new()))),
            kv("zero double", Some(Value::DoubleValue(0.0))),
            kv("empty bytes", Some(Value::BytesValue(vec![]))),
            kv("strindex", Some(Value::StringValueStrindex(0))),
            kv("empty", None),
        ],
        dropped_attributes_count: 3,
        entity_refs: vec![EntityRef {
            schema_url: "u".into(),
            r#type: "service".into(),
            id_keys: vec!["service.name".into(), String::new()],
            description_keys: vec!["d".into()],
        }],
    };
    let scope = InstrumentationScope {
        name: "lib".into(),
        version: "1.2".into(),
        attributes: vec![kv("scope.attr", Some(Value::StringValue("x".into())))],
        dropped_attributes_count: 1,
    };
    let span = Span {
        trace_id: (1..=16).collect(),
        span_id: (1..=8).collect(),
        trace_state: "k=v".into(),
        parent_span_id: vec![0xab; 8],
        flags: 0x301,
        name: "GET /".into(),
        kind: 3,
        start_time_unix_nano: u64::MAX,
        end_time_unix_nano: 1_544_712_661_000_000_001,
        attributes: vec![kv("http.status_code", Some(Value::IntValue(500)))],
        dropped_attributes_count: 4,
        events: vec![
            Event {
                time_unix_nano: 5,
                name: "exception".into(),
                attributes: vec![kv("e", Some(Value::DoubleValue(-1.5)))],
                dropped_attributes_count: 2,
            },
            Event::default(),
        ],
        dropped_events_count: 6,
        links: vec![Link {
            trace_id: vec![0xff; 16],
            span_id: vec![0xee; 8],
            trace_state: "a=b".into(),
            attributes: vec![kv("l", Some(Value::BoolValue(true)))],
            dropped_attributes_count: 7,
            flags: 1,
        }],
        dropped_links_count: 8,
        status: Some(Status {
            message: "boom".into(),
            code: 2,
        }),
    };
    let bare = Span {
        kind: 42,
        status: Some(Status::default()),
        ..Span::default()
    };
    req(Some(resource), Some(scope), vec![span, bare])
}

fn round_trip(r: &ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    let json = request_to_json(&r.encode_to_vec()).unwrap();
    assert!(!json.contains('\n'), "{json}");
    let (proto, unknown) = request_from_json_with_unknown(json.as_bytes()).unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    ExportTraceServiceRequest::decode(&proto[..]).unwrap()
}

fn decode(json: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(&request_from_json(json.as_bytes()).unwrap()[..]).unwrap()
}

fn err(json: &str) -> String {
    request_from_json(json.as_bytes()).unwrap_err().to_string()
}

fn spans_doc(span: &str) -> String {
    format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#)
}

#[test]
fn round_trips_prost_requests() {
    let with_empty_resource = req(Some(Resource::default()), None, vec![Span::default()]);
    for r in [
        full_request(),
        ExportTraceServiceRequest::default(),
        with_empty_resource,
    ] {
        assert_eq!(round_trip(&r), r);
    }
}

#[test]
fn writes_otlp_json_conventions() {
    let json = request_to_json(&full_request().encode_to_vec()).unwrap();
    for want in [
        r#""traceId":"0102030405060708090a0b0c0d0e0f10""#,
        r#""parentSpanId":"abababababababab""#,
        r#""kind":3,"startTimeUnixNano":"18446744073709551615""#,
        r#""flags":769"#,
        r#"{"key":"i","value":{"intValue":"-9223372036854775808"}}"#,
        r#"{"key":"zero int","value":{"intValue":"0"}}"#,
        r#"{"key":"false","value":{"boolValue":false}}"#,
        r#"{"key":"empty str","value":{"stringValue":""}}"#,
        r#"{"key":"inf","value":{"doubleValue":"-Infinity"}}"#,
        r#"{"key":"bytes","value":{"bytesValue":"AAEC+vv8/Q=="}}"#,
        r#"{"key":"empty","value":{}}"#,
        r#""status":{"message":"boom","code":2}"#,
        r#""status":{}"#,
        r#""svc \"q\" \\ \n\u0001é😀""#,
    ] {
        assert!(json.contains(want), "{want} not in {json}");
    }
    assert!(json.starts_with(r#"{"resourceSpans":[{"resource":{"attributes":["#));
    assert!(!json.contains("droppedEventsCount\":0"));
}

const SPEC_EXAMPLE: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0",
                "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": 1544712661000000000,
        "kind": 2,
        "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}},
                       {"key": "n", "value": {"intValue": "42"}}]
      }]
    }]
  }]
}"#;

const SNAKE_EXAMPLE: &str = r#"{
  "resource_spans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"string_value": "my.service"}}]},
    "scope_spans": [{
      "scope": {"name": "my.library", "version": "1.0.0",
                "attributes": [{"key": "my.scope.attribute", "value": {"string_value": "some scope attribute"}}]},
      "spans": [{
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "parent_span_id": "eee19b7ec3c1b173",
        "name": "I'm a server span",
        "start_time_unix_nano": 1544712660000000000,
        "end_time_unix_nano": "1544712661000000000",
        "kind": "SPAN_KIND_SERVER",
        "attributes": [{"key": "my.span.attr", "value": {"string_value": "some value"}},
                       {"key": "n", "value": {"int_value": 42}}]
      }]
    }]
  }]
}"#;

#[test]
fn decodes_the_spec_example() {
    let r = decode(SPEC_EXAMPLE);
    let rs = &r.resource_spans[0];
    assert_eq!(
        rs.resource.as_ref().unwrap().attributes,
        vec![kv(
            "service.name",
            Some(Value::StringValue("my.service".into()))
        )]
    );
    let scope = rs.scope_spans[0].scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("my.library", "1.0.0")
    );
    let span = &rs.scope_spans[0].spans[0];
    assert_eq!(
        hex::encode(&span.trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(span.span_id, hex::decode("eee19b7ec3c1b174").unwrap());
    assert_eq!(
        span.parent_span_id,
        hex::decode("eee19b7ec3c1b173").unwrap()
    );
    assert_eq!(span.name, "I'm a server span");
    assert_eq!(
        (span.start_time_unix_nano, span.end_time_unix_nano),
        (1544712660000000000, 1544712661000000000)
    );
    assert_eq!(span.kind, 2);
    assert_eq!(span.attributes[1], kv("n", Some(Value::IntValue(42))));
}

#[test]
fn snake_case_names_decode_like_camel_case() {
    let (_, unknown) = request_from_json_with_unknown(SNAKE_EXAMPLE.as_bytes()).unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(decode(SNAKE_EXAMPLE), decode(SPEC_EXAMPLE));
}

#[test]
fn enums_by_name_number_or_numeric_string() {
    let r = decode(&spans_doc(
        r#"{"kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR"}},{"kind":"4"}"#,
    ));
    let spans = &r.resource_spans[0].scope_spans[0].spans;
    assert_eq!(
        (spans[0].kind, spans[0].status.as_ref().unwrap().code),
        (2, 2)
    );
    assert_eq!(spans[1].kind, 4);
    let e = err(&spans_doc(r#"{"kind":1},{"kind":"SPAN_KIND_BOGUS"}"#));
    assert_eq!(
        e,
        r#"resourceSpans[0].scopeSpans[0].spans[1].kind: unknown enum value "SPAN_KIND_BOGUS""#
    );
    assert!(err(&spans_doc(r#"{"kind":2147483648}"#)).contains("out of range"));
}

#[test]
fn nulls_are_absent_and_unknown_fields_are_reported() {
    let doc = r#"{"extra":1,"resourceSpans":[{"resource":null,"scopeSpans":[{"scope":null,"spans":[
        {"name":"a","attributes":null,"events":null,"status":null,"fooBar":{"x":[1,{"y":null}]},"kind":null}]}]}]}"#;
    let (proto, unknown) = request_from_json_with_unknown(doc.as_bytes()).unwrap();
    assert_eq!(
        unknown,
        vec![
            "extra".to_owned(),
            "resourceSpans[0].scopeSpans[0].spans[0].fooBar".to_owned()
        ]
    );
    let r = ExportTraceServiceRequest::decode(&proto[..]).unwrap();
    let mut want = req(
        None,
        None,
        vec![Span {
            name: "a".into(),
            ..Span::default()
        }],
    );
    want.resource_spans[0].scope_spans[0].schema_url.clear();
    assert_eq!(r, want);
}

#[test]
fn oneof_members_are_written_even_when_default() {
    let attrs = r#"[{"key":"i","value":{"intValue":"0"}},{"key":"s","value":{"stringValue":""}},
        {"key":"b","value":{"boolValue":false}},{"key":"d","value":{"doubleValue":0}},{"key":"n","value":{}},
        {"key":"x","value":{"stringValue":null,"intValue":3}}]"#;
    let r = decode(&spans_doc(&format!(r#"{{"attributes":{attrs}}}"#)));
    let values: Vec<_> = r.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .iter()
        .map(|a| a.value.clone().unwrap().value)
        .collect();
    assert_eq!(
        values,
        vec![
            Some(Value::IntValue(0)),
            Some(Value::StringValue(String::new())),
            Some(Value::BoolValue(false)),
            Some(Value::DoubleValue(0.0)),
            None,
            Some(Value::IntValue(3))
        ]
    );
    let e = err(&spans_doc(
        r#"{"attributes":[{"key":"k","value":{"intValue":1,"boolValue":true}}]}"#,
    ));
    assert!(
        e.starts_with(
            "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.boolValue: more than one"
        ),
        "{e}"
    );
}

#[test]
fn numbers_and_bytes_forms() {
    let value = |v: &str| {
        let r = decode(&spans_doc(&format!(
            r#"{{"attributes":[{{"key":"k","value":{v}}}]}}"#
        )));
        r.resource_spans[0].scope_spans[0].spans[0].attributes[0]
            .value
            .clone()
            .unwrap()
            .value
            .unwrap()
    };
    assert_eq!(value(r#"{"intValue":1e3}"#), Value::IntValue(1000));
    assert_eq!(value(r#"{"intValue":"-2.50e1"}"#), Value::IntValue(-25));
    assert_eq!(
        value(r#"{"intValue":"-9223372036854775808"}"#),
        Value::IntValue(i64::MIN)
    );
    assert_eq!(value(r#"{"doubleValue":"1.5"}"#), Value::DoubleValue(1.5));
    assert_eq!(value(r#"{"doubleValue":2}"#), Value::DoubleValue(2.0));
    assert_eq!(
        value(r#"{"doubleValue":0.30000000000000004}"#),
        Value::DoubleValue(0.1 + 0.2)
    );
    assert_eq!(
        value(r#"{"doubleValue":"Infinity"}"#),
        Value::DoubleValue(f64::INFINITY)
    );
    assert!(matches!(value(r#"{"doubleValue":"NaN"}"#), Value::DoubleValue(d) if d.is_nan()));
    assert_eq!(
        value(r#"{"bytesValue":"AAEC+vv8/Q=="}"#),
        Value::BytesValue(vec![0, 1, 2, 250, 251, 252, 253])
    );
    assert_eq!(
        value(r#"{"bytesValue":"AAEC-vv8_Q"}"#),
        Value::BytesValue(vec![0, 1, 2, 250, 251, 252, 253])
    );
    assert_eq!(
        value(r#"{"stringValue":"\ud83d\ude00\u00e9\n\/"}"#),
        Value::StringValue("😀é\n/".into())
    );
    let span = |s: &str| decode(&spans_doc(s)).resource_spans[0].scope_spans[0].spans[0].clone();
    assert_eq!(
        span(r#"{"startTimeUnixNano":"18446744073709551615","flags":"4294967295"}"#).flags,
        u32::MAX
    );
    assert_eq!(
        span(r#"{"traceId":"","droppedLinksCount":"7"}"#).dropped_links_count,
        7
    );
    for (bad, why) in [
        (
            r#"{"attributes":[{"key":"k","value":{"intValue":"9223372036854775808"}}]}"#,
            "out of range",
        ),
        (
            r#"{"attributes":[{"key":"k","value":{"intValue":1.5}}]}"#,
            "not an integer",
        ),
        (
            r#"{"attributes":[{"key":"k","value":{"doubleValue":1e400}}]}"#,
            "out of range",
        ),
        (
            r#"{"attributes":[{"key":"k","value":{"doubleValue":"inf"}}]}"#,
            "invalid number",
        ),
        (
            r#"{"attributes":[{"key":"k","value":{"bytesValue":"a*=="}}]}"#,
            "invalid base64",
        ),
        (r#"{"droppedAttributesCount":-1}"#, "out of range"),
        (
            r#"{"startTimeUnixNano":"abc"}"#,
            "spans[0].startTimeUnixNano: invalid integer",
        ),
        (
            r#"{"startTimeUnixNano":true}"#,
            "expected an integer, found boolean",
        ),
        (
            r#"{"name":1}"#,
            "spans[0].name: expected a string, found number",
        ),
        (
            r#"{"status":[]}"#,
            "spans[0].status: expected an object, found array",
        ),
        (
            r#"{"events":{}}"#,
            "spans[0].events: expected an array, found object",
        ),
        (
            r#"{"events":[null]}"#,
            "spans[0].events[0]: null is not allowed",
        ),
        (
            r#"{"traceId":"aa","trace_id":"bb"}"#,
            "spans[0].traceId: duplicate field",
        ),
    ] {
        let e = err(&spans_doc(bad));
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn response_json() {
    assert_eq!(response_to_json(0, ""), "{}");
    assert_eq!(
        response_to_json(3, "bad \"ids\""),
        r#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"bad \"ids\""}}"#
    );
    assert_eq!(
        response_to_json(-1, ""),
        r#"{"partialSuccess":{"rejectedSpans":"-1"}}"#
    );
    assert_eq!(
        response_to_json(0, "warn"),
        r#"{"partialSuccess":{"errorMessage":"warn"}}"#
    );
}

mod bad_input;
mod props;
