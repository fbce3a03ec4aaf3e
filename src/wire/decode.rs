//! Ingest fast path: walks an encoded ExportTraceServiceRequest and produces one
//! [`Span`] per span without decoding attributes, events or links. Each span keeps a copy
//! of its own bytes (never a slice of the request, so a held span never pins a whole
//! request buffer); resource and scope messages are copied once per block and shared.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use super::{Field, Fields, WireError, I32, I64, LEN, VARINT};
use crate::model::{Origin, Shared, Span, StatusCode, TraceId, TRACE_ID_PREFIX};

/// The spans of one request, and the spans refused for invalid ids.
#[derive(Debug, Default)]
pub struct Decoded {
    pub spans: Vec<Span>,
    /// Spans refused (reported to the client through `partial_success`).
    pub rejected: usize,
    /// The first reason a span was refused, for `partial_success.error_message`.
    pub first_rejection: Option<String>,
}

/// Decodes a request. A structurally malformed request is an error as a whole (nothing of it
/// is accepted); a well-formed span with invalid ids is refused on its own.
pub fn decode_request(buf: &[u8]) -> Result<Decoded, WireError> {
    let mut out = Decoded::default();
    for f in Fields::new(buf) {
        let (n, f) = f?;
        if n == 1 {
            decode_resource_spans(expect_len(n, f)?, &mut out)?;
        }
    }
    Ok(out)
}

fn expect_len(n: u32, f: Field<'_>) -> Result<&[u8], WireError> {
    match f {
        Field::Len(b) => Ok(b),
        other => Err(WireError::Mismatch {
            field: n,
            got: other.wire_type(),
            want: LEN,
        }),
    }
}

fn decode_resource_spans(rs: &[u8], out: &mut Decoded) -> Result<(), WireError> {
    let mut resource = Cow::Borrowed(&[][..]);
    let mut schema_url: &[u8] = &[];
    let mut scopes: Vec<&[u8]> = Vec::new();
    for f in Fields::new(rs) {
        let (n, f) = f?;
        match n {
            1 => merge(&mut resource, expect_len(n, f)?)?,
            2 => scopes.push(expect_len(n, f)?),
            3 => schema_url = expect_len(n, f)?,
            _ => {}
        }
    }
    let resource = Shared::new(
        Bytes::copy_from_slice(&resource),
        Bytes::copy_from_slice(schema_url),
    );
    for ss in scopes {
        decode_scope_spans(ss, &resource, out)?;
    }
    Ok(())
}

fn decode_scope_spans(
    ss: &[u8],
    resource: &Arc<Shared>,
    out: &mut Decoded,
) -> Result<(), WireError> {
    let mut scope = Cow::Borrowed(&[][..]);
    let mut schema_url: &[u8] = &[];
    let mut spans: Vec<&[u8]> = Vec::new();
    for f in Fields::new(ss) {
        let (n, f) = f?;
        match n {
            1 => merge(&mut scope, expect_len(n, f)?)?,
            2 => spans.push(expect_len(n, f)?),
            3 => schema_url = expect_len(n, f)?,
            _ => {}
        }
    }
    let scope = Shared::new(
        Bytes::copy_from_slice(&scope),
        Bytes::copy_from_slice(schema_url),
    );
    let origin = Origin::new(Arc::clone(resource), scope);
    out.spans.reserve(spans.len());
    for s in spans {
        match decode_span(s, &origin)? {
            Ok(span) => out.spans.push(span),
            Err(reason) => {
                out.rejected += 1;
                out.first_rejection.get_or_insert(reason);
            }
        }
    }
    Ok(())
}

/// Adds an occurrence of a singular message field (resource, scope) to the earlier ones,
/// after checking it is well formed at its top level: protobuf merges them, which is
/// concatenating them. SDKs write one, which stays borrowed.
fn merge<'a>(into: &mut Cow<'a, [u8]>, more: &'a [u8]) -> Result<(), WireError> {
    check_message(more)?;
    if into.is_empty() {
        *into = Cow::Borrowed(more);
    } else {
        into.to_mut().extend_from_slice(more);
    }
    Ok(())
}

