//! Cutting kept spans into export requests no larger than [`RequestLimits`]: the decider
//! encodes each chunk as one request (`wire::encode::encode_request`). The size of a chunk
//! is estimated while it grows, from above, so an encoded request never exceeds the byte
//! bound unless a single span does (that span then travels alone, and the exporters drop
//! it as `too_large`). Spans of one trace may land in several requests, as OTLP allows.

use std::collections::HashSet;
use std::ops::Range;

use super::config::RequestLimits;
use crate::model::Span;
use crate::wire::varint_len;

/// A field's key and the length prefix of a nested block: at most 1 + 5 bytes for any
/// block under 32 GiB (what `encode_request` writes is never more).
const BLOCK_OVERHEAD: usize = 6;

/// Bytes a length-delimited field of `len` bytes takes with its key (fields 1–15).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn opt_len(b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        field_len(b.len())
    }
}

/// Consecutive ranges of `spans`, in order, each encoding to a request within `limits`
/// (a span too large alone gets a range to itself).
pub fn request_chunks(spans: &[Span], limits: RequestLimits) -> Vec<Range<usize>> {
    let max_spans = limits.max_spans.max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    // Resource blocks and (resource, scope) blocks the current chunk already pays for.
    let mut resources: HashSet<u64> = HashSet::new();
    let mut scopes: HashSet<(u64, u64)> = HashSet::new();
    // Spans of one trace and one service come together: the previous span's blocks are
    // paid for already, without a set lookup.
    let mut last: Option<(u64, u64)> = None;
    for (i, span) in spans.iter().enumerate() {
        let (r, s) = (span.resource(), span.scope());
        let mut cost = field_len(span.bytes.len());
        if last == Some((r.id, s.id)) && i > start {
            if i - start < max_spans && bytes + cost <= limits.max_bytes {
                bytes += cost;
                continue;
            }
        } else {
            if !resources.contains(&r.id) {
                cost += BLOCK_OVERHEAD + field_len(r.message.len()) + opt_len(&r.schema_url);
            }
            if !scopes.contains(&(r.id, s.id)) {
                cost += BLOCK_OVERHEAD + field_len(s.message.len()) + opt_len(&s.schema_url);
            }
        }
        last = Some((r.id, s.id));
        let fits = i - start < max_spans && bytes + cost <= limits.max_bytes;
        if i > start && !fits {
            chunks.push(start..i);
            start = i;
            bytes = 0;
            resources.clear();
            scopes.clear();
            // Alone in the new chunk, the span pays for its blocks again.
            cost = field_len(span.bytes.len())
                + 2 * BLOCK_OVERHEAD
                + field_len(r.message.len())
                + opt_len(&r.schema_url)
                + field_len(s.message.len())
                + opt_len(&s.schema_url);
        }
        resources.insert(r.id);
        scopes.insert((r.id, s.id));
        bytes += cost;
    }
    if start < spans.len() {
        chunks.push(start..spans.len());
    }
    chunks
}
