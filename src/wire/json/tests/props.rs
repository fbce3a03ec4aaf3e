//! Property test: random requests (every field kind, nested values, unusual numbers)
//! survive protobuf -> OTLP/JSON -> protobuf unchanged.

use proptest::prelude::*;

use super::*;

fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        Just(None),
        any::<String>().prop_map(|s| Some(Value::StringValue(s))),
        any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
        any::<i64>().prop_map(|i| Some(Value::IntValue(i))),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |d| !d.is_nan())
            .prop_map(|d| Some(Value::DoubleValue(d))),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| Some(Value::BytesValue(b))),
    ]
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values }))
            }),
            prop::collection::vec((any::<String>(), inner), 0..3).prop_map(|kvs| {
                let values = kvs
                    .into_iter()
                    .map(|(key, v)| KeyValue {
                        key,
                        value: Some(v),
                        key_strindex: 0,
                    })
                    .collect();
                AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList { values })),
                }
            }),
        ]
    })
}

fn attrs() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(
        (any::<String>(), prop::option::of(any_value())).prop_map(|(key, value)| KeyValue {
            key,
            value,
            key_strindex: 0,
        }),
        0..3,
    )
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn span() -> impl Strategy<Value = Span> {
    let ids = (bytes(16), bytes(8), bytes(8), any::<String>(), any::<u32>());
    let times = (
        any::<String>(),
        any::<i32>(),
        any::<u64>(),
        any::<u64>(),
        any::<[u32; 3]>(),
    );
    let event = (any::<u64>(), any::<String>(), attrs(), any::<u32>()).prop_map(
        |(t, name, attributes, d)| Event {
            time_unix_nano: t,
            name,
            attributes,
            dropped_attributes_count: d,
        },
    );
    let link = (
        bytes(16),
        bytes(8),
        any::<String>(),
        attrs(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(trace_id, span_id, trace_state, attributes, d, flags)| Link {
                trace_id,
                span_id,
                trace_state,
                attributes,
                dropped_attributes_count: d,
                flags,
            },
        );
    let status = prop::option::of(
        (any::<String>(), any::<i32>()).prop_map(|(message, code)| Status { message, code }),
    );
    let rest = (
        attrs(),
        prop::collection::vec(event, 0..2),
        prop::collection::vec(link, 0..2),
        status,
    );
    (ids, times, rest).prop_map(
        |(
            (trace_id, span_id, parent_span_id, trace_state, flags),
            (name, kind, start, end, dropped),
            rest,
        )| Span {
            trace_id,
            span_id,
            trace_state,
            parent_span_id,
            flags,
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: rest.0,
            dropped_attributes_count: dropped[0],
            events: rest.1,
            dropped_events_count: dropped[1],
            links: rest.2,
            dropped_links_count: dropped[2],
            status: rest.3,
        },
    )
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let resource = prop::option::of(
        (attrs(), any::<u32>()).prop_map(|(attributes, d)| Resource {
            attributes,
            dropped_attributes_count: d,
            entity_refs: vec![],
        }),
    );
    let scope = prop::option::of((any::<String>(), any::<String>(), attrs()).prop_map(
        |(name, version, attributes)| InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count: 0,
        },
    ));
    let scope_spans = (scope, prop::collection::vec(span(), 0..3), any::<String>()).prop_map(
        |(scope, spans, schema_url)| ScopeSpans {
            scope,
            spans,
            schema_url,
        },
    );
    let resource_spans = (
        resource,
        prop::collection::vec(scope_spans, 0..3),
        any::<String>(),
    )
        .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        });
    prop::collection::vec(resource_spans, 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

proptest! {
    #[test]
    fn random_requests_round_trip(r in request()) {
        prop_assert_eq!(round_trip(&r), r);
    }
}
