//! The second config layer: reads each section of the YAML value on its own into the
//! `raw` structs, checks what types cannot say, and builds the validated [`Config`],
//! collecting every problem instead of stopping at the first.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::*;
use crate::archive::{ArchiveCfg, Traces};
use crate::export::config::{
    BatchCfg, ExporterCfg, FileCfg, OtlpCfg, Sizer, MIN_MAX_REQUEST_BYTES,
};
use crate::wire::decode::{Checks, InvalidUtf8};

mod support;
mod tail_sampling;

/// Attributes `support.index` may read.
pub const MAX_INDEXED_ATTRIBUTES: usize = 64;

fn join(path: &str, rest: &str) -> String {
    match (path.is_empty(), rest.is_empty() || rest == ".") {
        (_, true) => path.to_owned(),
        (true, false) => rest.to_owned(),
        (false, false) if rest.starts_with('[') => format!("{path}{rest}"),
        (false, false) => format!("{path}.{rest}"),
    }
}

/// Reads sections one by one, collecting problems instead of stopping at the first.
pub(super) struct Reader {
    pub(super) problems: Vec<Problem>,
    /// Run as written, but probably not what was meant (a Collector section casefile does
    /// not run, a policy that can never match): `casefile check` and the start say so.
    pub(super) warnings: Vec<Problem>,
}

