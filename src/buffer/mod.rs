//! Trace buffer: the stage between the receivers and the exporters. Spans are grouped by
//! trace id in sharded maps; each trace waits for its deadline (`decision_wait` after its
//! first span, or `decision_wait_after_root_received` after its root), then the policies
//! decide it. Kept traces go to the outbox, which the decider task hands to the exporters.
//! When a bound is reached the oldest traces are decided early, never dropped unseen.

mod cache;
mod journal;
mod shard;
pub(crate) mod stamp;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;

use crate::model::{Span, TraceId};
use crate::policy::Policies;
use crate::support::index::{Decision, Slot, Summary};
use crate::support::Hooks;

pub use cache::DecisionCache;
pub use journal::{merge as merge_decision, Decided, DecisionLog};
use shard::Shard;
pub use support::Resolved;

/// Buffer settings, from `processors.tail_sampling`.
#[derive(Debug, Clone)]
pub struct BufferCfg {
    pub decision_wait: Duration,
    pub decision_wait_after_root_received: Option<Duration>,
    pub num_traces: usize,
    pub max_bytes: usize,
    pub sampled_cache_size: usize,
    pub non_sampled_cache_size: usize,
    pub num_shards: usize,
    pub maximum_trace_size_bytes: Option<usize>,
}

impl BufferCfg {
    /// `max_bytes` is the resolved byte bound (`crate::memory::Budget::max_buffer_bytes`).
    pub fn from_config(c: &crate::config::TailSamplingCfg, max_bytes: usize) -> BufferCfg {
        BufferCfg {
            decision_wait: c.decision_wait,
            decision_wait_after_root_received: c.decision_wait_after_root_received,
            num_traces: c.num_traces,
            max_bytes,
            sampled_cache_size: c.sampled_cache_size,
            non_sampled_cache_size: c.non_sampled_cache_size,
            num_shards: c.num_shards,
            maximum_trace_size_bytes: c.maximum_trace_size_bytes,
        }
    }
}

/// Why a trace was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Its deadline passed.
    Deadline,
    /// `num_traces` was reached and it was the oldest.
    NumTraces,
    /// The byte bound was reached and it was the oldest.
    Bytes,
    /// It grew past `maximum_trace_size_bytes`.
    TraceSize,
    /// Shutdown.
    Shutdown,
    /// Resident memory passed the soft level and it was the oldest.
    Memory,
}

impl Trigger {
    const ALL: [Trigger; 6] = [
        Trigger::Deadline,
        Trigger::NumTraces,
        Trigger::Bytes,
        Trigger::TraceSize,
        Trigger::Shutdown,
        Trigger::Memory,
    ];

    fn label(self) -> &'static str {
        match self {
            Trigger::Deadline => "deadline",
            Trigger::NumTraces => "num_traces",
            Trigger::Bytes => "bytes",
            Trigger::TraceSize => "trace_size",
            Trigger::Shutdown => "shutdown",
            Trigger::Memory => "memory",
        }
    }
}

/// Kept spans waiting for the exporters.
#[derive(Debug, Default)]
pub struct Outbox {
    pub spans: Vec<Span>,
    pub traces: usize,
    pub bytes: usize,
}

/// Spans of kept traces collected under a shard lock, moved to the outbox after it.
#[derive(Default)]
struct Kept {
    spans: Vec<Span>,
    traces: usize,
    /// Summaries of decided traces that carry an indexed value, with their index slots.
    summaries: Vec<(Slot, Summary)>,
    /// Dropped traces, for the rescue buffer and the archive.
    dropped: Vec<(TraceId, Vec<Span>)>,
    /// Their index slots, side by side: the archive takes their keys from the index.
    dropped_slots: Vec<Option<Slot>>,
    /// Late spans of dropped traces, for the archive only.
    late_dropped: Vec<(TraceId, Vec<Span>)>,
    /// Decision delays past the deadline (seconds) and decisions by trigger and outcome:
    /// recorded once the lock is released, a handful of metric calls per batch.
    delays: Vec<f64>,
    decisions: [[u64; 2]; 6],
    /// For the decision log, when there is one.
    decided: Vec<Decided>,
}

