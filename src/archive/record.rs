//! The archive's write side as the decider calls it: decided traces packed into the block
//! being filled on the caller's thread ([`super::builder`]), full blocks handed to the
//! writer's bounded queue, and what cannot be written spilled to the rescue ring.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::TrySendError;
use std::sync::Arc;

use super::builder::{Builder, Filled};
use super::config::Traces;
use super::writer::Msg;
use super::{spill, Archive, Inner};
use crate::model::{Span, TraceId};
use crate::support::index::TraceKeys;

impl Archive {
    /// Runs `f` on the block being filled, then hands the blocks it filled to the writer.
    /// A panic in `f` turns archiving off (logged) and never reaches the caller.
    fn fill(&self, f: impl FnOnce(&mut Builder, &Inner, &mut Vec<Filled>)) {
        let inner = self.inner();
        if inner.off.load(Relaxed) {
            return;
        }
        let mut full = Vec::new();
        {
            let mut b = inner.builder.lock();
            let run = std::panic::AssertUnwindSafe(|| f(&mut b, inner, &mut full));
            if std::panic::catch_unwind(run).is_err() {
                inner.off.store(true, Relaxed);
                *b = Builder::default();
                tracing::error!("archive: filling a block panicked; archiving is off");
                return;
            }
        }
        for block in full {
            self.send(block);
        }
    }

    /// Hands a full block to the writer, or drops it when the queue is full (counted by
    /// trace; its dropped traces go to the rescue ring).
    fn send(&self, block: Filled) {
        match self.handle.tx.try_send(Msg::Block(block)) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Block(block))) => {
                let traces = block.traces;
                self.inner()
                    .counters
                    .dropped_busy
                    .fetch_add(traces, Relaxed);
                metrics::counter!("casefile_archive_dropped_traces_total", "reason" => "busy")
                    .increment(traces);
                spill::spill(self.inner(), &block);
            }
            // Closed: the writer stopped (shutdown, or after a panic).
            Err(TrySendError::Disconnected(Msg::Block(block))) => {
                spill::spill(self.inner(), &block);
            }
            Err(_) => {}
        }
    }

    /// Gives the archive the rescue ring as its fallback: the dropped traces of blocks it
    /// cannot write go there ([`spill`]). Without it they are only counted.
    pub fn spill_to(&self, ring: Arc<crate::support::rescue::RescueBuffer>) {
        let _ = self.inner().spill.set(ring);
    }

    /// True while the archive takes dropped traces (off after a bug stopped it): the
    /// rescue ring then holds only what it spills.
    pub fn is_writing(&self) -> bool {
        !self.inner().off.load(Relaxed)
    }

    /// Dropped traces (at decision, and late spans of dropped traces), packed on the
    /// caller's thread while their bytes are in its cache. Never blocks.
    pub fn record_dropped(&self, traces: Vec<(TraceId, Vec<Span>)>) {
        self.record_dropped_with_keys(traces, TraceKeys::default());
    }

    /// [`Archive::record_dropped`] with the keys the index holds for the traces (by
    /// position; the others are read from their spans): the index's digests, stored as
    /// they are.
    pub fn record_dropped_with_keys(&self, traces: Vec<(TraceId, Vec<Span>)>, known: TraceKeys) {
        if !traces.is_empty() {
            self.fill(|b, inner, full| b.dropped(inner, &traces, &known, full));
        }
    }

    /// True when kept traces' spans are archived (`traces: all`): their keys are then worth
    /// handing over ([`Archive::kept_keys`]).
    pub fn keeps_kept_spans(&self) -> bool {
        self.inner().cfg.traces == Traces::All
    }

    /// The keys the index holds for traces just kept (id, span count), by position in
    /// `ids`: their spans follow with [`Archive::record_kept`] (after export encoding) and
    /// take these keys instead of being read for them, when they come as that many spans
    /// (late spans in the same batch: read). Never blocks.
    pub fn kept_keys(&self, ids: Vec<(TraceId, u32)>, known: TraceKeys) {
        if !ids.is_empty() {
            self.fill(|b, _, _| b.kept_keys(ids, known));
        }
    }

    /// Kept spans as handed to the exporters (many traces, late spans too). Never blocks.
    pub fn record_kept(&self, spans: Vec<Span>) {
        if !spans.is_empty() {
            self.fill(|b, inner, full| b.kept(inner, spans, full));
        }
    }
}
