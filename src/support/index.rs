//! Attribute index: maps the values of `support.index.attributes` (user.id, session.id,
//! ...) found on span or resource attributes to the traces that carry them, and keeps a
//! summary of each such trace once it is decided. Fed by the buffer: keys at ingest
//! ([`KeyScan`] over each trace's spans outside any lock, [`Index::add`] once per request),
//! summaries at decision time. Bounded by `retention`, `max_traces` and `max_bytes`, oldest
//! out first. Values are held as 16-byte digests only ([`key`]); with `hash_values` the
//! digest is a keyed HMAC-SHA256. A reload may change the attributes (for spans arriving
//! from then on: a key is a digest of the attribute's name and value, so old keys keep
//! their meaning) and the bounds (at the next eviction).

mod key;
mod store;
mod summary;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

use crate::config::IndexCfg;
use crate::model::{Span, TraceId};

pub use key::{Found, Key, KeyHash, KeyScan};
pub use summary::{rfc3339, Decision, Summary};

use key::Keys;
pub use store::Slot;
use store::{Limits, Store};

/// The keys the index holds for a batch of decided traces, side by side: what the archive
/// stores instead of reading the spans again (the same digests: [`KeyHash`]).
#[derive(Debug, Default)]
pub struct TraceKeys {
    pub keys: Vec<Key>,
    /// Per trace, in the order asked: the range of its keys in `keys`, or None when the
    /// index may not hold all of them (the archive reads them from the spans then).
    pub ranges: Vec<Option<(u32, u32)>>,
}

impl TraceKeys {
    /// The keys of the `i`-th trace asked for, if the index holds them all.
    pub fn of(&self, i: usize) -> Option<&[Key]> {
        let (from, to) = (*self.ranges.get(i)?)?;
        self.keys.get(from as usize..to as usize)
    }
}

/// The index. Cheap to share by `Arc`; one short lock per request and per decision batch.
pub struct Index {
    /// The attribute list in force: read once per batch and per lookup.
    keys: RwLock<Arc<Keys>>,
    /// Read at each eviction; a reload replaces them.
    limits: RwLock<Limits>,
    store: Mutex<Store>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Index {
    pub fn new(cfg: &IndexCfg) -> Index {
        let hash = if cfg.hash_values {
            KeyHash::hmac(cfg.hash_key.as_deref().unwrap_or_default().as_bytes())
        } else {
            KeyHash::random()
        };
        Index {
            keys: RwLock::new(Arc::new(Keys::new(&cfg.attributes, hash))),
            limits: RwLock::new(Limits::of(cfg.retention, cfg.max_traces, cfg.max_bytes)),
            store: Mutex::new(Store::default()),
        }
    }

    fn keys(&self) -> Arc<Keys> {
        Arc::clone(&self.keys.read())
    }

    fn limits(&self) -> Limits {
        *self.limits.read()
    }

    /// Changes `retention`, `max_traces` and `max_bytes`; traces past the new bounds leave
    /// at the next eviction (the next traces indexed or decided).
    pub fn set_bounds(&self, retention: Duration, max_traces: usize, max_bytes: usize) {
        *self.limits.write() = Limits::of(retention, max_traces, max_bytes);
    }

    /// Indexes `attributes` from now on: spans that arrive later are read for them; traces
    /// indexed before keep their keys (those of a dropped attribute are out of reach of
    /// lookups until they leave, and back if it is added again).
    pub fn set_attributes(&self, attributes: &[String]) {
        let mut keys = self.keys.write();
        *keys = Arc::new(Keys::new(attributes, keys.hash().clone()));
    }

    /// Hashes values with `hash` from now on: the archive's, so keys on disk are the
    /// index's digests (set once, before any traffic: keys hashed before no longer match).
    pub fn set_key_hash(&self, hash: KeyHash) {
        let mut keys = self.keys.write();
        *keys = Arc::new(Keys::new(keys.names(), hash));
    }

    /// How values become keys.
    pub fn key_hash(&self) -> KeyHash {
        self.keys().hash().clone()
    }

    /// The indexed attribute names, in config order.
    pub fn attributes(&self) -> Vec<String> {
        self.keys().names().to_vec()
    }

    /// The key for a lookup of `attribute` = `value`, or None when it is not indexed.
    pub fn query_key(&self, attribute: &str, value: &str) -> Option<Key> {
        self.keys().query(attribute, value)
    }

    /// The keys of a batch of spans, in any order (tests and benchmarks; the buffer scans
    /// its sorted runs with [`Index::scanner`]).
    pub fn keys_of(&self, spans: &[Span]) -> Found {
        let mut sorted: Vec<&Span> = spans.iter().collect();
        sorted.sort_by_key(|s| s.trace_id());
        let mut scan = self.scanner();
        let mut out = Found::default();
        for run in sorted.chunk_by(|a, b| a.trace_id() == b.trace_id()) {
            scan.trace(run[0].trace_id(), run.iter().copied(), &mut out);
        }
        out
    }

    /// A reader of indexed values for one batch of spans (outside any lock).
    pub fn scanner<'a>(&self) -> KeyScan<'_, 'a> {
        KeyScan::new(self.keys())
    }

