//! Receivers: the entry of the data flow. OTLP/gRPC (`grpc`) and OTLP/HTTP (`http`) both
//! hand request bytes to [`Intake`], which decodes them on the fast path and adds the spans
//! to the trace buffer, or refuses them while the stages behind are full.

pub mod grpc;
pub mod http;

use std::sync::Arc;

use thiserror::Error;
use tokio::time::Instant;

use crate::buffer::Buffer;
use crate::memory::MemoryGuard;
use crate::storage::Storage;
use crate::wire::decode::{decode_request_with, Checks};
use crate::wire::encode::encode_request;
use crate::wire::WireError;

/// Why a request was not accepted. Converted to a gRPC status or an HTTP code in exactly
/// one place per transport.
#[derive(Debug, Error)]
pub enum IntakeError {
    #[error("malformed ExportTraceServiceRequest: {0}")]
    Malformed(#[from] WireError),
    #[error("malformed OTLP/JSON: {0}")]
    Json(#[from] crate::wire::json::JsonError),
    #[error("casefile is at capacity (the exporters are behind); retry later")]
    Busy,
    #[error("casefile is over its memory limit; retry later")]
    Memory,
    #[error("casefile cannot write its write-ahead log; retry later")]
    Storage(#[from] crate::storage::WalError),
}

impl IntakeError {
    /// The `reason` label of the refusal counters.
    pub fn reason(&self) -> &'static str {
        match self {
            IntakeError::Malformed(_) | IntakeError::Json(_) => "malformed",
            IntakeError::Busy => "busy",
            IntakeError::Memory => "memory",
            IntakeError::Storage(_) => "storage",
        }
    }

    /// A throttling refusal: the client should retry the same data later.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self,
            IntakeError::Busy | IntakeError::Memory | IntakeError::Storage(_)
        )
    }
}

/// Counts a refused request (and its spans, when the body was decoded); a refusal because
/// the exporters are behind is also logged, at most once every 10 s with how many there
/// were (memory refusals are logged by the guard, storage ones by the log).
fn count_refused(transport: &'static str, reason: &'static str, spans: Option<usize>) {
    metrics::counter!("casefile_receiver_refused_requests_total", "transport" => transport, "reason" => reason).increment(1);
    if let Some(n) = spans {
        metrics::counter!("casefile_receiver_refused_spans_total", "transport" => transport, "reason" => reason).increment(n as u64);
    }
    if reason == "busy" {
        busy_log();
    }
}

fn busy_log() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static LAST: AtomicU64 = AtomicU64::new(0);
    static SINCE: AtomicU64 = AtomicU64::new(0);
    let refused = SINCE.fetch_add(1, Ordering::Relaxed) + 1;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        SINCE.fetch_sub(refused, Ordering::Relaxed);
        tracing::warn!(
            refused_requests = refused,
            "the exporters are behind (queue full or kept spans piling up): refusing new data with UNAVAILABLE / 503 + Retry-After until they catch up"
        );
    }
}

/// What was accepted from one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    pub spans: usize,
    /// Spans refused (invalid ids, failed checks), reported through `partial_success`.
    pub rejected: usize,
    pub message: String,
}

/// Tells receivers that the stages behind them cannot take more.
pub type Backpressure = Arc<dyn Fn() -> bool + Send + Sync>;

