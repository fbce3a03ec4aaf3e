//! The block being filled, on the thread that decided its traces: each trace is packed
//! right after the decider read its spans (policies, the rescue ring, the exporters'
//! encoding), while their bytes are still in this core's cache, and the spans are freed
//! where they were used. Packing on the writer thread, seconds later and on another core,
//! was the archive's largest cost: its first touch of each span's bytes missed the cache.
//!
//! A full block ([`Filled`]) goes to the writer thread through the bounded queue (full:
//! dropped, counted `busy`); the writer compresses and appends it, and takes a block that
//! has waited [`IDLE_FLUSH`] itself. One decider fills it: the lock is uncontended but for
//! the writer's idle check.

use std::time::{Duration, Instant};

use super::batch::{for_each_trace, policy_of, Services};
use super::config::Traces;
use super::format::{Entry, DROPPED, ERROR, KEPT, KEYS_IN_SPANS, ROOT, SPANS};
use super::keys::ResourceKeys;
use super::pack;
use super::Inner;
use crate::model::{Span, StatusCode, TraceId};
use crate::support::index::{Key, TraceKeys};

/// A pending block older than this is written even if not full.
pub(crate) const IDLE_FLUSH: Duration = Duration::from_secs(1);

/// Kept traces whose keys the builder holds while their spans are on their way (a few
/// decision rounds' worth; past this they are forgotten and the spans read instead).
const MAX_KEPT_KEYS: usize = 1 << 17;

/// A block ready to be compressed and appended.
pub(crate) struct Filled {
    /// The dictionary, then the entries (uncompressed).
    pub bytes: Vec<u8>,
    /// Where the entries start in `bytes`.
    pub entries_at: usize,
    /// The keys of the entries, in order: entry `i`'s end at `ends[i]`.
    pub keys: Vec<Key>,
    pub ends: Vec<u32>,
    pub traces: u64,
}

impl Filled {
    pub fn entries(&self) -> &[u8] {
        &self.bytes[self.entries_at..]
    }
}

#[derive(Default)]
pub(crate) struct Builder {
    /// Entries of the pending block.
    pending: Vec<u8>,
    /// Its dictionary of resources and scopes.
    dict: pack::Dict,
    pending_keys: Vec<Key>,
    pending_ends: Vec<u32>,
    /// Where each entry starts in `pending` (it starts with its trace id).
    starts: Vec<u32>,
    pending_traces: u64,
    pending_since: Option<Instant>,
    /// `service.name` of the resource blocks met lately.
    services: Services,
    /// Reused for each trace: its packed spans, its keys.
    packed: Vec<u8>,
    keys: Vec<(u16, Key)>,
    /// Keys of the resource blocks met lately.
    resource_keys: ResourceKeys,
    /// The index's keys of kept traces whose spans are on their way.
    kept_keys: foldhash::HashMap<TraceId, (u32, Box<[Key]>)>,
    /// A written block's buffers, handed back by the writer for the next one.
    spare: Option<Filled>,
}

impl Builder {
    /// Dropped traces, with the keys the index holds for them (by position). Returns the
    /// blocks filled on the way.
    pub fn dropped(
        &mut self,
        inner: &Inner,
        traces: &[(TraceId, Vec<Span>)],
        known: &TraceKeys,
        full: &mut Vec<Filled>,
    ) {
        for (i, (id, spans)) in traces.iter().enumerate() {
            self.add(inner, *id, spans, DROPPED, known.of(i), full);
        }
    }

    /// The index's keys of traces just kept, (id, span count) by position: their spans
    /// follow in [`Builder::kept`].
    pub fn kept_keys(&mut self, ids: Vec<(TraceId, u32)>, known: TraceKeys) {
        if self.kept_keys.len() > MAX_KEPT_KEYS {
            // Spans that never came (a failed export path): forget them.
            self.kept_keys.clear();
        }
        for (i, (id, n)) in ids.into_iter().enumerate() {
            if let Some(keys) = known.of(i) {
                self.kept_keys.insert(id, (n, keys.into()));
            }
        }
    }

    /// Kept spans as handed to the exporters (several traces, late spans too).
    pub fn kept(&mut self, inner: &Inner, spans: Vec<Span>, full: &mut Vec<Filled>) {
        let mut kept_keys = std::mem::take(&mut self.kept_keys);
        for_each_trace(spans, |id, spans| {
            let known = kept_keys.remove(&id);
            let known = known.filter(|(n, _)| *n as usize == spans.len());
            let known = known.as_ref().map(|(_, k)| &k[..]);
            self.add(inner, id, spans, KEPT, known, full);
        });
        self.kept_keys = kept_keys;
    }

    /// The pending block if it has waited [`IDLE_FLUSH`] (or at all, with `now`).
    pub fn take_idle(&mut self, inner: &Inner, now: bool) -> Option<Filled> {
        let due = self
            .pending_since
            .is_some_and(|t| now || t.elapsed() >= IDLE_FLUSH);
        due.then(|| self.take(inner)).flatten()
    }

