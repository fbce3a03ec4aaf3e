//! The index's memory: what [`super::Index`] holds under its lock. Fed keys at ingest (one
//! [`Store::add`] per request) and summaries at decision time; read by lookups. Bounded
//! by retention, a number of traces and a number of bytes, oldest out first.
//!
//! Layout, chosen so adding a trace touches as few cache lines as possible and allocates
//! nothing but ring growth:
//! - `entries`: one fixed-size [`Entry`] per trace in the order first seen (the order they
//!   leave in); `seq` maps a trace id to its entry's sequence number.
//! - `postings`: one [`Posting`] per (trace, key), in the order added; each links to the
//!   previous posting of its key and of its trace, so a key's traces are a chain from
//!   `heads[key]`, newest first, and a trace's keys a chain from its entry.
//! - A posting leaves once its trace has left and every older posting has too; a lookup
//!   skips postings of traces that left (a trace's sequence number is never reused).

use std::collections::VecDeque;
use std::mem::size_of;
use std::num::NonZeroU32;

use super::key::Key;
use super::summary::Summary;
use crate::model::TraceId;

/// No posting (end of a chain).
const NONE: u64 = u64::MAX;

/// Where an indexed trace's entry sits, as the buffer keeps it with the pending trace so
/// its summary is stored without a table lookup: the entry's sequence number modulo
/// 2^31 - 1, plus one, in the low 31 bits (four bytes, so a pending trace stays 48). A slot
/// can name another entry after 2 billion traces; the trace id is checked, and the id
/// lookup used then. The top bit says the entry is not the first one the trace had (it
/// left the index while the trace was pending and came back with the later spans' keys
/// only): its keys are then not all the trace's ([`Store::keys_at`] gives none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(NonZeroU32);

const SLOTS: u64 = (1 << 31) - 1;
const PARTIAL: u32 = 1 << 31;

impl Slot {
    fn of(n: u64) -> Slot {
        Slot(NonZeroU32::new((n % SLOTS) as u32 + 1).expect("at least one"))
    }

    /// The sequence number in `[base, base + 2^31 - 1)` this slot stands for.
    fn seq(self, base: u64) -> u64 {
        let r = u64::from((self.0.get() & !PARTIAL) - 1);
        base + (r + SLOTS - base % SLOTS) % SLOTS
    }

    /// The slot a pending trace keeps once a later request gave it `new`: `new`, marked
    /// partial when it names another entry than `old` (or `old` was partial).
    pub fn follow(old: Option<Slot>, new: Slot) -> Slot {
        match old {
            Some(o) if o.0.get() & !PARTIAL != new.0.get() || o.is_partial() => {
                Slot(new.0 | PARTIAL)
            }
            _ => new,
        }
    }

    fn is_partial(self) -> bool {
        self.0.get() & PARTIAL != 0
    }
}

/// A trace id as a map key, hashed as one 128-bit number (both halves: load generators
/// and some SDKs vary only one half, and hashing eight bytes made those ids collide into
/// long probe chains).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Id(TraceId);

impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_le_bytes(self.0));
    }
}

type Map<K> = hashbrown::HashMap<K, u64, foldhash::fast::RandomState>;

/// One indexed trace.
struct Entry {
    id: TraceId,
    /// First seen, Unix ms.
    at: u64,
    /// Its newest posting (the head of its chain of keys).
    newest: u64,
    /// Set when it is decided.
    summary: Option<Box<Summary>>,
}

/// One key of one trace.
struct Posting {
    key: Key,
    /// Sequence number of the trace's entry.
    trace: u64,
    /// The previous posting of the same key.
    older_same_key: u64,
    /// The previous posting of the same trace.
    older_same_trace: u64,
}

/// Bytes a hash table slot costs: the pair, its control byte, and the spare slots of a
/// table that is between 7/16 and 7/8 full (two thirds on average).
const fn slot<T>() -> usize {
    (size_of::<T>() + 1) * 3 / 2
}

/// Bytes an entry holds (its ring slot and its `seq` slot), summary aside.
pub(super) const ENTRY_BYTES: usize = size_of::<Entry>() + slot::<(Id, u64)>();
/// Bytes a posting holds (its ring slot).
pub(super) const POSTING_BYTES: usize = size_of::<Posting>();
/// Bytes a distinct key holds (its `heads` slot).
pub(super) const HEAD_BYTES: usize = slot::<(Key, u64)>();

