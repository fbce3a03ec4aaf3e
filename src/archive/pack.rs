//! How a block holds spans compactly (the rescue ring's idea: resource and scope messages
//! once per block in its dictionary, span records pointing at them), plus two reversible
//! per-span transforms that help zstd: the leading trace id field (the entry has the id)
//! is cut, and the start and end times (fixed64) are taken out and stored as varint
//! offsets from the trace's start (3–4 bytes instead of 8 bytes of which the high ones
//! zstd can only partly match). A span whose fields cannot be walked is stored as it is.
//!
//! Block: `varint n, n × (varint len, message, varint len, schema_url)` (the dictionary),
//! then the entries. An entry's spans: `n × (varint resource, varint scope, u8 how,
//! varint len, bytes without the times, varint times)`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::model::{Origin, Shared, Span, StatusCode, TraceId, TRACE_ID_PREFIX};
use crate::wire::{put_varint, read_varint};

/// `how` bits.
const CUT_ID: u8 = 1;
const TIMES: u8 = 2;

/// The dictionary of the block being filled.
#[derive(Default)]
pub(crate) struct Dict {
    by_content: HashMap<(Bytes, Bytes), u32>,
    /// `Shared::id` → index: a batch's spans share their blocks.
    by_id: HashMap<u64, u32>,
    items: Vec<(Bytes, Bytes)>,
}

impl Dict {
    fn index(&mut self, s: &Arc<Shared>) -> u32 {
        if let Some(&i) = self.by_id.get(&s.id) {
            return i;
        }
        let key = (s.message.clone(), s.schema_url.clone());
        let n = self.items.len() as u32;
        let i = *self.by_content.entry(key.clone()).or_insert(n);
        if i == n {
            self.items.push(key);
        }
        self.by_id.insert(s.id, i);
        i
    }

    /// Writes the block: the dictionary, then `entries`; empties the dictionary.
    pub(crate) fn block(&mut self, entries: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() + 4096);
        put_varint(&mut out, self.items.len() as u64);
        for (m, s) in &self.items {
            put_varint(&mut out, m.len() as u64);
            out.extend_from_slice(m);
            put_varint(&mut out, s.len() as u64);
            out.extend_from_slice(s);
        }
        out.extend_from_slice(entries);
        *self = Dict::default();
        out
    }
}

/// A block's dictionary and its entries.
pub(crate) fn split(block: &[u8]) -> Option<(Vec<Arc<Shared>>, &[u8])> {
    let mut pos = 0;
    let n = read_varint(block, &mut pos).ok()? as usize;
    let mut dict = Vec::with_capacity(n.min(1 << 16));
    let bytes = |pos: &mut usize| {
        let len = read_varint(block, pos).ok()? as usize;
        let b = block.get(*pos..pos.checked_add(len)?)?;
        *pos += len;
        Some(Bytes::copy_from_slice(b))
    };
    for _ in 0..n {
        let m = bytes(&mut pos)?;
        let s = bytes(&mut pos)?;
        dict.push(Shared::new(m, s));
    }
    Some((dict, &block[pos..]))
}

/// Positions of the top-level fixed64 fields 7 and 8 (start and end time) of a span
/// message; None when the message cannot be walked.
fn times(b: &[u8]) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let tag = read_varint(b, &mut pos).ok()?;
        match tag & 7 {
            0 => {
                read_varint(b, &mut pos).ok()?;
            }
            1 => {
                if is_time(tag) {
                    out.push(pos);
                }
                pos += 8;
            }
            2 => {
                let len = read_varint(b, &mut pos).ok()? as usize;
                pos = pos.checked_add(len)?;
            }
            5 => pos += 4,
            _ => return None,
        }
    }
    (pos == b.len()).then_some(out)
}

fn is_time(tag: u64) -> bool {
    tag == (7 << 3 | 1) || tag == (8 << 3 | 1)
}

/// Appends the spans of trace `id` (started at `base`) to `out`. With [`TIMES`], the
/// span's bytes go without the 8 bytes of each time, which follow as varint offsets from
/// `base`.
pub(crate) fn pack(id: &TraceId, base: u64, spans: &[Span], dict: &mut Dict, out: &mut Vec<u8>) {
    for span in spans {
        put_varint(out, dict.index(span.resource()).into());
        put_varint(out, dict.index(span.scope()).into());
        let mut how = 0;
        let mut b: &[u8] = &span.bytes;
        if b.len() >= 18 && b[..2] == TRACE_ID_PREFIX && b[2..18] == id[..] {
            how |= CUT_ID;
            b = &b[18..];
        }
        match times(b) {
            Some(at) => {
                out.push(how | TIMES);
                put_varint(out, (b.len() - 8 * at.len()) as u64);
                let mut from = 0;
                for &p in &at {
                    out.extend_from_slice(&b[from..p]);
                    from = p + 8;
                }
                out.extend_from_slice(&b[from..]);
                for &p in &at {
                    let v = u64::from_le_bytes(b[p..p + 8].try_into().expect("8 bytes"));
                    put_varint(out, v.wrapping_sub(base));
                }
            }
            None => {
                out.push(how);
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
        }
    }
}

/// Puts the times back into a span's bytes packed with [`TIMES`]: walks `holed`, reading
/// each time from `rest` at `*pos`.
fn restore(holed: &[u8], base: u64, rest: &[u8], pos: &mut usize, out: &mut Vec<u8>) -> Option<()> {
    let mut at = 0;
    while at < holed.len() {
        let from = at;
        let tag = read_varint(holed, &mut at).ok()?;
        match tag & 7 {
            0 => {
                read_varint(holed, &mut at).ok()?;
            }
            1 if is_time(tag) => {
                out.extend_from_slice(&holed[from..at]);
                let v = read_varint(rest, pos).ok()?.wrapping_add(base);
                out.extend_from_slice(&v.to_le_bytes());
                continue;
            }
            1 => at += 8,
            2 => {
                let len = read_varint(holed, &mut at).ok()? as usize;
                at = at.checked_add(len)?;
            }
            5 => at += 4,
            _ => return None,
        }
        out.extend_from_slice(holed.get(from..at)?);
    }
    Some(())
}

/// The spans packed by [`pack`], as shells holding their bytes and origin only (to be
/// read again through the wire).
pub(crate) fn unpack(
    id: &TraceId,
    base: u64,
    buf: &[u8],
    dict: &[Arc<Shared>],
) -> Option<Vec<Span>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let r = read_varint(buf, &mut pos).ok()? as usize;
        let c = read_varint(buf, &mut pos).ok()? as usize;
        let how = *buf.get(pos)?;
        pos += 1;
        let len = read_varint(buf, &mut pos).ok()? as usize;
        let b = buf.get(pos..pos.checked_add(len)?)?;
        pos += len;
        let mut bytes = Vec::with_capacity(b.len() + 34);
        if how & CUT_ID != 0 {
            bytes.extend_from_slice(&TRACE_ID_PREFIX);
            bytes.extend_from_slice(id);
        }
        if how & TIMES != 0 {
            restore(b, base, buf, &mut pos, &mut bytes)?;
        } else {
            bytes.extend_from_slice(b);
        }
        out.push(Span {
            start_unix_nano: 0,
            end_unix_nano: 0,
            flags: 0,
            status: StatusCode::Unset,
            root: false,
            origin: Origin::new(Arc::clone(dict.get(r)?), Arc::clone(dict.get(c)?)),
            bytes: bytes.into_boxed_slice(),
        });
    }
    Some(out)
}
