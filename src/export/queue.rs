//! One exporter's bounded queue and the workers that drain it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{retry, ExportBatch, Exporter};

/// A bounded multi-consumer queue of batches: an mpsc channel whose receiver the workers
/// take turns on. `closed` (shared by all exporters) ends it: pushes are refused, pops
/// return what is left and then `None`.
pub(super) struct Queue {
    tx: mpsc::Sender<Arc<ExportBatch>>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Arc<ExportBatch>>>,
}

impl Queue {
    pub(super) fn new(capacity: usize) -> Queue {
        let (tx, rx) = mpsc::channel(capacity);
        Queue {
            tx,
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    /// Batches waiting (slots taken; a slot is free again once a worker has taken its batch).
    pub(super) fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// At or above 90 % of capacity. Two atomic loads.
    pub(super) fn saturated(&self) -> bool {
        self.len() * 10 >= self.tx.max_capacity() * 9
    }

    pub(super) fn report_len(&self, name: &str) {
        metrics::gauge!("casefile_exporter_queue_size", "exporter" => name.to_owned())
            .set(self.len() as f64);
    }

    /// Waits for a free slot. Gives the batch back if the queue is (or becomes) closed.
    pub(super) async fn push(
        &self,
        batch: Arc<ExportBatch>,
        closed: &mut watch::Receiver<bool>,
    ) -> Result<(), Arc<ExportBatch>> {
        if *closed.borrow() {
            return Err(batch);
        }
        tokio::select! {
            biased;
            permit = self.tx.reserve() => match permit {
                Ok(permit) => {
                    permit.send(batch);
                    Ok(())
                }
                Err(_) => Err(batch),
            },
            _ = closed.wait_for(|c| *c) => Err(batch),
        }
    }

    /// The next batch; once closed, what is left and then `None`.
    async fn pop(&self, closed: &mut watch::Receiver<bool>) -> Option<Arc<ExportBatch>> {
        let mut rx = self.rx.lock().await;
        tokio::select! {
            biased;
            batch = rx.recv() => batch,
            // Closed (or the handle is gone): take what is there without waiting.
            _ = closed.wait_for(|c| *c) => rx.try_recv().ok(),
        }
    }

    /// Empties the queue without waiting (after the workers stopped); returns its spans.
    pub(super) async fn drain_spans(&self, tracker: &super::Tracker) -> u64 {
        let mut rx = self.rx.lock().await;
        let mut spans = 0;
        while let Ok(batch) = rx.try_recv() {
            spans += batch.spans as u64;
            tracker.finished(batch.seq);
        }
        spans
    }
}

/// One worker: takes batches off the exporter's queue and delivers them (with retries)
/// until the queue is closed and empty.
pub(super) async fn run_worker(ex: Arc<Exporter>, mut closed: watch::Receiver<bool>) {
    while let Some(batch) = ex.queue.pop(&mut closed).await {
        // No await between taking the batch and counting it in flight: an abort at the
        // shutdown deadline always finds it counted.
        ex.counters
            .in_flight
            .fetch_add(batch.spans as u64, Ordering::Relaxed);
        ex.queue.report_len(&ex.name);
        // Takes each part of the batch out of `in_flight` as it is finished.
        retry::deliver(&ex, &batch).await;
        ex.tracker.finished(batch.seq);
        if ex.queue.len() == 0 {
            ex.sink.idle().await;
        }
    }
    ex.sink.idle().await;
}
