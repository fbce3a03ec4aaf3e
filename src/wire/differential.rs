//! Differential check of the ingest fast path: [`decode_request`] against a full prost
//! decode of the same bytes. Shared by the property test in `decode/tests.rs` and the
//! `wire_protobuf` fuzz target in `fuzz/`; the daemon never calls it.

use std::fmt::Debug;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span as PbSpan;
use prost::Message;

use super::decode::{decode_request_with, Checks, InvalidUtf8};
use super::encode::encode_request;
use crate::model::{Shared, Span, StatusCode};

/// Checks that the fast path reads `req` as prost does, or says how it does not.
///
/// When prost refuses the bytes there is nothing to agree with: `Ok` (the fast path reads
/// less of a request, so it may accept bytes prost refuses). Otherwise the fast path must
/// accept them too, refuse exactly the spans with invalid ids, and for every other span, in
/// order, read the same ids, times, status, flags and root, keep bytes that decode to the
/// same span, and carry the same resource, scope and schema URLs. When `req` is prost's
/// own encoding of what it decoded (as every SDK writes), the kept bytes must also be the
/// same bytes.
#[doc(hidden)]
pub fn check_against_prost(req: &[u8]) -> Result<(), String> {
    let Ok(full) = ExportTraceServiceRequest::decode(req) else {
        return Ok(());
    };
    let canonical = full.encode_to_vec() == req;
    // No size bound: prost has none, so a large span is not a disagreement.
    let checks = Checks {
        max_span_bytes: usize::MAX,
        ..Checks::default()
    };
    let fast = decode_request_with(req, &checks)
        .map_err(|e| format!("prost accepts the request, the fast path refuses it: {e}"))?;
    let mut spans = fast.spans.iter();
    let mut rejected = 0;
    for (r, rs) in full.resource_spans.iter().enumerate() {
        let resource = rs.resource.clone().unwrap_or_default();
        for (c, ss) in rs.scope_spans.iter().enumerate() {
            let scope = ss.scope.clone().unwrap_or_default();
            for (k, s) in ss.spans.iter().enumerate() {
                if !valid_ids(s) {
                    rejected += 1;
                    continue;
                }
                let at = format!("resource_spans[{r}].scope_spans[{c}].spans[{k}]");
                let f = spans
                    .next()
                    .ok_or_else(|| format!("{at}: missing from the fast path"))?;
                same_span(&at, f, s, canonical)?;
                same_block(
                    &at,
                    "resource",
                    f.resource(),
                    &resource,
                    &rs.schema_url,
                    canonical,
                )?;
                same_block(&at, "scope", f.scope(), &scope, &ss.schema_url, canonical)?;
            }
        }
    }
    if let Some(extra) = spans.next() {
        return Err(format!("the fast path has an extra span: {extra:?}"));
    }
    same("request", "rejected spans", fast.rejected, rejected)?;
    same(
        "request",
        "a first rejection",
        fast.first_rejection.is_some(),
        rejected > 0,
    )
}

/// The other direction: whatever the fast path accepts from `req` (with invalid UTF-8
/// repaired, and with it refused), encoded as casefile exports it, prost decodes, with
/// every accepted span, and only valid UTF-8 in it (prost checks that as it decodes).
#[doc(hidden)]
pub fn check_exportable(req: &[u8]) -> Result<(), String> {
    for invalid_utf8 in [InvalidUtf8::Repair, InvalidUtf8::Reject] {
        let checks = Checks {
            invalid_utf8,
            ..Checks::default()
        };
        let Ok(fast) = decode_request_with(req, &checks) else {
            continue;
        };
        let out = encode_request(&fast.spans);
        let back = ExportTraceServiceRequest::decode(&out[..]).map_err(|e| {
            format!("{invalid_utf8:?}: prost cannot decode what casefile would export: {e}")
        })?;
        let spans: usize = back
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        same("export", "spans", spans, fast.spans.len())?;
    }
    Ok(())
}

fn same_span(at: &str, f: &Span, s: &PbSpan, canonical: bool) -> Result<(), String> {
    let parent = (!s.parent_span_id.is_empty()).then(|| s.parent_span_id.clone());
    let root = s.parent_span_id.is_empty() || s.parent_span_id == [0u8; 8];
    let code = s.status.as_ref().map_or(0, |st| st.code);
    same(at, "trace_id", &f.trace_id()[..], &s.trace_id[..])?;
    same(
        at,
        "span_id",
        f.span_id().map(Vec::from),
        Some(s.span_id.clone()),
    )?;
    same(at, "parent", f.parent_span_id().map(Vec::from), parent)?;
    same(at, "root", f.is_root(), root)?;
    same(at, "start", f.start_unix_nano, s.start_time_unix_nano)?;
    same(at, "end", f.end_unix_nano, s.end_time_unix_nano)?;
    same(at, "flags", f.flags, s.flags)?;
    same(at, "status", f.status, StatusCode::from_i32(code))?;
    same_message(at, "span bytes", &f.bytes, s, canonical)
}

/// The decoder's rule: a 16-byte trace id and an 8-byte span id, neither all zero, and a
/// parent span id that is empty or 8 bytes.
fn valid_ids(s: &PbSpan) -> bool {
    s.trace_id.len() == 16
        && s.trace_id.iter().any(|&b| b != 0)
        && s.span_id.len() == 8
        && s.span_id.iter().any(|&b| b != 0)
        && (s.parent_span_id.is_empty() || s.parent_span_id.len() == 8)
}

fn same<T: PartialEq + Debug>(at: &str, what: &str, fast: T, prost: T) -> Result<(), String> {
    if fast == prost {
        Ok(())
    } else {
        Err(format!("{at}: {what}: fast path {fast:?}, prost {prost:?}"))
    }
}

/// `bytes` decode to `want` (compared encoded, so a NaN equals itself), and are its exact
/// encoding when the request was canonical.
fn same_message<M: Message + Default>(
    at: &str,
    what: &str,
    bytes: &[u8],
    want: &M,
    canonical: bool,
) -> Result<(), String> {
    let want = want.encode_to_vec();
    let got = M::decode(bytes)
        .map_err(|e| format!("{at}: {what}: prost cannot read the fast path's bytes: {e}"))?;
    same(at, what, got.encode_to_vec(), want.clone())?;
    if canonical {
        same(at, &format!("{what} (exact)"), bytes.to_vec(), want)?;
    }
    Ok(())
}

fn same_block<M: Message + Default>(
    at: &str,
    what: &str,
    block: &Shared,
    want: &M,
    schema_url: &str,
    canonical: bool,
) -> Result<(), String> {
    same_message(at, what, &block.message, want, canonical)?;
    same(
        at,
        &format!("{what} schema_url"),
        &block.schema_url[..],
        schema_url.as_bytes(),
    )
}
