//! The buffer's side of the support layer: feeding the index and the rescue buffer as
//! traces are decided, complaint marks that keep a trace, and what the support API asks
//! of traces still in their window (summaries, spans, flags, rescues).

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use super::{Buffer, Kept};
use crate::archive::Archive;
use crate::model::{Span, TraceId};
use crate::support::index::{Decision, Index, Slot, Summary, TraceKeys};
use crate::support::marks::Mark;
use crate::support::rescue::RescueBuffer;
use crate::support::Hooks;

/// What happened to a trace a complaint names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Still in its window: it will be kept.
    Flagged,
    /// Kept already.
    AlreadySampled,
    /// Dropped, brought back from the rescue buffer and sent on now.
    Rescued,
    /// Not held anywhere.
    NotFound,
}

impl Buffer {
    /// Attaches the support layer.
    pub fn with_hooks(mut self, hooks: Hooks) -> Buffer {
        self.hooks = hooks;
        self
    }

    /// Feeds `index`: keys at ingest, summaries at decision time.
    pub fn with_index(mut self, index: Arc<Index>) -> Buffer {
        self.hooks.index = Some(index);
        self
    }

    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    pub fn index(&self) -> Option<&Arc<Index>> {
        self.hooks.index.as_ref()
    }

    pub fn rescue_buffer(&self) -> Option<&Arc<RescueBuffer>> {
        self.hooks.rescue.as_ref()
    }

    pub fn archive(&self) -> Option<&Archive> {
        self.hooks.archive.as_ref()
    }

    /// The complaint mark that keeps `id`, if any.
    pub(super) fn mark_of(&self, id: &TraceId) -> Option<Mark> {
        let keys = || {
            self.hooks
                .index
                .as_ref()
                .map(|ix| ix.keys_for(id))
                .unwrap_or_default()
        };
        self.hooks.marks.for_trace(id, keys, SystemTime::now())
    }

    /// After a round of decisions, outside the shard locks.
    pub(super) fn after_decisions(
        &self,
        summaries: Vec<(Slot, Summary)>,
        mut dropped: Vec<(TraceId, Vec<Span>)>,
        dropped_slots: &[Option<Slot>],
        late_dropped: Vec<(TraceId, Vec<Span>)>,
    ) {
        // The keys the index computed at ingest, for the archive (it reads the spans only
        // for traces the index may not hold whole, and for late spans): those of the
        // dropped traces, and of the kept ones whose spans it archives too.
        let archive = self.hooks.archive.as_ref();
        let kept: Vec<(TraceId, Option<Slot>, u32)> = match archive {
            Some(a) if a.keeps_kept_spans() => summaries
                .iter()
                .filter(|(_, s)| s.decision == Decision::Sampled)
                .map(|(slot, s)| (s.trace_id, Some(*slot), s.span_count))
                .collect(),
            _ => Vec::new(),
        };
        let want = dropped
            .iter()
            .zip(dropped_slots)
            .map(|((id, _), slot)| (*id, *slot))
            .take(if archive.is_some() { dropped.len() } else { 0 })
            .chain(kept.iter().map(|&(id, slot, _)| (id, slot)));
        let mut known = match &self.hooks.index {
            Some(index) => index.decided_at(summaries, want),
            None => TraceKeys::default(),
        };
        if let Some(a) = archive.filter(|_| !kept.is_empty()) {
            // The kept traces' keys follow the dropped ones'.
            let n = dropped.len().min(known.ranges.len());
            let ranges = known.ranges.split_off(n);
            let cut = ranges.iter().flatten().map(|r| r.0).min();
            let cut = cut.unwrap_or(known.keys.len() as u32);
            let kept_known = TraceKeys {
                keys: known.keys.split_off(cut as usize),
                ranges: ranges
                    .into_iter()
                    .map(|r| r.map(|(a, b)| (a - cut, b - cut)))
                    .collect(),
            };
            let ids = kept.into_iter().map(|(id, _, n)| (id, n)).collect();
            a.kept_keys(ids, kept_known);
        }
        // While the archive writes, the ring holds only what it cannot write (it spills).
        let ring = self.hooks.rescue.as_ref();
        if let Some(rescue) = ring.filter(|_| archive.is_none_or(|a| !a.is_writing())) {
            if !dropped.is_empty() {
                rescue.insert_many(
                    dropped.iter().map(|(id, spans)| (*id, spans.as_slice())),
                    Instant::now(),
                );
            }
        }
        if let Some(archive) = &self.hooks.archive {
            dropped.extend(late_dropped);
            if !dropped.is_empty() {
                archive.record_dropped_with_keys(dropped, known);
            }
        }
    }