    /// Whether the block being filled holds a record of `id` (a linear scan: for reads by
    /// id, which then have the block written first).
    pub fn holds(&self, id: &TraceId) -> bool {
        self.starts.iter().any(|&at| {
            let at = at as usize;
            self.pending.get(at..at + id.len()) == Some(&id[..])
        })
    }

    /// Nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Hands back a written block's buffers.
    pub fn recycle(&mut self, mut block: Filled) {
        block.bytes.clear();
        block.keys.clear();
        block.ends.clear();
        self.spare = Some(block);
    }

    /// Appends one trace's entry to the pending block. `known`: the trace's keys as the
    /// index computed them at ingest (the same digests), else they are read from the spans.
    fn add(
        &mut self,
        inner: &Inner,
        id: TraceId,
        spans: &[Span],
        decision: u8,
        known: Option<&[Key]>,
        full: &mut Vec<Filled>,
    ) {
        if spans.is_empty() {
            return;
        }
        #[cfg(test)]
        if inner
            .tuning
            .faults
            .load(std::sync::atomic::Ordering::Relaxed)
            == 3
        {
            panic!("injected: a bug while filling a block");
        }
        let reasons = if decision == KEPT {
            policy_of(spans)
        } else {
            String::new()
        };
        // What `Summary::of` finds, in one pass.
        let (mut start, mut end, mut error, mut root) = (u64::MAX, 0, false, None);
        let mut earliest = &spans[0];
        for span in spans {
            if span.start_unix_nano < start {
                start = span.start_unix_nano;
                earliest = span;
            }
            end = end.max(span.end_unix_nano);
            error |= span.status == StatusCode::Error;
            if root.is_none() && span.is_root() {
                root = Some(span);
            }
        }
        let keep = decision == DROPPED || inner.cfg.traces == Traces::All;
        let mut flags = if keep { SPANS | KEYS_IN_SPANS } else { 0 };
        if root.is_some() {
            flags |= ROOT;
        }
        if error {
            flags |= ERROR;
        }
        let root = root.unwrap_or(earliest);
        let service = self.services.of(root);
        let mut packed = std::mem::take(&mut self.packed);
        packed.clear();
        if keep {
            pack::pack(&id, start, spans, &mut self.dict, &mut packed);
        }
        let mut keys = std::mem::take(&mut self.keys);
        // Summary-only entries name each key's attribute: read from the spans then.
        let known = known.filter(|_| keep);
        if known.is_none() {
            inner.hasher.keys_into(
                &inner.cfg.attributes,
                spans,
                &mut self.resource_keys,
                &mut keys,
            );
        } else {
            keys.clear();
        }
        let entry = Entry {
            id,
            decision,
            flags,
            start,
            end,
            span_count: spans.len().min(u32::MAX as usize) as u32,
            service: &service,
            name: root.name(),
            reasons: &reasons,
            keys: if keep {
                Vec::new()
            } else {
                keys.iter()
                    .map(|(i, k)| (inner.cfg.attributes[*i as usize].as_str(), *k))
                    .collect()
            },
            spans: &packed,
        };
        self.starts.push(self.pending.len() as u32);
        entry.write(&mut self.pending);
        drop(entry);
        self.packed = packed;
        match known {
            Some(known) => self.pending_keys.extend_from_slice(known),
            None => self.pending_keys.extend(keys.iter().map(|(_, k)| *k)),
        }
        self.pending_ends.push(self.pending_keys.len() as u32);
        self.keys = keys;
        self.pending_traces += 1;
        self.pending_since.get_or_insert_with(Instant::now);
        if self.pending.len() >= inner.tuning.block_bytes {
            full.extend(self.take(inner));
        }
    }

    /// The pending block, its dictionary first; the builder starts an empty one.
    fn take(&mut self, inner: &Inner) -> Option<Filled> {
        self.pending_since = None;
        if self.pending.is_empty() {
            return None;
        }
        let spare = self.spare.take();
        let mut bytes = Vec::new();
        let (mut keys, mut ends) = (Vec::new(), Vec::new());
        if let Some(s) = spare {
            (bytes, keys, ends) = (s.bytes, s.keys, s.ends);
        }
        bytes.reserve(self.pending.len() + 4096);
        self.dict.block_into(&self.pending, &mut bytes);
        let entries_at = bytes.len() - self.pending.len();
        self.pending.clear();
        self.starts.clear();
        std::mem::swap(&mut keys, &mut self.pending_keys);
        std::mem::swap(&mut ends, &mut self.pending_ends);
        // The next block fills vectors of this one's size without growing.
        self.pending.reserve(inner.tuning.block_bytes.min(64 << 20));
        Some(Filled {
            bytes,
            entries_at,
            keys,
            ends,
            traces: std::mem::take(&mut self.pending_traces),
        })
    }
}
