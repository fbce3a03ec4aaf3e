//! Exporters: every kept trace goes to every configured exporter (`otlp` = OTLP/gRPC,
//! `otlphttp` = OTLP/HTTP protobuf, `file` = OTLP JSON lines).
//!
//! Requests arrive already encoded ([`ExportBatch::request`]) and are sent as they are:
//! no span is decoded or re-encoded here. Each exporter owns a bounded queue drained by
//! `sending_queue.num_consumers` workers (one for `file`, so lines never interleave); a
//! full queue makes [`Exporters::send`] wait, and [`Exporters::saturated`] tells the
//! receivers to push back before that happens. Retryable failures are retried with
//! exponential backoff as `retry_on_failure` says; nothing is dropped except what is still
//! undelivered when [`Exporters::shutdown`]'s grace period ends (or what the downstream
//! refuses for good, or what outlives `max_elapsed_time`), and that is counted.
//!
//! Requests are bounded ([`Exporters::request_limits`], cut by [`chunk::request_chunks`]).
//! A batch the downstream refuses for its content is split ([`split`]) and the halves sent
//! on their own until the refused spans are isolated; only those are dropped, counted by
//! reason in `casefile_exporter_dropped_spans_total`.

pub mod chunk;
pub mod config;
pub mod split;

mod file;
pub(crate) mod grpc;
mod http;
mod queue;
mod ratelog;
mod retry;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::config::{ExporterCfg, QueueCfg, RequestLimits, RetryCfg};
use self::queue::Queue;
use self::ratelog::RateLimitedLog;

/// One export request, as the decision stage hands it on.
#[derive(Debug, Clone)]
pub struct ExportBatch {
    /// Protobuf encoding of an `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`.
    pub request: Bytes,
    /// Spans in `request`.
    pub spans: usize,
    /// Traces whose spans are in `request` (or whose last spans are, see the decider).
    pub traces: usize,
    /// Hand-over order, from [`Exporters::next_batch`]: the write-ahead log keeps a
    /// segment until every batch numbered before its watermark is finished.
    pub seq: u64,
}

/// Batches handed to the exporters and not yet finished (delivered, or given up on) by
/// every one of them: the export side of the write-ahead log's watermark.
#[derive(Default)]
struct Tracker {
    next: AtomicU64,
    /// Batch number → exporters still working on it.
    open: parking_lot::Mutex<std::collections::BTreeMap<u64, usize>>,
}

impl Tracker {
    fn begin(&self, seq: u64, exporters: usize) {
        if exporters > 0 {
            *self.open.lock().entry(seq).or_default() += exporters;
        }
    }

    fn finished(&self, seq: u64) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                open.remove(&seq);
            }
        }
    }
}

/// Why an exporter could not start, or why one export attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("exporter {name}: invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        name: String,
        endpoint: String,
        reason: String,
    },
    #[error("exporter {name}: TLS: {reason}")]
    Tls { name: String, reason: String },
    #[error("exporter {name}: {reason}")]
    Config { name: String, reason: String },
    #[error("exporter {name}: cannot open {path}: {source}")]
    OpenFile {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("exporters must be started inside a tokio runtime")]
    NoRuntime,
    #[error("gRPC status {code:?}: {message}")]
    Grpc {
        code: tonic::Code,
        message: String,
        retry_delay: Option<Duration>,
    },
    #[error("HTTP status {status}: {message}")]
    Http {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("transport error: {0}")]
    Transport(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot render the request as JSON: {0}")]
    Json(#[from] crate::wire::json::JsonError),
}

impl ExportError {
    /// Whether the OTLP specification says to retry after this failure: transport errors,
    /// timeouts, gRPC UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
    /// DATA_LOSS, RESOURCE_EXHAUSTED when the server sent RetryInfo, HTTP 429, 502, 503, 504.
    pub fn is_retryable(&self) -> bool {
        use tonic::Code;
        match self {
            ExportError::Grpc {
                code, retry_delay, ..
            } => match code {
                Code::Unavailable
                | Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::OutOfRange
                | Code::DataLoss => true,
                Code::ResourceExhausted => retry_delay.is_some(),
                _ => false,
            },
            ExportError::Http { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            ExportError::Transport(_) | ExportError::Timeout(_) => true,
            _ => false,
        }
    }

    /// When the downstream refused the request for what it holds (so a part of it may
    /// pass): the reason label of the spans it goes on refusing once isolated. gRPC
    /// INVALID_ARGUMENT, RESOURCE_EXHAUSTED without RetryInfo (a message over the
    /// server's size limit), INTERNAL (a server that cannot decode), FAILED_PRECONDITION;
    /// HTTP 400 and 413. Errors about the endpoint (authentication, permission, a wrong
    /// path) are no reason to split: every part would fail the same way.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        use tonic::Code;
        match self {
            ExportError::Grpc {
                code, retry_delay, ..
            } => match code {
                Code::InvalidArgument => Some("invalid_argument"),
                Code::ResourceExhausted if retry_delay.is_none() => Some("resource_exhausted"),
                Code::Internal => Some("internal"),
                Code::FailedPrecondition => Some("failed_precondition"),
                _ => None,
            },
            ExportError::Http { status: 400, .. } => Some("http_400"),
            ExportError::Http { status: 413, .. } => Some("http_413"),
            _ => None,
        }
    }

    /// The wait the server asked for (gRPC RetryInfo, HTTP Retry-After), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExportError::Grpc { retry_delay, .. } => *retry_delay,
            ExportError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What a downstream accepted: a partial success names the spans it rejected.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub rejected_spans: i64,
    pub error_message: String,
}

/// Counts of one exporter since start (the same numbers the metrics carry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExporterStats {
    /// Spans the downstream accepted (a partial success's rejected spans excluded).
    pub sent_spans: u64,
    /// Spans given up on: permanent errors, retries past `max_elapsed_time`, refused after
    /// shutdown began, or still undelivered when the grace period ended.
    pub failed_spans: u64,
    /// Of the failed spans, those dropped alone: refused by the downstream once isolated,
    /// or larger than a request may be (`too_large`).
    pub dropped_spans: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Spans the downstream rejected in a partial success.
    pub rejected_spans: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    rejected: AtomicU64,
    /// Spans dropped alone, by reason.
    dropped: parking_lot::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Spans a worker has taken off the queue and not yet finished with.
    in_flight: AtomicU64,
}