/// Checks that a nested message is well formed at its top level.
fn check_message(msg: &[u8]) -> Result<(), WireError> {
    Fields::new(msg).try_for_each(|f| f.map(|_| ()))
}

/// Outer error: the bytes are malformed. Inner error: a valid span refused for its ids.
fn decode_span(s: &[u8], origin: &Arc<Origin>) -> Result<Result<Span, String>, WireError> {
    let mut trace_id: &[u8] = &[];
    let mut span_id: &[u8] = &[];
    let mut parent: &[u8] = &[];
    let (mut start, mut end, mut flags) = (0u64, 0u64, 0u32);
    let mut status = StatusCode::Unset;
    for f in Fields::new(s) {
        let (n, f) = f?;
        match (n, f) {
            (1, Field::Len(b)) => trace_id = b,
            (2, Field::Len(b)) => span_id = b,
            (4, Field::Len(b)) => parent = b,
            (7, Field::I64(v)) => start = v,
            (8, Field::I64(v)) => end = v,
            (15, Field::Len(b)) => status = status_code(b, status)?,
            (16, Field::I32(v)) => flags = v,
            (1 | 2 | 4 | 15, f) => return Err(mismatch(n, f, LEN)),
            (7 | 8, f) => return Err(mismatch(n, f, I64)),
            (16, f) => return Err(mismatch(n, f, I32)),
            _ => {}
        }
    }
    let trace_id: TraceId = match id(trace_id) {
        Some(t) => t,
        None => {
            return Ok(Err(format!(
                "invalid trace_id {:?}: must be 16 bytes, not all zero",
                hex::encode(trace_id)
            )))
        }
    };
    if id::<8>(span_id).is_none() {
        return Ok(Err(format!(
            "invalid span_id {:?}: must be 8 bytes, not all zero",
            hex::encode(span_id)
        )));
    }
    if !(parent.is_empty() || parent.len() == 8) {
        return Ok(Err(format!(
            "invalid parent_span_id {:?}: must be empty or 8 bytes",
            hex::encode(parent)
        )));
    }
    Ok(Ok(Span {
        start_unix_nano: start,
        end_unix_nano: end,
        flags,
        status,
        // An all-zero parent is no parent, as the SDKs write it.
        root: id::<8>(parent).is_none(),
        origin: Arc::clone(origin),
        bytes: trace_id_first(s, &trace_id),
    }))
}

/// The span's bytes, starting with its trace id field as [`Span::trace_id`] expects. SDKs
/// write field 1 first, so this is a copy; otherwise the id (the last occurrence, as
/// proto3 reads it) is put in front, which every proto3 reader reads the same way.
fn trace_id_first(s: &[u8], trace_id: &TraceId) -> Box<[u8]> {
    if s.len() >= 18 && s[..2] == TRACE_ID_PREFIX && s[2..18] == trace_id[..] {
        return s.into();
    }
    let mut b = Vec::with_capacity(18 + s.len());
    b.extend_from_slice(&TRACE_ID_PREFIX);
    b.extend_from_slice(trace_id);
    b.extend_from_slice(s);
    b.into_boxed_slice()
}

fn mismatch(field: u32, f: Field<'_>, want: u8) -> WireError {
    WireError::Mismatch {
        field,
        got: f.wire_type(),
        want,
    }
}

/// A valid id: the right length and not all zero.
fn id<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    let a: [u8; N] = b.try_into().ok()?;
    (a != [0u8; N]).then_some(a)
}

/// The code of a `Status` occurrence; `code` is what earlier occurrences set (protobuf
/// merges them: a later one without a code keeps it).
fn status_code(b: &[u8], mut code: StatusCode) -> Result<StatusCode, WireError> {
    for f in Fields::new(b) {
        match f? {
            (3, Field::Varint(v)) => code = StatusCode::from_i32(v as i32),
            (3, f) => return Err(mismatch(3, f, VARINT)),
            _ => {}
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests;
