//! The first config layer: serde structs mirroring the YAML, with defaults and
//! `deny_unknown_fields`. Nothing here is checked beyond its type; `super::build` turns
//! these into the validated [`super::Config`].

use serde::{Deserialize, Deserializer};

use super::duration::GoDuration;
use super::size::ByteSize;

/// Deserializes a present key (even `grpc:` with no value) as `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `receivers:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receivers {
    #[serde(default)]
    pub otlp: Option<OtlpReceiver>,
}

/// `receivers.otlp:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiver {
    #[serde(default)]
    pub protocols: Protocols,
    /// `repair` (default) or `reject`: what happens to a span whose strings are not UTF-8.
    pub invalid_utf8: Option<String>,
    /// A larger span is refused through `partial_success` (default 1MiB).
    pub max_span_bytes: Option<ByteSize>,
}

/// `receivers.otlp.protocols:`; a protocol key with no value turns it on with defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<Option<Grpc>>,
    #[serde(default, deserialize_with = "present")]
    pub http: Option<Option<Http>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grpc {
    pub endpoint: Option<String>,
    /// As in the Collector: the largest request accepted, in MiB, after decompression.
    pub max_recv_msg_size_mib: Option<u64>,
    pub tls: Option<ServerTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub endpoint: Option<String>,
    /// The largest request body accepted, after decompression.
    pub max_request_body_size: Option<ByteSize>,
    pub tls: Option<ServerTls>,
}

/// `tls:` on a receiver or `support.api`, with the Collector's server-side key names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Accepted so a pasted Collector block gets a precise message: a server verifies
    /// clients with `client_ca_file`.
    pub ca_file: Option<String>,
    pub client_ca_file: Option<String>,
}

/// `processors:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Processors {
    pub tail_sampling: Option<serde_yaml_ng::Value>,
    /// Read on its own, so a bad key here does not hide the problems of `tail_sampling`.
    pub memory_limiter: Option<serde_yaml_ng::Value>,
}

/// `processors.memory_limiter:`: the whole-process memory budget, with the Collector's
/// memory_limiter key names (0 = unset, as there).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiter {
    /// How often resident memory is read (casefile's default 100ms).
    pub check_interval: Option<GoDuration>,
    /// The whole-process limit on resident memory, in MiB.
    pub limit_mib: u64,
    /// Room below the limit, in MiB: the soft level is `limit - spike`.
    pub spike_limit_mib: u64,
    /// The limit as a percentage of the cgroup limit (else of the host's memory).
    pub limit_percentage: u32,
    /// The spike as a percentage of the same.
    pub spike_limit_percentage: u32,
}

/// `processors.tail_sampling:` without its policies (each policy is read on its own, so
/// one bad policy does not hide the problems of the others).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailSampling {
    pub decision_wait: GoDuration,
    pub decision_wait_after_root_received: Option<GoDuration>,
    pub num_traces: u64,
    /// Accepted for compatibility; used only to size the maps up front.
    pub expected_new_traces_per_sec: u64,
    pub decision_cache: DecisionCache,
    pub sample_on_first_match: bool,
    pub drop_pending_traces_on_shutdown: bool,
    /// 0 = no limit.
    pub maximum_trace_size_bytes: ByteSize,
    /// casefile's byte bound on pending spans; unset = derived from the memory budget.
    pub max_buffer_bytes: Option<ByteSize>,
    pub num_shards: usize,
    /// Accepted for compatibility: casefile never drops a trace unseen, so it never blocks
    /// for that reason; it decides the oldest traces early instead.
    pub block_on_overflow: bool,
    /// The Collector's `processor.tailsamplingprocessor.usetracestate` feature gate as a
    /// key: OTEP 235 thresholds (`ot=th:`) on the spans of traces kept by probabilistic
    /// decisions, which then compare the trace's randomness with the threshold.
    pub use_tracestate: bool,
    /// `casefile.adjusted_count` on the root of each kept trace (needs `use_tracestate`).
    pub adjusted_count_attribute: bool,
    /// `casefile` (default): `casefile.policy` on the root; `collector`: also the
    /// Collector's `recordpolicy` attributes (`tailsampling.policy`, ...).
    pub record_policy_attributes: RecordPolicyAttributes,
    pub policies: Vec<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordPolicyAttributes {
    #[default]
    Casefile,
    Collector,
}

