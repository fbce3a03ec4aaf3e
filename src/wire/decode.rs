//! Ingest fast path: walks an encoded ExportTraceServiceRequest and produces one
//! [`Span`] per span without decoding attributes, events or links. Each span keeps a copy
//! of its own bytes (never a slice of the request, so a held span never pins a whole
//! request buffer); resource and scope messages are copied once per block and shared.
//! Every span and block is checked on the way ([`super::check`]): what is accepted is
//! what any downstream can decode.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use super::check::{self, Msg, Problem};
use super::{Field, Fields, WireError, I32, I64, LEN, VARINT};
use crate::model::{Origin, Shared, Span, StatusCode, TraceId, TRACE_ID_PREFIX};

/// What to do with a string field that is not valid UTF-8
/// (`receivers.otlp.invalid_utf8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidUtf8 {
    /// Each invalid sequence becomes U+FFFD and the span is re-encoded.
    #[default]
    Repair,
    /// The span is refused through `partial_success`, naming the field.
    Reject,
}

/// The default `receivers.otlp.max_span_bytes`: far above what an SDK writes for one span
/// (a few hundred bytes; a long SQL statement or stack trace a few KiB) and far below the
/// 3 MiB an export request is bounded by, so one span never fills a request alone.
pub const DEFAULT_MAX_SPAN_BYTES: usize = 1 << 20;

/// The ingest checks' settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    pub invalid_utf8: InvalidUtf8,
    /// A span whose encoding is larger is refused.
    pub max_span_bytes: usize,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            invalid_utf8: InvalidUtf8::Repair,
            max_span_bytes: DEFAULT_MAX_SPAN_BYTES,
        }
    }
}

/// The spans of one request, and the spans refused.
#[derive(Debug, Default)]
pub struct Decoded {
    pub spans: Vec<Span>,
    /// Spans refused (reported to the client through `partial_success`).
    pub rejected: usize,
    /// The first reason a span was refused, for `partial_success.error_message`.
    pub first_rejection: Option<String>,
    /// Refused spans by reason (`invalid` ids, `invalid_utf8`, `too_deep`, `malformed`,
    /// `too_large`), for the refusal counters.
    pub rejected_by: Vec<(&'static str, usize)>,
    /// Accepted spans whose invalid UTF-8 (in the span or its resource or scope) was
    /// replaced by U+FFFD: their bytes differ from the request's.
    pub repaired: usize,
}

impl Decoded {
    fn reject(&mut self, reason: &'static str, message: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.first_rejection.is_none() {
            self.first_rejection = Some(message());
        }
        match self.rejected_by.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.rejected_by.push((reason, 1)),
        }
    }
}

/// Decodes a request with the default checks (see [`decode_request_with`]).
pub fn decode_request(buf: &[u8]) -> Result<Decoded, WireError> {
    decode_request_with(buf, &Checks::default())
}