/// The bounds, from `support.index`.
#[derive(Clone, Copy)]
pub(super) struct Limits {
    pub retention_ms: u64,
    pub max_traces: usize,
    pub max_bytes: usize,
}

impl Limits {
    pub(super) fn of(
        retention: std::time::Duration,
        max_traces: usize,
        max_bytes: usize,
    ) -> Limits {
        Limits {
            retention_ms: retention.as_millis().min(u64::MAX as u128) as u64,
            max_traces: max_traces.max(1),
            max_bytes,
        }
    }
}

#[derive(Default)]
pub(super) struct Store {
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`.
    base: u64,
    postings: VecDeque<Posting>,
    /// Sequence number of `postings[0]`.
    posting_base: u64,
    /// Key -> its newest posting.
    heads: Map<Key>,
    /// Trace -> its entry's sequence number.
    seq: Map<Id>,
    /// Heap bytes of the stored summaries.
    summary_bytes: usize,
}

impl Store {
    /// Bytes held: every entry, posting, distinct key and summary (see the constants;
    /// ring and table capacity beyond that, up to half after a doubling, is not counted).
    pub(super) fn bytes(&self) -> usize {
        self.entries.len() * ENTRY_BYTES
            + self.postings.len() * POSTING_BYTES
            + self.heads.len() * HEAD_BYTES
            + self.summary_bytes
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    fn entry(&self, id: &TraceId) -> Option<&Entry> {
        let n = *self.seq.get(&Id(*id))?;
        self.entries.get((n - self.base) as usize)
    }

    fn entry_mut(&mut self, id: &TraceId) -> Option<&mut Entry> {
        let n = *self.seq.get(&Id(*id))?;
        self.entries.get_mut((n - self.base) as usize)
    }

    fn posting(&self, p: u64) -> Option<&Posting> {
        p.checked_sub(self.posting_base)
            .and_then(|i| self.postings.get(i as usize))
    }

    /// Adds keys, a trace's keys side by side: one `seq` probe per trace and one `heads`
    /// probe per new key. Returns each trace's slot, in order.
    pub(super) fn add(&mut self, pairs: &[(TraceId, Key)], now: u64) -> Vec<Slot> {
        let mut slots = Vec::new();
        self.warm(
            pairs.chunk_by(|a, b| a.0 == b.0).map(|g| g[0].0),
            pairs.iter().map(|p| p.1),
        );
        for group in pairs.chunk_by(|a, b| a.0 == b.0) {
            let id = group[0].0;
            let next = self.base + self.entries.len() as u64;
            let n = *self.seq.entry(Id(id)).or_insert(next);
            if n == next {
                self.entries.push_back(Entry {
                    id,
                    at: now,
                    newest: NONE,
                    summary: None,
                });
            }
            slots.push(Slot::of(n));
            let e = (n - self.base) as usize;
            for (i, &(_, key)) in group.iter().enumerate() {
                if group[..i].iter().any(|&(_, k)| k == key) || self.has_key(e, key) {
                    continue;
                }
                let p = self.posting_base + self.postings.len() as u64;
                let older_same_key = match self.heads.entry(key) {
                    hashbrown::hash_map::Entry::Occupied(mut o) => {
                        std::mem::replace(o.get_mut(), p)
                    }
                    hashbrown::hash_map::Entry::Vacant(v) => {
                        v.insert(p);
                        NONE
                    }
                };
                let entry = &mut self.entries[e];
                self.postings.push_back(Posting {
                    key,
                    trace: n,
                    older_same_key,
                    older_same_trace: entry.newest,
                });
                entry.newest = p;
            }
        }
        slots
    }

    /// Looks every trace and key of a batch up once before the batch changes anything. The
    /// lookups do not depend on each other, so their cache misses overlap; the changes that
    /// follow find the same slots in cache. (At a million traces the tables are far larger
    /// than the cache, and one miss after another was most of the index's ingest cost.)
    fn warm(&self, ids: impl Iterator<Item = TraceId>, keys: impl Iterator<Item = Key>) {
        let mut found = 0usize;
        for id in ids {
            found += usize::from(self.seq.contains_key(&Id(id)));
        }
        for key in keys {
            found += usize::from(self.heads.contains_key(&key));
        }
        std::hint::black_box(found);
    }

    /// True when the entry at ring position `e` has `key` already (a trace seen in an
    /// earlier request: its chain is short).
    fn has_key(&self, e: usize, key: Key) -> bool {
        let mut p = self.entries[e].newest;
        while let Some(posting) = self.posting(p) {
            if posting.key == key {
                return true;
            }
            p = posting.older_same_trace;
        }
        false
    }

    /// Removes what is past a bound, oldest first, until every bound holds; the retention
    /// is checked when `now` is given (adding keys), the byte bound always (a summary can
    /// push the index past it). Entries and postings leave their rings first, then their
    /// table slots in one batch (see [`Store::warm`]); until then the slots of keys that
    /// left are still counted, so a batch can take a few traces more than needed.
    pub(super) fn evict(&mut self, limits: &Limits, now: Option<u64>) {
        let horizon = now.map_or(0, |now| now.saturating_sub(limits.retention_ms));
        let mut gone_ids = Vec::new();
        let mut gone_keys = Vec::new();
        while let Some(front) = self.entries.front() {
            if front.at >= horizon
                && self.entries.len() <= limits.max_traces
                && self.bytes() <= limits.max_bytes
            {
                break;
            }
            let entry = self.entries.pop_front().expect("front exists");
            self.base += 1;
            gone_ids.push(entry.id);
            if let Some(s) = entry.summary {
                self.summary_bytes -= s.heap_bytes();
            }
            // Postings at the front whose trace has left go with it.
            while let Some(front) = self.postings.front() {
                if front.trace >= self.base {
                    break;
                }
                gone_keys.push((front.key, self.posting_base));
                self.postings.pop_front();
                self.posting_base += 1;
            }
        }
        if gone_ids.is_empty() {
            return;
        }
        self.warm(gone_ids.iter().copied(), gone_keys.iter().map(|k| k.0));
        for id in &gone_ids {
            self.seq.remove(&Id(*id));
        }
        // A key goes with its newest posting.
        for (key, p) in gone_keys {
            if let hashbrown::hash_map::Entry::Occupied(o) = self.heads.entry(key) {
                if *o.get() == p {
                    o.remove();
                }
            }
        }
    }

    /// Traces with `key`, newest first: (id, summary if decided).
    pub(super) fn lookup(&self, key: &Key) -> Vec<(TraceId, Option<Summary>)> {
        let mut out = Vec::new();
        let mut p = self.heads.get(key).copied().unwrap_or(NONE);
        while let Some(posting) = self.posting(p) {
            if let Some(e) = posting
                .trace
                .checked_sub(self.base)
                .and_then(|i| self.entries.get(i as usize))
            {
                out.push((e.id, e.summary.as_deref().cloned()));
            }
            p = posting.older_same_key;
        }
        out
    }

    /// The keys of decided traces, for the archive: each trace's keys appended to `out`
    /// and their range, or None when the index may not hold all of them (no slot, a
    /// partial one, or the entry gone).
    pub(super) fn keys_at(
        &self,
        traces: impl Iterator<Item = (TraceId, Option<Slot>)>,
        out: &mut Vec<Key>,
    ) -> Vec<Option<(u32, u32)>> {
        traces
            .map(|(id, slot)| {
                let slot = slot.filter(|s| !s.is_partial())?;
                let i = slot.seq(self.base) - self.base;
                let e = self.entries.get(i as usize).filter(|e| e.id == id)?;
                let from = out.len() as u32;
                let mut p = e.newest;
                while let Some(posting) = self.posting(p) {
                    out.push(posting.key);
                    p = posting.older_same_trace;
                }
                Some((from, out.len() as u32))
            })
            .collect()
    }

    /// The keys of an indexed trace.
    pub(super) fn keys_for(&self, id: &TraceId) -> Vec<Key> {
        let mut out = Vec::new();
        let mut p = self.entry(id).map_or(NONE, |e| e.newest);
        while let Some(posting) = self.posting(p) {
            out.push(posting.key);
            p = posting.older_same_trace;
        }
        out
    }

    #[cfg(test)]
    pub(super) fn contains(&self, id: &TraceId) -> bool {
        self.seq.contains_key(&Id(*id))
    }

    pub(super) fn summary(&self, id: &TraceId) -> Option<&Summary> {
        self.entry(id)?.summary.as_deref()
    }

    /// Stores the summaries of indexed traces (replacing any stored before); the others
    /// are not indexed and are let go.
    pub(super) fn set_summaries(&mut self, summaries: Vec<Summary>) {
        self.warm(summaries.iter().map(|s| s.trace_id), std::iter::empty());
        for s in summaries {
            self.set_summary(s);
        }
    }

    /// Stores summaries of traces whose slots the buffer kept (no table lookup when the
    /// slot still names the trace's entry).
    pub(super) fn set_summaries_at(&mut self, summaries: Vec<(Slot, Summary)>) {
        for (slot, s) in summaries {
            let i = slot.seq(self.base) - self.base;
            match self.entries.get_mut(i as usize) {
                Some(e) if e.id == s.trace_id => {
                    let bytes = s.heap_bytes();
                    let old = e.summary.replace(Box::new(s)).map_or(0, |o| o.heap_bytes());
                    self.summary_bytes = self.summary_bytes + bytes - old;
                }
                _ => self.set_summary(s),
            }
        }
    }

    fn set_summary(&mut self, s: Summary) {
        let bytes = s.heap_bytes();
        let Some(e) = self.entry_mut(&s.trace_id) else {
            return;
        };
        let old = e.summary.replace(Box::new(s)).map_or(0, |o| o.heap_bytes());
        self.summary_bytes = self.summary_bytes + bytes - old;
    }

    /// Changes a stored summary in place (its byte count follows).
    pub(super) fn update_summary(&mut self, id: &TraceId, f: impl FnOnce(&mut Summary)) {
        let Some(s) = self.entry_mut(id).and_then(|e| e.summary.as_deref_mut()) else {
            return;
        };
        let before = s.heap_bytes();
        f(s);
        let after = s.heap_bytes();
        self.summary_bytes = self.summary_bytes + after - before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_that_differ_in_one_half_hash_apart() {
        use std::hash::BuildHasher;
        let state = foldhash::fast::RandomState::default();
        let mut hashes = std::collections::HashSet::new();
        for n in 0..1000u64 {
            let mut id = [7u8; 16];
            id[..8].copy_from_slice(&n.to_be_bytes());
            hashes.insert(state.hash_one(Id(id)));
            let mut id = [7u8; 16];
            id[8..].copy_from_slice(&n.to_be_bytes());
            hashes.insert(state.hash_one(Id(id)));
        }
        assert!(
            hashes.len() > 1990,
            "{} distinct hashes of 2000",
            hashes.len()
        );
    }

    #[test]
    fn a_slot_is_partial_once_its_trace_changed_entries() {
        let (a, b) = (Slot::of(5), Slot::of(6));
        assert_eq!(Slot::follow(None, a), a);
        assert_eq!(Slot::follow(Some(a), a), a);
        let p = Slot::follow(Some(a), b);
        assert!(p.is_partial() && !a.is_partial());
        assert!(Slot::follow(Some(p), b).is_partial(), "and stays so");
    }

    #[test]
    fn a_slot_names_its_sequence_number_across_the_wrap() {
        assert_eq!(
            size_of::<Option<Slot>>(),
            4,
            "a pending trace pays four bytes"
        );
        for base in [
            0,
            1,
            SLOTS - 3,
            SLOTS,
            2 * SLOTS - 1,
            5 * SLOTS + 7,
            u64::MAX / 2,
        ] {
            for n in (base..base + 10).chain([base + SLOTS - 1]) {
                assert_eq!(Slot::of(n).seq(base), n, "base {base}, n {n}");
                let p = Slot::follow(Some(Slot::of(n + 1)), Slot::of(n));
                assert!(p.is_partial());
                assert_eq!(p.seq(base), n, "the mark leaves the number alone");
            }
        }
    }
}
