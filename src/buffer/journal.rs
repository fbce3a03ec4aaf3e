//! The buffer's side of durable decisions: every decision (and every rescue, and every
//! late span sent on by a cached "keep") is handed to a [`DecisionLog`] — the write-ahead
//! log with `storage.dir` — before the kept spans reach the outbox. After a crash the log
//! hands the decisions back as presets: a replayed trace is then decided as it was before,
//! not by the policies again (which may answer differently: rate and byte limiting,
//! complaints since expired).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::model::TraceId;

/// One decision, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub id: TraceId,
    pub sampled: bool,
    /// The policies (or complaint reason) that kept it; empty when dropped, or when a late
    /// span followed a cached "keep".
    pub reasons: Vec<Arc<str>>,
}

/// Where decisions are made durable. Called outside every buffer lock; a failure is the
/// log's to report (the decision stands, a replay would decide that trace again).
pub trait DecisionLog: Send + Sync {
    fn record(&self, decided: &[Decided]);
}

/// Decisions read back from the log, by trace. A "keep" wins over a "drop" whichever
/// came first (dropped then rescued is kept; spans of a trace once kept are never dropped
/// on replay, even if a late part of it was decided again and dropped), and a "keep"
/// without reasons keeps the reasons an earlier "keep" gave.
pub fn merge(into: &mut HashMap<TraceId, Decided>, d: Decided) {
    match into.get_mut(&d.id) {
        Some(old) if old.sampled && (!d.sampled || d.reasons.is_empty()) => {}
        Some(old) => *old = d,
        None => {
            into.insert(d.id, d);
        }
    }
}

impl super::Buffer {
    /// Hands every decision from now on to `log`. Set once, before traffic.
    pub fn set_decision_log(&self, log: Arc<dyn DecisionLog>) {
        if self.journal.set(log).is_err() {
            tracing::warn!("a decision log was already set; the new one is ignored");
        }
    }

    pub(super) fn journaling(&self) -> bool {
        self.journal.get().is_some()
    }

    pub(super) fn journal_record(&self, decided: &[Decided]) {
        if let (Some(log), false) = (self.journal.get(), decided.is_empty()) {
            log.record(decided);
        }
    }

    /// Decisions replayed from the log: the traces they name are decided so when their
    /// time comes, whatever the policies say.
    pub fn set_presets(&self, presets: HashMap<TraceId, Decided>) {
        let any = !presets.is_empty();
        *self.presets.lock() = presets;
        self.has_presets.store(any, Ordering::Release);
    }

    /// The replayed decision of `id`, if there is one (taken: it applies once).
    pub(super) fn take_preset(&self, id: &TraceId) -> Option<Decided> {
        if !self.has_presets.load(Ordering::Acquire) {
            return None;
        }
        let mut p = self.presets.lock();
        let d = p.remove(id);
        if p.is_empty() {
            self.has_presets.store(false, Ordering::Release);
        }
        d
    }

    /// After a replay: presets of traces that are not pending (all their spans were
    /// already truncated from the log) go to the decision cache instead, so late spans of
    /// those traces follow the decision made before the restart. Returns how many presets
    /// wait for a pending trace.
    pub fn settle_presets(&self) -> usize {
        let mut p = self.presets.lock();
        p.retain(|id, d| {
            let mut shard = self.shards[self.shard_of(id)].lock();
            if shard.traces.contains_key(id) {
                return true;
            }
            shard.cache.record(id, d.sampled, 0);
            false
        });
        self.has_presets.store(!p.is_empty(), Ordering::Release);
        p.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8, sampled: bool, reasons: &[&str]) -> Decided {
        Decided {
            id: [n; 16],
            sampled,
            reasons: reasons.iter().map(|r| Arc::from(*r)).collect(),
        }
    }

    #[test]
    fn keeps_win_and_a_bare_keep_keeps_the_reasons() {
        let mut m = HashMap::new();
        merge(&mut m, d(1, true, &["errors"]));
        merge(&mut m, d(1, true, &[]));
        assert_eq!(m[&[1; 16]], d(1, true, &["errors"]));
        merge(&mut m, d(2, false, &[]));
        merge(&mut m, d(2, true, &["complaint"]));
        assert_eq!(m[&[2; 16]], d(2, true, &["complaint"]));
        merge(&mut m, d(3, true, &["slow"]));
        merge(&mut m, d(3, false, &[]));
        assert_eq!(m[&[3; 16]], d(3, true, &["slow"]));
        merge(&mut m, d(4, false, &[]));
        merge(&mut m, d(4, false, &[]));
        assert!(!m[&[4; 16]].sampled);
    }
}
