//! The ingest checks against prost: what casefile accepts and sends on, prost decodes;
//! what prost would refuse is repaired or refused span by span, never the whole request.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

use super::*;
use crate::fixture::poison::{nested, poisoned_request, Poison, REPAIRED};
use crate::fixture::{self, Gen, Shape};
use crate::wire::decode::{decode_request_with, Checks, Decoded, InvalidUtf8};
use crate::wire::encode::encode_request;

fn trace() -> fixture::Trace {
    Gen::new(11).trace(Shape::ERROR, 5)
}

fn decode(req: &[u8], invalid_utf8: InvalidUtf8) -> Decoded {
    let checks = Checks {
        invalid_utf8,
        ..Checks::default()
    };
    decode_request_with(req, &checks).expect("well formed at the top")
}

/// What casefile would send on, decoded by prost.
fn exported(d: &Decoded) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(&encode_request(&d.spans)[..])
        .expect("prost decodes what casefile exports")
}

fn all_strings(req: &ExportTraceServiceRequest) -> String {
    format!("{req:?}")
}

#[test]
fn every_utf8_poison_is_refused_by_prost_and_repaired_by_default() {
    for poison in Poison::ALL.into_iter().filter(|p| p.is_utf8()) {
        let req = poisoned_request(&trace(), poison);
        assert!(
            ExportTraceServiceRequest::decode(&req[..]).is_err(),
            "{poison:?}: prost refuses the poisoned request"
        );
        let d = decode(&req, InvalidUtf8::Repair);
        assert_eq!(d.rejected, 0, "{poison:?}: {:?}", d.first_rejection);
        assert_eq!(d.spans.len(), 5, "{poison:?}");
        let want_repaired = if poison == Poison::ResourceAttribute {
            // Every span of the root's service shares the repaired resource.
            d.spans
                .iter()
                .filter(|s| {
                    Arc::ptr_eq(
                        s.resource(),
                        d.spans.iter().find(|s| s.is_root()).unwrap().resource(),
                    )
                })
                .count()
        } else {
            1
        };
        assert_eq!(d.repaired, want_repaired, "{poison:?}");
        let out = exported(&d);
        assert!(all_strings(&out).contains(REPAIRED), "{poison:?}: {out:?}");
    }
}

use std::sync::Arc;

#[test]
fn every_utf8_poison_is_refused_naming_its_field_when_told_to_reject() {
    let fields = [
        (Poison::SpanName, "span.name"),
        (Poison::AttributeKey, "span.attributes.key"),
        (Poison::AttributeValue, "span.attributes.value.string_value"),
        (
            Poison::ResourceAttribute,
            "resource.attributes.value.string_value",
        ),
        (Poison::EventName, "span.events.name"),
    ];
    for (poison, field) in fields {
        let req = poisoned_request(&trace(), poison);
        let d = decode(&req, InvalidUtf8::Reject);
        assert!(d.rejected >= 1, "{poison:?}");
        assert_eq!(
            d.rejected_by,
            vec![("invalid_utf8", d.rejected)],
            "{poison:?}"
        );
        assert_eq!(d.repaired, 0);
        let msg = d.first_rejection.clone().unwrap();
        assert!(
            msg.starts_with(&format!("{field} is not valid UTF-8")),
            "{poison:?}: {msg}"
        );
        // The others are accepted, and prost reads them.
        assert_eq!(d.spans.len() + d.rejected, 5);
        exported(&d);
    }
}

/// A request whose root span carries an attribute nested `levels` deep.
fn deep(levels: usize, map: bool) -> Vec<u8> {
    let mut t = trace();
    let root = t
        .spans
        .iter_mut()
        .find(|(_, s)| s.parent_span_id.is_empty())
        .unwrap();
    root.1.attributes.push(KeyValue {
        key: "deep".into(),
        value: Some(nested(levels, map)),
        ..Default::default()
    });
    fixture::request_for(&[t]).encode_to_vec()
}

