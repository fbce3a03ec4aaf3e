//! Delivering one batch: exponential backoff on retryable failures, as the Collector's
//! `retry_on_failure` does it, and a batch refused for its content split until the spans
//! the downstream refuses are alone.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::config::RetryCfg;
use super::split::{first_trace_id, split_request, Part};
use super::{Accepted, ExportBatch, ExportError, Exporter};

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

/// How delivering one part of a batch ended.
enum Outcome {
    /// Accepted (partial success included) and counted.
    Sent,
    /// Given up on (retries over, or an error no split can help) and counted as failed.
    Failed,
    /// Refused for what it holds: split it, or drop its one span, for this reason.
    Refused(&'static str, ExportError),
}

/// Delivers `batch`: sends it until it is accepted, fails for good, or retrying is over.
/// A batch too large for this exporter, or refused for its content, is split in two and
/// each half delivered the same way, until the refused spans are alone; those are dropped
/// and counted by reason, every other span is delivered, none twice. Returns when every
/// part is delivered or given up on, so the write-ahead log may list the batch as done.
/// Each finished part leaves `in_flight` at once, so an abort at the shutdown deadline
/// counts only the spans still undelivered.
pub(super) async fn deliver(ex: &Exporter, batch: &ExportBatch) {
    let mut parts = vec![Part {
        request: batch.request.clone(),
        spans: batch.spans,
    }];
    let mut split_once = false;
    while let Some(part) = parts.pop() {
        let too_large = ex
            .limits
            .is_some_and(|l| part.request.len() > l.max_bytes || part.spans > l.max_spans);
        let outcome = if too_large {
            let max = ex.limits.map_or(0, |l| l.max_bytes);
            Outcome::Refused(
                "too_large",
                ExportError::Config {
                    name: ex.name.clone(),
                    reason: format!(
                        "a request of {} bytes and {} spans is over the bound ({max} bytes)",
                        part.request.len(),
                        part.spans
                    ),
                },
            )
        } else {
            send_part(ex, batch, &part).await
        };
        if let Outcome::Refused(reason, err) = outcome {
            match split_request(&part.request) {
                Ok(Some((a, b))) => {
                    if !split_once && !too_large {
                        tracing::warn!(exporter = %ex.name, error = %err, spans = batch.spans, "downstream refused a batch; splitting it to isolate the spans it refuses");
                    }
                    split_once = true;
                    // Depth first, in order: the first half next.
                    parts.push(b);
                    parts.push(a);
                    continue;
                }
                Ok(None) if part.spans == 1 => {
                    let trace_id = first_trace_id(&part.request);
                    ex.count_dropped(reason, trace_id.as_deref(), &err.to_string());
                }
                Ok(None) | Err(_) => {
                    tracing::error!(exporter = %ex.name, error = %err, spans = part.spans, "export failed, batch dropped: permanent error");
                    ex.count_failed(part.spans as u64);
                }
            }
        }
        ex.counters
            .in_flight
            .fetch_sub(part.spans as u64, Ordering::Relaxed);
    }
}

/// Sends one part until it is accepted, fails for good, or retrying is over; counts the
/// outcome, except a refusal for content, which is the caller's to split.
async fn send_part(ex: &Exporter, batch: &ExportBatch, part: &Part) -> Outcome {
    let name = ex.name.as_str();
    let mut backoff = ex.retry.enabled.then(|| Backoff::new(&ex.retry));
    // The sinks read only the request: a part travels as a batch of its own.
    let sending = ExportBatch {
        request: part.request.clone(),
        spans: part.spans,
        traces: 0,
        seq: batch.seq,
    };
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let t0 = Instant::now();
        let result = ex.sink.export(&sending).await;
        metrics::histogram!("casefile_exporter_request_duration_seconds", "exporter" => name.to_owned())
            .record(t0.elapsed().as_secs_f64());
        let err = match result {
            Ok(accepted) => {
                accepted_batch(ex, &sending, accepted, attempt);
                return Outcome::Sent;
            }
            Err(e) => e,
        };
        if err.is_retryable() {
            if let Some(delay) = backoff.as_mut().and_then(|b| b.next(err.retry_after())) {
                ex.counters.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("casefile_exporter_retries_total", "exporter" => name.to_owned())
                    .increment(1);
                if attempt == 1 {
                    tracing::warn!(exporter = %name, error = %err, spans = part.spans, retry_in = ?delay, "export failed; will retry");
                } else {
                    tracing::debug!(exporter = %name, error = %err, attempt, retry_in = ?delay, "export failed again; will retry");
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        } else if let Some(reason) = err.refusal_reason() {
            return Outcome::Refused(reason, err);
        }
        let why = if !err.is_retryable() {
            "permanent error"
        } else if ex.retry.enabled {
            "retries exhausted (max_elapsed_time)"
        } else {
            "retry_on_failure disabled"
        };
        tracing::error!(exporter = %name, error = %err, spans = part.spans, attempts = attempt, "export failed, batch dropped: {why}");
        ex.count_failed(part.spans as u64);
        return Outcome::Failed;
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