    /// Records the keys found by a [`KeyScan`]; returns each trace's slot, in the order
    /// the scan found them.
    pub fn add(&self, found: Found) -> Vec<Slot> {
        if found.is_empty() {
            return Vec::new();
        }
        self.add_at(found, now_ms())
    }

    /// [`Index::add`] at a given wall-clock time (Unix ms).
    pub fn add_at(&self, found: Found, now: u64) -> Vec<Slot> {
        let mut store = self.store.lock();
        let slots = store.add(&found.pairs, now);
        store.evict(&self.limits(), Some(now));
        let (traces, bytes) = (store.len(), store.bytes());
        drop(store);
        metrics::gauge!("casefile_index_traces").set(traces as f64);
        metrics::gauge!("casefile_index_bytes").set(bytes as f64);
        slots
    }

    /// The keys of an indexed trace (for watches).
    pub fn keys_for(&self, id: &TraceId) -> Vec<Key> {
        self.store.lock().keys_for(id)
    }

    /// True when the trace carries an indexed value.
    #[cfg(test)]
    pub fn contains(&self, id: &TraceId) -> bool {
        self.store.lock().contains(id)
    }

    /// Stores the summary of a decided trace, if the trace is indexed.
    pub fn decided(&self, summaries: Vec<Summary>) {
        if summaries.is_empty() {
            return;
        }
        let mut store = self.store.lock();
        store.set_summaries(summaries);
        store.evict(&self.limits(), None);
    }

    /// Stores the summaries of decided traces at the slots [`Index::add`] gave them, and
    /// returns the keys the index holds for `want` (traces for the archive, with their
    /// slots), in one lock.
    pub fn decided_at(
        &self,
        summaries: Vec<(Slot, Summary)>,
        want: impl Iterator<Item = (TraceId, Option<Slot>)>,
    ) -> TraceKeys {
        let mut want = want.peekable();
        if summaries.is_empty() && want.peek().is_none() {
            return TraceKeys::default();
        }
        let mut store = self.store.lock();
        let mut known = TraceKeys::default();
        known.ranges = store.keys_at(want, &mut known.keys);
        if !summaries.is_empty() {
            store.set_summaries_at(summaries);
            store.evict(&self.limits(), None);
        }
        known
    }

    /// Changes the decision of an indexed trace (a rescue); `reason` is added to its reasons.
    pub fn set_decision(&self, id: &TraceId, decision: Decision, reason: Option<&str>) {
        let mut store = self.store.lock();
        store.update_summary(id, |s| {
            s.decision = decision;
            if let Some(r) = reason {
                if !s.reasons.iter().any(|x| &**x == r) {
                    s.reasons.push(Arc::from(r));
                }
            }
        });
        store.evict(&self.limits(), None);
    }

    /// Traces with `key`, newest first: (id, summary if decided).
    pub fn lookup(&self, key: &Key) -> Vec<(TraceId, Option<Summary>)> {
        self.store.lock().lookup(key)
    }

    /// The summary of a decided indexed trace.
    pub fn summary(&self, id: &TraceId) -> Option<Summary> {
        self.store.lock().summary(id).cloned()
    }

    /// Indexed traces.
    pub fn len(&self) -> usize {
        self.store.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index holds by its own count (what `max_bytes` bounds).
    pub fn bytes(&self) -> usize {
        self.store.lock().bytes()
    }
}

#[cfg(test)]
mod tests;