impl Reader {
    /// Deserializes `value` as `T`; a failure becomes a problem at `path` + the inner path.
    pub(super) fn read<T: DeserializeOwned>(&mut self, value: Value, path: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let msg = e.into_inner().to_string();
                // serde_yaml_ng appends no location to errors from a Value; keep the text.
                self.problems.push(Problem::new(join(path, &inner), msg));
                None
            }
        }
    }

    fn read_or_default<T: DeserializeOwned + Default>(
        &mut self,
        root: &mut serde_yaml_ng::Mapping,
        key: &str,
    ) -> Option<T> {
        match root.remove(key) {
            None | Some(Value::Null) => Some(T::default()),
            Some(v) => self.read(v, key),
        }
    }

    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    pub(super) fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem::new(path, message));
    }

    pub(super) fn build(&mut self, root: Value, source: &str) -> Option<Config> {
        let mut root = match root {
            Value::Mapping(m) => m,
            Value::Null => serde_yaml_ng::Mapping::new(),
            _ => {
                self.problem("", "the configuration must be a mapping (receivers:, processors:, exporters:, support:)");
                return None;
            }
        };
        let applied = super::collector::normalize(self, &mut root);
        let receivers = self
            .read_or_default::<raw::Receivers>(&mut root, "receivers")
            .map(|r| self.receivers(r));
        let processors = self.read_or_default::<raw::Processors>(&mut root, "processors");
        let (tail_sampling, memory_limiter) = match processors {
            Some(p) => (
                self.tail_sampling(p.tail_sampling),
                self.memory_limiter(p.memory_limiter),
            ),
            None => (None, None),
        };
        let exporters = self
            .exporters(root.remove("exporters"))
            .map(|e| apply_pipeline(e, &applied));
        let support = self
            .read_or_default::<raw::Support>(&mut root, "support")
            .map(|s| self.support(s));
        let storage = self
            .read_or_default::<raw::Storage>(&mut root, "storage")
            .map(|s| self.storage(s));
        let cluster = match root.remove("cluster") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self
                .read::<raw::Cluster>(v, "cluster")
                .map(|c| self.cluster(c)),
        };
        let logging = self
            .read_or_default::<raw::Logging>(&mut root, "logging")
            .and_then(|l| self.logging(l));
        let shutdown_grace = match root.remove("shutdown_timeout") {
            None | Some(Value::Null) => Some(Duration::from_secs(30)),
            Some(v) => self
                .read::<duration::GoDuration>(v, "shutdown_timeout")
                .map(|d| d.0),
        };
        for (k, _) in root {
            let key = k
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{k:?}"));
            let hint = "";
            self.problem(key.clone(), format!("unknown field `{key}`, expected one of receivers, processors, exporters, support, logging, storage, cluster, shutdown_timeout{hint}"));
        }
        let storage = storage?;
        let cluster = cluster?;
        if storage.is_some() && cluster.is_some() {
            self.problem(
                "cluster",
                "a cluster with storage (the write-ahead log) is not built yet: forwarded spans would be logged by a member that does not decide them; use one or the other",
            );
        }
        let mut support = support??;
        if let (Some(st), None) = (&storage, &support.complaints.store) {
            let db = st.dir.join("complaints.db");
            support.complaints.store = Some(db.display().to_string());
        }
        Some(Config {
            warnings: Vec::new(),
            source: source.to_owned(),
            receivers: receivers??,
            tail_sampling: tail_sampling?,
            memory_limiter: memory_limiter?,
            exporters: exporters?,
            support,
            logging: logging?,
            shutdown_grace: shutdown_grace?,
            storage,
            cluster,
        })
    }

    fn receivers(&mut self, r: raw::Receivers) -> Option<ReceiversCfg> {
        let otlp = r.otlp.unwrap_or_default();
        let checks = self.receiver_checks(&otlp);
        let p = otlp.protocols;
        let grpc = p.grpc.map(|g| {
            let g = g.unwrap_or_default();
            GrpcReceiverCfg {
                endpoint: g.endpoint.unwrap_or_else(|| "127.0.0.1:4317".into()),
                max_recv_msg_size: (g.max_recv_msg_size_mib.unwrap_or(16) << 20) as usize,
                tls: self.server_tls("receivers.otlp.protocols.grpc.tls", g.tls),
            }
        });
        let http = p.http.map(|h| {
            let h = h.unwrap_or_default();
            HttpReceiverCfg {
                endpoint: h.endpoint.unwrap_or_else(|| "127.0.0.1:4318".into()),
                max_request_body_size: h.max_request_body_size.map_or(20 << 20, |s| s.0 as usize),
                tls: self.server_tls("receivers.otlp.protocols.http.tls", h.tls),
            }
        });
        if grpc.is_none() && http.is_none() {
            self.problem(
                "receivers.otlp.protocols",
                "no receiver configured: add grpc and/or http",
            );
        }
        if grpc.as_ref().is_some_and(|g| g.max_recv_msg_size == 0) {
            self.problem(
                "receivers.otlp.protocols.grpc.max_recv_msg_size_mib",
                "must be at least 1",
            );
        }
        if http.as_ref().is_some_and(|h| h.max_request_body_size == 0) {
            self.problem(
                "receivers.otlp.protocols.http.max_request_body_size",
                "must be more than 0",
            );
        }
        for (path, ep) in [
            ("grpc", grpc.as_ref().map(|g| &g.endpoint)),
            ("http", http.as_ref().map(|h| &h.endpoint)),
        ] {
            if let Some(ep) = ep {
                self.check_listen(&format!("receivers.otlp.protocols.{path}.endpoint"), ep);
            }
        }
        Some(ReceiversCfg { grpc, http, checks })
    }

    fn receiver_checks(&mut self, otlp: &raw::OtlpReceiver) -> Checks {
        let mut checks = Checks::default();
        match otlp.invalid_utf8.as_deref() {
            None | Some("repair") => {}
            Some("reject") => checks.invalid_utf8 = InvalidUtf8::Reject,
            Some(other) => self.problem(
                "receivers.otlp.invalid_utf8",
                format!("{other:?} is not a choice: use repair (replace invalid sequences with U+FFFD) or reject (refuse the span)"),
            ),
        }
        if let Some(max) = otlp.max_span_bytes {
            if max.0 < 1024 {
                self.problem(
                    "receivers.otlp.max_span_bytes",
                    "must be at least 1KiB (SDK spans are a few hundred bytes each)",
                );
            }
            checks.max_span_bytes = usize::try_from(max.0).unwrap_or(usize::MAX);
        }
        checks
    }

    /// A listen address must be `host:port` with a numeric port.
    fn check_listen(&mut self, path: &str, endpoint: &str) {
        let ok = endpoint
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            self.problem(
                path,
                format!("{endpoint:?} is not host:port (e.g. 127.0.0.1:4317, 0.0.0.0:4317)"),
            );
        }
    }

    fn memory_limiter(&mut self, value: Option<Value>) -> Option<MemoryLimiterCfg> {
        const P: &str = "processors.memory_limiter";
        let m: raw::MemoryLimiter = match value {
            None | Some(Value::Null) => return Some(MemoryLimiterCfg::default()),
            Some(v) => self.read(v, P)?,
        };
        let amount = |mib: u64, pct: u32| match (mib, pct) {
            (0, 0) => MemoryAmount::Unset,
            (0, p) => MemoryAmount::Percent(p),
            (m, _) => MemoryAmount::Bytes(m << 20),
        };
        let cfg = MemoryLimiterCfg {
            check_interval: m
                .check_interval
                .map_or(MemoryLimiterCfg::default().check_interval, |d| d.0),
            limit: amount(m.limit_mib, m.limit_percentage),
            spike: amount(m.spike_limit_mib, m.spike_limit_percentage),
        };
        if cfg.check_interval.is_zero() {
            self.problem(format!("{P}.check_interval"), "must be more than 0");
        }
        if m.limit_mib > 0 && m.limit_percentage > 0 {
            self.problem(
                format!("{P}.limit_percentage"),
                "set limit_mib or limit_percentage, not both",
            );
        }
        if m.spike_limit_mib > 0 && m.spike_limit_percentage > 0 {
            self.problem(
                format!("{P}.spike_limit_percentage"),
                "set spike_limit_mib or spike_limit_percentage, not both",
            );
        }
        for (key, pct) in [
            ("limit_percentage", m.limit_percentage),
            ("spike_limit_percentage", m.spike_limit_percentage),
        ] {
            if pct > 100 {
                self.problem(format!("{P}.{key}"), "must be between 0 and 100");
            }
        }
        match (cfg.limit, cfg.spike) {
            (MemoryAmount::Bytes(l), MemoryAmount::Bytes(s)) if s >= l => self.problem(
                format!("{P}.spike_limit_mib"),
                "must be less than limit_mib",
            ),
            (MemoryAmount::Percent(l), MemoryAmount::Percent(s)) if s >= l => self.problem(
                format!("{P}.spike_limit_percentage"),
                "must be less than limit_percentage",
            ),
            _ => {}
        }
        Some(cfg)
    }

    fn exporters(&mut self, value: Option<Value>) -> Option<Vec<(String, ExporterCfg)>> {
        let map = match value {
            Some(Value::Mapping(m)) => m,
            None | Some(Value::Null) => serde_yaml_ng::Mapping::new(),
            Some(_) => {
                self.problem(
                    "exporters",
                    "must be a mapping of exporters (otlp, otlphttp, file)",
                );
                return None;
            }
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Some(name) = k.as_str().map(str::to_owned) else {
                self.problem(
                    "exporters",
                    format!("exporter names must be strings, not {k:?}"),
                );
                continue;
            };
            let path = format!("exporters.{name}");
            let cfg = match name.split('/').next().unwrap_or_default() {
                "otlp" => self.read::<OtlpCfg>(v, &path).map(ExporterCfg::Otlp),
                "otlphttp" => self.read::<OtlpCfg>(v, &path).map(ExporterCfg::OtlpHttp),
                "file" => self.read::<FileCfg>(v, &path).map(ExporterCfg::File),
                other => {
                    self.problem(path, format!("unknown exporter type {other:?}: casefile has otlp (gRPC), otlphttp and file (name several as otlp/a, otlp/b)"));
                    None
                }
            };
            if let Some(cfg) = cfg {
                self.check_exporter(&format!("exporters.{name}"), &cfg);
                out.push((name, cfg));
            }
        }
        if out.is_empty()
            && !self
                .problems
                .iter()
                .any(|p| p.path.starts_with("exporters"))
        {
            self.problem(
                "exporters",
                "no exporter: kept traces would go nowhere (add otlp, otlphttp or file)",
            );
        }
        Some(out)
    }

    fn check_exporter(&mut self, path: &str, cfg: &ExporterCfg) {
        match cfg {
            ExporterCfg::Otlp(c) | ExporterCfg::OtlpHttp(c) => {
                self.exporter_tls(path, c, matches!(cfg, ExporterCfg::OtlpHttp(_)));
                if c.endpoint.trim().is_empty() {
                    self.problem(format!("{path}.endpoint"), "must not be empty");
                }
                let (kind, choices) = match cfg {
                    ExporterCfg::OtlpHttp(_) => {
                        ("otlphttp", crate::wire::compression::HTTP_EXPORTER_CHOICES)
                    }
                    _ => (
                        "otlp (gRPC)",
                        crate::wire::compression::GRPC_EXPORTER_CHOICES,
                    ),
                };
                let given = c.compression.as_str();
                if !(matches!(given, "none" | "") || choices.contains(&given)) {
                    self.problem(
                        format!("{path}.compression"),
                        format!(
                            "{given:?} is not supported by an {kind} exporter: use {} or none",
                            choices.join(", ")
                        ),
                    );
                }
                if c.sending_queue.queue_size == 0 {
                    self.problem(
                        format!("{path}.sending_queue.queue_size"),
                        "must be at least 1",
                    );
                }
                if c.timeout.0.is_zero() {
                    self.problem(format!("{path}.timeout"), "must be more than 0");
                }
                self.check_batch(
                    &format!("{path}.sending_queue.batch"),
                    &c.sending_queue.batch,
                );
            }
            ExporterCfg::File(c) => {
                if c.path.trim().is_empty() {
                    self.problem(format!("{path}.path"), "must not be empty");
                }
            }
        }
    }

    fn check_batch(&mut self, path: &str, b: &BatchCfg) {
        let sizer = match b.sizer() {
            Ok(s) => s,
            Err(other) => {
                self.problem(
                    format!("{path}.sizer"),
                    format!("unknown sizer {other:?}: use bytes (the default) or items"),
                );
                return;
            }
        };
        match (sizer, b.max_size.map(|s| s.0)) {
            (_, Some(0)) => self.problem(format!("{path}.max_size"), "must be more than 0"),
            (Sizer::Bytes, Some(n)) if n < MIN_MAX_REQUEST_BYTES => self.problem(
                format!("{path}.max_size"),
                format!("{n} bytes is too small: at least 64KiB (the default, 3MiB, suits a downstream that accepts 4 MiB)"),
            ),
            _ => {}
        }
    }

    /// `cluster:`: `self` must be one of `peers`, each `otlp` a `host:port` listed once.
    fn cluster(&mut self, c: raw::Cluster) -> Option<crate::cluster::ClusterCfg> {
        if c.dns.is_some() {
            self.problem(
                "cluster.dns",
                "membership from DNS is not built yet: list the members in cluster.peers",
            );
        }
        if let Some(t) = &c.tls {
            if t.insecure {
                self.problem(
                    "cluster.tls.insecure",
                    "leave cluster.tls out for plaintext between members",
                );
            }
            // Checked as an otlp exporter's would be, against a TLS endpoint.
            let probe = crate::export::config::OtlpCfg {
                endpoint: "https://member:4317".into(),
                traces_endpoint: None,
                tls: t.clone(),
                compression: "none".into(),
                headers: Default::default(),
                timeout: Default::default(),
                retry_on_failure: Default::default(),
                sending_queue: Default::default(),
            };
            self.exporter_tls("cluster", &probe, false);
        }
        let me = c.me.filter(|m| !m.trim().is_empty());
        if me.is_none() {
            self.problem(
                "cluster.self",
                "required: this member's otlp address as cluster.peers lists it",
            );
        }
        if c.peers.is_empty() {
            self.problem(
                "cluster.peers",
                "required: every member of the tier (this one too), as [{ otlp: host:port, api: host:port }]",
            );
        }
        let mut peers: Vec<crate::cluster::PeerCfg> = Vec::new();
        for (i, p) in c.peers.into_iter().enumerate() {
            let at = format!("cluster.peers[{i}]");
            for (key, addr) in [("otlp", Some(&p.otlp)), ("api", p.api.as_ref())] {
                if let Some(a) = addr.filter(|a| !is_host_port(a)) {
                    self.problem(format!("{at}.{key}"), format!("{a:?}: expected host:port"));
                }
            }
            if p.api.is_none() {
                self.warning(
                    format!("{at}.api"),
                    "no api address: the tier-wide support API cannot ask this member (it is listed in `partial`)",
                );
            }
            if peers.iter().any(|q| q.otlp == p.otlp) {
                self.problem(
                    format!("{at}.otlp"),
                    format!("{:?} is listed twice", p.otlp),
                );
            }
            peers.push(crate::cluster::PeerCfg {
                otlp: p.otlp,
                api: p.api,
            });
        }
        let me = me?;
        if !peers.is_empty() && !peers.iter().any(|p| p.otlp == me) {
            let listed: Vec<&str> = peers.iter().map(|p| p.otlp.as_str()).collect();
            self.problem(
                "cluster.self",
                format!(
                    "{me:?} is not one of the peers' otlp addresses ({})",
                    listed.join(", ")
                ),
            );
            return None;
        }
        (!peers.is_empty()).then_some(crate::cluster::ClusterCfg {
            me,
            peers,
            tls: c.tls,
        })
    }

    fn storage(&mut self, s: raw::Storage) -> Option<StorageCfg> {
        let fsync = match s.fsync.as_str() {
            "always" => Fsync::Always,
            "never" => Fsync::Never,
            other => {
                self.problem("storage.fsync", format!("{other:?}: use always or never"));
                Fsync::Never
            }
        };
        if s.segment_size.0 < 4 << 10 {
            self.problem("storage.segment_size", "must be at least 4KiB");
        }
        let dir = s.dir.filter(|d| !d.trim().is_empty())?;
        Some(StorageCfg {
            dir: dir.into(),
            segment_size: s.segment_size.0,
            fsync,
        })
    }

    fn logging(&mut self, l: raw::Logging) -> Option<LoggingCfg> {
        let format = match l.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                self.problem("logging.format", format!("{other:?}: use text or json"));
                return None;
            }
        };
        if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() {
            self.problem(
                "logging.level",
                format!(
                    "{:?} is not a level (error, warn, info, debug, trace) or filter",
                    l.level
                ),
            );
        }
        Some(LoggingCfg {
            level: l.level,
            format,
        })
    }
}

/// The exporters of the traces pipeline, when there is one (a Collector file), each bounded
/// by the batch processor's span count when it has one.
fn apply_pipeline(
    mut exporters: Vec<(String, ExporterCfg)>,
    applied: &super::collector::Applied,
) -> Vec<(String, ExporterCfg)> {
    if let Some(names) = &applied.exporters {
        exporters.retain(|(n, _)| names.contains(n));
    }
    if let Some(spans) = applied.batch_max_spans {
        for (_, e) in &mut exporters {
            if let ExporterCfg::Otlp(c) | ExporterCfg::OtlpHttp(c) = e {
                c.sending_queue.batch.max_spans = Some(spans);
            }
        }
    }
    exporters
}

/// `host:port` with a port number (the host is not resolved here).
fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}