    /// The spans of a trace the archive holds as dropped, for a rescue (counted).
    fn archived_spans(&self, id: &TraceId) -> Option<Vec<Span>> {
        let archive = self.hooks.archive.as_ref()?;
        if archive.summary(id)?.decision != Decision::Dropped {
            return None;
        }
        let spans = archive.spans(id).filter(|s| !s.is_empty())?;
        metrics::counter!("casefile_archive_rescued_traces_total").increment(1);
        Some(spans)
    }

    fn archived_decision(&self, id: &TraceId) -> Option<Decision> {
        Some(self.hooks.archive.as_ref()?.summary(id)?.decision)
    }

    /// The summary of a trace still in its window.
    pub fn pending_summary(&self, id: &TraceId) -> Option<Summary> {
        let shard = self.shards[self.shard_of(id)].lock();
        let p = shard.traces.get(id)?;
        Some(Summary::of(*id, &p.spans, Decision::Pending, Vec::new()))
    }

    /// The spans of a trace still in its window.
    pub fn pending_spans(&self, id: &TraceId) -> Option<Vec<Span>> {
        let shard = self.shards[self.shard_of(id)].lock();
        shard.traces.get(id).map(|p| p.spans.clone())
    }

    /// Acts on a complaint naming `id`: flags it while pending, reports it kept, or rescues
    /// it from the rescue buffer (its spans go out with the next flush, the decision cache
    /// then keeps its late spans too).
    pub fn resolve(&self, id: &TraceId, mark: &Mark) -> Resolved {
        let shard_lock = &self.shards[self.shard_of(id)];
        {
            let shard = shard_lock.lock();
            if shard.traces.contains_key(id) {
                self.hooks.marks.flag(*id, mark.clone());
                return Resolved::Flagged;
            }
            if shard.cache.get(id) == Some(true) {
                return Resolved::AlreadySampled;
            }
        }
        let indexed = self.hooks.index.as_ref().and_then(|ix| ix.summary(id));
        if indexed
            .as_ref()
            .is_some_and(|s| matches!(s.decision, Decision::Sampled | Decision::Rescued))
        {
            return Resolved::AlreadySampled;
        }
        // A trace dropped a moment ago may sit in the archive's block being filled: written
        // now (spilled to the ring if the disk fails).
        if let Some(a) = &self.hooks.archive {
            a.settle(id);
        }
        let held = self.hooks.rescue.as_ref().and_then(|r| r.take(id));
        let Some(mut spans) = held.or_else(|| self.archived_spans(id)) else {
            return match self.archived_decision(id) {
                Some(Decision::Sampled | Decision::Rescued) => Resolved::AlreadySampled,
                _ => Resolved::NotFound,
            };
        };
        let reasons: Vec<Arc<str>> = vec![Arc::from(mark.reason)];
        let output = *self.policies().output();
        super::stamp::kept(
            &mut spans,
            &crate::policy::Verdict::default(),
            &reasons,
            Some(mark),
            &output,
        );
        shard_lock.lock().cache.record(id, true, 0);
        if let Some(ix) = &self.hooks.index {
            ix.set_decision(id, Decision::Rescued, Some(mark.reason));
        }
        let decided = if self.journaling() {
            vec![super::Decided {
                id: *id,
                sampled: true,
                reasons,
            }]
        } else {
            Vec::new()
        };
        self.push_outbox(Kept {
            spans,
            traces: 1,
            decided,
            ..Kept::default()
        });
        Resolved::Rescued
    }
}