/// Decodes a request. A structurally malformed request is an error as a whole (nothing of it
/// is accepted); a well-formed span with invalid ids, a string that is not UTF-8 (unless
/// repaired), a message nested too deep, a malformed nested message, or more than
/// `max_span_bytes` is refused on its own, and so are the spans of a resource or scope
/// block with such a problem.
pub fn decode_request_with(buf: &[u8], checks: &Checks) -> Result<Decoded, WireError> {
    let mut out = Decoded::default();
    for f in Fields::new(buf) {
        let (n, f) = f?;
        if n == 1 {
            decode_resource_spans(expect_len(n, f)?, checks, &mut out)?;
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

fn decode_resource_spans(rs: &[u8], checks: &Checks, out: &mut Decoded) -> Result<(), WireError> {
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
    let (resource, repaired) = match checked_block(Msg::Resource, resource, schema_url, checks) {
        Ok((message, schema_url, repaired)) => (Ok(Shared::new(message, schema_url)), repaired),
        Err(p) => (Err(p.at("resource")), false),
    };
    for ss in scopes {
        decode_scope_spans(ss, resource.as_ref(), repaired, checks, out)?;
    }
    Ok(())
}

fn decode_scope_spans(
    ss: &[u8],
    resource: Result<&Arc<Shared>, &Problem>,
    resource_repaired: bool,
    checks: &Checks,
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
    let block = checked_block(Msg::Scope, scope, schema_url, checks).map_err(|p| p.at("scope"));
    let (origin, repaired) = match (resource, block.as_ref()) {
        (Ok(resource), Ok((scope, schema_url, repaired))) => (
            Origin::new(
                Arc::clone(resource),
                Shared::new(scope.clone(), schema_url.clone()),
            ),
            resource_repaired || *repaired,
        ),
        (Err(p), _) | (_, Err(p)) => {
            for _ in &spans {
                out.reject(p.reason(), || p.to_string());
            }
            return Ok(());
        }
    };
    out.spans.reserve(spans.len());
    for s in spans {
        match decode_span(s, &origin, checks, false)? {
            Outcome::Kept(span) => {
                out.repaired += usize::from(repaired);
                out.spans.push(span);
            }
            Outcome::Repaired(span) => {
                out.repaired += 1;
                out.spans.push(span);
            }
            Outcome::Refused(reason, message) => out.reject(reason, || message),
        }
    }
    Ok(())
}

/// A resource or scope block as it will be sent on: its message and `schema_url`, checked,
/// with invalid UTF-8 repaired when `checks` allow it (then `true`).
fn checked_block(
    msg: Msg,
    message: Cow<'_, [u8]>,
    schema_url: &[u8],
    checks: &Checks,
) -> Result<(Bytes, Bytes, bool), Problem> {
    let depth = if msg == Msg::Resource {
        check::RESOURCE_DEPTH
    } else {
        check::SCOPE_DEPTH
    };
    let url_utf8 = || {
        std::str::from_utf8(schema_url)
            .map(|_| ())
            .map_err(|_| Problem::Utf8 {
                field: "schema_url".into(),
            })
    };
    let problem = match check::message(msg, depth, &message).and_then(|()| url_utf8()) {
        Ok(()) => {
            return Ok((
                Bytes::copy_from_slice(&message),
                Bytes::copy_from_slice(schema_url),
                false,
            ))
        }
        Err(p) => p,
    };
    if !matches!(problem, Problem::Utf8 { .. }) || checks.invalid_utf8 == InvalidUtf8::Reject {
        return Err(problem);
    }
    let message = check::repair(msg, &message);
    check::message(msg, depth, &message)?;
    let schema_url = String::from_utf8_lossy(schema_url).into_owned();
    Ok((message.into(), schema_url.into(), true))
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

/// What became of one well-formed span.
enum Outcome {
    Kept(Span),
    /// Kept with its invalid UTF-8 replaced (its bytes re-encoded).
    Repaired(Span),
    /// Refused: the reason label and the message for `partial_success`.
    Refused(&'static str, String),
}

/// Decodes one span, checking every field it does not read itself (see [`check::field`]).
/// The error is for malformed top-level fields, which make the whole request malformed;
/// `repaired` is set when `s` is already the repair of a span.
fn decode_span(
    s: &[u8],
    origin: &Arc<Origin>,
    checks: &Checks,
    repaired: bool,
) -> Result<Outcome, WireError> {
    let mut trace_id: &[u8] = &[];
    let mut span_id: &[u8] = &[];
    let mut parent: &[u8] = &[];
    let (mut start, mut end, mut flags) = (0u64, 0u64, 0u32);
    let mut status = StatusCode::Unset;
    let mut problem: Option<Problem> = None;
    let mut fields = Fields::new(s);
    for f in &mut fields {
        let (n, f) = f?;
        match (n, f) {
            (1, Field::Len(b)) => trace_id = b,
            (2, Field::Len(b)) => span_id = b,
            (4, Field::Len(b)) => parent = b,
            (7, Field::I64(v)) => start = v,
            (8, Field::I64(v)) => end = v,
            (15, Field::Len(b)) => {
                status = status_code(b, status)?;
                note(&mut problem, n, f);
            }
            (16, Field::I32(v)) => flags = v,
            (1 | 2 | 4 | 15, f) => return Err(mismatch(n, f, LEN)),
            (7 | 8, f) => return Err(mismatch(n, f, I64)),
            (16, f) => return Err(mismatch(n, f, I32)),
            (n, f) => note(&mut problem, n, f),
        }
    }
    if problem.is_none() {
        problem = check::groups_fit(&fields, check::SPAN_DEPTH).err();
    }
    let Some(trace_id) = id::<16>(trace_id) else {
        return Ok(Outcome::Refused(
            "invalid",
            format!(
                "invalid trace_id {:?}: must be 16 bytes, not all zero",
                hex::encode(trace_id)
            ),
        ));
    };
    if id::<8>(span_id).is_none() {
        return Ok(Outcome::Refused(
            "invalid",
            format!(
                "invalid span_id {:?}: must be 8 bytes, not all zero",
                hex::encode(span_id)
            ),
        ));
    }
    if !(parent.is_empty() || parent.len() == 8) {
        return Ok(Outcome::Refused(
            "invalid",
            format!(
                "invalid parent_span_id {:?}: must be empty or 8 bytes",
                hex::encode(parent)
            ),
        ));
    }
    let which = || {
        format!(
            "span {} of trace {}",
            hex::encode(span_id),
            hex::encode(trace_id)
        )
    };
    if s.len() > checks.max_span_bytes {
        return Ok(Outcome::Refused(
            "too_large",
            format!(
                "{} is {} bytes, more than receivers.otlp.max_span_bytes ({})",
                which(),
                s.len(),
                checks.max_span_bytes
            ),
        ));
    }
    match problem {
        None => {}
        Some(Problem::Utf8 { .. }) if checks.invalid_utf8 == InvalidUtf8::Repair && !repaired => {
            let fixed = check::repair(Msg::Span, s);
            return match decode_span(&fixed, origin, checks, true)? {
                Outcome::Kept(span) => Ok(Outcome::Repaired(span)),
                other => Ok(other),
            };
        }
        Some(p) => {
            let p = p.at("span");
            return Ok(Outcome::Refused(p.reason(), format!("{p} ({})", which())));
        }
    }
    Ok(Outcome::Kept(Span {
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

/// Checks a span field the decoder does not read itself, keeping the first problem.
#[inline(always)]
fn note(problem: &mut Option<Problem>, n: u32, f: Field<'_>) {
    if problem.is_none() {
        if let Err(p) = check::field(Msg::Span, check::SPAN_DEPTH, n, f) {
            *problem = Some(p);
        }
    }
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
