//! Attribute index: maps the values of `support.index.attributes` (user.id, session.id,
//! ...) found on span or resource attributes to the traces that carry them, and keeps a
//! summary of each such trace once it is decided. Fed by the buffer: keys at ingest
//! ([`Index::keys_of`] outside any lock, [`Index::add`] once per request), summaries at
//! decision time. Bounded by `retention` and `max_traces`, oldest out first. With
//! `hash_values` only HMAC-SHA256 digests of the values are held.

use std::borrow::Cow;
use std::collections::VecDeque;

use foldhash::{HashMap, HashSet, HashSetExt};
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
/// held once. Bounded: past 65 536 names the table starts over (old summaries keep theirs).
fn intern(s: &str) -> Arc<str> {
    static NAMES: std::sync::OnceLock<Mutex<HashMap<Box<str>, Arc<str>>>> =
        std::sync::OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock();
    if let Some(a) = names.get(s) {
        return Arc::clone(a);
    }
    if names.len() >= 1 << 16 {
        names.clear();
    }
    let a: Arc<str> = Arc::from(s);
    names.insert(s.into(), Arc::clone(&a));
    a
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
    /// Key -> traces, in the order they were first seen.
    by_key: HashMap<Key, VecDeque<TraceId>>,
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

/// The index. Cheap to share by `Arc`; one short lock per request and per decision batch.
pub struct Index {
    attributes: Vec<String>,
    retention: Duration,
    max_traces: usize,
    hmac_key: Option<Vec<u8>>,
    inner: Mutex<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Index {
    pub fn new(cfg: &IndexCfg) -> Index {
        Index {
            attributes: cfg.attributes.clone(),
            retention: cfg.retention,
            max_traces: cfg.max_traces.max(1),
            hmac_key: cfg
                .hash_values
                .then(|| cfg.hash_key.clone().unwrap_or_default().into_bytes()),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The indexed attribute names, in config order.
    pub fn attributes(&self) -> &[String] {
        &self.attributes
    }

    /// The key of `value` for the attribute at `attr` (its position in the config).
    fn key(&self, attr: usize, value: &[u8]) -> Key {
        let mut k = Vec::with_capacity(1 + 32);
        k.push(attr as u8);
        match &self.hmac_key {
            Some(secret) => {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
                    .expect("HMAC takes any key length");
                mac.update(value);
                k.extend_from_slice(&mac.finalize().into_bytes());
            }
            None => k.extend_from_slice(value),
        }
        k.into()
    }

    /// The key for a lookup of `attribute` = `value`, or None when it is not indexed.
    pub fn query_key(&self, attribute: &str, value: &str) -> Option<Key> {
        let i = self.attributes.iter().position(|a| a == attribute)?;
        Some(self.key(i, value.as_bytes()))
    }

    /// Indexed values of one attribute list (span or resource attributes), borrowed; the
    /// values of other attributes are not read.
    fn scan<'a>(
        &self,
        mut attrs: crate::wire::Attributes<'a>,
        out: &mut Vec<(usize, Cow<'a, str>)>,
    ) {
        while let Some((k, v)) = attrs.next_raw() {
            if let Some(i) = self.attributes.iter().position(|a| a.as_bytes() == k) {
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

    /// The (trace, key) pairs of a batch of spans. Runs outside any lock; resource
    /// attributes are read once per resource block, and a value repeated on the spans of
    /// one trace is keyed (and hashed) once.
    pub fn keys_of(&self, spans: &[Span]) -> Vec<(TraceId, Key)> {
        let mut out: Vec<(TraceId, Key)> = Vec::new();
        let mut resources: Vec<(u64, Vec<(usize, Cow<'_, str>)>)> = Vec::new();
        let mut seen: HashSet<(TraceId, usize, Cow<'_, str>)> = HashSet::new();
        let mut found = Vec::new();
        for span in spans {
            let res = match resources.iter().position(|(id, _)| *id == span.resource().id) {
                Some(i) => i,
                None => {
                    let mut vals = Vec::new();
                    self.scan(span.resource().resource_attributes(), &mut vals);
                    resources.push((span.resource().id, vals));
                    resources.len() - 1
                }
            };
            found.clear();
            found.extend(resources[res].1.iter().cloned());
            self.scan(span.attributes(), &mut found);
            for (i, v) in found.drain(..) {
                let key = self.key_if_new(&mut seen, span.trace_id(), i, v);
                out.extend(key.map(|k| (span.trace_id(), k)));
            }
        }
        out
    }

    fn key_if_new<'a>(
        &self,
        seen: &mut HashSet<(TraceId, usize, Cow<'a, str>)>,
        id: TraceId,
        attr: usize,
        v: Cow<'a, str>,
    ) -> Option<Key> {
        let entry = (id, attr, v);
        if seen.contains(&entry) {
            return None;
        }
        let key = self.key(attr, entry.2.as_bytes());
        seen.insert(entry);
        Some(key)
    }

    /// Records the keys found by [`Index::keys_of`].
    pub fn add(&self, pairs: Vec<(TraceId, Key)>) {
        if !pairs.is_empty() {
            self.add_at(pairs, now_ms());
        }
    }

    /// [`Index::add`] at a given wall-clock time (Unix ms).
    pub fn add_at(&self, pairs: Vec<(TraceId, Key)>, now: u64) {
        let mut inner = self.inner.lock();
        for (id, key) in pairs {
            if !inner.seq.contains_key(&id) {
                let n = inner.base + inner.ring.len() as u64;
                inner.seq.insert(id, n);
                inner.ring.push_back(Entry {
                    id,
                    at: now,
                    keys: Box::new([]),
                    summary: None,
                });
            }
            let entry = inner.get_mut(&id).expect("inserted above");
            if entry.keys.contains(&key) {
                continue;
            }
            let mut keys = std::mem::take(&mut entry.keys).into_vec();
            keys.push(Arc::clone(&key));
            entry.keys = keys.into_boxed_slice();
            inner.by_key.entry(key).or_default().push_back(id);
        }
        self.evict(&mut inner, now);
    }

    fn evict(&self, inner: &mut Inner, now: u64) {
        let horizon = now.saturating_sub(self.retention.as_millis() as u64);
        while let Some(front) = inner.ring.front() {
            if front.at >= horizon && inner.ring.len() <= self.max_traces {
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

#[cfg(test)]
mod tests;
