//! Configuration: YAML laid out like the OpenTelemetry Collector's, read in two layers.
//! `yaml` parses the text (with the line of every key) and expands `${env:VAR}`; `raw`
//! holds the serde structs with defaults and `deny_unknown_fields`; [`load_str`] reads
//! each section on its own, validates, and reports every problem at once with its file,
//! line and path, or returns the validated [`Config`] the daemon is built from.

mod build;
mod collector;
pub mod duration;
pub mod gates;
mod raw;
pub mod size;
mod summary;
mod tls;
pub mod yaml;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::export::config::ExporterCfg;
use crate::policy::PolicyCfg;
use yaml::{Env, ProcessEnv};

/// The default configuration, compiled in: OTLP on loopback, kept traces to a local file.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/casefile.yaml");

/// One thing wrong with a config file: where (a dotted path) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted path such as `processors.tail_sampling.policies[2].latency.threshold_ms`.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A problem with the line it stands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: Option<usize>,
    pub problem: Problem,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", render(.file, .problems))]
    Invalid {
        file: String,
        problems: Vec<Located>,
    },
}

fn render(file: &str, problems: &[Located]) -> String {
    let n = problems.len();
    let mut s = format!(
        "{file}: {n} problem{} in the configuration:",
        if n == 1 { "" } else { "s" }
    );
    for l in problems {
        let at = l
            .line
            .map(|n| format!("{file}:{n}"))
            .unwrap_or_else(|| file.to_owned());
        let path = if l.problem.path.is_empty() {
            "(top level)"
        } else {
            &l.problem.path
        };
        s.push_str(&format!("\n  {at}: {path}: {}", l.problem.message));
    }
    s
}

/// `tls:` of a receiver or the support API, validated: serve TLS with this certificate
/// and key. Paths only: the files are read when the listener starts (and by
/// `casefile check`), so no key material ever sits in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsCfg {
    /// PEM certificate chain, the server's own certificate first.
    pub cert_file: String,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1, unencrypted).
    pub key_file: String,
    /// PEM CA bundle: when set, clients must present a certificate it signed (mTLS).
    pub client_ca_file: Option<String>,
}

/// `receivers.otlp.protocols.grpc`.
#[derive(Debug, Clone)]
pub struct GrpcReceiverCfg {
    pub endpoint: String,
    /// Largest request accepted, in bytes, after decompression.
    pub max_recv_msg_size: usize,
    /// None: plaintext.
    pub tls: Option<ServerTlsCfg>,
}

/// `receivers.otlp.protocols.http`.
#[derive(Debug, Clone)]
pub struct HttpReceiverCfg {
    pub endpoint: String,
    /// Largest request body accepted, in bytes, after decompression.
    pub max_request_body_size: usize,
    /// None: plaintext.
    pub tls: Option<ServerTlsCfg>,
}

#[derive(Debug, Clone)]
pub struct ReceiversCfg {
    pub grpc: Option<GrpcReceiverCfg>,
    pub http: Option<HttpReceiverCfg>,
    /// `invalid_utf8` and `max_span_bytes`: what every accepted span must pass.
    pub checks: crate::wire::decode::Checks,
}

/// `processors.tail_sampling`, validated.
#[derive(Debug, Clone)]
pub struct TailSamplingCfg {
    pub decision_wait: Duration,
    pub decision_wait_after_root_received: Option<Duration>,
    pub num_traces: usize,
    pub expected_new_traces_per_sec: usize,
    pub sampled_cache_size: usize,
    pub non_sampled_cache_size: usize,
    pub sample_on_first_match: bool,
    pub drop_pending_traces_on_shutdown: bool,
    pub maximum_trace_size_bytes: Option<usize>,
    /// None: derived from the memory budget (see `crate::memory::Budget`).
    pub max_buffer_bytes: Option<usize>,
    pub num_shards: usize,
    pub policies: Vec<PolicyCfg>,
    /// `use_tracestate`, `adjusted_count_attribute`, `record_policy_attributes`.
    pub output: crate::policy::Output,
}

/// An amount of memory as the Collector's memory_limiter states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryAmount {
    #[default]
    Unset,
    Bytes(u64),
    /// Percent of the memory available: the cgroup limit, or the host's memory.
    Percent(u32),
}

/// `processors.memory_limiter`, validated. How the figures are derived from it and from
/// the cgroup limit is `crate::memory::Budget`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimiterCfg {
    /// How often resident memory is sampled.
    pub check_interval: Duration,
    /// The whole-process limit on resident memory: past it new data is refused.
    pub limit: MemoryAmount,
    /// Room kept below the limit: past `limit - spike` traces are decided early.
    pub spike: MemoryAmount,
}

impl Default for MemoryLimiterCfg {
    fn default() -> Self {
        MemoryLimiterCfg {
            check_interval: Duration::from_millis(100),
            limit: MemoryAmount::Unset,
            spike: MemoryAmount::Unset,
        }
    }
}

/// `support.api`.
#[derive(Clone)]
pub struct ApiCfg {
    /// None: the API is off.
    pub endpoint: Option<String>,
    /// A secret: never printed (see the `Debug` impl). From `auth_token`, or read from
    /// `auth_token_file`.
    pub auth_token: Option<String>,
    /// Where the token was read from, watched for changes by `reload`.
    pub auth_token_file: Option<std::path::PathBuf>,
    /// Requests a second to `/api/*`, bursts of twice that; 0 = no limit.
    pub max_requests_per_second: u32,
    /// None: plaintext HTTP.
    pub tls: Option<ServerTlsCfg>,
}

/// Shows whether a secret is set, never its value.
fn redacted(secret: &Option<String>) -> &'static str {
    if secret.is_some() {
        "<set>"
    } else {
        "<none>"
    }
}

