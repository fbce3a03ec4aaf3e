//! Marks: what complaints ask of the decision stage. A flag keeps one named trace still in
//! its window (reason `complaint`); a watch keeps every trace of a user or attribute value
//! until it expires (reason `watch`). The buffer asks [`Marks::for_trace`] as it decides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::index::Key;
use crate::model::TraceId;

/// Why a complaint keeps a trace, and the ticket it links back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// `complaint` (flagged or rescued by name) or `watch`.
    pub reason: &'static str,
    pub ticket_id: Arc<str>,
    pub label: Option<Arc<str>>,
    /// The complaint behind a watch, so the traces it keeps can be added to its record.
    pub complaint_id: Option<Arc<str>>,
}

impl Mark {
    pub fn new(reason: &'static str, ticket_id: &str, label: Option<&str>) -> Mark {
        Mark {
            reason,
            ticket_id: ticket_id.into(),
            label: label.map(Into::into),
            complaint_id: None,
        }
    }

    /// The same mark, recording its hits for `complaint_id`.
    pub fn of_complaint(mut self, complaint_id: &str) -> Mark {
        self.complaint_id = Some(complaint_id.into());
        self
    }

    /// The attributes a kept trace's root span gets.
    pub fn attributes(&self) -> Vec<(&'static str, &str)> {
        let mut a = vec![("casefile.ticket_id", &*self.ticket_id)];
        if let Some(l) = &self.label {
            a.push(("casefile.complaint_label", l));
        }
        a
    }
}

struct Watch {
    until: SystemTime,
    mark: Mark,
}

/// Flags by trace id and watches by index key.
#[derive(Default)]
pub struct Marks {
    flags: Mutex<HashMap<TraceId, Mark>>,
    watches: Mutex<HashMap<Key, Watch>>,
    /// Set while any flag or watch exists: deciding skips the locks otherwise.
    any: AtomicBool,
    /// Traces kept by a watch, for its complaint record: (complaint id, trace).
    hits: Mutex<Vec<(Arc<str>, TraceId)>>,
}

/// Hits waiting to be written beyond this are dropped (and counted).
const MAX_PENDING_HITS: usize = 100_000;

impl Marks {
    /// Keeps `id` at its decision.
    pub fn flag(&self, id: TraceId, mark: Mark) {
        self.flags.lock().insert(id, mark);
        self.any.store(true, Ordering::Release);
    }

    /// Keeps every trace with `key` decided before `until`. A later watch on the same key
    /// replaces an earlier one if it lasts longer.
    pub fn watch(&self, key: Key, until: SystemTime, mark: Mark) {
        let mut w = self.watches.lock();
        if w.get(&key).is_none_or(|old| old.until < until) {
            w.insert(key, Watch { until, mark });
        }
        self.any.store(true, Ordering::Release);
    }

    /// Active watches.
    pub fn watch_count(&self, now: SystemTime) -> usize {
        self.watches
            .lock()
            .values()
            .filter(|w| w.until > now)
            .count()
    }

    /// The mark that keeps `id`, if any: its flag (consumed), else an active watch on one
    /// of `keys` (asked only when a watch exists).
    pub fn for_trace(
        &self,
        id: &TraceId,
        keys: impl FnOnce() -> Vec<Key>,
        now: SystemTime,
    ) -> Option<Mark> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        if let Some(m) = self.flags.lock().remove(id) {
            return Some(m);
        }
        let watches = self.watches.lock();
        if watches.is_empty() {
            return None;
        }
        let keys = keys();
        let mark = keys
            .iter()
            .filter_map(|k| watches.get(k))
            .find(|w| w.until > now)
            .map(|w| w.mark.clone())?;
        if let Some(c) = &mark.complaint_id {
            let mut hits = self.hits.lock();
            if hits.len() < MAX_PENDING_HITS {
                hits.push((Arc::clone(c), *id));
            } else {
                metrics::counter!("casefile_support_watch_hits_dropped_total").increment(1);
            }
        }
        Some(mark)
    }

    /// Forgets expired watches (called periodically, not per decision: a decision only
    /// looks its own keys up).
    pub fn sweep(&self, now: SystemTime) {
        self.watches.lock().retain(|_, w| w.until > now);
    }

    /// Takes the traces watches kept since the last call.
    pub fn take_hits(&self) -> Vec<(Arc<str>, TraceId)> {
        std::mem::take(&mut *self.hits.lock())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(s: &str) -> Key {
        let mut k = [0; 16];
        k[..s.len()].copy_from_slice(s.as_bytes());
        Key(k)
    }

    #[test]
    fn a_flag_keeps_its_trace_once() {
        let m = Marks::default();
        let now = SystemTime::now();
        assert_eq!(m.for_trace(&[1; 16], Vec::new, now), None);
        m.flag([1; 16], Mark::new("complaint", "cs_1", Some("slow")));
        assert_eq!(m.for_trace(&[2; 16], Vec::new, now), None);
        let got = m.for_trace(&[1; 16], Vec::new, now).unwrap();
        assert_eq!(
            got.attributes(),
            vec![
                ("casefile.ticket_id", "cs_1"),
                ("casefile.complaint_label", "slow")
            ]
        );
        assert_eq!(m.for_trace(&[1; 16], Vec::new, now), None, "consumed");
    }

    #[test]
    fn a_watch_keeps_matching_traces_until_it_expires() {
        let m = Marks::default();
        let now = SystemTime::now();
        m.watch(
            key("u1"),
            now + Duration::from_secs(60),
            Mark::new("watch", "cs_2", None),
        );
        assert_eq!(
            m.for_trace(&[3; 16], || vec![key("u1")], now)
                .unwrap()
                .reason,
            "watch"
        );
        assert_eq!(m.for_trace(&[4; 16], || vec![key("u2")], now), None);
        assert_eq!(m.watch_count(now), 1);
        assert!(
            m.take_hits().is_empty(),
            "a mark without a complaint records nothing"
        );
        m.watch(
            key("u9"),
            now + Duration::from_secs(60),
            Mark::new("watch", "cs_3", None).of_complaint("cmp_1"),
        );
        assert!(m.for_trace(&[6; 16], || vec![key("u9")], now).is_some());
        let hits = m.take_hits();
        assert_eq!(hits.len(), 1);
        assert_eq!((&*hits[0].0, hits[0].1), ("cmp_1", [6; 16]));
        assert!(m.take_hits().is_empty());
        let later = now + Duration::from_secs(61);
        assert_eq!(
            m.for_trace(&[5; 16], || vec![key("u1")], later),
            None,
            "expired"
        );
        assert_eq!(m.watch_count(later), 0);
        m.sweep(later);
        assert!(m.watches.lock().is_empty(), "swept");
    }
}