/// What one ingest call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub spans: usize,
    pub new_traces: usize,
    /// Late spans of kept traces, sent on at once.
    pub late_kept: usize,
    /// Late spans of dropped traces, dropped with their trace.
    pub late_dropped: usize,
    /// Traces decided early because a bound was reached.
    pub decided_early: usize,
}

/// The shared buffer. Cheap to share by `Arc`; every lock is held only for map work
/// and policy evaluation of the traces being decided, never across an `.await`.
pub struct Buffer {
    cfg: BufferCfg,
    shards: Box<[Mutex<Shard>]>,
    policies: RwLock<Arc<Policies>>,
    outbox: Mutex<Outbox>,
    /// Bytes in the outbox, readable without its lock (receivers check it to push back).
    outbox_bytes: AtomicUsize,
    held_bytes: AtomicUsize,
    held_traces: AtomicUsize,
    /// A lower byte bound set by the memory guard while resident memory is past its soft
    /// level (`usize::MAX` otherwise); traces past it are decided early, trigger `memory`.
    memory_cap: AtomicUsize,
    /// The support layer's hooks (index, rescue buffer, complaint marks).
    hooks: Hooks,
    /// Where decisions are made durable (the write-ahead log), if anywhere.
    journal: OnceLock<Arc<dyn DecisionLog>>,
    /// Decisions replayed from the log, applied instead of the policies.
    presets: Mutex<HashMap<TraceId, Decided>>,
    has_presets: AtomicBool,
}

impl Buffer {
    pub fn new(cfg: BufferCfg, policies: Policies) -> Buffer {
        let n = cfg.num_shards.max(1).next_power_of_two();
        let per_sampled = cfg.sampled_cache_size.div_ceil(n);
        let per_dropped = cfg.non_sampled_cache_size.div_ceil(n);
        let shards = (0..n)
            .map(|_| Mutex::new(Shard::new(per_sampled, per_dropped)))
            .collect();
        Buffer {
            cfg,
            shards,
            policies: RwLock::new(Arc::new(policies)),
            outbox: Mutex::new(Outbox::default()),
            outbox_bytes: AtomicUsize::new(0),
            held_bytes: AtomicUsize::new(0),
            held_traces: AtomicUsize::new(0),
            memory_cap: AtomicUsize::new(usize::MAX),
            hooks: Hooks::default(),
            journal: OnceLock::new(),
            presets: Mutex::new(HashMap::new()),
            has_presets: AtomicBool::new(false),
        }
    }

    pub fn cfg(&self) -> &BufferCfg {
        &self.cfg
    }

    /// Replaces the policies; traces already buffered are decided with the new ones.
    pub fn set_policies(&self, policies: Policies) {
        *self.policies.write() = Arc::new(policies);
    }

    pub fn policies(&self) -> Arc<Policies> {
        Arc::clone(&self.policies.read())
    }

    fn shard_of(&self, id: &TraceId) -> usize {
        // The low bytes of a W3C trace id are random.
        (u64::from_le_bytes(id[8..16].try_into().expect("8 bytes")) as usize)
            & (self.shards.len() - 1)
    }

    pub fn held_traces(&self) -> usize {
        self.held_traces.load(Ordering::Relaxed)
    }

    pub fn held_bytes(&self) -> usize {
        self.held_bytes.load(Ordering::Relaxed)
    }

    pub fn outbox_bytes(&self) -> usize {
        self.outbox_bytes.load(Ordering::Relaxed)
    }