impl Default for TailSampling {
    fn default() -> Self {
        TailSampling {
            decision_wait: GoDuration(std::time::Duration::from_secs(30)),
            decision_wait_after_root_received: None,
            num_traces: 50_000,
            expected_new_traces_per_sec: 0,
            decision_cache: DecisionCache::default(),
            sample_on_first_match: false,
            drop_pending_traces_on_shutdown: false,
            maximum_trace_size_bytes: ByteSize(0),
            max_buffer_bytes: None,
            num_shards: 16,
            block_on_overflow: false,
            use_tracestate: false,
            adjusted_count_attribute: false,
            record_policy_attributes: RecordPolicyAttributes::Casefile,
            policies: Vec::new(),
        }
    }
}

/// `decision_cache:`: on by default in casefile (the Collector's defaults are 0).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCache {
    pub sampled_cache_size: u64,
    pub non_sampled_cache_size: u64,
}

impl Default for DecisionCache {
    fn default() -> Self {
        DecisionCache {
            sampled_cache_size: 100_000,
            non_sampled_cache_size: 500_000,
        }
    }
}

/// `support:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Support {
    pub api: Api,
    pub trace_url: Option<String>,
    pub index: Index,
    pub complaints: Complaints,
    pub archive: Archive,
}

/// `support.archive:`; without `dir` there is no archive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Archive {
    pub dir: Option<String>,
    pub retention: GoDuration,
    pub max_bytes: ByteSize,
    /// `all` or `dropped`.
    pub traces: String,
}

impl Default for Archive {
    fn default() -> Self {
        Archive {
            dir: None,
            retention: GoDuration(std::time::Duration::from_secs(72 * 3600)),
            max_bytes: ByteSize(20 << 30),
            traces: "all".into(),
        }
    }
}

/// `support.api:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Empty or null turns the API off.
    pub endpoint: Option<String>,
    pub auth_token: Option<String>,
    /// A file holding the token (a mounted secret); read at start and on every reload,
    /// and watched: a new token is in force a second after the file changes.
    pub auth_token_file: Option<String>,
    /// Requests a second to `/api/*` (bursts of twice that); 0 = no limit.
    pub max_requests_per_second: u32,
    pub tls: Option<ServerTls>,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            endpoint: Some("127.0.0.1:8990".into()),
            auth_token: None,
            auth_token_file: None,
            max_requests_per_second: 100,
            tls: None,
        }
    }
}

/// `support.index:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Index {
    pub attributes: Vec<String>,
    pub retention: GoDuration,
    pub max_traces: u64,
    pub max_bytes: ByteSize,
    pub hash_values: bool,
    pub hash_key: Option<String>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            attributes: vec!["user.id".into(), "enduser.id".into(), "session.id".into()],
            retention: GoDuration(std::time::Duration::from_secs(24 * 3600)),
            max_traces: 1_000_000,
            max_bytes: ByteSize(256 << 20),
            hash_values: false,
            hash_key: None,
        }
    }
}

/// `support.complaints:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Complaints {
    pub watch_for: GoDuration,
    pub rescue_window: GoDuration,
    pub rescue_max_bytes: ByteSize,
    pub store: Option<String>,
    /// At most this many traces a complaint about a user or attributes rescues.
    pub max_rescue_traces: u64,
}

impl Default for Complaints {
    fn default() -> Self {
        Complaints {
            watch_for: GoDuration(std::time::Duration::from_secs(3600)),
            rescue_window: GoDuration(std::time::Duration::from_secs(600)),
            rescue_max_bytes: ByteSize(256 << 20),
            store: None,
            max_rescue_traces: 1000,
        }
    }
}

/// `cluster:`: the members of a gateway tier.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    #[serde(rename = "self")]
    pub me: Option<String>,
    pub peers: Vec<Peer>,
    pub dns: Option<serde_yaml_ng::Value>,
    /// How members reach each other's receivers and support APIs over TLS (the exporters'
    /// client settings).
    pub tls: Option<crate::export::config::TlsCfg>,
}

/// `cluster.peers[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub otlp: String,
    #[serde(default)]
    pub api: Option<String>,
}

/// `storage:`: the write-ahead log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Unset: everything stays in memory.
    pub dir: Option<String>,
    /// A segment is closed and a new one started once it holds this much.
    pub segment_size: ByteSize,
    /// `never` (the default) or `always`.
    pub fsync: String,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            dir: None,
            segment_size: ByteSize(64 << 20),
            fsync: "never".into(),
        }
    }
}

/// `logging:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    pub level: String,
    pub format: String,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: "info".into(),
            format: "text".into(),
        }
    }
}
