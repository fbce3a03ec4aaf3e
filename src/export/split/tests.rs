//! The splitter: halves are valid requests that together hold exactly the original spans,
//! each under its own resource, scope and schema_url.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use proptest::prelude::*;
use prost::Message;

use super::*;

/// A request with one ResourceSpans per entry of `shape`, one ScopeSpans per inner entry
/// holding that many spans; every resource, scope and span named distinctly.
fn request(shape: &[Vec<usize>]) -> ExportTraceServiceRequest {
    let mut next = 0u8;
    let resource_spans = shape
        .iter()
        .enumerate()
        .map(|(r, scopes)| ResourceSpans {
            resource: Some(Resource {
                dropped_attributes_count: r as u32 + 1,
                ..Default::default()
            }),
            scope_spans: scopes
                .iter()
                .enumerate()
                .map(|(s, &spans)| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: format!("scope-{r}-{s}"),
                        ..Default::default()
                    }),
                    spans: (0..spans)
                        .map(|_| {
                            next = next.wrapping_add(1);
                            Span {
                                trace_id: vec![next; 16],
                                span_id: vec![next; 8],
                                name: format!("span-{next}"),
                                ..Default::default()
                            }
                        })
                        .collect(),
                    schema_url: format!("https://scope/{r}/{s}"),
                })
                .collect(),
            schema_url: format!("https://resource/{r}"),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// Every span with the blocks it is under: (resource, resource schema, scope, scope schema, span).
type Placed = (
    Option<Resource>,
    String,
    Option<InstrumentationScope>,
    String,
    Span,
);

fn placed(req: &ExportTraceServiceRequest) -> Vec<Placed> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.push((
                    rs.resource.clone(),
                    rs.schema_url.clone(),
                    ss.scope.clone(),
                    ss.schema_url.clone(),
                    span.clone(),
                ));
            }
        }
    }
    out
}

fn decode(bytes: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(bytes).expect("a valid request")
}

#[test]
fn halves_hold_the_spans_under_their_own_blocks() {
    let req = request(&[vec![3, 2], vec![2], vec![4, 0, 2]]);
    let bytes = req.encode_to_vec();
    assert_eq!(count_spans(&bytes), Ok(13));
    let (a, b) = split_request(&bytes).unwrap().unwrap();
    assert_eq!((a.spans, b.spans), (6, 7));
    let (da, db) = (decode(&a.request), decode(&b.request));
    assert_eq!(count_spans(&a.request), Ok(6));
    let all = placed(&req);
    assert_eq!(placed(&da), all[..6]);
    assert_eq!(placed(&db), all[6..]);
    // The cut falls inside the second resource: both halves carry a copy of its blocks.
    assert_eq!(da.resource_spans.len(), 2);
    assert_eq!(db.resource_spans.len(), 2);
    assert_eq!(db.resource_spans[0].schema_url, "https://resource/1");
    assert_eq!(
        db.resource_spans[0].resource,
        req.resource_spans[1].resource
    );
    assert_eq!(
        db.resource_spans[0].scope_spans[0].scope,
        req.resource_spans[1].scope_spans[0].scope
    );
}

#[test]
fn splitting_again_isolates_every_span() {
    let req = request(&[vec![5], vec![2, 3]]);
    let mut parts = vec![Part {
        request: req.encode_to_vec().into(),
        spans: 10,
    }];
    let mut singles = Vec::new();
    while let Some(p) = parts.pop() {
        match split_request(&p.request).unwrap() {
            Some((a, b)) => {
                assert_eq!(a.spans + b.spans, p.spans);
                parts.push(b);
                parts.push(a);
            }
            None => singles.push(p),
        }
    }
    assert_eq!(singles.len(), 10);
    let got: Vec<Placed> = singles
        .iter()
        .flat_map(|p| placed(&decode(&p.request)))
        .collect();
    assert_eq!(got, placed(&req));
    let ids: Vec<String> = singles
        .iter()
        .map(|p| first_trace_id(&p.request).unwrap())
        .collect();
    assert_eq!(ids[0], hex::encode([1u8; 16]));
    assert_eq!(ids[9], hex::encode([10u8; 16]));
}

#[test]
fn fewer_than_two_spans_and_bad_bytes() {
    let one = request(&[vec![1]]).encode_to_vec();
    assert_eq!(split_request(&one), Ok(None));
    assert_eq!(split_request(&[]), Ok(None));
    assert_eq!(first_trace_id(&[]), None);
    assert!(split_request(&[0x0a, 0x05, 0x12]).is_err(), "truncated");
}

#[test]
fn blocks_without_spans_are_kept_once() {
    let req = request(&[vec![0], vec![2], vec![], vec![0, 2]]);
    let bytes = req.encode_to_vec();
    let (a, b) = split_at(&bytes, 3).unwrap();
    let (da, db) = (decode(&a), decode(&b));
    assert_eq!(placed(&da), placed(&req)[..3]);
    assert_eq!(placed(&db), placed(&req)[3..]);
    let blocks = |r: &ExportTraceServiceRequest| r.resource_spans.len();
    assert_eq!(
        blocks(&da) + blocks(&db),
        5,
        "the fourth resource is in both"
    );
}

proptest! {
    #[test]
    fn any_cut_of_any_shape_keeps_every_span_in_place(
        shape in prop::collection::vec(prop::collection::vec(0usize..5, 0..4), 1..5),
        cut in 0usize..40,
    ) {
        let req = request(&shape);
        let bytes = req.encode_to_vec();
        let all = placed(&req);
        let k = cut.min(all.len());
        let (a, b) = split_at(&bytes, k).unwrap();
        prop_assert_eq!(placed(&decode(&a)), &all[..k]);
        prop_assert_eq!(placed(&decode(&b)), &all[k..]);
        prop_assert_eq!(count_spans(&a).unwrap(), k);
    }
}
