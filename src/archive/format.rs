//! On-disk layouts: the trace entries inside a block, the index file's header and its
//! fixed-size rows.
//!
//! A data file is a run of `[u32 len][u32 crc32][payload]` records (the write-ahead log's
//! framing, [`crate::storage::wal`]), each payload a zstd frame of one block: entries of
//! many traces side by side, so compression sees many similar spans. An entry carries
//! everything the index holds of the trace (so a data file can always be re-indexed)
//! and, when archived, its spans as one encoded `ExportTraceServiceRequest`.
//!
//! An index file is a 128-byte header, then rows (one per entry, sorted by trace id, equal
//! ids in write order), keys (key, row) sorted by key, blocks (offset, length in the data
//! file) and a string table (service names, operation names, reasons).

use crate::model::TraceId;
use crate::support::index::{Decision, Key};
use crate::wire::{put_varint, read_varint};

/// Entry flags.
pub(crate) const ROOT: u8 = 1;
pub(crate) const ERROR: u8 = 2;
pub(crate) const SPANS: u8 = 4;
/// The keys are not in the entry: they are read again from its spans when needed (a
/// trace's keys are written once, in the index).
pub(crate) const KEYS_IN_SPANS: u8 = 8;

/// A record's decision as stored.
pub(crate) const DROPPED: u8 = 1;
pub(crate) const KEPT: u8 = 2;

pub(crate) fn decision_of(code: u8) -> Decision {
    if code == KEPT {
        Decision::Sampled
    } else {
        Decision::Dropped
    }
}

/// One trace record in a block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry<'a> {
    pub id: TraceId,
    pub decision: u8,
    pub flags: u8,
    pub start: u64,
    pub end: u64,
    pub span_count: u32,
    pub service: &'a str,
    pub name: &'a str,
    /// Comma-separated.
    pub reasons: &'a str,
    /// (attribute name, key).
    pub keys: Vec<(&'a str, Key)>,
    /// Encoded request of the spans (empty without [`SPANS`]).
    pub spans: &'a [u8],
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

impl Entry<'_> {
    /// Appends the entry; the entry's bytes are `out[returned..]`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> usize {
        let at = out.len();
        out.extend_from_slice(&self.id);
        out.push(self.decision);
        out.push(self.flags);
        put_varint(out, self.start);
        put_varint(out, self.end.saturating_sub(self.start));
        put_varint(out, self.span_count.into());
        put_str(out, self.service.as_bytes());
        put_str(out, self.name.as_bytes());
        put_str(out, self.reasons.as_bytes());
        put_varint(out, self.keys.len() as u64);
        for (name, key) in &self.keys {
            put_str(out, name.as_bytes());
            out.extend_from_slice(&key.0);
        }
        put_str(out, self.spans);
        at
    }
}

/// Reads the entry at the start of `buf`; returns it and its length.
pub(crate) fn read_entry(buf: &[u8]) -> Option<(Entry<'_>, usize)> {
    let mut pos = 0usize;
    let id: TraceId = buf.get(..16)?.try_into().ok()?;
    let decision = *buf.get(16)?;
    let flags = *buf.get(17)?;
    pos += 18;
    let varint = |pos: &mut usize| read_varint(buf, pos).ok();
    let start = varint(&mut pos)?;
    let end = start.checked_add(varint(&mut pos)?)?;
    let span_count = u32::try_from(varint(&mut pos)?).ok()?;
    fn bytes<'b>(buf: &'b [u8], pos: &mut usize) -> Option<&'b [u8]> {
        let len = read_varint(buf, pos).ok()? as usize;
        let b = buf.get(*pos..pos.checked_add(len)?)?;
        *pos += len;
        Some(b)
    }
    let s = |pos: &mut usize| bytes(buf, pos).and_then(|b| std::str::from_utf8(b).ok());
    let service = s(&mut pos)?;
    let name = s(&mut pos)?;
    let reasons = s(&mut pos)?;
    let n = read_varint(buf, &mut pos).ok()? as usize;
    let mut keys = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let name = s(&mut pos)?;
        let key = Key(buf.get(pos..pos + 16)?.try_into().ok()?);
        pos += 16;
        keys.push((name, key));
    }
    let spans = bytes(buf, &mut pos)?;
    let e = Entry {
        id,
        decision,
        flags,
        start,
        end,
        span_count,
        service,
        name,
        reasons,
        keys,
        spans,
    };
    Some((e, pos))
}

/// Reads every entry of a decompressed block, with its offset and length.
pub(crate) fn entries(block: &[u8]) -> Option<Vec<(Entry<'_>, u32, u32)>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < block.len() {
        let (e, len) = read_entry(&block[at..])?;
        out.push((e, at as u32, len as u32));
        at += len;
    }
    Some(out)
}

