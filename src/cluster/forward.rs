//! Sending spans to the member that owns their trace: one task a member, fed through a
//! bounded channel, sending each batch as an OTLP/gRPC request (the `otlp` exporter's
//! client, span bytes passed through, no compression, TLS with `cluster.tls`) marked with
//! [`super::FORWARDED_BY`] so the owner ingests it and never forwards it again.
//!
//! Nothing accepted is lost on the way: a member that cannot be reached (a few quick
//! retries) is marked down — it leaves the ring, so its traces have another owner — and the
//! spans are handed back to be routed again (to the new owner, often this member). A down
//! member is probed every second and rejoins the ring once its receiver accepts a
//! connection. A batch a member refuses for its content is decided here. The receivers
//! never wait: a full channel gives the spans back at once ([`super::Cluster::route`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use crate::config::duration::GoDuration;
use crate::export::chunk::request_chunks;
use crate::export::config::{OtlpCfg, QueueCfg, RequestLimits, RetryCfg, TlsCfg};
use crate::export::grpc::GrpcSink;
use crate::export::{ExportBatch, ExportError};
use crate::model::Span;
use crate::wire::encode::encode_request;

/// Requests (one per received request and member) waiting to be sent to one member: with
/// gathering and 8 sends in flight, 64 kept up with 450 000 spans/s to forward half of
/// (BENCHMARKS.md). Bytes are bounded too, for all members together (`MAX_QUEUED`).
pub(super) const PENDING: usize = 64;

/// Tries of one batch before its member is marked down, and the pause before each retry.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(150),
    Duration::from_millis(400),
];

/// How long one send may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// How often a down member is probed.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The client of the member whose OTLP/gRPC receiver is at `otlp`: over TLS with `tls`
/// (`cluster.tls`), else plaintext.
pub(super) fn sink(me: &str, otlp: &str, tls: Option<&TlsCfg>) -> Result<GrpcSink, ExportError> {
    let cfg = OtlpCfg {
        endpoint: otlp.to_owned(),
        traces_endpoint: None,
        tls: match tls {
            Some(t) => TlsCfg {
                insecure: false,
                ..t.clone()
            },
            None => TlsCfg {
                insecure: true,
                ..TlsCfg::default()
            },
        },
        // Members sit next to each other: CPU matters more than bytes.
        compression: "none".into(),
        headers: std::collections::BTreeMap::from([(
            super::FORWARDED_BY.to_owned(),
            me.to_owned(),
        )]),
        timeout: GoDuration(TIMEOUT),
        retry_on_failure: RetryCfg::default(),
        sending_queue: QueueCfg::default(),
    };
    GrpcSink::new(&format!("cluster/{otlp}"), &cfg)
}

/// Sends in flight to one member at once.
const IN_FLIGHT: usize = 8;

/// Spans gathered into one send from what waits in the channel.
const GATHER_SPANS: usize = 8192;

/// Sends what the channel brings to `member` until the channel closes: what waits is
/// gathered into one send, and up to [`IN_FLIGHT`] sends go at once.
pub(super) async fn run(
    shared: Arc<Shared>,
    member: usize,
    mut rx: mpsc::Receiver<Vec<Span>>,
    sink: GrpcSink,
) {
    let sink = Arc::new(sink);
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut sends = tokio::task::JoinSet::new();
    while let Some(mut spans) = rx.recv().await {
        while spans.len() < GATHER_SPANS {
            match rx.try_recv() {
                Ok(more) => spans.extend(more),
                Err(_) => break,
            }
        }
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        while sends.try_join_next().is_some() {}
        let (shared, sink) = (Arc::clone(&shared), Arc::clone(&sink));
        sends.spawn(async move {
            send_all(&shared, member, &sink, spans).await;
            drop(slot);
        });
    }
    while sends.join_next().await.is_some() {}
}

/// Sends `spans` to `member` in requests of at most 3 MiB; hands back what cannot go. Their
/// bytes leave the cluster's queued count either way.
async fn send_all(shared: &Arc<Shared>, member: usize, sink: &GrpcSink, spans: Vec<Span>) {
    let bytes: usize = spans.iter().map(|s| s.bytes.len()).sum();
    send_or_hand_back(shared, member, sink, spans).await;
    shared
        .queued
        .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
}

async fn send_or_hand_back(shared: &Arc<Shared>, member: usize, sink: &GrpcSink, spans: Vec<Span>) {
    if !shared.is_up(member) {
        shared.hand_back(spans, "member_down");
        return;
    }
    let limits = RequestLimits {
        max_bytes: 3 << 20,
        max_spans: usize::MAX,
    };
    let mut back = Vec::new();
    let mut refused = Vec::new();
    for range in request_chunks(&spans, limits) {
        let chunk = &spans[range];
        if !shared.is_up(member) {
            back.extend_from_slice(chunk);
            continue;
        }
        let batch = ExportBatch {
            request: encode_request(chunk).into(),
            spans: chunk.len(),
            traces: 0,
            seq: 0,
        };
        match send(sink, &batch).await {
            Ok(()) => {
                metrics::counter!("casefile_cluster_forwarded_spans_total", "member" => shared.ring.name(member).to_owned())
                    .increment(chunk.len() as u64);
            }
            Err(e) if e.is_retryable() => {
                shared.mark_down(member, &e.to_string());
                back.extend_from_slice(chunk);
            }
            Err(e) => {
                tracing::warn!(member = %shared.ring.name(member), error = %e, spans = chunk.len(), "cluster: a member refused forwarded spans; deciding them here");
                refused.extend_from_slice(chunk);
            }
        }
    }
    if !back.is_empty() {
        shared.hand_back(back, "member_down");
    }
    if !refused.is_empty() {
        shared.decide_here(refused, "refused");
    }
}

/// One batch, retried quickly on transient errors.
async fn send(sink: &GrpcSink, batch: &ExportBatch) -> Result<(), ExportError> {
    let mut tries = BACKOFF.iter();
    loop {
        match sink.export(batch).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() => match tries.next() {
                Some(pause) => tokio::time::sleep(*pause).await,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

/// Whether the member's receiver accepts a connection.
pub(super) async fn reachable(otlp: &str) -> bool {
    matches!(
        tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(otlp)).await,
        Ok(Ok(_))
    )
}