#[test]
fn nesting_is_refused_exactly_where_prost_refuses_it() {
    for map in [false, true] {
        let mut boundary = None;
        for levels in 0..120 {
            let req = deep(levels, map);
            let prost_ok = ExportTraceServiceRequest::decode(&req[..]).is_ok();
            let d = decode(&req, InvalidUtf8::Repair);
            assert_eq!(
                d.rejected == 0,
                prost_ok,
                "map={map} levels={levels}: prost {prost_ok}, casefile {:?}",
                d.first_rejection
            );
            if !prost_ok {
                boundary.get_or_insert(levels);
                assert_eq!(d.rejected_by, vec![("too_deep", 1)]);
                let msg = d.first_rejection.unwrap();
                assert!(msg.contains("nested deeper than 100 levels"), "{msg}");
                assert!(msg.starts_with("span.attributes.value."), "{msg}");
            } else {
                exported(&d);
            }
        }
        // The limit is reached well inside the range tried (arrays take two levels each).
        assert!(
            boundary.is_some_and(|b| b > 20 && b < 60),
            "map={map}: {boundary:?}"
        );
    }
}

#[test]
fn a_nested_field_of_the_wrong_wire_type_refuses_the_span_only() {
    // An attribute whose AnyValue carries int_value as a length-delimited field.
    let mut bad_any = Vec::new();
    crate::wire::put_len(&mut bad_any, 3, b"12");
    let mut kv = Vec::new();
    crate::wire::put_len(&mut kv, 1, b"n");
    crate::wire::put_len(&mut kv, 2, &bad_any);
    let t = trace();
    let req = fixture::request_for(std::slice::from_ref(&t));
    let mut spans: Vec<Vec<u8>> = req.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| s.encode_to_vec())
        .collect();
    crate::wire::put_len(&mut spans[0], 9, &kv);
    // Rebuild the first block with the altered span by hand.
    let mut req2 = req.clone();
    req2.resource_spans[0].scope_spans[0].spans.clear();
    let mut bytes = req2.encode_to_vec();
    let mut ss = Vec::new();
    crate::wire::put_len(
        &mut ss,
        1,
        &req.resource_spans[0].scope_spans[0]
            .scope
            .clone()
            .unwrap()
            .encode_to_vec(),
    );
    for s in &spans {
        crate::wire::put_len(&mut ss, 2, s);
    }
    let mut rs = Vec::new();
    crate::wire::put_len(
        &mut rs,
        1,
        &req.resource_spans[0]
            .resource
            .clone()
            .unwrap()
            .encode_to_vec(),
    );
    crate::wire::put_len(&mut rs, 2, &ss);
    crate::wire::put_len(&mut bytes, 1, &rs);
    assert!(ExportTraceServiceRequest::decode(&bytes[..]).is_err());
    let d = decode(&bytes, InvalidUtf8::Repair);
    assert_eq!(d.rejected_by, vec![("malformed", 1)]);
    assert!(
        d.first_rejection
            .as_deref()
            .unwrap()
            .starts_with("span.attributes.value.int_value is malformed"),
        "{:?}",
        d.first_rejection
    );
    assert_eq!(d.spans.len(), t.spans.len() - 1);
    exported(&d);
}

#[test]
fn spans_over_max_span_bytes_are_refused() {
    let mut t = trace();
    t.spans[1]
        .1
        .attributes
        .push(fixture::poison::big_attribute("db.statement", 5000));
    let req = fixture::request_for(std::slice::from_ref(&t)).encode_to_vec();
    let checks = Checks {
        max_span_bytes: 4096,
        ..Checks::default()
    };
    let d = decode_request_with(&req, &checks).unwrap();
    assert_eq!(d.rejected_by, vec![("too_large", 1)]);
    assert!(d
        .first_rejection
        .unwrap()
        .contains("more than receivers.otlp.max_span_bytes (4096)"));
    assert_eq!(d.spans.len(), 4);
    assert_eq!(decode(&req, InvalidUtf8::Repair).spans.len(), 5);
}

#[test]
fn repair_leaves_valid_messages_byte_for_byte() {
    let req = fixture::request_for(&[trace()]);
    for rs in &req.resource_spans {
        let r = rs.resource.clone().unwrap().encode_to_vec();
        assert_eq!(repair(Msg::Resource, &r), r);
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let b = s.encode_to_vec();
                assert_eq!(repair(Msg::Span, &b), b);
                assert_eq!(span(&b), Ok(()));
            }
        }
    }
}

