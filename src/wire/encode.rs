//! Export path: writes kept spans back out as an ExportTraceServiceRequest, copying each
//! span's bytes as they arrived. Spans are grouped under their shared resource and scope
//! blocks, so a trace from five services becomes five ResourceSpans, as a backend expects.

use std::collections::HashMap;

use super::{put_key, put_len, put_varint, string_key_value, varint_len, LEN};
use crate::model::Span;

/// Bytes a length-delimited field of `len` bytes takes with its key (fields 1–15).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

struct ScopeGroup<'a> {
    scope: &'a Span,
    spans: Vec<&'a Span>,
    len: usize,
}

struct ResourceGroup<'a> {
    resource: &'a Span,
    scopes: Vec<ScopeGroup<'a>>,
    len: usize,
}

/// Encodes `spans` as one ExportTraceServiceRequest. Spans keep their relative order
/// within each resource and scope.
pub fn encode_request<'a>(spans: impl IntoIterator<Item = &'a Span>) -> Vec<u8> {
    let mut groups: Vec<ResourceGroup<'a>> = Vec::new();
    let mut by_resource: HashMap<u64, usize> = HashMap::new();
    for span in spans {
        let ri = *by_resource.entry(span.resource().id).or_insert_with(|| {
            groups.push(ResourceGroup {
                resource: span,
                scopes: Vec::new(),
                len: 0,
            });
            groups.len() - 1
        });
        let g = &mut groups[ri];
        let si = match g
            .scopes
            .iter()
            .position(|s| s.scope.scope().id == span.scope().id)
        {
            Some(i) => i,
            None => {
                g.scopes.push(ScopeGroup {
                    scope: span,
                    spans: Vec::new(),
                    len: 0,
                });
                g.scopes.len() - 1
            }
        };
        g.scopes[si].spans.push(span);
    }
    // Sizes first, so every length prefix is written once.
    let mut total = 0;
    for g in &mut groups {
        for s in &mut g.scopes {
            let sc = s.scope.scope();
            s.len = field_len(sc.message.len())
                + opt_len(&sc.schema_url)
                + s.spans
                    .iter()
                    .map(|sp| field_len(sp.bytes.len()))
                    .sum::<usize>();
            g.len += field_len(s.len);
        }
        let r = g.resource.resource();
        g.len += field_len(r.message.len()) + opt_len(&r.schema_url);
        total += field_len(g.len);
    }
    let mut out = Vec::with_capacity(total);
    for g in &groups {
        put_key(&mut out, 1, LEN);
        put_varint(&mut out, g.len as u64);
        let r = g.resource.resource();
        put_len(&mut out, 1, &r.message);
        for s in &g.scopes {
            put_key(&mut out, 2, LEN);
            put_varint(&mut out, s.len as u64);
            put_len(&mut out, 1, &s.scope.scope().message);
            for sp in &s.spans {
                put_len(&mut out, 2, &sp.bytes);
            }
            if !s.scope.scope().schema_url.is_empty() {
                put_len(&mut out, 3, &s.scope.scope().schema_url);
            }
        }
        if !r.schema_url.is_empty() {
            put_len(&mut out, 3, &r.schema_url);
        }
    }
    debug_assert_eq!(out.len(), total);
    out
}

fn opt_len(b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        field_len(b.len())
    }
}

/// Returns `span_bytes` with string attributes appended (a repeated field may appear
/// anywhere in a message, so appending is a valid encoding of the extended span).
pub fn append_attributes(span_bytes: &[u8], attrs: &[(&str, &str)]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(
        span_bytes.len()
            + attrs
                .iter()
                .map(|(k, v)| k.len() + v.len() + 8)
                .sum::<usize>(),
    );
    out.extend_from_slice(span_bytes);
    for (k, v) in attrs {
        put_len(&mut out, 9, &string_key_value(k, v));
    }
    out.into_boxed_slice()
}

/// A `google.rpc.Status` with gRPC `code` carrying `RetryInfo { retry_delay: delay }`: the
/// `grpc-status-details-bin` payload that tells OTLP clients when to retry (the receivers'
/// throttling answers; the exporters read it back with `export::grpc::retry_info_delay`).
pub fn status_with_retry_info(code: i32, delay: std::time::Duration) -> Vec<u8> {
    use super::VARINT;
    let mut duration = Vec::new();
    put_key(&mut duration, 1, VARINT);
    put_varint(&mut duration, delay.as_secs());
    if delay.subsec_nanos() > 0 {
        put_key(&mut duration, 2, VARINT);
        put_varint(&mut duration, u64::from(delay.subsec_nanos()));
    }
    let mut info = Vec::new();
    put_len(&mut info, 1, &duration);
    let mut any = Vec::new();
    put_len(&mut any, 1, b"type.googleapis.com/google.rpc.RetryInfo");
    put_len(&mut any, 2, &info);
    let mut status = Vec::new();
    put_key(&mut status, 1, VARINT);
    put_varint(&mut status, code as u64);
    put_len(&mut status, 3, &any);
    status
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    use super::*;
    use crate::fixture::{self, Gen, Shape};
    use crate::wire::decode::decode_request;

    #[test]
    fn decode_then_encode_is_identity_for_grouped_requests() {
        let mut g = Gen::new(3);
        let traces: Vec<_> = (0..4).map(|_| g.trace(Shape::default(), 8)).collect();
        let req = fixture::request_for(&traces);
        let bytes = req.encode_to_vec();
        let d = decode_request(&bytes).unwrap();
        let out = encode_request(&d.spans);
        assert_eq!(ExportTraceServiceRequest::decode(&out[..]).unwrap(), req);
        assert_eq!(out, bytes);
    }

    #[test]
    fn appended_attributes_decode_as_span_attributes() {
        let mut g = Gen::new(4);
        let t = g.trace(Shape::default(), 2);
        let bytes = fixture::request_for(&[t]).encode_to_vec();
        let mut d = decode_request(&bytes).unwrap();
        d.spans[0].bytes =
            append_attributes(&d.spans[0].bytes, &[("casefile.policy", "errors,slow")]);
        let out = ExportTraceServiceRequest::decode(&encode_request(&d.spans)[..]).unwrap();
        let span = &out.resource_spans[0].scope_spans[0].spans[0];
        let last = span.attributes.last().unwrap();
        assert_eq!(last.key, "casefile.policy");
        assert_eq!(
            d.spans[0]
                .attribute("casefile.policy")
                .and_then(|v| v.as_str()),
            Some("errors,slow")
        );
    }

    #[test]
    fn spans_from_separate_requests_are_regrouped() {
        let mut g = Gen::new(5);
        let t = g.trace(Shape::default(), 10);
        let (a, b) = t.spans.split_at(5);
        let da = decode_request(&fixture::request(a.iter()).encode_to_vec()).unwrap();
        let db = decode_request(&fixture::request(b.iter()).encode_to_vec()).unwrap();
        let all: Vec<_> = da.spans.iter().chain(db.spans.iter()).collect();
        let out = ExportTraceServiceRequest::decode(&encode_request(all)[..]).unwrap();
        let n: usize = out
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(n, 10);
    }
}
