//! Reading records back: a trace's records merged into one [`Summary`], its entries read
//! from their blocks (the last few decompressed blocks are cached: a lookup's traces are
//! often neighbours).

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use super::files;
use super::format::{self, decision_of, DROPPED, ERROR, KEPT, KEYS_IN_SPANS, ROOT, SPANS};
use super::segment::Rec;
use super::{pack, records};
use crate::model::{Shared, Span, TraceId};
use crate::storage::wal;
use crate::support::index::{Decision, Key, Summary};
use crate::wire::decode::decode_request;
use crate::wire::encode::encode_request;

/// A decompressed block: its dictionary, its bytes, where its entries start.
struct Block {
    dict: Vec<Arc<Shared>>,
    bytes: Vec<u8>,
    entries: usize,
}

impl Block {
    /// The entry of a record (checked to be the record's trace).
    fn entry(&self, rec: &Rec) -> Option<format::Entry<'_>> {
        let area = &self.bytes[self.entries..];
        let entry = area.get(rec.row.off as usize..)?;
        let (e, _) = format::read_entry(entry)?;
        (e.id == rec.row.id).then_some(e)
    }
}

/// A decompressed block by (data file, payload offset).
type Cached = (Arc<PathBuf>, u64, Arc<Block>);

/// Derives the named keys of spans (entries whose keys are in their spans).
pub(crate) type Rekey<'a> = &'a dyn Fn(&[Span]) -> Vec<(String, Key)>;

/// Decompressed blocks recently read, by (data file, offset).
#[derive(Default)]
pub(crate) struct BlockCache {
    blocks: Mutex<Vec<Cached>>,
}

const CACHED_BLOCKS: usize = 4;

impl BlockCache {
    fn block(&self, rec: &Rec) -> Option<Arc<Block>> {
        {
            let blocks = self.blocks.lock();
            if let Some((_, _, b)) = blocks
                .iter()
                .find(|(p, off, _)| *off == rec.block_off && **p == *rec.data)
            {
                return Some(Arc::clone(b));
            }
        }
        let f = File::open(&*rec.data).ok()?;
        // The record with its header: a block whose checksum fails is not read (bit rot
        // in a sealed segment costs that block, never garbled spans).
        let at = rec.block_off.checked_sub(wal::HEADER as u64)?;
        let record = files::read_at(&f, at, rec.block_len as usize + wal::HEADER).ok()?;
        let Some(payload) = records::checked(&record) else {
            tracing::warn!(data = %rec.data.display(), offset = at, "archive: a block fails its checksum");
            return None;
        };
        let bytes = format::decompress(payload)?;
        let (dict, area) = pack::split(&bytes)?;
        let entries = bytes.len() - area.len();
        let block = Arc::new(Block {
            dict,
            bytes,
            entries,
        });
        let mut blocks = self.blocks.lock();
        if blocks.len() >= CACHED_BLOCKS {
            blocks.remove(0);
        }
        blocks.push((Arc::clone(&rec.data), rec.block_off, Arc::clone(&block)));
        Some(block)
    }

    /// The spans of a record, as shells (None when it has none, or its block is gone).
    fn spans_of(&self, rec: &Rec) -> Option<Vec<Span>> {
        if rec.row.flags & SPANS == 0 {
            return None;
        }
        let block = self.block(rec)?;
        let e = block.entry(rec)?;
        pack::unpack(&e.id, e.start, e.spans, &block.dict)
    }

    /// The attribute names and keys of a record.
    pub(crate) fn keys_of(&self, rec: &Rec, rekey: Rekey<'_>) -> Vec<(String, Key)> {
        let Some(block) = self.block(rec) else {
            return Vec::new();
        };
        match block.entry(rec) {
            Some(e) if e.flags & KEYS_IN_SPANS != 0 => {
                pack::unpack(&e.id, e.start, e.spans, &block.dict)
                    .map(|spans| rekey(&spans))
                    .unwrap_or_default()
            }
            Some(e) => e.keys.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect(),
            None => Vec::new(),
        }
    }

    /// Every archived span of the records, read again through the wire (so every field
    /// read at ingest is set); None when none has spans.
    pub(crate) fn spans(&self, recs: &[Rec]) -> Option<Vec<Span>> {
        let mut shells = Vec::new();
        let mut any = false;
        for r in recs {
            match self.spans_of(r) {
                Some(s) => {
                    any = true;
                    shells.extend(s);
                }
                None if r.row.flags & SPANS != 0 => {
                    tracing::warn!(trace_id = %hex::encode(r.row.id), "archive: unreadable record");
                }
                None => {}
            }
        }
        if !any {
            return None;
        }
        // A rescue archives again the spans it sent (with the ticket on the root): each
        // span once, as the latest record has it.
        let mut at: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut unique: Vec<Span> = Vec::with_capacity(shells.len());
        for span in shells {
            match span.span_id() {
                Some(sid) => match at.get(&sid[..]) {
                    Some(&i) => unique[i] = span,
                    None => {
                        at.insert(sid.to_vec(), unique.len());
                        unique.push(span);
                    }
                },
                None => unique.push(span),
            }
        }
        match decode_request(&encode_request(&unique)) {
            Ok(d) => Some(d.spans),
            Err(e) => {
                tracing::warn!(error = %e, "archive: undecodable spans");
                None
            }
        }
    }
}

/// Merges the records of one trace (any order) into its summary: spans counted over all
/// records (over the kept ones of a rescued trace: a rescue sends again every span held),
/// start and end over all, root names from the record with the root span, the decision of
/// the latest record, except that a dropped record followed by a kept one makes the trace
/// rescued; reasons of the latest record that has any.
pub(crate) fn merge(id: TraceId, recs: &mut [Rec]) -> Option<Summary> {
    recs.sort_by_key(|r| (r.seq, r.pos));
    let last = recs.last()?;
    let start = recs.iter().map(|r| r.row.start).min().unwrap_or(0);
    let end = recs.iter().map(|r| r.row.end).max().unwrap_or(start);
    let root = recs
        .iter()
        .find(|r| r.row.flags & ROOT != 0)
        .or_else(|| recs.iter().min_by_key(|r| r.row.start))
        .expect("not empty");
    let mut decision = decision_of(last.row.decision);
    if last.row.decision == KEPT && recs.iter().any(|r| r.row.decision == DROPPED) {
        decision = Decision::Rescued;
    }
    let reasons = recs
        .iter()
        .rev()
        .find(|r| !r.names[2].is_empty())
        .map(|r| {
            r.names[2]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Arc::from)
                .collect()
        })
        .unwrap_or_default();
    Some(Summary {
        trace_id: id,
        start_unix_nano: start,
        duration_ms: end.saturating_sub(start) as f64 / 1e6,
        root_service: Arc::clone(&root.names[0]),
        root_name: Arc::clone(&root.names[1]),
        error: recs.iter().any(|r| r.row.flags & ERROR != 0),
        span_count: recs
            .iter()
            .filter(|r| decision != Decision::Rescued || r.row.decision == KEPT)
            .map(|r| u64::from(r.row.span_count))
            .sum::<u64>()
            .min(u64::from(u32::MAX)) as u32,
        decision,
        reasons,
    })
}