impl std::fmt::Debug for ApiCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCfg")
            .field("endpoint", &self.endpoint)
            .field("auth_token", &redacted(&self.auth_token))
            .field("auth_token_file", &self.auth_token_file)
            .field("max_requests_per_second", &self.max_requests_per_second)
            .field("tls", &self.tls)
            .finish()
    }
}

/// `support.index` (used by the support layer).
#[derive(Clone)]
pub struct IndexCfg {
    pub attributes: Vec<String>,
    pub retention: Duration,
    pub max_traces: usize,
    /// Bytes the index may hold, by its own count of entries, keys and summaries.
    pub max_bytes: usize,
    pub hash_values: bool,
    /// A secret: never printed (see the `Debug` impl).
    pub hash_key: Option<String>,
}

impl std::fmt::Debug for IndexCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexCfg")
            .field("attributes", &self.attributes)
            .field("retention", &self.retention)
            .field("max_traces", &self.max_traces)
            .field("max_bytes", &self.max_bytes)
            .field("hash_values", &self.hash_values)
            .field("hash_key", &redacted(&self.hash_key))
            .finish()
    }
}

/// `support.complaints` (used by the support layer).
#[derive(Debug, Clone)]
pub struct ComplaintsCfg {
    pub watch_for: Duration,
    pub rescue_window: Duration,
    pub rescue_max_bytes: usize,
    pub store: Option<String>,
    /// At most this many traces a complaint about a user or attributes rescues; the rest
    /// are reported `not_rescued_limit`.
    pub max_rescue_traces: usize,
}

#[derive(Debug, Clone)]
pub struct SupportCfg {
    pub api: ApiCfg,
    pub trace_url: Option<String>,
    pub index: IndexCfg,
    pub complaints: ComplaintsCfg,
    /// `support.archive`; None without `dir`.
    pub archive: Option<crate::archive::ArchiveCfg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LoggingCfg {
    pub level: String,
    pub format: LogFormat,
}

/// When the write-ahead log is flushed to the device (`storage.fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every append, before the acknowledgement: survives power loss, costs a device
    /// flush per request.
    Always,
    /// Never explicitly: the append's `write()` completes before the acknowledgement, so a
    /// killed or crashed process loses nothing; the kernel writes the pages out on its own
    /// schedule, so power loss can lose the last seconds.
    Never,
}

/// `storage:`, present when `storage.dir` is set.
#[derive(Debug, Clone)]
pub struct StorageCfg {
    /// Directory of the write-ahead log segments (created if missing).
    pub dir: std::path::PathBuf,
    /// Size at which a segment is closed and a new one started.
    pub segment_size: u64,
    pub fsync: Fsync,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Run as written but said (`casefile check`, the log at start): Collector sections
    /// casefile does not run, policies that can never match. With their lines.
    pub warnings: Vec<Located>,
    /// Where it came from (a path, or `<embedded default>`), for messages.
    pub source: String,
    pub receivers: ReceiversCfg,
    pub tail_sampling: TailSamplingCfg,
    pub memory_limiter: MemoryLimiterCfg,
    /// `exporters.<type>[/<name>]` in file order; every one gets every kept trace.
    pub exporters: Vec<(String, ExporterCfg)>,
    pub support: SupportCfg,
    pub logging: LoggingCfg,
    /// `shutdown_timeout`: how long shutdown may take to decide and drain.
    pub shutdown_grace: Duration,
    /// None: spans and the export queue live in memory only.
    pub storage: Option<StorageCfg>,
    /// `cluster:`: the members of a gateway tier (None: a single instance).
    pub cluster: Option<crate::cluster::ClusterCfg>,
}

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, &path.display().to_string())
}

/// Validates config text; `source` names it in messages.
pub fn load_str(text: &str, source: &str) -> Result<Config, ConfigError> {
    load_with_env(text, source, &ProcessEnv)
}

/// The embedded default configuration.
pub fn embedded_default() -> Config {
    load_str(EMBEDDED_DEFAULT, "<embedded default>")
        .expect("the embedded default config is valid (tested)")
}

/// Same as [`load_str`] with variables from `env`.
pub fn load_with_env(text: &str, source: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        file: source.to_owned(),
        problems,
    };
    let (mut root, lines) = yaml::parse(text).map_err(|(line, message)| {
        invalid(vec![Located {
            line,
            problem: Problem::new("", message),
        }])
    })?;
    let mut problems = Vec::new();
    yaml::expand_env(&mut root, env, "", &mut problems);
    let mut reader = build::Reader {
        problems,
        warnings: Vec::new(),
    };
    let config = reader.build(root, source);
    if reader.problems.is_empty() {
        let mut config = config.expect("no problems means a config");
        config.warnings = reader
            .warnings
            .into_iter()
            .map(|p| Located {
                line: lines.of(&line_path(&p)),
                problem: p,
            })
            .collect();
        Ok(config)
    } else {
        let problems = reader
            .problems
            .into_iter()
            .map(|p| Located {
                line: lines.of(&line_path(&p)),
                problem: p,
            })
            .collect();
        Err(invalid(problems))
    }
}

/// The path whose line best shows a problem: for an unknown field, the field itself.
fn line_path(p: &Problem) -> String {
    let field = p
        .message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next());
    match field {
        Some(f) if p.path.is_empty() => f.to_owned(),
        Some(f) if !p.path.ends_with(&format!(".{f}")) && p.path != f => format!("{}.{f}", p.path),
        _ => p.path.clone(),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_adjusted;
#[cfg(test)]
mod tests_cluster;
#[cfg(test)]
mod tests_collector;
#[cfg(test)]
mod tests_tls;