/// Where one exporter sends.
enum Sink {
    Grpc(grpc::GrpcSink),
    Http(Box<http::HttpSink>),
    File(file::FileSink),
}

impl Sink {
    async fn export(&self, batch: &ExportBatch) -> Result<Accepted, ExportError> {
        match self {
            Sink::Grpc(s) => s.export(batch).await,
            Sink::Http(s) => s.export(batch).await,
            Sink::File(s) => s.export(batch).await.map(|()| Accepted::default()),
        }
    }

    /// The queue ran empty: a good moment to flush buffered output.
    async fn idle(&self) {
        if let Sink::File(s) = self {
            s.flush().await;
        }
    }
}

/// One configured exporter.
struct Exporter {
    name: String,
    sink: Sink,
    retry: RetryCfg,
    queue: Queue,
    counters: Counters,
    workers: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    tracker: Arc<Tracker>,
    /// The most one request to this exporter may hold (`None`: the file exporter, unbounded).
    limits: Option<RequestLimits>,
    /// Dropped spans are logged with their trace ids at most once per 10 s.
    drop_log: RateLimitedLog,
}

impl Exporter {
    fn stats(&self) -> ExporterStats {
        let c = &self.counters;
        ExporterStats {
            sent_spans: c.sent.load(Ordering::Relaxed),
            failed_spans: c.failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            rejected_spans: c.rejected.load(Ordering::Relaxed),
            dropped_spans: c.dropped.lock().values().sum(),
        }
    }

    /// One span given up on alone (refused once isolated, or too large to send): counted
    /// failed and dropped for `reason`, logged with its trace id (rate-limited).
    fn count_dropped(&self, reason: &'static str, trace_id: Option<&str>, error: &str) {
        self.count_failed(1);
        *self.counters.dropped.lock().entry(reason).or_default() += 1;
        metrics::counter!("casefile_exporter_dropped_spans_total", "exporter" => self.name.clone(), "reason" => reason)
            .increment(1);
        if let Some(dropped) = self.drop_log.hit() {
            tracing::warn!(exporter = %self.name, reason, trace_id = trace_id.unwrap_or("?"), error, dropped_since_last_line = dropped, "span dropped: the downstream refuses it (or it is larger than a request may be); the rest of its batch was delivered");
        }
    }

    fn count_failed(&self, spans: u64) {
        self.counters.failed.fetch_add(spans, Ordering::Relaxed);
        metrics::counter!("casefile_exporter_send_failed_spans_total", "exporter" => self.name.clone())
            .increment(spans);
    }
}

struct Inner {
    exporters: Vec<Arc<Exporter>>,
    /// Turns true when shutdown begins: sends are refused, workers stop once the queue is empty.
    closed: watch::Sender<bool>,
    tracker: Arc<Tracker>,
}

