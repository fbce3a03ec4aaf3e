//! What kept traces carry, read back from the encoded request the exporters send.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, InstrumentationScope};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as ProtoSpan};
use prost::Message;

use super::*;
use crate::wire::decode::decode_request;
use crate::wire::encode::encode_request;

const ID: [u8; 16] = [7; 16];

/// A root and two children (the second in another scope), with these tracestates.
fn trace(states: [&str; 3]) -> Vec<Span> {
    let span = |n: u8, ts: &str| ProtoSpan {
        trace_id: ID.to_vec(),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, n],
        parent_span_id: if n == 1 {
            vec![]
        } else {
            vec![0, 0, 0, 0, 0, 0, 0, 1]
        },
        trace_state: ts.into(),
        name: format!("op{n}"),
        ..Default::default()
    };
    let scope = |name: &str, spans| ScopeSpans {
        scope: Some(InstrumentationScope {
            name: name.into(),
            ..Default::default()
        }),
        spans,
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![
                scope("a", vec![span(1, states[0]), span(2, states[1])]),
                scope("b", vec![span(3, states[2])]),
            ],
            ..Default::default()
        }],
    };
    decode_request(&req.encode_to_vec()).unwrap().spans
}

fn sent(spans: &[Span]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(&encode_request(spans)[..]).unwrap()
}

fn proto_spans(req: &ExportTraceServiceRequest) -> Vec<&ProtoSpan> {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect()
}

fn attr<'a>(
    attrs: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn verdict(threshold: u64) -> Verdict {
    Verdict {
        sampled: true,
        policies: vec!["p".into()],
        threshold,
        recorded: Some("p".into()),
        composite: None,
    }
}

const ON: Output = Output {
    use_tracestate: true,
    adjusted_count_attribute: true,
    record: RecordPolicy::Casefile,
};

#[test]
fn every_span_gets_the_threshold_and_a_higher_head_threshold_stays() {
    let mut spans = trace(["", "ot=th:c,vendor=1", "vendor=x"]);
    let quarter = otep235::threshold_of(25.0);
    let half = otep235::threshold_of(50.0);
    assert_eq!(quarter, 0xc0_0000_0000_0000);
    kept(&mut spans, &verdict(half), &["p".into()], None, &ON);
    let req = sent(&spans);
    let states: Vec<&str> = proto_spans(&req)
        .iter()
        .map(|s| s.trace_state.as_str())
        .collect();
    assert_eq!(states, ["ot=th:8", "ot=th:c,vendor=1", "ot=th:8,vendor=x"]);
    let root = proto_spans(&req)[0];
    assert_eq!(
        attr(&root.attributes, "casefile.adjusted_count"),
        Some(&any_value::Value::DoubleValue(2.0))
    );
    assert_eq!(
        attr(&root.attributes, "casefile.policy"),
        Some(&any_value::Value::StringValue("p".into()))
    );
    // Every other field is as it was.
    assert_eq!(root.name, "op1");
    assert_eq!(root.trace_id, ID.to_vec());
}

#[test]
fn the_root_adjusted_count_follows_a_head_threshold_even_without_ours() {
    let mut spans = trace(["ot=th:c", "", ""]);
    kept(&mut spans, &verdict(0), &["errors".into()], None, &ON);
    let req = sent(&spans);
    let states: Vec<&str> = proto_spans(&req)
        .iter()
        .map(|s| s.trace_state.as_str())
        .collect();
    assert_eq!(
        states,
        ["ot=th:c", "", ""],
        "a non-probabilistic keep adds no threshold"
    );
    assert_eq!(
        attr(&proto_spans(&req)[0].attributes, "casefile.adjusted_count"),
        Some(&any_value::Value::DoubleValue(4.0))
    );
}

#[test]
fn malformed_tracestate_is_left_untouched() {
    let mut spans = trace(["ot=th:zz", "a=1,a=2", ""]);
    kept(&mut spans, &verdict(1 << 55), &["p".into()], None, &ON);
    let req = sent(&spans);
    let states: Vec<&str> = proto_spans(&req)
        .iter()
        .map(|s| s.trace_state.as_str())
        .collect();
    assert_eq!(states, ["ot=th:zz", "a=1,a=2", "ot=th:8"]);
    assert_eq!(
        attr(&proto_spans(&req)[0].attributes, "casefile.adjusted_count"),
        Some(&any_value::Value::DoubleValue(2.0)),
        "the trace's own threshold when the root's header cannot be read"
    );
}

