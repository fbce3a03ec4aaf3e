//! Attribute index: maps the values of `support.index.attributes` (user.id, session.id,
//! ...) found on span or resource attributes to the traces that carry them, and keeps a
//! summary of each such trace once it is decided. Fed by the buffer: keys at ingest
//! ([`KeyScan`] over each trace's spans outside any lock, [`Index::add`] once per request), summaries at
//! decision time. Bounded by `retention` and `max_traces`, oldest out first. With
//! `hash_values` only HMAC-SHA256 digests of the values are held.

use std::borrow::Cow;
use std::collections::VecDeque;

use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use parking_lot::Mutex;
use serde::Serialize;

use crate::config::IndexCfg;
use crate::model::{Span, StatusCode, TraceId};
use crate::wire::AnyValueRef;

/// Where a trace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Pending,
    Sampled,
    Dropped,
    Rescued,
}

/// What support sees of a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    #[serde(serialize_with = "hex_id")]
    pub trace_id: TraceId,
    /// Earliest span start, Unix nanoseconds (RFC 3339 in JSON).
    #[serde(rename = "start", serialize_with = "rfc3339_ser")]
    pub start_unix_nano: u64,
    pub duration_ms: f64,
    pub root_service: Arc<str>,
    pub root_name: Arc<str>,
    pub error: bool,
    pub span_count: u32,
    pub decision: Decision,
    pub reasons: Vec<Arc<str>>,
}

fn hex_id<S: serde::Serializer>(id: &TraceId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(id))
}

fn rfc3339_ser<S: serde::Serializer>(t: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// RFC 3339 (UTC, milliseconds) of a Unix-nanosecond time.
pub fn rfc3339(unix_nano: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(unix_nano)).to_string()
}

impl Summary {
    /// Summarises the spans casefile holds of a trace.
    pub fn of(
        trace_id: TraceId,
        spans: &[Span],
        decision: Decision,
        reasons: Vec<Arc<str>>,
    ) -> Summary {
        let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(start);
        let root = spans
            .iter()
            .find(|s| s.is_root())
            .or_else(|| spans.iter().min_by_key(|s| s.start_unix_nano));
        let root_service = root
            .and_then(|r| r.resource().resource_attributes().get(b"service.name"))
            .map(|v| match v {
                AnyValueRef::Str(s) => intern(s),
                other => intern(&other.to_display_string()),
            })
            .unwrap_or_else(|| intern(""));
        Summary {
            trace_id,
            start_unix_nano: start,
            duration_ms: end.saturating_sub(start) as f64 / 1e6,
            root_service,
            root_name: intern(root.map(|r| r.name()).unwrap_or("")),
            error: spans.iter().any(|s| s.status == StatusCode::Error),
            span_count: spans.len().min(u32::MAX as usize) as u32,
            decision,
            reasons,
        }
    }
}

/// Service and operation names repeat across millions of summaries: each distinct one is
/// held once per thread that decides (no lock on the decision path). Bounded: past 65 536
/// names a thread's table starts over (old summaries keep theirs).
fn intern(s: &str) -> Arc<str> {
    thread_local! {
        static NAMES: std::cell::RefCell<HashMap<Box<str>, Arc<str>>> = Default::default();
    }
    NAMES.with_borrow_mut(|names| {
        if let Some(a) = names.get(s) {
            return Arc::clone(a);
        }
        if names.len() >= 1 << 16 {
            names.clear();
        }
        let a: Arc<str> = Arc::from(s);
        names.insert(s.into(), Arc::clone(&a));
        a
    })
}

/// An index key: the attribute's position in the config and the value (or its digest).
pub type Key = Arc<[u8]>;

/// One indexed trace. Entries sit in a ring in the order they were first seen, which is
/// also the order they leave in, so the map only holds a sequence number (24 bytes a slot
/// instead of the whole entry, which matters at a million traces).
struct Entry {
    id: TraceId,
    /// First seen, Unix ms.
    at: u64,
    keys: Box<[Key]>,
    summary: Option<Summary>,
}

#[derive(Default)]
struct Inner {
    /// Key -> traces, in the order they were first seen (hashbrown for lookups by
    /// borrowed bytes that hand back the stored key).
    by_key: hashbrown::HashMap<Key, VecDeque<TraceId>, foldhash::fast::RandomState>,
    /// Trace -> sequence number of its entry.
    seq: HashMap<TraceId, u64>,
    /// Entries, oldest first; `ring[0]` has sequence number `base`.
    ring: VecDeque<Entry>,
    base: u64,
}

