//! Sending spans to the member that owns their trace: one forwarder a member, an OTLP/gRPC
//! exporter (the downstream exporters' own: bounded queue, retries with backoff, splitting
//! of refused batches) pointed at the member's receiver, every request marked with
//! [`super::FORWARDED_BY`] so the owner ingests it and never forwards it again. The spans'
//! bytes are passed through; their resource and scope blocks go with them.
//!
//! The receivers hand spans over without waiting ([`Forwarder::try_forward`]); a member
//! whose queue is full gets nothing more until it drains, and those spans are decided here
//! instead (counted): a trace may then be decided in two halves, never lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::duration::GoDuration;
use crate::export::chunk::request_chunks;
use crate::export::config::{ExporterCfg, OtlpCfg, QueueCfg, RetryCfg, TlsCfg};
use crate::export::{ExportBatch, ExportError, Exporters};
use crate::model::Span;
use crate::wire::encode::encode_request;

/// Requests (one per received request and member) waiting for a forwarder's exporter.
const PENDING: usize = 256;

pub(super) struct Forwarder {
    tx: mpsc::Sender<Vec<Span>>,
    task: JoinHandle<()>,
    exporters: Exporters,
}

impl Forwarder {
    /// Starts forwarding to the member whose OTLP/gRPC receiver is at `otlp`.
    pub fn start(me: &str, otlp: &str) -> Result<Forwarder, ExportError> {
        let cfg = OtlpCfg {
            endpoint: otlp.to_owned(),
            traces_endpoint: None,
            tls: TlsCfg {
                insecure: true,
                ..TlsCfg::default()
            },
            // Members sit next to each other: CPU matters more than bytes.
            compression: "none".into(),
            headers: BTreeMap::from([(super::FORWARDED_BY.to_owned(), me.to_owned())]),
            timeout: GoDuration(Duration::from_secs(5)),
            retry_on_failure: RetryCfg {
                initial_interval: GoDuration(Duration::from_millis(100)),
                max_interval: GoDuration(Duration::from_secs(5)),
                ..RetryCfg::default()
            },
            sending_queue: QueueCfg::default(),
        };
        let name = format!("cluster/{otlp}");
        let exporters = Exporters::start(&[(name, ExporterCfg::Otlp(cfg))])?;
        let (tx, rx) = mpsc::channel(PENDING);
        let task = tokio::spawn(run(rx, exporters.clone(), otlp.to_owned()));
        Ok(Forwarder {
            tx,
            task,
            exporters,
        })
    }

    /// Hands `spans` to the forwarder, or gives them back when it is full or stopped.
    pub fn try_forward(&self, spans: Vec<Span>) -> Result<(), Vec<Span>> {
        self.tx.try_send(spans).map_err(|e| match e {
            mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s,
        })
    }

    /// Sends what is waiting, then stops; returns the spans not delivered in `grace`.
    pub async fn finish(self, grace: Duration) -> u64 {
        let Forwarder {
            tx,
            task,
            exporters,
        } = self;
        drop(tx);
        let deadline = tokio::time::Instant::now() + grace;
        let _ = tokio::time::timeout(grace, task).await;
        exporters
            .shutdown(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
    }
}

async fn run(mut rx: mpsc::Receiver<Vec<Span>>, exporters: Exporters, peer: String) {
    while let Some(spans) = rx.recv().await {
        for range in request_chunks(&spans, exporters.request_limits()) {
            let chunk = &spans[range];
            let batch = ExportBatch {
                request: encode_request(chunk).into(),
                spans: chunk.len(),
                traces: 0,
                seq: exporters.next_batch(),
            };
            metrics::counter!("casefile_cluster_forwarded_spans_total", "member" => peer.clone())
                .increment(chunk.len() as u64);
            exporters.send(Arc::new(batch)).await;
        }
    }
}