#[test]
fn nothing_is_written_without_use_tracestate() {
    let mut spans = trace(["", "", ""]);
    kept(
        &mut spans,
        &verdict(1 << 55),
        &["p".into()],
        None,
        &Output::default(),
    );
    let req = sent(&spans);
    assert!(proto_spans(&req).iter().all(|s| s.trace_state.is_empty()));
    assert_eq!(
        attr(&proto_spans(&req)[0].attributes, "casefile.adjusted_count"),
        None
    );
    let scopes = &req.resource_spans[0].scope_spans;
    assert!(scopes
        .iter()
        .all(|s| s.scope.as_ref().unwrap().attributes.is_empty()));
}

#[test]
fn collector_attributes_go_on_the_scopes_of_the_kept_spans_only() {
    let out = Output {
        record: RecordPolicy::Collector,
        ..Output::default()
    };
    let mut spans = trace(["", "", ""]);
    let other = trace(["", "", ""]);
    let v = Verdict {
        composite: Some("fast".into()),
        ..verdict(0)
    };
    kept(&mut spans, &v, &["p".into()], None, &out);
    let req = sent(&spans);
    let scopes = &req.resource_spans[0].scope_spans;
    assert_eq!(scopes.len(), 2);
    for s in scopes {
        let scope = s.scope.as_ref().unwrap();
        assert_eq!(
            attr(&scope.attributes, "tailsampling.policy"),
            Some(&any_value::Value::StringValue("p".into()))
        );
        assert_eq!(
            attr(&scope.attributes, "tailsampling.composite_policy"),
            Some(&any_value::Value::StringValue("fast".into()))
        );
    }
    assert_eq!(scopes[0].scope.as_ref().unwrap().name, "a");
    // casefile.policy stays on the root beside them.
    assert_eq!(
        attr(&proto_spans(&req)[0].attributes, "casefile.policy"),
        Some(&any_value::Value::StringValue("p".into()))
    );
    // The spans they shared a block with before are not touched.
    let req = sent(&other);
    assert!(req.resource_spans[0].scope_spans[0]
        .scope
        .as_ref()
        .unwrap()
        .attributes
        .is_empty());
}

#[test]
fn late_spans_carry_the_cached_threshold_and_decision() {
    let out = Output {
        use_tracestate: true,
        adjusted_count_attribute: false,
        record: RecordPolicy::Collector,
    };
    let mut spans = trace(["", "", ""]);
    late(&mut spans[1], 1 << 55, &out);
    let req = sent(&spans[1..2]);
    let s = &req.resource_spans[0].scope_spans[0];
    assert_eq!(s.spans[0].trace_state, "ot=th:8");
    assert_eq!(
        attr(
            &s.scope.as_ref().unwrap().attributes,
            "tailsampling.cached_decision"
        ),
        Some(&any_value::Value::BoolValue(true))
    );
}

/// What the decision wrote is taken back exactly (what-if over an archive replays kept
/// traces as received): span bytes and scopes as before, a client's own attributes kept.
#[test]
fn unstamp_takes_back_what_kept_and_late_wrote() {
    let out = Output {
        record: RecordPolicy::Collector,
        adjusted_count_attribute: true,
        ..Output::default()
    };
    let mut spans = trace(["", "", ""]);
    // A client attribute that only looks like ours stays.
    spans[1].bytes = append_key_values(&spans[1].bytes, 9, &[("casefile.mine", Value::Str("x"))]);
    let before: Vec<(Box<[u8]>, Bytes)> = spans
        .iter()
        .map(|s| (s.bytes.clone(), s.scope().message.clone()))
        .collect();
    let mark = Mark::new("complaint", "cs_1", Some("checkout"));
    let v = Verdict {
        composite: Some("fast".into()),
        ..verdict(0)
    };
    kept(&mut spans, &v, &["p".into()], Some(&mark), &out);
    late(&mut spans[2], 0, &out);
    assert_ne!(spans[0].bytes, before[0].0);
    unstamp(&mut spans);
    let after: Vec<(Box<[u8]>, Bytes)> = spans
        .iter()
        .map(|s| (s.bytes.clone(), s.scope().message.clone()))
        .collect();
    assert_eq!(after, before);
    // Nothing to take back: the same spans, untouched.
    let plain = trace(["", "", ""]);
    let mut again = plain.clone();
    unstamp(&mut again);
    assert!(again
        .iter()
        .zip(&plain)
        .all(|(a, b)| a.bytes == b.bytes && Arc::ptr_eq(&a.origin, &b.origin)));
}
