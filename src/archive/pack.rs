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

use std::sync::Arc;

use foldhash::HashMap;

use bytes::Bytes;

use crate::model::{Origin, Shared, Span, StatusCode, TraceId, TRACE_ID_PREFIX};
use crate::wire::{put_varint, read_varint};

/// `how` bits: which values were taken out of the span's bytes.
const CUT_ID: u8 = 1;
const TIMES: u8 = 2;
const SPAN_ID: u8 = 4;
const PARENT: u8 = 8;

/// The dictionary of the block being filled.
#[derive(Default)]
pub(crate) struct Dict {
    by_content: HashMap<(Bytes, Bytes), u32>,
    /// `Shared::id` → index: a batch's spans share their blocks.
    by_id: HashMap<u64, u32>,
    items: Vec<(Bytes, Bytes)>,
    /// `(Shared::id, index)` of blocks met lately, by id modulo 16 (ids start at 1: 0 is
    /// none): a batch's spans share a few blocks.
    recent: [(u64, u32); 16],
    /// Reused by [`pack`]: span ids of the trace, holes of a span.
    ids: Vec<Option<[u8; 8]>>,
    holes: Vec<(usize, Hole)>,
}

impl Dict {
    #[inline]
    fn index(&mut self, s: &Arc<Shared>) -> u32 {
        let slot = (s.id % 16) as usize;
        let (id, i) = self.recent[slot];
        if id == s.id {
            return i;
        }
        let i = self.lookup(s);
        self.recent[slot] = (s.id, i);
        i
    }

    fn lookup(&mut self, s: &Arc<Shared>) -> u32 {
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
    #[cfg(test)]
    pub(crate) fn block(&mut self, entries: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() + 4096);
        self.block_into(entries, &mut out);
        out
    }

    /// [`Dict::block`] into `out` (cleared first).
    pub(crate) fn block_into(&mut self, entries: &[u8], out: &mut Vec<u8>) {
        out.clear();
        put_varint(out, self.items.len() as u64);
        for (m, s) in &self.items {
            put_varint(out, m.len() as u64);
            out.extend_from_slice(m);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s);
        }
        out.extend_from_slice(entries);
        self.by_content.clear();
        self.by_id.clear();
        self.items.clear();
        self.recent = Default::default();
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hole {
    /// A start or end time (fixed64 field 7 or 8): a varint offset from the trace start.
    Time,
    /// The span id (the first field 2 of 8 bytes): its 8 bytes.
    SpanId,
    /// The parent span id (the first field 4 of 8 bytes) when it is the id of an earlier
    /// span of the same record: that span's position, a varint.
    Parent,
}

const SPAN_ID_TAG: u64 = 2 << 3 | 2;
const PARENT_TAG: u64 = 4 << 3 | 2;

/// [`read_varint`], with the one- and two-byte cases (every tag and length of a span but
/// the largest) inlined into the walks here and in `keys`.
#[inline(always)]
pub(super) fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    match b.get(*pos..*pos + 2) {
        Some(&[x, _]) if x < 0x80 => {
            *pos += 1;
            Some(u64::from(x))
        }
        Some(&[x, y]) if y < 0x80 => {
            *pos += 2;
            Some(u64::from(x & 0x7f) | u64::from(y) << 7)
        }
        _ => read_varint(b, pos).ok(),
    }
}

fn is_time(tag: u64) -> bool {
    tag == (7 << 3 | 1) || tag == (8 << 3 | 1)
}

/// The values [`pack`] takes out of a span message: (position, kind), in order; None when
/// the message cannot be walked.
fn holes(b: &[u8], out: &mut Vec<(usize, Hole)>) -> Option<()> {
    out.clear();
    let (mut span_id, mut parent) = (false, false);
    let mut pos = 0;
    while pos < b.len() {
        let tag = varint(b, &mut pos)?;
        match tag & 7 {
            0 => {
                varint(b, &mut pos)?;
            }
            1 => {
                if is_time(tag) {
                    out.push((pos, Hole::Time));
                }
                pos += 8;
            }
            2 => {
                let len = varint(b, &mut pos)? as usize;
                if len == 8 && tag == SPAN_ID_TAG && !span_id {
                    span_id = true;
                    out.push((pos, Hole::SpanId));
                } else if len == 8 && tag == PARENT_TAG && !parent {
                    parent = true;
                    out.push((pos, Hole::Parent));
                }
                pos = pos.checked_add(len)?;
            }
            5 => pos += 4,
            _ => return None,
        }
    }
    (pos == b.len()).then_some(())
}

