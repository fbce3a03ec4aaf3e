//! Exporter configuration, as the Collector spells it (`exporters.otlp`, `exporters.otlphttp`,
//! `exporters.file`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::duration::GoDuration;
use crate::config::size::ByteSize;

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
    /// `gzip` (default), `zstd`, `snappy` or `none`; otlphttp also `zlib`, `deflate`,
    /// `x-snappy-framed` and `lz4` (the Collector's choices; see `wire::compression`).
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

/// `exporters.otlp.tls` / `exporters.otlphttp.tls`, as the Collector's client TLS settings.
/// Paths only: the files are read when the exporter starts (and by `casefile check`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCfg {
    /// otlp (gRPC) only: plaintext to a `host:port` endpoint. Without it, and always
    /// with `https://`, the exporter speaks TLS; `http://` is plaintext.
    #[serde(default)]
    pub insecure: bool,
    /// PEM CA bundle that signed the server's certificate; unset: the system trust store.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// PEM client certificate, for a server that requires one (mTLS); needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file` (unencrypted).
    #[serde(default)]
    pub key_file: Option<String>,
    /// Accept any server certificate (encrypted, not authenticated); logged as a warning.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// The name the server's certificate must carry (and SNI), instead of the endpoint's host.
    #[serde(default)]
    pub server_name_override: Option<String>,
}

impl TlsCfg {
    /// The TLS-only keys that are set, by name.
    fn tls_keys(&self) -> Vec<&'static str> {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|v| !v.trim().is_empty());
        [
            ("ca_file", set(&self.ca_file)),
            ("cert_file", set(&self.cert_file)),
            ("key_file", set(&self.key_file)),
            ("insecure_skip_verify", self.insecure_skip_verify),
            ("server_name_override", set(&self.server_name_override)),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect()
    }
}

/// Whether an OTLP exporter connects in plaintext or with TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plaintext,
    Tls,
}

impl Security {
    pub fn is_tls(self) -> bool {
        self == Security::Tls
    }
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
    /// How large one export request may be.
    #[serde(default)]
    pub batch: BatchCfg,
}

impl Default for QueueCfg {
    fn default() -> Self {
        QueueCfg {
            enabled: true,
            num_consumers: 4,
            queue_size: 1000,
            batch: BatchCfg::default(),
        }
    }
}

/// Bytes in one export request unless `sending_queue.batch` says otherwise: under the 4 MiB
/// a default Collector or grpc server accepts (`max_recv_msg_size`), with room for the
/// gRPC frame and for a downstream that counts a little differently.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 3 << 20;
/// Spans in one export request unless `sending_queue.batch` (sizer `items`) says otherwise.
pub const DEFAULT_MAX_REQUEST_SPANS: usize = 4096;
/// The smallest byte bound accepted: below it ordinary spans would travel alone.
pub const MIN_MAX_REQUEST_BYTES: u64 = 64 << 10;

/// `sending_queue.batch`, the keys of the Collector's exporterhelper. casefile hands each
/// decision tick's kept spans on at once, cut into requests no larger than `max_size`;
/// `min_size` and `flush_timeout` are accepted for compatibility and unused (there is no
/// waiting for a batch to fill).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchCfg {
    /// `bytes` (default): `max_size` bounds the encoded request; `items`: it bounds the spans.
    #[serde(default)]
    pub sizer: Option<String>,
    /// Default 3MiB (sizer bytes) or 4096 spans (sizer items). A plain number or a size
    /// such as `2MiB`.
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    /// Unused (accepted for compatibility).
    #[serde(default)]
    pub min_size: Option<ByteSize>,
    /// Unused (accepted for compatibility).
    #[serde(default)]
    pub flush_timeout: Option<GoDuration>,
    /// The Collector `batch` processor's `send_batch_max_size` (a whole Collector file):
    /// at most this many spans a request, whatever the sizer.
    #[serde(skip)]
    pub max_spans: Option<usize>,
}

/// How `sending_queue.batch.max_size` is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizer {
    Bytes,
    Items,
}

impl BatchCfg {
    /// The sizer, or the unknown name given.
    pub fn sizer(&self) -> Result<Sizer, &str> {
        match self.sizer.as_deref().map(str::trim) {
            None | Some("bytes") => Ok(Sizer::Bytes),
            Some("items") => Ok(Sizer::Items),
            Some(other) => Err(other),
        }
    }

