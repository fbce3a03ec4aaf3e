//! Delivering one batch: exponential backoff on retryable failures, as the Collector's
//! `retry_on_failure` does it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::config::RetryCfg;
use super::{Accepted, ExportBatch, Exporter};

/// Exponential backoff with jitter: each interval is the current one randomized by
/// ±`randomization_factor`, the current one grows by `multiplier` up to `max_interval`,
/// and retrying stops once the next wait would end past `max_elapsed_time` (0 = never).
pub(super) struct Backoff {
    current: Duration,
    max_interval: Duration,
    multiplier: f64,
    randomization: f64,
    max_elapsed: Option<Duration>,
    start: Instant,
}

impl Backoff {
    pub(super) fn new(cfg: &RetryCfg) -> Backoff {
        let max_elapsed = cfg.max_elapsed_time.get();
        Backoff {
            // At least 1 ms: a zero interval would never grow and retries would spin.
            current: cfg.initial_interval.get().max(Duration::from_millis(1)),
            max_interval: cfg.max_interval.get().max(cfg.initial_interval.get()),
            multiplier: if cfg.multiplier.is_finite() {
                cfg.multiplier.max(1.0)
            } else {
                1.0
            },
            randomization: if cfg.randomization_factor.is_finite() {
                cfg.randomization_factor.clamp(0.0, 1.0)
            } else {
                0.0
            },
            max_elapsed: (!max_elapsed.is_zero()).then_some(max_elapsed),
            start: Instant::now(),
        }
    }

    /// The wait before the next attempt (at least `hint`, the server's wish), or `None`
    /// when it is time to give up.
    pub(super) fn next(&mut self, hint: Option<Duration>) -> Option<Duration> {
        let spread = self.randomization * (2.0 * fastrand::f64() - 1.0);
        let jittered = self.current.mul_f64(1.0 + spread);
        self.current = self.current.mul_f64(self.multiplier).min(self.max_interval);
        let delay = hint.map_or(jittered, |h| h.max(jittered));
        match self.max_elapsed {
            Some(max) if self.start.elapsed() + delay > max => None,
            _ => Some(delay),
        }
    }
}

/// Sends `batch` until it is accepted, fails for good, or retrying is over; counts and
/// logs the outcome.
pub(super) async fn deliver(ex: &Exporter, batch: &ExportBatch) {
    let name = ex.name.as_str();
    let mut backoff = ex.retry.enabled.then(|| Backoff::new(&ex.retry));
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let t0 = Instant::now();
        let result = ex.sink.export(batch).await;
        metrics::histogram!("casefile_exporter_request_duration_seconds", "exporter" => name.to_owned())
            .record(t0.elapsed().as_secs_f64());
        let err = match result {
            Ok(accepted) => return accepted_batch(ex, batch, accepted, attempt),
            Err(e) => e,
        };
        if err.is_retryable() {
            if let Some(delay) = backoff.as_mut().and_then(|b| b.next(err.retry_after())) {
                ex.counters.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("casefile_exporter_retries_total", "exporter" => name.to_owned())
                    .increment(1);
                if attempt == 1 {
                    tracing::warn!(exporter = %name, error = %err, spans = batch.spans, retry_in = ?delay, "export failed; will retry");
                } else {
                    tracing::debug!(exporter = %name, error = %err, attempt, retry_in = ?delay, "export failed again; will retry");
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        let why = if !err.is_retryable() {
            "permanent error"
        } else if ex.retry.enabled {
            "retries exhausted (max_elapsed_time)"
        } else {
            "retry_on_failure disabled"
        };
        tracing::error!(exporter = %name, error = %err, spans = batch.spans, attempts = attempt, "export failed, batch dropped: {why}");
        ex.count_failed(batch.spans as u64);
        return;
    }
}

fn accepted_batch(ex: &Exporter, batch: &ExportBatch, accepted: Accepted, attempts: u32) {
    let name = ex.name.as_str();
    let rejected = accepted.rejected_spans.clamp(0, batch.spans as i64) as u64;
    let sent = batch.spans as u64 - rejected;
    ex.counters.sent.fetch_add(sent, Ordering::Relaxed);
    metrics::counter!("casefile_exporter_sent_spans_total", "exporter" => name.to_owned())
        .increment(sent);
    if rejected > 0 {
        ex.counters.rejected.fetch_add(rejected, Ordering::Relaxed);
        metrics::counter!("casefile_exporter_rejected_spans_total", "exporter" => name.to_owned())
            .increment(rejected);
        tracing::warn!(exporter = %name, rejected, message = %accepted.error_message, "downstream rejected part of a batch");
    } else if !accepted.error_message.is_empty() {
        tracing::warn!(exporter = %name, message = %accepted.error_message, "downstream accepted with a warning");
    }
    if attempts > 1 {
        tracing::info!(exporter = %name, attempts, spans = batch.spans, "export succeeded after retrying");
    }
}