    /// Sets (or with `None` lifts) the memory guard's lower byte bound.
    pub fn set_memory_cap(&self, cap: Option<usize>) {
        self.memory_cap
            .store(cap.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    /// Decides the oldest traces of every shard until each is under the memory cap.
    /// Returns how many were decided.
    pub fn relieve(&self, now: Instant) -> usize {
        let cap = self.memory_cap.load(Ordering::Relaxed);
        if cap == usize::MAX {
            return 0;
        }
        let per_shard = cap.div_ceil(self.shards.len());
        let mut decided = 0;
        for m in self.shards.iter() {
            let mut kept = Kept::default();
            let mut shard = m.lock();
            let before = (shard.traces.len(), shard.bytes);
            while shard.bytes > per_shard {
                let Some(id) = shard.oldest() else { break };
                self.decide_locked(&mut shard, &id, now, Trigger::Memory, &mut kept);
                decided += 1;
            }
            self.account(before, (shard.traces.len(), shard.bytes));
            drop(shard);
            self.push_outbox(kept);
        }
        if decided > 0 {
            metrics::counter!(
                "casefile_processor_tail_sampling_sampling_traces_decided_early_total"
            )
            .increment(decided as u64);
        }
        decided
    }

    /// Adds spans. Spans of traces already decided follow the cached decision.
    pub fn ingest(&self, spans: Vec<Span>, now: Instant) -> Ingested {
        let mut stats = Ingested {
            spans: spans.len(),
            ..Default::default()
        };
        let mut buckets: Vec<Vec<Span>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for s in spans {
            buckets[self.shard_of(&s.trace_id())].push(s);
        }
        // Spans of one trace side by side (stable: their order is kept), so each trace
        // grows by exactly its spans in this request (no spare capacity is held) and the
        // index reads each trace's values in one pass. Runs are marked where they start:
        // their length, and the trace's index slot if it carries an indexed value.
        let mut runs: Vec<Vec<(usize, Option<Slot>)>> = Vec::with_capacity(buckets.len());
        for bucket in &mut buckets {
            bucket.sort_by_key(|s| s.trace_id());
            runs.push(run_lengths(bucket));
        }
        if let Some(index) = &self.hooks.index {
            let mut scan = index.scanner();
            let mut pairs = crate::support::index::Found::default();
            // (bucket, run start) of each trace with keys, in the order the index answers.
            let mut with_keys = Vec::new();
            for (b, (bucket, runs)) in buckets.iter().zip(&runs).enumerate() {
                for (start, &(len, _)) in runs.iter().enumerate() {
                    if len > 0 {
                        let spans = &bucket[start..start + len];
                        if scan.trace(spans[0].trace_id(), spans, &mut pairs) {
                            with_keys.push((b, start));
                        }
                    }
                }
            }
            let slots = index.add(pairs);
            debug_assert_eq!(slots.len(), with_keys.len());
            for ((b, start), slot) in with_keys.into_iter().zip(slots) {
                runs[b][start].1 = Some(slot);
            }
        }
        let per_shard_traces = self.cfg.num_traces.div_ceil(self.shards.len()).max(1);
        let cap = self.memory_cap.load(Ordering::Relaxed);
        let per_shard_bytes = self.cfg.max_bytes.div_ceil(self.shards.len()).max(1);
        let per_shard_cap = cap.div_ceil(self.shards.len()).clamp(1, per_shard_bytes);
        let mut kept = Kept::default();
        let output = *self.policies.read().output();
        for (i, (bucket, runs)) in buckets.into_iter().zip(runs).enumerate() {
            if bucket.is_empty() {
                continue;
            }
            let mut shard = self.shards[i].lock();
            let before = (shard.traces.len(), shard.bytes);
            let mut too_large = Vec::new();
            for (span, run) in bucket.into_iter().zip(runs) {
                match shard.add(span, run, now, &self.cfg, &mut stats) {
                    shard::Added::Pending(id, size) => {
                        if self
                            .cfg
                            .maximum_trace_size_bytes
                            .is_some_and(|max| size > max)
                        {
                            too_large.push(id);
                        }
                    }
                    shard::Added::LateKept(mut span, threshold) => {
                        stamp::late(&mut span, threshold, &output);
                        // Logged again after the late span, so a replay keeps it too.
                        if self.journaling()
                            && kept.decided.last().is_none_or(|d| d.id != span.trace_id())
                        {
                            kept.decided.push(Decided {
                                id: span.trace_id(),
                                sampled: true,
                                reasons: Vec::new(),
                            });
                        }
                        kept.spans.push(span)
                    }
                    shard::Added::LateDropped(span) => {
                        if self.hooks.archive.is_some() {
                            kept.late_dropped.push((span.trace_id(), vec![span]));
                        }
                    }
                }
            }
            for id in too_large {
                self.decide_locked(&mut shard, &id, now, Trigger::TraceSize, &mut kept);
            }
            while shard.traces.len() > per_shard_traces || shard.bytes > per_shard_cap {
                let trigger = if shard.traces.len() > per_shard_traces {
                    Trigger::NumTraces
                } else if shard.bytes > per_shard_bytes {
                    Trigger::Bytes
                } else {
                    Trigger::Memory
                };
                let Some(id) = shard.oldest() else { break };
                self.decide_locked(&mut shard, &id, now, trigger, &mut kept);
                stats.decided_early += 1;
            }
            self.account(before, (shard.traces.len(), shard.bytes));
        }
        self.count_ingest(&stats);
        self.push_outbox(kept);
        stats
    }

    /// Decides every trace whose deadline has passed. Returns how many were decided.
    pub fn decide_due(&self, now: Instant) -> usize {
        let mut decided = 0;
        for m in self.shards.iter() {
            let mut kept = Kept::default();
            let mut shard = m.lock();
            let before = (shard.traces.len(), shard.bytes);
            while let Some(id) = shard.pop_due(now) {
                self.decide_locked(&mut shard, &id, now, Trigger::Deadline, &mut kept);
                decided += 1;
            }
            self.account(before, (shard.traces.len(), shard.bytes));
            drop(shard);
            self.push_outbox(kept);
        }
        decided
    }

    /// Decides every pending trace now (shutdown), or drops them all when `drop_pending`.
    pub fn decide_all(&self, now: Instant, drop_pending: bool) -> usize {
        let mut decided = 0;
        for m in self.shards.iter() {
            let mut kept = Kept::default();
            let mut shard = m.lock();
            let before = (shard.traces.len(), shard.bytes);
            let ids: Vec<TraceId> = shard.traces.keys().copied().collect();
            for id in ids {
                if drop_pending {
                    shard.remove(&id);
                } else {
                    self.decide_locked(&mut shard, &id, now, Trigger::Shutdown, &mut kept);
                }
                decided += 1;
            }
            self.account(before, (shard.traces.len(), shard.bytes));
            drop(shard);
            self.push_outbox(kept);
        }
        decided
    }

    /// Takes every pending trace out without deciding it (a member of a tier handing its
    /// traces over before it stops): their spans, by trace.
    pub fn take_pending(&self) -> Vec<Span> {
        let mut out = Vec::new();
        for m in self.shards.iter() {
            let mut shard = m.lock();
            let before = (shard.traces.len(), shard.bytes);
            let ids: Vec<TraceId> = shard.traces.keys().copied().collect();
            for id in ids {
                if let Some(p) = shard.remove(&id) {
                    out.extend(p.spans);
                }
            }
            self.account(before, (shard.traces.len(), shard.bytes));
        }
        out
    }

    /// Takes everything waiting in the outbox.
    pub fn take_outbox(&self) -> Outbox {
        let out = std::mem::take(&mut *self.outbox.lock());
        self.outbox_bytes.fetch_sub(out.bytes, Ordering::Relaxed);
        out
    }

    /// The time the earliest pending trace is due, if any (for tests and the decider).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.shards
            .iter()
            .filter_map(|m| m.lock().next_deadline())
            .min()
    }

    fn decide_locked(
        &self,
        shard: &mut Shard,
        id: &TraceId,
        now: Instant,
        trigger: Trigger,
        kept: &mut Kept,
    ) {
        let Some(pending) = shard.remove(id) else {
            return;
        };
        let policies = self.policies();
        let mut verdict = match self.take_preset(id) {
            Some(d) => crate::policy::Verdict {
                sampled: d.sampled,
                policies: d.reasons,
                ..Default::default()
            },
            None => policies.evaluate(id, &pending.spans, now),
        };
        let mark = self.mark_of(id);
        let sampled = verdict.sampled || mark.is_some();
        shard.cache.record(id, sampled, verdict.threshold);
        let delay = now.saturating_duration_since(pending.deadline);
        kept.delays.push(delay.as_secs_f64());
        kept.decisions[trigger as usize][sampled as usize] += 1;
        let mut reasons = std::mem::take(&mut verdict.policies);
        if let Some(m) = mark
            .as_ref()
            .filter(|m| !reasons.iter().any(|r| **r == *m.reason))
        {
            reasons.push(m.reason.into());
        }
        if self.journaling() {
            kept.decided.push(Decided {
                id: *id,
                sampled,
                reasons: if sampled { reasons.clone() } else { Vec::new() },
            });
        }
        if let Some(slot) = pending.index {
            let decision = if sampled {
                Decision::Sampled
            } else {
                Decision::Dropped
            };
            kept.summaries.push((
                slot,
                Summary::of(*id, &pending.spans, decision, reasons.clone()),
            ));
        }
        if !sampled {
            if self.hooks.rescue.is_some() || self.hooks.archive.is_some() {
                kept.dropped.push((*id, pending.spans));
                kept.dropped_slots.push(pending.index);
            }
            return;
        }
        kept.traces += 1;
        let mut spans = pending.spans;
        stamp::kept(
            &mut spans,
            &verdict,
            &reasons,
            mark.as_ref(),
            policies.output(),
        );
        kept.spans.extend(spans);
    }

    fn push_outbox(&self, kept: Kept) {
        // Durable before the exporters can see the spans.
        self.journal_record(&kept.decided);
        record_decisions(&kept.delays, &kept.decisions);
        self.after_decisions(
            kept.summaries,
            kept.dropped,
            &kept.dropped_slots,
            kept.late_dropped,
        );
        if kept.spans.is_empty() {
            return;
        }
        let bytes: usize = kept.spans.iter().map(Span::size).sum();
        let mut out = self.outbox.lock();
        out.traces += kept.traces;
        out.bytes += bytes;
        out.spans.extend(kept.spans);
        self.outbox_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn account(&self, before: (usize, usize), after: (usize, usize)) {
        apply_delta(&self.held_traces, before.0, after.0);
        apply_delta(&self.held_bytes, before.1, after.1);
    }

    fn count_ingest(&self, s: &Ingested) {
        if s.new_traces > 0 {
            metrics::counter!("casefile_processor_tail_sampling_new_trace_id_received_total")
                .increment(s.new_traces as u64);
        }
        if s.late_kept > 0 {
            metrics::counter!("casefile_processor_tail_sampling_sampling_late_span_total", "decision" => "sampled").increment(s.late_kept as u64);
        }
        if s.late_dropped > 0 {
            metrics::counter!("casefile_processor_tail_sampling_sampling_late_span_total", "decision" => "dropped").increment(s.late_dropped as u64);
        }
        if s.decided_early > 0 {
            metrics::counter!(
                "casefile_processor_tail_sampling_sampling_traces_decided_early_total"
            )
            .increment(s.decided_early as u64);
        }
    }
}

/// For each span: how many spans of its trace start a run here (0 inside a run), and
/// room for the run's index slot.
fn run_lengths(spans: &[Span]) -> Vec<(usize, Option<Slot>)> {
    let mut runs = vec![(0, None); spans.len()];
    let mut start = 0;
    for i in 1..=spans.len() {
        if i == spans.len() || spans[i].trace_id() != spans[start].trace_id() {
            runs[start].0 = i - start;
            start = i;
        }
    }
    runs
}

fn record_decisions(delays: &[f64], decisions: &[[u64; 2]; 6]) {
    if !delays.is_empty() {
        let h =
            metrics::histogram!("casefile_processor_tail_sampling_sampling_decision_delay_seconds");
        delays.iter().for_each(|d| h.record(*d));
    }
    for (trigger, counts) in Trigger::ALL.iter().zip(decisions) {
        for (sampled, n) in ["false", "true"].into_iter().zip(counts) {
            if *n > 0 {
                metrics::counter!("casefile_processor_tail_sampling_sampling_decision_total", "trigger" => trigger.label(), "sampled" => sampled).increment(*n);
            }
        }
    }
}

fn apply_delta(a: &AtomicUsize, before: usize, after: usize) {
    if after >= before {
        a.fetch_add(after - before, Ordering::Relaxed);
    } else {
        a.fetch_sub(before - after, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