#[test]
fn repair_reaches_strings_at_any_depth() {
    let mut v = nested(10, true);
    // The innermost string, made invalid after encoding.
    fn innermost(v: &mut opentelemetry_proto::tonic::common::v1::AnyValue) -> &mut String {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        match v.value.as_mut().unwrap() {
            Value::KvlistValue(l) => innermost(l.values[0].value.as_mut().unwrap()),
            Value::StringValue(s) => s,
            _ => unreachable!(),
        }
    }
    *innermost(&mut v) = "\u{1}BAD\u{1}".into();
    let mut b = v.encode_to_vec();
    fixture::poison::replace_markers(&mut b);
    assert!(matches!(
        message(Msg::AnyValue, 5, &b),
        Err(Problem::Utf8 { .. })
    ));
    let fixed = repair(Msg::AnyValue, &b);
    assert_eq!(message(Msg::AnyValue, 5, &fixed), Ok(()));
    let back = opentelemetry_proto::tonic::common::v1::AnyValue::decode(&fixed[..]).unwrap();
    assert!(format!("{back:?}").contains(REPAIRED));
}

#[test]
fn the_differential_checks_hold_on_every_poison_and_at_the_depth_limit() {
    use crate::wire::differential::{check_against_prost, check_exportable};
    let mut inputs: Vec<Vec<u8>> = Poison::ALL
        .iter()
        .map(|&p| poisoned_request(&trace(), p))
        .collect();
    for levels in [46, 47, 48, 31, 32, 33] {
        inputs.push(deep(levels, false));
        inputs.push(deep(levels, true));
    }
    for req in &inputs {
        assert_eq!(check_against_prost(req), Ok(()));
        assert_eq!(check_exportable(req), Ok(()));
    }
}

/// Found by fuzzing (`tests/fuzz-regressions/wire_protobuf/deep-map-after-a-repaired-scope.bin`):
/// prost checks its recursion limit before skipping an unknown field, and counts each level
/// of a group: a message at the limit holding an unknown field, or a group deep enough,
/// was accepted by casefile and refused by the downstream.
#[test]
fn unknown_fields_and_groups_count_against_the_limit_as_prost_counts_them() {
    use crate::wire::{put_key, put_len, put_varint, VARINT};
    let group = |levels: usize| {
        let mut g = Vec::new();
        for _ in 0..levels {
            put_key(&mut g, 15, 3); // start group 15
        }
        put_key(&mut g, 1, VARINT);
        put_varint(&mut g, 1);
        for _ in 0..levels {
            put_key(&mut g, 15, 4); // end group 15
        }
        g
    };
    let mut unknown = Vec::new();
    put_key(&mut unknown, 99, VARINT);
    put_varint(&mut unknown, 7);
    let mut base = Vec::new();
    put_len(&mut base, 1, b"x");
    let tails: Vec<(&str, Vec<u8>)> = vec![
        ("a string", Vec::new()),
        ("an unknown field", unknown),
        ("a group", group(1)),
        ("groups 2 deep", group(2)),
        ("groups 5 deep", group(5)),
    ];
    for (what, tail) in &tails {
        let mut innermost = base.clone();
        innermost.extend_from_slice(tail);
        let mut agreed = 0;
        for levels in 40..50 {
            // AnyValue{ array{ values: [ ... innermost ... ] } }, `levels` arrays deep.
            let mut any = innermost.clone();
            for _ in 0..levels {
                let mut array = Vec::new();
                put_len(&mut array, 1, &any);
                let mut outer = Vec::new();
                put_len(&mut outer, 5, &array);
                any = outer;
            }
            let mut kv = Vec::new();
            put_len(&mut kv, 1, b"deep");
            put_len(&mut kv, 2, &any);
            let t = trace();
            let mut req = fixture::request_for(std::slice::from_ref(&t));
            let mut span = req.resource_spans[0].scope_spans[0]
                .spans
                .remove(0)
                .encode_to_vec();
            put_len(&mut span, 9, &kv);
            req.resource_spans[0].scope_spans[0].spans.clear();
            let mut bytes = req.encode_to_vec();
            // One more ResourceSpans holding just this span under an empty scope.
            let mut ss = Vec::new();
            put_len(&mut ss, 2, &span);
            let mut rs = Vec::new();
            put_len(&mut rs, 2, &ss);
            put_len(&mut bytes, 1, &rs);
            let prost_ok = ExportTraceServiceRequest::decode(&bytes[..]).is_ok();
            let d = decode(&bytes, InvalidUtf8::Repair);
            assert_eq!(
                d.rejected == 0,
                prost_ok,
                "{what}, {levels} arrays: prost {prost_ok}, casefile {:?}",
                d.first_rejection
            );
            agreed += usize::from(prost_ok);
            exported(&d);
        }
        assert!(
            agreed > 0 && agreed < 10,
            "{what}: the boundary lies inside the range"
        );
    }
}
