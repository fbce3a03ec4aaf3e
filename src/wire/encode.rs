//! Export path: writes kept spans back out as an ExportTraceServiceRequest, copying each
//! span's bytes as they arrived. Spans are grouped under their shared resource and scope
//! blocks, so a trace from five services becomes five ResourceSpans, as a backend expects.

use std::collections::HashMap;

use super::{
    put_key, put_len, put_varint, string_key_value, varint_len, Field, Fields, I64, LEN, VARINT,
};
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
    let values: Vec<(&str, Value<'_>)> = attrs.iter().map(|(k, v)| (*k, Value::Str(v))).collect();
    append_key_values(span_bytes, 9, &values)
}

/// An attribute value casefile writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Bool(bool),
    Double(f64),
}

/// Returns `message` with `KeyValue`s appended as repeated field `field` (9 for a span's
/// attributes, 3 for an instrumentation scope's).
pub fn append_key_values(message: &[u8], field: u32, attrs: &[(&str, Value<'_>)]) -> Box<[u8]> {
    let mut out =
        Vec::with_capacity(message.len() + attrs.iter().map(|(k, _)| k.len() + 24).sum::<usize>());
    out.extend_from_slice(message);
    for (k, v) in attrs {
        let kv = match v {
            Value::Str(s) => string_key_value(k, s),
            Value::Bool(b) => {
                let mut any = Vec::with_capacity(2);
                put_key(&mut any, 2, VARINT);
                put_varint(&mut any, u64::from(*b));
                key_value(k, &any)
            }
            Value::Double(d) => {
                let mut any = Vec::with_capacity(9);
                put_key(&mut any, 4, I64);
                any.extend_from_slice(&d.to_le_bytes());
                key_value(k, &any)
            }
        };
        put_len(&mut out, field, &kv);
    }
    out.into_boxed_slice()
}

fn key_value(key: &str, any: &[u8]) -> Vec<u8> {
    let mut kv = Vec::with_capacity(key.len() + any.len() + 4);
    put_len(&mut kv, 1, key.as_bytes());
    put_len(&mut kv, 2, any);
    kv
}

/// Returns `message` with every occurrence of the length-delimited field `number` replaced
/// by one holding `value`, where the first one was (appended when there was none); `None`
/// when `message` does not parse. The other fields keep their bytes and order.
pub fn replace_len_field(message: &[u8], number: u32, value: &[u8]) -> Option<Box<[u8]>> {
    let mut out = Vec::with_capacity(message.len() + value.len() + 4);
    let mut written = false;
    let mut fields = Fields::new(message);
    loop {
        let start = fields.pos;
        match fields.next() {
            None => break,
            Some(Err(_)) => return None,
            Some(Ok((n, Field::Len(b)))) if n == number => {
                // A skipped group may sit in front of the field: keep its bytes.
                out.extend_from_slice(&message[start..fields.pos - len_field_size(n, b)]);
                if !written {
                    put_len(&mut out, number, value);
                    written = true;
                }
            }
            Some(Ok(_)) => out.extend_from_slice(&message[start..fields.pos]),
        }
    }
    if !written {
        put_len(&mut out, number, value);
    }
    Some(out.into_boxed_slice())
}

/// Encoded size of length-delimited field `n` holding `value` (key, length, value).
fn len_field_size(n: u32, value: &[u8]) -> usize {
    varint_len(u64::from(n << 3 | u32::from(LEN))) + varint_len(value.len() as u64) + value.len()
}

/// `message` without the key-values of field `field` whose key is one of `keys`; None when
/// none is there (or the message does not walk).
pub fn remove_key_values(message: &[u8], field: u32, keys: &[&str]) -> Option<Box<[u8]>> {
    let mut out = Vec::with_capacity(message.len());
    let mut removed = false;
    let mut fields = Fields::new(message);
    loop {
        let start = fields.pos;
        match fields.next() {
            None => break,
            Some(Err(_)) => return None,
            Some(Ok((n, Field::Len(kv))))
                if n == field
                    && crate::wire::bytes_field(kv, 1)
                        .is_some_and(|k| keys.iter().any(|w| w.as_bytes() == k)) =>
            {
                // A skipped group may sit in front of the field: keep its bytes.
                out.extend_from_slice(&message[start..fields.pos - len_field_size(n, kv)]);
                removed = true;
            }
            Some(Ok(_)) => out.extend_from_slice(&message[start..fields.pos]),
        }
    }
    removed.then(|| out.into_boxed_slice())
}

/// A `google.rpc.Status` with gRPC `code` carrying `RetryInfo { retry_delay: delay }`: the
/// `grpc-status-details-bin` payload that tells OTLP clients when to retry (the receivers'
/// throttling answers; the exporters read it back with `export::grpc::retry_info_delay`).
pub fn status_with_retry_info(code: i32, delay: std::time::Duration) -> Vec<u8> {
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

    #[test]
    fn replacing_a_field_keeps_every_other_byte() {
        let mut msg = Vec::new();
        put_len(&mut msg, 1, b"id");
        put_len(&mut msg, 3, b"old");
        put_key(&mut msg, 4, VARINT);
        put_varint(&mut msg, 300);
        // A group (field 7) right in front of a second occurrence of field 3.
        put_key(&mut msg, 7, 3);
        put_key(&mut msg, 1, VARINT);
        put_varint(&mut msg, 1);
        put_key(&mut msg, 7, 4);
        put_len(&mut msg, 3, b"older");
        let out = replace_len_field(&msg, 3, b"new").unwrap();
        let mut want = Vec::new();
        put_len(&mut want, 1, b"id");
        put_len(&mut want, 3, b"new");
        put_key(&mut want, 4, VARINT);
        put_varint(&mut want, 300);
        put_key(&mut want, 7, 3);
        put_key(&mut want, 1, VARINT);
        put_varint(&mut want, 1);
        put_key(&mut want, 7, 4);
        assert_eq!(&*out, &want[..]);
        // Appended when absent; refused when the message does not parse.
        let mut none = Vec::new();
        put_len(&mut none, 1, b"id");
        let mut appended = none.clone();
        put_len(&mut appended, 3, b"x");
        assert_eq!(&*replace_len_field(&none, 3, b"x").unwrap(), &appended[..]);
        assert_eq!(replace_len_field(&[0x0a, 0x05, 1], 3, b"x"), None);
    }
}