fn span_id_of(bytes: &[u8]) -> Option<[u8; 8]> {
    crate::wire::bytes_field(bytes, 2).and_then(|b| b.try_into().ok())
}

/// Appends the spans of trace `id` (started at `base`) to `out`: per span, its bytes
/// without the [`Hole`] values, then those values in order.
pub(crate) fn pack(id: &TraceId, base: u64, spans: &[Span], dict: &mut Dict, out: &mut Vec<u8>) {
    let mut ids = std::mem::take(&mut dict.ids);
    let mut hs = std::mem::take(&mut dict.holes);
    ids.clear();
    pack_into(id, base, spans, dict, out, &mut ids, &mut hs);
    dict.ids = ids;
    dict.holes = hs;
}

fn pack_into(
    id: &TraceId,
    base: u64,
    spans: &[Span],
    dict: &mut Dict,
    out: &mut Vec<u8>,
    ids: &mut Vec<Option<[u8; 8]>>,
    hs: &mut Vec<(usize, Hole)>,
) {
    for span in spans {
        put_varint(out, dict.index(span.resource()).into());
        put_varint(out, dict.index(span.scope()).into());
        let mut how = 0;
        let mut b: &[u8] = &span.bytes;
        if b.len() >= 18 && b[..2] == TRACE_ID_PREFIX && b[2..18] == id[..] {
            how |= CUT_ID;
            b = &b[18..];
        }
        if holes(b, hs).is_none() {
            hs.clear();
        }
        let mut parent = 0;
        hs.retain(|&(p, h)| match h {
            Hole::Parent => match ids
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s[..] == b[p..p + 8]))
            {
                Some(j) => {
                    parent = j;
                    true
                }
                None => false,
            },
            _ => true,
        });
        for (_, h) in hs.iter() {
            how |= match h {
                Hole::Time => TIMES,
                Hole::SpanId => SPAN_ID,
                Hole::Parent => PARENT,
            };
        }
        out.push(how);
        put_varint(out, (b.len() - 8 * hs.len()) as u64);
        let mut from = 0;
        for &(p, _) in hs.iter() {
            out.extend_from_slice(&b[from..p]);
            from = p + 8;
        }
        out.extend_from_slice(&b[from..]);
        for &(p, h) in hs.iter() {
            match h {
                Hole::Time => {
                    let v = u64::from_le_bytes(b[p..p + 8].try_into().expect("8 bytes"));
                    put_varint(out, v.wrapping_sub(base));
                }
                Hole::SpanId => out.extend_from_slice(&b[p..p + 8]),
                Hole::Parent => put_varint(out, parent as u64),
            }
        }
        let own = hs.iter().find(|(_, h)| *h == Hole::SpanId);
        ids.push(match own {
            Some(&(p, _)) => b[p..p + 8].try_into().ok(),
            None => span_id_of(&span.bytes),
        });
    }
}

/// Puts the values back into a span's bytes packed with holes: walks `holed`, reading each
/// value from `tail` at `*pos`.
fn restore(
    holed: &[u8],
    how: u8,
    base: u64,
    ids: &[Option<[u8; 8]>],
    tail: &[u8],
    pos: &mut usize,
    out: &mut Vec<u8>,
) -> Option<Option<[u8; 8]>> {
    let (mut span_id, mut parent) = (how & SPAN_ID != 0, how & PARENT != 0);
    let mut own = None;
    let mut at = 0;
    while at < holed.len() {
        let from = at;
        let tag = read_varint(holed, &mut at).ok()?;
        match tag & 7 {
            0 => {
                read_varint(holed, &mut at).ok()?;
            }
            1 if how & TIMES != 0 && is_time(tag) => {
                out.extend_from_slice(&holed[from..at]);
                let v = read_varint(tail, pos).ok()?.wrapping_add(base);
                out.extend_from_slice(&v.to_le_bytes());
                continue;
            }
            1 => at += 8,
            2 => {
                let len = read_varint(holed, &mut at).ok()? as usize;
                if len == 8 && tag == SPAN_ID_TAG && span_id {
                    span_id = false;
                    out.extend_from_slice(&holed[from..at]);
                    let id = tail.get(*pos..*pos + 8)?;
                    out.extend_from_slice(id);
                    own = id.try_into().ok();
                    *pos += 8;
                    continue;
                }
                if len == 8 && tag == PARENT_TAG && parent {
                    parent = false;
                    out.extend_from_slice(&holed[from..at]);
                    let j = read_varint(tail, pos).ok()? as usize;
                    out.extend_from_slice(ids.get(j)?.as_ref()?);
                    continue;
                }
                at = at.checked_add(len)?;
            }
            5 => at += 4,
            _ => return None,
        }
        out.extend_from_slice(holed.get(from..at)?);
    }
    Some(own)
}