/// Fan-out handle to all exporters; clones share them.
#[derive(Clone)]
pub struct Exporters {
    inner: Arc<Inner>,
}

impl Exporters {
    /// Spawns one bounded queue + `sending_queue.num_consumers` workers per exporter on the
    /// current tokio runtime. Fails on a bad endpoint, TLS settings that contradict it or
    /// name an unreadable file, an unknown compression, an invalid header, or a file that cannot be opened.
    pub fn start(cfgs: &[(String, ExporterCfg)]) -> Result<Exporters, ExportError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ExportError::NoRuntime)?;
        let _guard = runtime.enter();
        // Build every sink before spawning anything, so one bad exporter starts none.
        let mut built = Vec::with_capacity(cfgs.len());
        for (name, cfg) in cfgs {
            let (sink, retry, queue) = match cfg {
                ExporterCfg::Otlp(c) => (
                    Sink::Grpc(grpc::GrpcSink::new(name, c)?),
                    c.retry_on_failure.clone(),
                    c.sending_queue.clone(),
                ),
                ExporterCfg::OtlpHttp(c) => (
                    Sink::Http(Box::new(http::HttpSink::new(name, c)?)),
                    c.retry_on_failure.clone(),
                    c.sending_queue.clone(),
                ),
                ExporterCfg::File(c) => {
                    let no_retry = RetryCfg {
                        enabled: false,
                        ..RetryCfg::default()
                    };
                    (
                        Sink::File(file::FileSink::open(name, c)?),
                        no_retry,
                        QueueCfg {
                            num_consumers: 1,
                            ..QueueCfg::default()
                        },
                    )
                }
            };
            built.push((name.clone(), sink, retry, queue));
        }
        let (closed, _) = watch::channel(false);
        let tracker = Arc::new(Tracker::default());
        let mut exporters = Vec::with_capacity(built.len());
        for (name, sink, retry, qcfg) in built {
            // A disabled queue still needs a hand-over point: one slot, so sends wait for a worker.
            let capacity = if qcfg.enabled {
                qcfg.queue_size.max(1)
            } else {
                1
            };
            let consumers = qcfg.num_consumers.max(1);
            let limits = match &sink {
                Sink::File(_) => None,
                _ => Some(qcfg.batch.limits()),
            };
            let ex = Arc::new(Exporter {
                name: name.clone(),
                sink,
                retry,
                queue: Queue::new(capacity),
                counters: Counters::default(),
                workers: parking_lot::Mutex::new(Vec::new()),
                tracker: Arc::clone(&tracker),
                limits,
                drop_log: RateLimitedLog::new(Duration::from_secs(10)),
            });
            metrics::gauge!("casefile_exporter_queue_capacity", "exporter" => name.clone())
                .set(capacity as f64);
            metrics::gauge!("casefile_exporter_queue_size", "exporter" => name.clone()).set(0.0);
            let handles = (0..consumers)
                .map(|_| tokio::spawn(queue::run_worker(Arc::clone(&ex), closed.subscribe())));
            ex.workers.lock().extend(handles);
            tracing::info!(exporter = %name, queue_size = capacity, consumers, "exporter started");
            exporters.push(ex);
        }
        Ok(Exporters {
            inner: Arc::new(Inner {
                exporters,
                closed,
                tracker,
            }),
        })
    }

    /// The TLS sides of the exporters that speak TLS (their files are read again on a
    /// reload; new connections use them).
    pub fn certificates(&self) -> Vec<Arc<crate::tls::ClientTls>> {
        self.inner
            .exporters
            .iter()
            .filter_map(|e| match &e.sink {
                Sink::Grpc(g) => g.tls.clone(),
                Sink::Http(h) => h.tls.clone(),
                Sink::File(_) => None,
            })
            .collect()
    }

    /// The bounds every request handed to [`Exporters::send`] should keep: the smallest
    /// over the `otlp` and `otlphttp` exporters (one batch goes to all). The file exporter
    /// has none; without another exporter only the default span bound applies.
    pub fn request_limits(&self) -> RequestLimits {
        self.inner
            .exporters
            .iter()
            .filter_map(|ex| ex.limits)
            .reduce(RequestLimits::min)
            .unwrap_or(RequestLimits {
                max_bytes: usize::MAX,
                ..RequestLimits::default()
            })
    }

    /// Enqueues `batch` on every exporter, waiting while a queue is full. Never drops,
    /// except once shutdown has begun (then the batch is counted as failed).
    pub async fn send(&self, batch: Arc<ExportBatch>) {
        self.inner
            .tracker
            .begin(batch.seq, self.inner.exporters.len());
        match self.inner.exporters.as_slice() {
            [] => {}
            [one] => self.enqueue(one, batch).await,
            all => {
                join_all(all.iter().map(|ex| self.enqueue(ex, Arc::clone(&batch)))).await;
            }
        }
    }

    async fn enqueue(&self, ex: &Exporter, batch: Arc<ExportBatch>) {
        let mut closed = self.inner.closed.subscribe();
        match ex.queue.push(batch, &mut closed).await {
            Ok(()) => ex.queue.report_len(&ex.name),
            Err(batch) => {
                tracing::warn!(exporter = %ex.name, spans = batch.spans, "exporter is shutting down; batch not accepted");
                ex.count_failed(batch.spans as u64);
                ex.tracker.finished(batch.seq);
            }
        }
    }

    /// The number for the next batch handed on (see [`ExportBatch::seq`]).
    pub fn next_batch(&self) -> u64 {
        self.inner.tracker.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The number the next batch will get; every batch before it was numbered already.
    pub fn peek_next_batch(&self) -> u64 {
        self.inner.tracker.next.load(Ordering::Relaxed)
    }

    /// The oldest batch some exporter has not finished with (neither delivered nor given
    /// up on), if any.
    pub fn oldest_unfinished(&self) -> Option<u64> {
        self.inner.tracker.open.lock().keys().next().copied()
    }

    /// True while any exporter's queue is at or above 90 % of its capacity.
    pub fn saturated(&self) -> bool {
        self.inner.exporters.iter().any(|ex| ex.queue.saturated())
    }

    /// Stops accepting, lets the workers drain the queues (retrying as configured) until
    /// `grace` has passed, then stops them. Returns the spans that could not be delivered
    /// from the moment shutdown began, summed over exporters (a span sent to two exporters
    /// and lost by both counts twice); they are logged and counted as failed. Calling it on
    /// a second clone returns at once.
    pub async fn shutdown(self, grace: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + grace;
        let exporters = &self.inner.exporters;
        let failed_before: Vec<u64> = exporters
            .iter()
            .map(|ex| ex.counters.failed.load(Ordering::Relaxed))
            .collect();
        self.inner.closed.send_replace(true);
        let mut handles: Vec<Option<JoinHandle<()>>> = exporters
            .iter()
            .flat_map(|ex| std::mem::take(&mut *ex.workers.lock()))
            .map(Some)
            .collect();
        for slot in handles.iter_mut() {
            let Some(h) = slot.as_mut() else { continue };
            if tokio::time::timeout_at(deadline, h).await.is_err() {
                break;
            }
            *slot = None;
        }
        // Past the deadline: stop whoever is still sending or retrying.
        for h in handles.into_iter().flatten() {
            h.abort();
            let _ = h.await;
        }
        let mut undelivered = 0;
        for (ex, before) in exporters.iter().zip(failed_before) {
            // Buffered file lines count as sent: write them out even if the worker was stopped.
            ex.sink.idle().await;
            let abandoned = ex.counters.in_flight.swap(0, Ordering::Relaxed)
                + ex.queue.drain_spans(&ex.tracker).await;
            if abandoned > 0 {
                ex.count_failed(abandoned);
            }
            ex.queue.report_len(&ex.name);
            let lost = ex.counters.failed.load(Ordering::Relaxed) - before;
            if lost > 0 {
                tracing::warn!(exporter = %ex.name, spans = lost, abandoned, "spans not delivered during shutdown");
            } else {
                tracing::info!(exporter = %ex.name, "exporter drained");
            }
            undelivered += lost;
        }
        undelivered
    }

    /// Names of the exporters as configured (`otlp/tempo`, `file`, ...).
    pub fn names(&self) -> Vec<String> {
        self.inner
            .exporters
            .iter()
            .map(|ex| ex.name.clone())
            .collect()
    }

    /// Spans each exporter dropped alone, by reason (`too_large`, `invalid_argument`,
    /// `http_400`, ...), in configuration order.
    pub fn dropped_by_reason(&self) -> Vec<(String, Vec<(&'static str, u64)>)> {
        self.inner
            .exporters
            .iter()
            .map(|ex| {
                let by = ex.counters.dropped.lock();
                (ex.name.clone(), by.iter().map(|(r, n)| (*r, *n)).collect())
            })
            .collect()
    }

    /// Counts per exporter since start, in configuration order.
    pub fn stats(&self) -> Vec<(String, ExporterStats)> {
        self.inner
            .exporters
            .iter()
            .map(|ex| (ex.name.clone(), ex.stats()))
            .collect()
    }
}
