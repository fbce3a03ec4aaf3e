//! One shard of the trace buffer: its pending traces, their deadlines in arrival order,
//! and its part of the decision cache. Deadlines are FIFO queues: every trace of a shard
//! waits the same `decision_wait`, so first-seen order is deadline order, and a queue
//! front is always the next due (one queue for first-span deadlines, one for root-span
//! deadlines). An entry is live while its trace's deadline is the entry's: a stale entry
//! (the trace was decided, or its root moved the deadline) is skipped, and a newer trace
//! with the same id and the very same deadline is due then anyway. Every byte here is paid
//! once per pending trace, so the entries carry no more than that.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};

use tokio::time::Instant;

use super::{BufferCfg, DecisionCache, Ingested};
use crate::model::{Span, TraceId};
use crate::support::index::Slot;

/// A trace waiting for its decision.
#[derive(Debug)]
pub struct Pending {
    pub spans: Vec<Span>,
    pub deadline: Instant,
    /// Bytes of its spans (saturating; the shard's total is kept exact on its own).
    pub bytes: u32,
    /// It carries a value the support index holds, at this slot (its summary goes there
    /// when decided).
    pub index: Option<Slot>,
}

#[derive(Debug)]
pub struct Shard {
    pub traces: HashMap<TraceId, Pending>,
    deadlines: VecDeque<(Instant, TraceId)>,
    root_deadlines: VecDeque<(Instant, TraceId)>,
    /// Bytes held by the spans of this shard.
    pub bytes: usize,
    pub cache: DecisionCache,
}

/// Where an added span went.
pub enum Added {
    /// Into a pending trace, which now holds this many bytes.
    Pending(TraceId, usize),
    /// The trace was kept already: send the span on.
    /// With the OTEP 235 threshold its trace was kept with (0 for none).
    LateKept(Span, u64),
    /// The trace was dropped already (the span goes no further than the archive).
    LateDropped(Span),
}

impl Shard {
    pub fn new(sampled_cache: usize, dropped_cache: usize) -> Shard {
        Shard {
            traces: HashMap::new(),
            deadlines: VecDeque::new(),
            root_deadlines: VecDeque::new(),
            bytes: 0,
            cache: DecisionCache::new(sampled_cache, dropped_cache),
        }
    }

    /// Adds one span. `run` is the number of spans of its trace that arrive together,
    /// starting with this one (0 for the rest of the run): room for exactly those is made;
    /// and the index slot of the trace if it carries an indexed value.
    pub fn add(
        &mut self,
        span: Span,
        (run, index): (usize, Option<Slot>),
        now: Instant,
        cfg: &BufferCfg,
        stats: &mut Ingested,
    ) -> Added {
        let id = span.trace_id();
        let size = span.size();
        let is_root = span.is_root();
        if !self.traces.contains_key(&id) {
            match self.cache.get(&id) {
                Some(true) => {
                    stats.late_kept += 1;
                    let threshold = self.cache.threshold(&id);
                    return Added::LateKept(span, threshold);
                }
                Some(false) => {
                    stats.late_dropped += 1;
                    return Added::LateDropped(span);
                }
                None => {}
            }
            stats.new_traces += 1;
            let deadline = now + cfg.decision_wait;
            self.deadlines.push_back((deadline, id));
            self.traces.insert(
                id,
                Pending {
                    spans: Vec::new(),
                    deadline,
                    bytes: 0,
                    index: None,
                },
            );
        }
        let p = self.traces.get_mut(&id).expect("inserted above");
        if is_root {
            if let Some(after_root) = cfg.decision_wait_after_root_received {
                let d = now + after_root;
                if d < p.deadline {
                    p.deadline = d;
                    self.root_deadlines.push_back((d, id));
                }
            }
        }
        if run > 0 {
            p.spans.reserve_exact(run);
        }
        if let Some(slot) = index {
            p.index = Some(Slot::follow(p.index, slot));
        }
        p.spans.push(span);
        p.bytes = p
            .bytes
            .saturating_add(u32::try_from(size).unwrap_or(u32::MAX));
        self.bytes += size;
        Added::Pending(id, p.bytes as usize)
    }

    /// Removes a pending trace.
    pub fn remove(&mut self, id: &TraceId) -> Option<Pending> {
        let p = self.traces.remove(id)?;
        self.bytes -= p.spans.iter().map(Span::size).sum::<usize>();
        Some(p)
    }

    /// The next trace whose deadline has passed, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<TraceId> {
        loop {
            let q = match (self.deadlines.front(), self.root_deadlines.front()) {
                (Some(a), Some(b)) => {
                    if a.0 <= b.0 {
                        &mut self.deadlines
                    } else {
                        &mut self.root_deadlines
                    }
                }
                (Some(_), None) => &mut self.deadlines,
                (None, Some(_)) => &mut self.root_deadlines,
                (None, None) => return None,
            };
            let &(deadline, id) = q.front().expect("checked");
            if deadline > now {
                return None;
            }
            q.pop_front();
            if self.traces.get(&id).is_some_and(|p| p.deadline == deadline) {
                return Some(id);
            }
        }
    }

    /// The trace that arrived first, for deciding early when a bound is reached.
    pub fn oldest(&mut self) -> Option<TraceId> {
        // First-span entries are in arrival order; one whose trace is still pending names
        // the oldest (or a newer trace of the same id, which is as good a choice).
        while let Some(&(_, id)) = self.deadlines.front() {
            if self.traces.contains_key(&id) {
                return Some(id);
            }
            self.deadlines.pop_front();
        }
        self.traces.keys().next().copied()
    }

    /// The earliest queued deadline (possibly of a trace decided since).
    pub fn next_deadline(&self) -> Option<Instant> {
        let a = self.deadlines.front().map(|e| e.0);
        let b = self.root_deadlines.front().map(|e| e.0);
        a.into_iter().chain(b).min()
    }
}