impl Inner {
    fn get(&self, id: &TraceId) -> Option<&Entry> {
        let n = *self.seq.get(id)?;
        self.ring.get((n - self.base) as usize)
    }

    fn get_mut(&mut self, id: &TraceId) -> Option<&mut Entry> {
        let n = *self.seq.get(id)?;
        self.ring.get_mut((n - self.base) as usize)
    }
}

/// The indexed attributes. A key starts with its attribute's slot, and a slot never
/// changes its attribute: a reload that drops an attribute only marks its slot unused
/// (its entries stay until evicted, out of reach of lookups), one that adds an attribute
/// gives it a new slot (or its old one back), so no key ever changes its meaning.
#[derive(Debug, Default)]
pub struct Slots {
    /// Every attribute ever indexed, by slot (at most 256).
    names: Vec<String>,
    /// The attributes indexed now, in config order: (slot, name).
    active: Vec<(u8, String)>,
}

impl Slots {
    /// The slot of `name` when it is indexed now.
    fn of(&self, name: &[u8]) -> Option<u8> {
        self.active
            .iter()
            .find(|(_, a)| a.as_bytes() == name)
            .map(|(slot, _)| *slot)
    }

    /// Slots for `attributes`, reusing those of `self`; None past 256 slots.
    fn with(&self, attributes: &[String]) -> Option<Slots> {
        let mut names = self.names.clone();
        let mut active = Vec::with_capacity(attributes.len());
        for a in attributes {
            let slot = match names.iter().position(|n| n == a) {
                Some(i) => i,
                None => {
                    names.push(a.clone());
                    names.len() - 1
                }
            };
            if !active.iter().any(|(_, n)| n == a) {
                active.push((u8::try_from(slot).ok()?, a.clone()));
            }
        }
        Some(Slots { names, active })
    }
}

