//! Splitting an encoded ExportTraceServiceRequest in two, on the bytes: when a downstream
//! refuses a batch for its content, the exporter sends the halves separately until the
//! spans it refuses are isolated (see `retry::deliver`). No span is decoded or re-encoded:
//! each span's bytes are copied as they are, under a copy of its own ResourceSpans and
//! ScopeSpans block (resource, scope, schema_url and any other field of the block).

use bytes::Bytes;

use crate::wire::{put_key, put_len, put_varint, Field, Fields, WireError, I32, I64, VARINT};

/// `ExportTraceServiceRequest.resource_spans`, `ResourceSpans.scope_spans`, `ScopeSpans.spans`.
const RESOURCE_SPANS: u32 = 1;
const SCOPE_SPANS: u32 = 2;
const SPANS: u32 = 2;
/// `Span.trace_id`.
const TRACE_ID: u32 = 1;

/// One encoded request and the spans in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub request: Bytes,
    pub spans: usize,
}

/// The spans in an encoded request.
pub fn count_spans(request: &[u8]) -> Result<usize, WireError> {
    let mut n = 0;
    for_each_span(request, |_| n += 1)?;
    Ok(n)
}

/// The trace id of the first span of an encoded request, in hex (for logs).
pub fn first_trace_id(request: &[u8]) -> Option<String> {
    let mut first = None;
    let _ = for_each_span(request, |span| {
        if first.is_none() {
            first = Some(hex::encode(
                crate::wire::bytes_field(span, TRACE_ID).unwrap_or(&[]),
            ));
        }
    });
    first
}

/// Splits `request` into two valid requests, the first half of its spans (in the order
/// they are encoded) and the rest; `None` with fewer than two spans.
pub fn split_request(request: &[u8]) -> Result<Option<(Part, Part)>, WireError> {
    let n = count_spans(request)?;
    if n < 2 {
        return Ok(None);
    }
    let (a, b) = split_at(request, n / 2)?;
    Ok(Some((
        Part {
            request: a.into(),
            spans: n / 2,
        },
        Part {
            request: b.into(),
            spans: n - n / 2,
        },
    )))
}

/// The first `k` spans of `request` and the others, as two requests. A span goes under a
/// copy of the blocks it was in; a block without spans goes where the spans before it went.
pub fn split_at(request: &[u8], k: usize) -> Result<(Vec<u8>, Vec<u8>), WireError> {
    let mut seen = 0;
    let halves = split_message(request, 0, &mut seen, k)?;
    Ok((halves.a, halves.b))
}

/// One message cut in two: its fields with the spans before the cut, and with the others.
struct Halves {
    a: Vec<u8>,
    b: Vec<u8>,
    a_spans: usize,
    b_spans: usize,
}

/// Splits a message at `depth` (0 the request, 1 a ResourceSpans, 2 a ScopeSpans) whose
/// spans start at `*seen`. Fields other than the nested blocks go to both halves.
fn split_message(msg: &[u8], depth: u8, seen: &mut usize, k: usize) -> Result<Halves, WireError> {
    let child = if depth == 0 {
        RESOURCE_SPANS
    } else {
        SCOPE_SPANS // = SPANS at depth 2
    };
    let mut h = Halves {
        a: Vec::with_capacity(msg.len() / 2 + 64),
        b: Vec::with_capacity(msg.len() / 2 + 64),
        a_spans: 0,
        b_spans: 0,
    };
    for field in Fields::new(msg) {
        match field? {
            (n, Field::Len(span)) if n == child && depth == 2 => {
                if *seen < k {
                    put_len(&mut h.a, SPANS, span);
                    h.a_spans += 1;
                } else {
                    put_len(&mut h.b, SPANS, span);
                    h.b_spans += 1;
                }
                *seen += 1;
            }
            (n, Field::Len(block)) if n == child => {
                let start = *seen;
                let inner = split_message(block, depth + 1, seen, k)?;
                let empty = inner.a_spans + inner.b_spans == 0;
                if inner.a_spans > 0 || (empty && start < k) {
                    put_len(&mut h.a, child, &inner.a);
                }
                if inner.b_spans > 0 || (empty && start >= k) {
                    put_len(&mut h.b, child, &inner.b);
                }
                h.a_spans += inner.a_spans;
                h.b_spans += inner.b_spans;
            }
            (n, other) => {
                put_field(&mut h.a, n, other);
                put_field(&mut h.b, n, other);
            }
        }
    }
    Ok(h)
}

fn put_field(out: &mut Vec<u8>, number: u32, field: Field<'_>) {
    match field {
        Field::Varint(v) => {
            put_key(out, number, VARINT);
            put_varint(out, v);
        }
        Field::I64(v) => {
            put_key(out, number, I64);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Field::I32(v) => {
            put_key(out, number, I32);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Field::Len(b) => put_len(out, number, b),
    }
}

/// Calls `f` with the bytes of every span of an encoded request, in order.
fn for_each_span<'a>(request: &'a [u8], mut f: impl FnMut(&'a [u8])) -> Result<(), WireError> {
    for rs in Fields::new(request) {
        let (RESOURCE_SPANS, Field::Len(rs)) = rs? else {
            continue;
        };
        for ss in Fields::new(rs) {
            let (SCOPE_SPANS, Field::Len(ss)) = ss? else {
                continue;
            };
            for span in Fields::new(ss) {
                if let (SPANS, Field::Len(span)) = span? {
                    f(span);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
