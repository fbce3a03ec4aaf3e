use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::fixture::{self, Gen, Shape};
use crate::wire::differential::check_against_prost;

#[test]
fn reads_ids_times_status_and_shares_resources() {
    let mut g = Gen::new(7);
    let t = g.trace(Shape::ERROR, 6);
    let req = fixture::request_for(std::slice::from_ref(&t)).encode_to_vec();
    let d = decode_request(&req).unwrap();
    assert_eq!(d.spans.len(), 6);
    assert_eq!(d.rejected, 0);
    for (span, (_, want)) in d.spans.iter().zip(ordered(&t)) {
        assert_eq!(span.trace_id(), t.trace_id);
        assert_eq!(&span.span_id().unwrap()[..], &want.span_id[..]);
        assert_eq!(span.start_unix_nano, want.start_time_unix_nano);
        assert_eq!(span.end_unix_nano, want.end_time_unix_nano);
        assert_eq!(span.bytes[..], want.encode_to_vec()[..]);
        assert_eq!(span.name(), want.name);
    }
    assert_eq!(d.spans.iter().filter(|s| s.is_root()).count(), 1);
    assert_eq!(
        d.spans
            .iter()
            .filter(|s| s.status == StatusCode::Error)
            .count(),
        1
    );
    // Spans of one service share one resource block.
    let frontend: Vec<_> = d
        .spans
        .iter()
        .filter(|s| s.attribute("service.name").and_then(|v| v.as_str()) == Some("checkout"))
        .collect();
    assert!(frontend
        .windows(2)
        .all(|w| Arc::ptr_eq(w[0].resource(), w[1].resource())));
}

/// The fixture groups spans by service; this is the order they appear in the request.
fn ordered(t: &fixture::Trace) -> Vec<(&'static str, opentelemetry_proto::tonic::trace::v1::Span)> {
    let req = fixture::request_for(std::slice::from_ref(t));
    req.resource_spans
        .into_iter()
        .flat_map(|rs| rs.scope_spans.into_iter().flat_map(|ss| ss.spans))
        .map(|s| ("", s))
        .collect()
}

#[test]
fn invalid_ids_are_rejected_one_by_one() {
    let mut g = Gen::new(1);
    let mut t = g.trace(Shape::default(), 4);
    t.spans[1].1.trace_id = vec![0; 16];
    t.spans[2].1.span_id = vec![1, 2, 3];
    t.spans[3].1.parent_span_id = vec![9; 3];
    let req = fixture::request_for(&[t]).encode_to_vec();
    let d = decode_request(&req).unwrap();
    assert_eq!(d.spans.len(), 1);
    assert_eq!(d.rejected, 3);
    assert!(d.first_rejection.unwrap().contains("trace_id"));
}

#[test]
fn malformed_bytes_are_an_error() {
    let mut g = Gen::new(2);
    let req = fixture::request_for(&[g.trace(Shape::default(), 3)]).encode_to_vec();
    assert!(decode_request(&req[..req.len() - 3]).is_err());
    assert!(decode_request(&[0x0a, 0x05, 0x01]).is_err());
    // Field 1 of the request with a varint wire type.
    assert!(decode_request(&[0x08, 0x01]).is_err());
    assert!(decode_request(&[]).unwrap().spans.is_empty());
}

fn arb_request() -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), 1usize..6, 1usize..25).prop_map(|(seed, traces, spans)| {
        let mut g = Gen::new(seed);
        let ts: Vec<_> = (0..traces)
            .map(|i| {
                g.trace(
                    Shape {
                        error: i % 2 == 0,
                        slow: i % 3 == 0,
                        premium: false,
                    },
                    spans,
                )
            })
            .collect();
        fixture::request_for(&ts).encode_to_vec()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The fast path agrees with a full prost decode (which reads every fixture request).
    #[test]
    fn fast_path_agrees_with_prost(req in arb_request()) {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        prop_assert!(ExportTraceServiceRequest::decode(&req[..]).is_ok());
        prop_assert_eq!(check_against_prost(&req), Ok(()));
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(&bytes);
    }
}

#[test]
fn json_and_protobuf_of_one_request_decode_to_the_same_spans() {
    use opentelemetry_proto::tonic::trace::v1::Span as PbSpan;
    let mut g = Gen::new(8);
    let traces: Vec<_> = (0..5).map(|_| g.mixed()).collect();
    let pb = fixture::request_for(&traces).encode_to_vec();
    let json = crate::wire::json::request_to_json(&pb).unwrap();
    let from_json = crate::wire::json::request_from_json(json.as_bytes()).unwrap();
    let (a, b) = (
        decode_request(&pb).unwrap().spans,
        decode_request(&from_json).unwrap().spans,
    );
    assert_eq!(a.len(), traces.iter().map(|t| t.spans.len()).sum::<usize>());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.trace_id(), x.start_unix_nano, x.end_unix_nano),
            (y.trace_id(), y.start_unix_nano, y.end_unix_nano)
        );
        assert_eq!(
            (x.status, x.flags, x.is_root()),
            (y.status, y.flags, y.is_root())
        );
        assert_eq!(
            PbSpan::decode(&x.bytes[..]).unwrap(),
            PbSpan::decode(&y.bytes[..]).unwrap()
        );
        assert_eq!(x.resource().message, y.resource().message);
    }
}