/// The index. Cheap to share by `Arc`; one short lock per request and per decision batch.
pub struct Index {
    /// Read once per batch of spans and per lookup; a reload replaces it.
    slots: parking_lot::RwLock<Arc<Slots>>,
    /// `retention` in milliseconds; a reload may change it (applied at the next eviction).
    retention_ms: AtomicU64,
    /// `max_traces` (at least 1); a reload may change it (applied at the next eviction).
    max_traces: AtomicUsize,
    hmac_key: Option<Vec<u8>>,
    inner: Mutex<Inner>,
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Index {
    pub fn new(cfg: &IndexCfg) -> Index {
        // Validation allows 64 attributes; past 256 the rest would not fit a key's byte.
        let first = &cfg.attributes[..cfg.attributes.len().min(256)];
        let slots = Slots::default().with(first).unwrap_or_default();
        Index {
            slots: parking_lot::RwLock::new(Arc::new(slots)),
            retention_ms: AtomicU64::new(millis(cfg.retention)),
            max_traces: AtomicUsize::new(cfg.max_traces.max(1)),
            hmac_key: cfg
                .hash_values
                .then(|| cfg.hash_key.clone().unwrap_or_default().into_bytes()),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Changes `retention` and `max_traces`; traces past the new bounds leave with the next
    /// traces indexed.
    pub fn set_bounds(&self, retention: Duration, max_traces: usize) {
        self.retention_ms
            .store(millis(retention), Ordering::Relaxed);
        self.max_traces.store(max_traces.max(1), Ordering::Relaxed);
    }

    /// Indexes `attributes` from now on: spans that arrive later are read for them; traces
    /// indexed before keep their keys (those of a dropped attribute are out of reach of
    /// lookups until they leave). False, and nothing changed, when the index has seen
    /// 256 distinct attributes (a restart starts over).
    pub fn set_attributes(&self, attributes: &[String]) -> bool {
        let mut slots = self.slots.write();
        match slots.with(attributes) {
            Some(new) => {
                *slots = Arc::new(new);
                true
            }
            None => false,
        }
    }

    fn slots(&self) -> Arc<Slots> {
        Arc::clone(&self.slots.read())
    }

    /// The indexed attribute names, in config order.
    pub fn attributes(&self) -> Vec<String> {
        self.slots().active.iter().map(|(_, a)| a.clone()).collect()
    }

    /// The key of `value` for the attribute in slot `attr`.
    fn key(&self, attr: u8, value: &[u8]) -> Key {
        let mut k = Vec::with_capacity(33);
        self.write_key(attr, value, &mut k);
        Arc::from(k)
    }

    /// Appends the key bytes of `value` for the attribute in slot `attr` to `out`.
    fn write_key(&self, attr: u8, value: &[u8], out: &mut Vec<u8>) {
        out.push(attr);
        match &self.hmac_key {
            Some(secret) => {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
                    .expect("HMAC takes any key length");
                mac.update(value);
                out.extend_from_slice(&mac.finalize().into_bytes());
            }
            None => out.extend_from_slice(value),
        }
    }

    /// The key for a lookup of `attribute` = `value`, or None when it is not indexed.
    pub fn query_key(&self, attribute: &str, value: &str) -> Option<Key> {
        let slot = self.slots().of(attribute.as_bytes())?;
        Some(self.key(slot, value.as_bytes()))
    }

    /// Indexed values of one attribute list (span or resource attributes), borrowed; the
    /// values of other attributes are not read.
    fn scan<'a>(slots: &Slots, mut attrs: crate::wire::Attributes<'a>, out: &mut Values<'a>) {
        while let Some((k, v)) = attrs.next_raw() {
            if let Some(i) = slots.of(k) {
                let value = match AnyValueRef::parse(v) {
                    AnyValueRef::Str(s) => Cow::Borrowed(s),
                    other => Cow::Owned(other.to_display_string()),
                };
                if !value.is_empty() {
                    out.push((i, value));
                }
            }
        }
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
        KeyScan {
            index: self,
            slots: self.slots(),
            resources: Vec::new(),
            found: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Records the keys found by a [`KeyScan`].
    pub fn add(&self, found: Found) {
        if !found.pairs.is_empty() {
            self.add_at(found, now_ms());
        }
    }

    /// [`Index::add`] at a given wall-clock time (Unix ms). Keys of one trace are side by
    /// side (the scanner writes them so): each trace costs one lookup and at most one key
    /// list; each key one lookup, and an allocation only the first time it is seen.
    pub fn add_at(&self, found: Found, now: u64) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for group in found.pairs.chunk_by(|a, b| a.0 == b.0) {
            let id = group[0].0;
            let next = inner.base + inner.ring.len() as u64;
            let n = *inner.seq.entry(id).or_insert(next);
            if n == next {
                inner.ring.push_back(Entry {
                    id,
                    at: now,
                    keys: Box::new([]),
                    summary: None,
                });
            }
            let entry = &mut inner.ring[(n - inner.base) as usize];
            let mut keys: Vec<Key> = Vec::new();
            for &(_, start, end) in group {
                let bytes = &found.bytes[start as usize..end as usize];
                if entry.keys.iter().chain(&keys).any(|k| **k == *bytes) {
                    continue;
                }
                // One copy of each value, shared by every trace that carries it.
                let key = match inner.by_key.get_key_value_mut(bytes) {
                    Some((k, q)) => {
                        q.push_back(id);
                        Arc::clone(k)
                    }
                    None => {
                        let k: Key = Arc::from(bytes);
                        inner.by_key.insert(Arc::clone(&k), VecDeque::from([id]));
                        k
                    }
                };
                keys.push(key);
            }
            if !keys.is_empty() {
                keys.extend(entry.keys.iter().cloned());
                entry.keys = keys.into_boxed_slice();
            }
        }
        self.evict(inner, now);
    }

    fn evict(&self, inner: &mut Inner, now: u64) {
        let horizon = now.saturating_sub(self.retention_ms.load(Ordering::Relaxed));
        let max_traces = self.max_traces.load(Ordering::Relaxed);
        while let Some(front) = inner.ring.front() {
            if front.at >= horizon && inner.ring.len() <= max_traces {
                break;
            }
            let entry = inner.ring.pop_front().expect("front exists");
            inner.base += 1;
            inner.seq.remove(&entry.id);
            for key in entry.keys.iter() {
                if let Some(q) = inner.by_key.get_mut(key) {
                    // Oldest first: the evicted trace is almost always at the front.
                    if let Some(pos) = q.iter().position(|t| *t == entry.id) {
                        q.remove(pos);
                    }
                    if q.is_empty() {
                        inner.by_key.remove(key);
                    }
                }
            }
        }
        metrics::gauge!("casefile_index_traces").set(inner.ring.len() as f64);
    }

    /// The keys of an indexed trace (for watches).
    pub fn keys_for(&self, id: &TraceId) -> Vec<Key> {
        self.inner
            .lock()
            .get(id)
            .map(|e| e.keys.to_vec())
            .unwrap_or_default()
    }

    /// True when the trace carries an indexed value.
    pub fn contains(&self, id: &TraceId) -> bool {
        self.inner.lock().seq.contains_key(id)
    }

    /// Stores the summary of a decided trace, if the trace is indexed.
    pub fn decided(&self, summaries: Vec<Summary>) {
        if summaries.is_empty() {
            return;
        }
        let mut inner = self.inner.lock();
        for s in summaries {
            if let Some(e) = inner.get_mut(&s.trace_id) {
                e.summary = Some(s);
            }
        }
    }

    /// Changes the decision of an indexed trace (a rescue); `reason` is added to its reasons.
    pub fn set_decision(&self, id: &TraceId, decision: Decision, reason: Option<&str>) {
        let mut inner = self.inner.lock();
        if let Some(s) = inner.get_mut(id).and_then(|e| e.summary.as_mut()) {
            s.decision = decision;
            if let Some(r) = reason {
                if !s.reasons.iter().any(|x| &**x == r) {
                    s.reasons.push(r.into());
                }
            }
        }
    }

    /// Traces with `key`, newest first: (id, summary if decided).
    pub fn lookup(&self, key: &[u8]) -> Vec<(TraceId, Option<Summary>)> {
        let inner = self.inner.lock();
        let Some(q) = inner.by_key.get(key) else {
            return Vec::new();
        };
        q.iter()
            .rev()
            .map(|id| (*id, inner.get(id).and_then(|e| e.summary.clone())))
            .collect()
    }

    /// The summary of a decided indexed trace.
    pub fn summary(&self, id: &TraceId) -> Option<Summary> {
        self.inner.lock().get(id).and_then(|e| e.summary.clone())
    }

    /// Indexed traces.
    pub fn len(&self) -> usize {
        self.inner.lock().ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keys found in a batch: (trace, range of its key bytes in `bytes`), a trace's keys
/// side by side. Borrowed bytes, so a key already indexed costs no allocation.
#[derive(Debug, Default)]
pub struct Found {
    pairs: Vec<(TraceId, u32, u32)>,
    bytes: Vec<u8>,
}

impl Found {
    /// Adds a key (already in key form, as [`Index::query_key`] gives it).
    pub fn push(&mut self, id: TraceId, key: &[u8]) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(key);
        self.pairs.push((id, start, self.bytes.len() as u32));
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Indexed values found: (attribute slot, value).
type Values<'a> = Vec<(u8, Cow<'a, str>)>;

/// Reads the indexed values of a batch, one trace (its spans side by side) at a time.
/// Resource attributes are read once per resource block; the values of other attributes
/// are not parsed; a value repeated on the spans of a trace is keyed (and hashed) once.
pub struct KeyScan<'i, 'a> {
    index: &'i Index,
    /// The attributes indexed when the batch began (one read of the lock per batch).
    slots: Arc<Slots>,
    resources: Vec<(u64, Values<'a>)>,
    found: Values<'a>,
    scratch: Values<'a>,
}

impl<'a> KeyScan<'_, 'a> {
    /// Adds the keys of one trace's spans to `out`; true when it has any.
    pub fn trace(
        &mut self,
        id: TraceId,
        spans: impl IntoIterator<Item = &'a Span>,
        out: &mut Found,
    ) -> bool {
        let ix = self.index;
        self.found.clear();
        for span in spans {
            let rid = span.resource().id;
            let r = match self.resources.iter().rposition(|(id, _)| *id == rid) {
                Some(i) => i,
                None => {
                    let mut vals = Vec::new();
                    Index::scan(
                        &self.slots,
                        span.resource().resource_attributes(),
                        &mut vals,
                    );
                    self.resources.push((rid, vals));
                    self.resources.len() - 1
                }
            };
            for v in &self.resources[r].1 {
                if !self.found.contains(v) {
                    self.found.push(v.clone());
                }
            }
            Index::scan(&self.slots, span.attributes(), &mut self.scratch);
            for v in self.scratch.drain(..) {
                if !self.found.contains(&v) {
                    self.found.push(v);
                }
            }
        }
        for (i, v) in &self.found {
            let start = out.bytes.len() as u32;
            ix.write_key(*i, v.as_bytes(), &mut out.bytes);
            out.pairs.push((id, start, out.bytes.len() as u32));
        }
        !self.found.is_empty()
    }
}

#[cfg(test)]
mod tests;
