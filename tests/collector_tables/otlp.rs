//! The tables' traces: their YAML shape, built as OTLP requests and decoded by casefile's
//! ingest decoder.

use casefile::model::Span;
use casefile::wire::decode::decode_request;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Status};
use prost::Message;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

/// A fixed instant the spans' times count from (2026-01-01T00:00:00Z).
const T0_NANOS: u64 = 1_767_225_600_000_000_000;
const DEFAULT_TRACE_ID: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceSpec {
    /// 32 hex digits; the Go tests' `{1, 2, ..., 16}` by default.
    id: Option<String>,
    /// Time since the previous trace was decided (token buckets, composite seconds).
    pub advance_ms: u64,
    /// One `ResourceSpans` each. `spans` is the shorthand for one batch without resource
    /// attributes.
    batches: Vec<Batch>,
    spans: Vec<SpanSpec>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Batch {
    resource: Mapping,
    scope: Option<(String, String)>,
    spans: Vec<SpanSpec>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SpanSpec {
    /// This many identical spans (the Go tests' span counts).
    count: Option<usize>,
    name: String,
    /// `SPAN_KIND_*` number.
    kind: i32,
    /// Attribute values by YAML type: string, int, bool, float.
    attrs: Mapping,
    status: Option<String>,
    start_ms: u64,
    end_ms: u64,
    trace_state: String,
    /// `Span.flags` (W3C trace flags in the low byte).
    flags: u32,
    events: Vec<EventSpec>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EventSpec {
    name: String,
    attrs: Mapping,
}

fn any(v: &Value) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        Value::String(s) => V::StringValue(s.clone()),
        Value::Bool(b) => V::BoolValue(*b),
        Value::Number(n) if n.is_i64() => V::IntValue(n.as_i64().expect("i64")),
        Value::Number(n) => V::DoubleValue(n.as_f64().expect("f64")),
        other => panic!("unsupported attribute value {other:?}"),
    };
    AnyValue { value: Some(value) }
}

pub fn kvs(attrs: &Mapping) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.as_str().expect("string attribute keys").to_owned(),
            value: Some(any(v)),
            ..Default::default()
        })
        .collect()
}

pub fn trace_id(spec: &TraceSpec) -> [u8; 16] {
    spec.id.as_deref().map_or(DEFAULT_TRACE_ID, |h| {
        hex::decode(h)
            .expect("hex trace id")
            .try_into()
            .expect("16 bytes")
    })
}

/// The trace as one OTLP request, encoded.
pub fn request(spec: &TraceSpec) -> Vec<u8> {
    let id = trace_id(spec);
    let batches: Vec<Batch> = if spec.spans.is_empty() {
        spec.batches.clone()
    } else {
        vec![Batch {
            spans: spec.spans.clone(),
            ..Default::default()
        }]
    };
    let resource_spans = batches
        .iter()
        .map(|b| ResourceSpans {
            resource: Some(Resource {
                attributes: kvs(&b.resource),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: b
                    .scope
                    .as_ref()
                    .map(|(name, version)| InstrumentationScope {
                        name: name.clone(),
                        version: version.clone(),
                        ..Default::default()
                    }),
                spans: b.spans.iter().flat_map(|s| proto_spans(s, id)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

fn proto_spans(s: &SpanSpec, id: [u8; 16]) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
    let code = match s.status.as_deref() {
        None => None,
        Some("OK") => Some(status::StatusCode::Ok),
        Some("ERROR") => Some(status::StatusCode::Error),
        Some("UNSET") => Some(status::StatusCode::Unset),
        Some(other) => panic!("unknown status {other}"),
    };
    let span = opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: id.to_vec(),
        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        trace_state: s.trace_state.clone(),
        flags: s.flags,
        name: s.name.clone(),
        kind: s.kind,
        start_time_unix_nano: T0_NANOS + s.start_ms * 1_000_000,
        end_time_unix_nano: T0_NANOS + s.end_ms * 1_000_000,
        attributes: kvs(&s.attrs),
        events: s
            .events
            .iter()
            .map(|e| Event {
                name: e.name.clone(),
                time_unix_nano: T0_NANOS,
                attributes: kvs(&e.attrs),
                ..Default::default()
            })
            .collect(),
        status: code.map(|c| Status {
            code: c as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    vec![span; s.count.unwrap_or(1)]
}

/// Decodes one trace's request with casefile's ingest decoder.
pub fn decode(bytes: &[u8]) -> Vec<Span> {
    let decoded = decode_request(bytes).expect("a well-formed request");
    assert_eq!(decoded.rejected, 0, "{:?}", decoded.first_rejection);
    decoded.spans
}