/// Whatever the field order, a span's bytes start with its trace id (the one proto3 reads:
/// the last occurrence), so `Span::trace_id` can read it without a walk.
#[test]
fn trace_id_is_put_first_whatever_the_field_order() {
    use crate::wire::put_len;
    let first = [7u8; 16];
    let last = [9u8; 16];
    let mut span = Vec::new();
    put_len(&mut span, 2, &[1u8; 8]); // span_id before the trace id
    put_len(&mut span, 1, &first);
    put_len(&mut span, 5, b"op");
    put_len(&mut span, 1, &last); // proto3: the last one wins
    let mut ss = Vec::new();
    put_len(&mut ss, 2, &span);
    let mut rs = Vec::new();
    put_len(&mut rs, 2, &ss);
    let mut req = Vec::new();
    put_len(&mut req, 1, &rs);

    let d = decode_request(&req).unwrap();
    let s = &d.spans[0];
    assert_eq!(s.trace_id(), last);
    assert_eq!(s.bytes[..2], crate::model::TRACE_ID_PREFIX);
    // Every proto3 reader sees the same span as before.
    let decoded = opentelemetry_proto::tonic::trace::v1::Span::decode(&s.bytes[..]).unwrap();
    assert_eq!(decoded.trace_id, last);
    assert_eq!(decoded.span_id, [1u8; 8]);
    assert_eq!(decoded.name, "op");

    // Already first: the bytes are kept as they came.
    let mut plain = Vec::new();
    put_len(&mut plain, 1, &first);
    put_len(&mut plain, 2, &[1u8; 8]);
    let mut ss = Vec::new();
    put_len(&mut ss, 2, &plain);
    let mut rs = Vec::new();
    put_len(&mut rs, 2, &ss);
    let mut req = Vec::new();
    put_len(&mut req, 1, &rs);
    let d = decode_request(&req).unwrap();
    assert_eq!(d.spans[0].bytes[..], plain[..]);
    assert_eq!(d.spans[0].trace_id(), first);
}

/// The per-span record is what a buffer of millions of spans pays for on top of the
/// bytes: keep it at 48 bytes (BENCHMARKS.md, memory per buffered span).
#[test]
fn span_record_stays_small() {
    assert_eq!(std::mem::size_of::<Span>(), 48);
}

/// Inputs fuzzing once failed on (`scripts/fuzz.sh wire_protobuf`; each crash is added to
/// `tests/fuzz-regressions/wire_protobuf/`): a group in an unknown field, a resource and a
/// status split in two occurrences. The fast path agrees with prost on every one.
#[test]
fn fuzz_regressions_agree_with_prost() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fuzz-regressions/wire_protobuf"
    );
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        assert_eq!(check_against_prost(&input), Ok(()), "{}", path.display());
        assert_eq!(
            crate::wire::differential::check_exportable(&input),
            Ok(()),
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n > 0, "no inputs in {dir}");
}

/// Protobuf merges the occurrences of a singular message field; the fast path does too.
#[test]
fn split_resource_and_status_merge_as_in_protobuf() {
    use crate::wire::put_len;
    let mut status = Vec::new();
    put_len(&mut status, 15, &[0x18, 0x02]); // code: ERROR
    put_len(&mut status, 15, &[0x12, 0x01, b'x']); // message only: the code stays
    let mut span = Vec::new();
    put_len(&mut span, 1, &[1; 16]);
    put_len(&mut span, 2, &[2; 8]);
    span.extend_from_slice(&status);
    let mut ss = Vec::new();
    put_len(&mut ss, 2, &span);
    let (a, b) = (
        fixture::kv("service.name", "a").encode_to_vec(),
        fixture::kv("host.name", "b").encode_to_vec(),
    );
    let mut rs = Vec::new();
    put_len(&mut rs, 1, &[&[0x0a, a.len() as u8][..], &a].concat());
    put_len(&mut rs, 2, &ss);
    put_len(&mut rs, 1, &[&[0x0a, b.len() as u8][..], &b].concat());
    let mut req = Vec::new();
    put_len(&mut req, 1, &rs);

    let d = decode_request(&req).unwrap();
    let s = &d.spans[0];
    assert_eq!(s.status, StatusCode::Error);
    assert_eq!(
        s.attribute("service.name").and_then(|v| v.as_str()),
        Some("a")
    );
    assert_eq!(s.attribute("host.name").and_then(|v| v.as_str()), Some("b"));
    assert_eq!(check_against_prost(&req), Ok(()));
}