/// The receivers' handle on the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    buffer: Arc<Buffer>,
    backpressure: Backpressure,
    /// With `storage.dir`: accepted spans are appended here before they are buffered
    /// (and so before the success answer).
    storage: Option<Arc<Storage>>,
    /// Past the memory limit every request is refused (`reason="memory"`).
    memory: MemoryGuard,
    /// What every accepted span must pass (`receivers.otlp.invalid_utf8`, `max_span_bytes`).
    checks: Checks,
    /// With `cluster:`: spans of traces other members own are forwarded to them.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Intake {
    pub fn new(buffer: Arc<Buffer>, backpressure: Backpressure) -> Intake {
        Intake {
            buffer,
            backpressure,
            storage: None,
            memory: MemoryGuard::default(),
            checks: Checks::default(),
            cluster: None,
        }
    }

    /// Forwards the spans of traces other members own (`cluster:`).
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Intake {
        self.cluster = cluster;
        self
    }

    /// Checks every span with `checks` instead of the defaults.
    pub fn with_checks(mut self, checks: Checks) -> Intake {
        self.checks = checks;
        self
    }

    /// Refuses new data while `guard` says memory is over the limit.
    pub fn with_memory(mut self, guard: MemoryGuard) -> Intake {
        self.memory = guard;
        self
    }

    /// Why new data must be refused now, if it must: memory first, then backpressure.
    fn refusal(&self) -> Option<IntakeError> {
        if self.memory.over_limit() {
            self.memory.refused();
            Some(IntakeError::Memory)
        } else if self.busy() {
            Some(IntakeError::Busy)
        } else {
            None
        }
    }

    /// Checked before a request body is read: refuses (and counts the request; its spans
    /// are not known) while memory is over the limit, and with `busy` too while the
    /// stages behind are full.
    pub fn check_early(&self, transport: &'static str, busy: bool) -> Result<(), IntakeError> {
        let refusal = if busy {
            self.refusal()
        } else if self.memory.over_limit() {
            self.memory.refused();
            Some(IntakeError::Memory)
        } else {
            None
        };
        match refusal {
            Some(e) => {
                count_refused(transport, e.reason(), None);
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Appends every accepted request to `storage` before buffering it.
    pub fn with_storage(mut self, storage: Option<Arc<Storage>>) -> Intake {
        self.storage = storage;
        self
    }

    /// True while new data must be refused with a throttling code.
    pub fn busy(&self) -> bool {
        (self.backpressure)()
    }

    /// Decodes an encoded ExportTraceServiceRequest and buffers its spans (forwarding those
    /// of traces another member owns, with `cluster:`).
    pub fn accept(&self, request: &[u8], transport: &'static str) -> Result<Accepted, IntakeError> {
        self.accept_from(request, transport, false)
    }

    /// [`Intake::accept`]; `forwarded`: the request came from another member of the tier,
    /// which found this one the owner: every span is buffered here, none forwarded again.
    pub fn accept_from(
        &self,
        request: &[u8],
        transport: &'static str,
        forwarded: bool,
    ) -> Result<Accepted, IntakeError> {
        if let Some(e) = self.refusal() {
            let spans = decode_request_with(request, &self.checks)
                .ok()
                .map(|d| d.spans.len());
            count_refused(transport, e.reason(), spans);
            return Err(e);
        }
        let decoded = match decode_request_with(request, &self.checks) {
            Ok(d) => d,
            Err(e) => {
                metrics::counter!("casefile_receiver_refused_requests_total", "transport" => transport, "reason" => "malformed").increment(1);
                return Err(e.into());
            }
        };
        let accepted = Accepted {
            spans: decoded.spans.len(),
            rejected: decoded.rejected,
            message: decoded
                .first_rejection
                .map(|m| format!("{} span(s) rejected: {m}", decoded.rejected))
                .unwrap_or_default(),
        };
        for &(reason, n) in &decoded.rejected_by {
            metrics::counter!("casefile_receiver_refused_spans_total", "transport" => transport, "reason" => reason).increment(n as u64);
        }
        if accepted.rejected > 0 {
            tracing::debug!(transport, rejected = accepted.rejected, reason = %accepted.message, "refused spans");
        }
        if decoded.repaired > 0 {
            metrics::counter!("casefile_receiver_repaired_spans_total", "transport" => transport, "reason" => "invalid_utf8").increment(decoded.repaired as u64);
        }
        if let (Some(storage), false) = (&self.storage, decoded.spans.is_empty()) {
            // The request as received when every span was accepted as it came; otherwise
            // the accepted spans as they will be sent, so a replay never brings back a
            // refused span or an unrepaired one.
            let result = if decoded.rejected == 0 && decoded.repaired == 0 {
                storage.append(request)
            } else {
                storage.append(&encode_request(&decoded.spans))
            };
            if let Err(e) = result {
                metrics::counter!("casefile_receiver_refused_requests_total", "transport" => transport, "reason" => "storage").increment(1);
                metrics::counter!("casefile_receiver_refused_spans_total", "transport" => transport, "reason" => "storage").increment(decoded.spans.len() as u64);
                return Err(e.into());
            }
        }
        metrics::counter!("casefile_receiver_accepted_spans_total", "transport" => transport)
            .increment(accepted.spans as u64);
        let spans = match &self.cluster {
            Some(c) if !forwarded => c.route(decoded.spans),
            Some(_) => {
                metrics::counter!("casefile_cluster_received_spans_total")
                    .increment(decoded.spans.len() as u64);
                decoded.spans
            }
            None => decoded.spans,
        };
        if !spans.is_empty() {
            self.buffer.ingest(spans, Instant::now());
        }
        Ok(accepted)
    }

    /// Same, for an OTLP/JSON body.
    pub fn accept_json(
        &self,
        body: &[u8],
        transport: &'static str,
    ) -> Result<Accepted, IntakeError> {
        if let Some(e) = self.refusal() {
            count_refused(transport, e.reason(), None);
            return Err(e);
        }
        let proto = match crate::wire::json::request_from_json(body) {
            Ok(p) => p,
            Err(e) => {
                metrics::counter!("casefile_receiver_refused_requests_total", "transport" => transport, "reason" => "malformed").increment(1);
                return Err(e.into());
            }
        };
        self.accept(&proto, transport)
    }
}

/// An encoded ExportTraceServiceResponse, with `partial_success` when spans were refused.
pub fn encode_response(a: &Accepted) -> Vec<u8> {
    use crate::wire::{put_key, put_len, put_varint, VARINT};
    if a.rejected == 0 {
        return Vec::new();
    }
    let mut partial = Vec::new();
    put_key(&mut partial, 1, VARINT);
    put_varint(&mut partial, a.rejected as u64);
    put_len(&mut partial, 2, a.message.as_bytes());
    let mut out = Vec::new();
    put_len(&mut out, 1, &partial);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn busy_refusals_are_logged_at_most_once_in_ten_seconds() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..5 {
                super::count_refused("grpc", "busy", Some(3));
            }
            super::count_refused("grpc", "malformed", None);
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("refusing new data") && text.contains("refused_requests=1"),
            "{text}"
        );
    }
}