    /// The bounds on one request: whatever the sizer, both the byte and the span bound
    /// hold, `max_size` replacing the default of the one it counts. An invalid sizer
    /// (refused by the config check) reads as the defaults.
    pub fn limits(&self) -> RequestLimits {
        let mut limits = RequestLimits::default();
        let size = self
            .max_size
            .map(|s| usize::try_from(s.0).unwrap_or(usize::MAX))
            .filter(|&s| s > 0);
        match (self.sizer(), size) {
            (Ok(Sizer::Bytes), Some(n)) => limits.max_bytes = n,
            (Ok(Sizer::Items), Some(n)) => limits.max_spans = n,
            _ => {}
        }
        if let Some(n) = self.max_spans.filter(|&n| n > 0) {
            limits.max_spans = limits.max_spans.min(n);
        }
        limits
    }
}

/// The most one export request may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Encoded ExportTraceServiceRequest bytes (before compression).
    pub max_bytes: usize,
    pub max_spans: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_spans: DEFAULT_MAX_REQUEST_SPANS,
        }
    }
}

impl RequestLimits {
    /// The tighter of two bounds, each way.
    pub fn min(self, other: RequestLimits) -> RequestLimits {
        RequestLimits {
            max_bytes: self.max_bytes.min(other.max_bytes),
            max_spans: self.max_spans.min(other.max_spans),
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

/// The scheme of an endpoint, lower-cased, if it has one.
fn scheme(endpoint: &str) -> Option<String> {
    let (scheme, _) = endpoint.trim().split_once("://")?;
    Some(scheme.to_ascii_lowercase())
}

impl OtlpCfg {
    /// Plaintext or TLS, from the endpoint's scheme and `tls:`, as the Collector decides:
    /// `https://` is TLS; `http://` is plaintext; an `otlp` (gRPC) `host:port` is TLS unless
    /// `insecure: true`. `http` is true for otlphttp (whose URL always has a scheme; the
    /// one of `traces_endpoint` when set). Settings that contradict the choice are problems
    /// (key under the exporter, message), so TLS files never go silently unused.
    pub fn security(&self, http: bool) -> Result<Security, Vec<(String, String)>> {
        match self.tls_mode(http) {
            (security, problems) if problems.is_empty() => Ok(security),
            (_, problems) => Err(problems),
        }
    }

    /// The choice [`OtlpCfg::security`] makes, with the problems beside it (so `check`
    /// can still read the files of a TLS exporter whose settings have other problems).
    pub fn tls_mode(&self, http: bool) -> (Security, Vec<(String, String)>) {
        let url = match (&self.traces_endpoint, http) {
            (Some(t), true) => t.as_str(),
            _ => self.endpoint.as_str(),
        };
        let t = &self.tls;
        let mut problems = Vec::new();
        let security = match scheme(url).as_deref() {
            Some("https") => {
                if t.insecure {
                    problems.push(("tls.insecure".to_owned(), format!("insecure: true contradicts the https:// endpoint {url:?}: use http:// to send in plaintext, or remove insecure")));
                }
                Security::Tls
            }
            Some("http") => Security::Plaintext,
            // otlphttp without a scheme and other schemes are endpoint errors, found at start.
            _ if http => Security::Plaintext,
            _ if t.insecure => Security::Plaintext,
            _ => Security::Tls,
        };
        if security == Security::Plaintext {
            let why = if scheme(url).as_deref() == Some("http") {
                "the endpoint is http://, so this exporter sends in plaintext: use https:// for TLS"
            } else if http {
                "this exporter sends in plaintext: use an https:// endpoint for TLS"
            } else {
                "insecure: true sends in plaintext: remove it (or use an https:// endpoint) for TLS"
            };
            for key in t.tls_keys() {
                problems.push((format!("tls.{key}"), format!("{key} is set but {why}")));
            }
        } else {
            let set = |o: &Option<String>| o.as_deref().is_some_and(|v| !v.trim().is_empty());
            match (set(&t.cert_file), set(&t.key_file)) {
                (true, false) => problems.push((
                    "tls.key_file".into(),
                    "missing: cert_file (the client certificate) needs its private key in key_file"
                        .into(),
                )),
                (false, true) => problems.push((
                    "tls.cert_file".into(),
                    "missing: key_file needs its client certificate in cert_file".into(),
                )),
                _ => {}
            }
            if let Some(name) = t
                .server_name_override
                .as_deref()
                .filter(|n| !n.trim().is_empty())
            {
                if let Err(e) = crate::tls::server_name(name) {
                    problems.push(("tls.server_name_override".into(), e.reason));
                }
            }
        }
        (security, problems)
    }
}
