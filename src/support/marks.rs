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
}

impl Mark {
    pub fn new(reason: &'static str, ticket_id: &str, label: Option<&str>) -> Mark {
        Mark {
            reason,
            ticket_id: ticket_id.into(),
            label: label.map(Into::into),
        }
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
}

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
        let mut watches = self.watches.lock();
        if watches.is_empty() {
            return None;
        }
        watches.retain(|_, w| w.until > now);
        let keys = keys();
        keys.iter()
            .find_map(|k| watches.get(k))
            .map(|w| w.mark.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(s: &str) -> Key {
        Arc::from(s.as_bytes())
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
        let later = now + Duration::from_secs(61);
        assert_eq!(
            m.for_trace(&[5; 16], || vec![key("u1")], later),
            None,
            "expired"
        );
        assert_eq!(m.watch_count(later), 0);
    }
}