/// One index row: a trace record (48 bytes on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    pub id: TraceId,
    pub start: u64,
    /// On disk as microseconds after `start` (rounded up, at most 71 minutes).
    pub end: u64,
    pub span_count: u32,
    pub decision: u8,
    pub flags: u8,
    /// Index of (root service, root name, reasons) in the string table, three strings each.
    pub names: u32,
    /// Block index, the entry's offset in the block's entries.
    pub block: u32,
    pub off: u32,
}

pub(crate) const ROW: usize = 48;
pub(crate) const KEY_ROW: usize = 20;
pub(crate) const BLOCK_ROW: usize = 12;
pub(crate) const HEADER_LEN: usize = 128;
const MAGIC: &[u8; 8] = b"CFARIDX1";

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Row {
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        let dur_us = self
            .end
            .saturating_sub(self.start)
            .div_ceil(1000)
            .min(u32::MAX.into()) as u32;
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.start.to_le_bytes());
        out.extend_from_slice(&dur_us.to_le_bytes());
        out.extend_from_slice(&self.span_count.to_le_bytes());
        out.extend_from_slice(&[self.decision, self.flags, 0, 0]);
        for v in [self.names, self.block, self.off] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    pub(crate) fn parse(b: &[u8]) -> Row {
        let start = u64_at(b, 16);
        Row {
            id: b[..16].try_into().expect("16 bytes"),
            start,
            end: start.saturating_add(u64::from(u32_at(b, 24)) * 1000),
            span_count: u32_at(b, 28),
            decision: b[32],
            flags: b[33],
            names: u32_at(b, 36),
            block: u32_at(b, 40),
            off: u32_at(b, 44),
        }
    }
}

/// The index file's header: all that `open` reads of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Header {
    /// Length of the data file the index describes (a longer or shorter one is re-indexed).
    pub data_len: u64,
    pub file_len: u64,
    pub rows: u32,
    pub keys: u32,
    pub blocks: u32,
    pub strings: u32,
    pub min_start: u64,
    pub max_start: u64,
    /// When the segment was last written (Unix ns, the archive's clock): its age for
    /// retention. 0 in indexes written before it was recorded (then `max_start` stands in).
    pub written: u64,
    pub rows_off: u64,
    pub keys_off: u64,
    pub blocks_off: u64,
    pub strings_off: u64,
}

impl Header {
    /// The segment's age mark for retention: when it was written, else its newest trace.
    pub(crate) fn written_or_newest(&self) -> u64 {
        if self.written > 0 {
            self.written
        } else {
            self.max_start
        }
    }

    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = Vec::with_capacity(HEADER_LEN);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&[0; 4]); // crc, below
        for v in [self.rows, self.keys, self.blocks, self.strings] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.data_len,
            self.file_len,
            self.min_start,
            self.max_start,
            self.rows_off,
            self.keys_off,
            self.blocks_off,
            self.strings_off,
            self.written,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.resize(HEADER_LEN, 0);
        let crc = crc32fast::hash(&b[12..]);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
        b.try_into().expect("128 bytes")
    }

    /// None for a header that is not one (wrong magic or checksum, sections out of bounds).
    pub(crate) fn decode(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER_LEN
            || &b[..8] != MAGIC
            || crc32fast::hash(&b[12..HEADER_LEN]) != u32_at(b, 8)
        {
            return None;
        }
        let h = Header {
            rows: u32_at(b, 12),
            keys: u32_at(b, 16),
            blocks: u32_at(b, 20),
            strings: u32_at(b, 24),
            data_len: u64_at(b, 28),
            file_len: u64_at(b, 36),
            min_start: u64_at(b, 44),
            max_start: u64_at(b, 52),
            rows_off: u64_at(b, 60),
            keys_off: u64_at(b, 68),
            blocks_off: u64_at(b, 76),
            strings_off: u64_at(b, 84),
            written: u64_at(b, 92),
        };
        let fits = h.rows_off + u64::from(h.rows) * ROW as u64 <= h.keys_off
            && h.keys_off + u64::from(h.keys) * KEY_ROW as u64 <= h.blocks_off
            && h.blocks_off + u64::from(h.blocks) * BLOCK_ROW as u64 <= h.strings_off
            && h.strings_off <= h.file_len;
        fits.then_some(h)
    }
}

/// Compresses a block (level chosen by measurement, see the module header of `writer`).
pub(crate) fn decompress(payload: &[u8]) -> Option<Vec<u8>> {
    let cap = zstd::zstd_safe::get_frame_content_size(payload).ok()??;
    if cap > 1 << 30 {
        return None;
    }
    zstd::bulk::decompress(payload, cap as usize).ok()
}