/// The spans packed by [`pack`], as shells holding their bytes and origin only (to be
/// read again through the wire).
pub(crate) fn unpack(
    id: &TraceId,
    base: u64,
    buf: &[u8],
    dict: &[Arc<Shared>],
) -> Option<Vec<Span>> {
    let mut out: Vec<Span> = Vec::new();
    let mut ids: Vec<Option<[u8; 8]>> = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let r = read_varint(buf, &mut pos).ok()? as usize;
        let c = read_varint(buf, &mut pos).ok()? as usize;
        let how = *buf.get(pos)?;
        pos += 1;
        let len = read_varint(buf, &mut pos).ok()? as usize;
        let b = buf.get(pos..pos.checked_add(len)?)?;
        pos += len;
        let mut bytes = Vec::with_capacity(b.len() + 58);
        if how & CUT_ID != 0 {
            bytes.extend_from_slice(&TRACE_ID_PREFIX);
            bytes.extend_from_slice(id);
        }
        let own = if how & (TIMES | SPAN_ID | PARENT) == 0 {
            bytes.extend_from_slice(b);
            None
        } else {
            restore(b, how, base, &ids, buf, &mut pos, &mut bytes)?
        };
        // As `pack` numbers them: the span id taken out, else the one in the bytes.
        ids.push(own.or_else(|| span_id_of(&bytes)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, Gen, Shape};
    use prost::Message;

    fn trace() -> (TraceId, Vec<Span>) {
        let t = Gen::new(5).trace(Shape::ERROR, 12);
        let req = fixture::request_for(std::slice::from_ref(&t)).encode_to_vec();
        (
            t.trace_id,
            crate::wire::decode::decode_request(&req).unwrap().spans,
        )
    }

    fn round_trip(id: &TraceId, base: u64, spans: &[Span]) -> Vec<Box<[u8]>> {
        let mut dict = Dict::default();
        let mut out = Vec::new();
        pack(id, base, spans, &mut dict, &mut out);
        let block = dict.block(&out);
        let (dict, area) = split(&block).unwrap();
        let back = unpack(id, base, area, &dict).unwrap();
        for (a, b) in back.iter().zip(spans) {
            assert_eq!(a.resource().message, b.resource().message);
            assert_eq!(a.scope().message, b.scope().message);
        }
        back.into_iter().map(|s| s.bytes).collect()
    }

    #[test]
    fn spans_come_back_byte_for_byte() {
        let (id, spans) = trace();
        let base = spans.iter().map(|s| s.start_unix_nano).min().unwrap();
        let want: Vec<Box<[u8]>> = spans.iter().map(|s| s.bytes.clone()).collect();
        assert_eq!(round_trip(&id, base, &spans), want);
        // A base after the times (late spans), parents outside the record, reversed order.
        let mut rev = spans.clone();
        rev.reverse();
        let want: Vec<Box<[u8]>> = rev.iter().map(|s| s.bytes.clone()).collect();
        assert_eq!(round_trip(&id, u64::MAX - 5, &rev), want);
        // Bytes that do not walk, and bytes without the trace id first, go as they are.
        let mut odd = spans[..3].to_vec();
        odd[0].bytes = Box::from(&[0x0a, 0x10, 1, 2, 3][..]);
        odd[1].bytes = Box::from(&b"\x12\x08abcdefgh\x22\x08abcdefgh\x39\x01\x02"[..]);
        let want: Vec<Box<[u8]>> = odd.iter().map(|s| s.bytes.clone()).collect();
        assert_eq!(round_trip(&id, base, &odd), want);
    }
}
