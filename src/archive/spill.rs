//! The rescue ring as the archive's fallback. While the archive writes, dropped traces go
//! to disk only (the ring copying every span too cost about 0.2 µs a span and 100+ MiB of
//! memory for rescues the archive answers as well); the dropped traces of a block the
//! archive cannot write (disk full, write error, a full queue, a stopped writer) are put in
//! the ring instead, so a complaint about them is still rescued while the disk fails.

use std::sync::atomic::Ordering::Relaxed;

use super::builder::Filled;
use super::format::{self, DROPPED, SPANS};
use super::{pack, Inner};
use crate::model::{Span, TraceId};

/// Puts the block's dropped traces in the ring, if there is one; returns how many.
pub(super) fn spill(inner: &Inner, block: &Filled) -> usize {
    let Some(ring) = inner.spill.get().filter(|r| r.is_enabled()) else {
        return 0;
    };
    let (Some((dict, _)), Some(entries)) =
        (pack::split(&block.bytes), format::entries(block.entries()))
    else {
        return 0;
    };
    let traces: Vec<(TraceId, Vec<Span>)> = entries
        .iter()
        .filter(|(e, ..)| e.decision == DROPPED && e.flags & SPANS != 0)
        .filter_map(|(e, ..)| Some((e.id, pack::unpack(&e.id, e.start, e.spans, &dict)?)))
        .collect();
    ring.insert_many(
        traces.iter().map(|(id, spans)| (*id, spans.as_slice())),
        tokio::time::Instant::now(),
    );
    inner
        .counters
        .spilled
        .fetch_add(traces.len() as u64, Relaxed);
    metrics::counter!("casefile_archive_spilled_traces_total").increment(traces.len() as u64);
    traces.len()
}
