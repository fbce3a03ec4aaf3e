//! Decider: the one task that drives decisions. Every tick it decides the traces whose
//! deadline has passed and moves kept spans from the buffer's outbox to the exporters,
//! encoded as ExportTraceServiceRequests without re-encoding any span.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::buffer::Buffer;
use crate::export::chunk::request_chunks;
use crate::export::{ExportBatch, Exporters};
use crate::storage::Storage;
use crate::wire::encode::encode_request;

/// How often due traces are decided: decisions land within one tick of their deadline.
pub fn tick_for(decision_wait: Duration) -> Duration {
    (decision_wait / 20).clamp(Duration::from_millis(5), Duration::from_millis(25))
}

/// Runs until `stop` turns true; then returns without deciding what is pending
/// (shutdown does that, see [`finish`]). With `storage`, each tick ends with a
/// checkpoint that lets the write-ahead log delete what is decided and exported.
pub async fn run(
    buffer: Arc<Buffer>,
    exporters: Exporters,
    tick: Duration,
    mut stop: watch::Receiver<bool>,
    storage: Option<Arc<Storage>>,
) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let now = Instant::now();
        buffer.decide_due(now);
        if let Some(rescue) = buffer.rescue_buffer() {
            rescue.expire(now);
        }
        flush(&buffer, &exporters, storage.as_deref()).await;
        if let Some(s) = &storage {
            s.checkpoint(
                now,
                exporters.peek_next_batch(),
                exporters.oldest_unfinished(),
            );
        }
        metrics::gauge!("casefile_processor_tail_sampling_sampling_traces_on_memory")
            .set(buffer.held_traces() as f64);
        metrics::gauge!("casefile_processor_tail_sampling_sampling_bytes_on_memory")
            .set(buffer.held_bytes() as f64);
    }
}

/// Sends everything in the outbox to the exporters, in requests within
/// [`Exporters::request_limits`] (`sending_queue.batch`); with `storage`, tells the log
/// which spans each batch holds (so it can list them once delivered).
pub async fn flush(buffer: &Buffer, exporters: &Exporters, storage: Option<&Storage>) {
    let out = buffer.take_outbox();
    if out.spans.is_empty() {
        return;
    }
    let mut traces = out.traces;
    for range in request_chunks(&out.spans, exporters.request_limits()) {
        let chunk = &out.spans[range];
        let request = encode_request(chunk);
        let batch = ExportBatch {
            request: request.into(),
            spans: chunk.len(),
            traces: std::mem::take(&mut traces),
            seq: exporters.next_batch(),
        };
        if let Some(s) = storage {
            s.handed(batch.seq, chunk);
        }
        metrics::counter!("casefile_processor_tail_sampling_sampled_spans_total")
            .increment(chunk.len() as u64);
        exporters.send(Arc::new(batch)).await;
    }
    // Encoded for export already: the spans themselves go to the archive.
    if let Some(archive) = buffer.archive() {
        archive.record_kept(out.spans);
    }
}

/// Shutdown: decide every pending trace (unless told to drop them) and hand the kept
/// ones to the exporters.
pub async fn finish(buffer: &Buffer, exporters: &Exporters, drop_pending: bool) -> usize {
    let n = buffer.decide_all(Instant::now(), drop_pending);
    // Not logged as delivered: after shutdown no checkpoint runs, and a log kept because
    // spans were left undelivered must replay them all.
    flush(buffer, exporters, None).await;
    n
}
