//! Exporter configuration, as the Collector spells it (`exporters.otlp`, `exporters.otlphttp`,
//! `exporters.file`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::duration::GoDuration;

// `exporters:` — any of the three, each optionally with a `/name` suffix as in the
// Collector (`otlp/tempo`, `otlp/jaeger`): every configured exporter receives every kept trace.

/// `exporters.otlp` (gRPC) and `exporters.otlphttp`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpCfg {
    /// gRPC: `host:port` (or `http://host:port`). HTTP: base URL; `/v1/traces` is appended
    /// unless `traces_endpoint` is given.
    pub endpoint: String,
    /// otlphttp only: the full URL for traces.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    #[serde(default)]
    pub tls: TlsCfg,
    /// `gzip` (default) or `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    pub timeout: GoDuration,
    #[serde(default)]
    pub retry_on_failure: RetryCfg,
    #[serde(default)]
    pub sending_queue: QueueCfg,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCfg {
    /// Plaintext when true. TLS itself arrives with issue 4; until then `insecure: false`
    /// with an `http://` or bare endpoint is plaintext too and says so at start.
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryCfg {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "d5s")]
    pub initial_interval: GoDuration,
    #[serde(default = "d30s")]
    pub max_interval: GoDuration,
    /// Give up on a batch after this long (0 = never).
    #[serde(default = "d300s")]
    pub max_elapsed_time: GoDuration,
    #[serde(default = "half")]
    pub randomization_factor: f64,
    #[serde(default = "one_and_half")]
    pub multiplier: f64,
}

impl Default for RetryCfg {
    fn default() -> Self {
        RetryCfg {
            enabled: true,
            initial_interval: d5s(),
            max_interval: d30s(),
            max_elapsed_time: d300s(),
            randomization_factor: 0.5,
            multiplier: 1.5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueCfg {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Concurrent senders.
    #[serde(default = "four")]
    pub num_consumers: usize,
    /// Batches (export requests) waiting; past it casefile pushes back on its clients.
    #[serde(default = "thousand")]
    pub queue_size: usize,
}

impl Default for QueueCfg {
    fn default() -> Self {
        QueueCfg {
            enabled: true,
            num_consumers: 4,
            queue_size: 1000,
        }
    }
}

/// `exporters.file`: OTLP JSON lines, one ExportTraceServiceRequest per line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCfg {
    pub path: String,
    /// Flush after every line (default true) so `tail -f` shows kept traces at once.
    #[serde(default = "yes")]
    pub flush_every_line: bool,
}

fn default_compression() -> String {
    "gzip".into()
}
fn default_timeout() -> GoDuration {
    GoDuration(Duration::from_secs(5))
}
fn yes() -> bool {
    true
}
fn d5s() -> GoDuration {
    GoDuration(Duration::from_secs(5))
}
fn d30s() -> GoDuration {
    GoDuration(Duration::from_secs(30))
}
fn d300s() -> GoDuration {
    GoDuration(Duration::from_secs(300))
}
fn half() -> f64 {
    0.5
}
fn one_and_half() -> f64 {
    1.5
}
fn four() -> usize {
    4
}
fn thousand() -> usize {
    1000
}

/// One configured exporter, parsed from `exporters.<type>[/<name>]`.
#[derive(Debug, Clone)]
pub enum ExporterCfg {
    /// `otlp`: OTLP/gRPC.
    Otlp(OtlpCfg),
    /// `otlphttp`: OTLP/HTTP with protobuf bodies.
    OtlpHttp(OtlpCfg),
    /// `file`: OTLP JSON lines.
    File(FileCfg),
}

impl OtlpCfg {
    /// TLS files are refused until TLS lands (issue 4), so a config never silently runs
    /// in plaintext where the user asked for certificates.
    pub(super) fn refuse_tls_files(&self, name: &str) -> Result<(), super::ExportError> {
        let t = &self.tls;
        if t.ca_file.is_some() || t.cert_file.is_some() || t.key_file.is_some() {
            return Err(super::ExportError::Tls {
                name: name.to_owned(),
                endpoint: self.endpoint.clone(),
            });
        }
        Ok(())
    }
}
