//! The effective settings in a few lines, for `casefile check` and the start-up log.

use super::size::ByteSize;
use super::{Config, LogFormat, ServerTlsCfg};
use crate::export::config::ExporterCfg;
use crate::memory::{Budget, Host};

/// `, TLS` / `, mTLS` after a receiver's settings.
fn tls_note(tls: Option<&ServerTlsCfg>) -> &'static str {
    match tls {
        Some(t) if t.client_ca_file.is_some() => ", TLS, client certificates required",
        Some(_) => ", TLS",
        None => "",
    }
}

fn secs(d: std::time::Duration) -> String {
    super::duration::GoDuration(d).to_string()
}

impl Config {
    /// One line per area: receivers, buffer, memory, exporters, support API, logging; the
    /// memory figures as this machine's cgroup makes them.
    pub fn summary(&self) -> Vec<String> {
        self.summary_with(&Budget::resolve(self, &Host::system()))
    }

    /// Same, with the memory figures of `budget`.
    pub fn summary_with(&self, budget: &Budget) -> Vec<String> {
        let mut out = Vec::new();
        let r = &self.receivers;
        let mut recv = Vec::new();
        if let Some(g) = &r.grpc {
            recv.push(format!(
                "OTLP/gRPC {} (max message {}{})",
                g.endpoint,
                ByteSize(g.max_recv_msg_size as u64),
                tls_note(g.tls.as_ref())
            ));
        }
        if let Some(h) = &r.http {
            recv.push(format!(
                "OTLP/HTTP {} (max body {}{})",
                h.endpoint,
                ByteSize(h.max_request_body_size as u64),
                tls_note(h.tls.as_ref())
            ));
        }
        out.push(format!("receivers: {}", recv.join(", ")));
        let utf8 = match r.checks.invalid_utf8 {
            crate::wire::decode::InvalidUtf8::Repair => "repaired (U+FFFD)",
            crate::wire::decode::InvalidUtf8::Reject => "refused",
        };
        out.push(format!(
            "span checks: invalid UTF-8 {utf8}; spans over {} or nested deeper than {} levels refused",
            ByteSize(r.checks.max_span_bytes as u64),
            crate::wire::check::MAX_DEPTH
        ));
        let t = &self.tail_sampling;
        let after_root = t
            .decision_wait_after_root_received
            .map(|d| format!(", {} after the root span", secs(d)))
            .unwrap_or_default();
        out.push(format!(
            "decisions: {} after a trace's first span{after_root}; at most {} traces and the buffer bound below pending (then the oldest are decided early)",
            secs(t.decision_wait),
            t.num_traces,
        ));
        out.extend(budget.lines());
        out.extend(
            budget
                .warnings
                .iter()
                .map(|w| format!("memory warning: {w}")),
        );
        out.push(format!(
            "decision cache: {} kept and {} dropped trace ids; sample_on_first_match: {}; on shutdown pending traces are {}",
            t.sampled_cache_size,
            t.non_sampled_cache_size,
            t.sample_on_first_match,
            if t.drop_pending_traces_on_shutdown { "dropped" } else { "decided" }
        ));
        out.push(kept_traces_carry(&t.output));
        let ex: Vec<String> = self
            .exporters
            .iter()
            .map(|(name, cfg)| match cfg {
                ExporterCfg::Otlp(c) | ExporterCfg::OtlpHttp(c) => {
                    let http = matches!(cfg, ExporterCfg::OtlpHttp(_));
                    let tls = match c.security(http) {
                        Ok(s) if s.is_tls() && c.tls.insecure_skip_verify => {
                            ", TLS without certificate check"
                        }
                        Ok(s) if s.is_tls() && c.tls.cert_file.is_some() => {
                            ", TLS with a client certificate"
                        }
                        Ok(s) if s.is_tls() => ", TLS",
                        _ => ", plaintext",
                    };
                    format!(
                        "{name} -> {} (compression {}, timeout {}{tls})",
                        c.endpoint, c.compression, c.timeout
                    )
                }
                ExporterCfg::File(c) => format!("{name} -> {}", c.path),
            })
            .collect();
        out.push(format!("exporters: {}", ex.join(", ")));
        let api = self.support.api.endpoint.as_deref().unwrap_or("off");
        let auth = if self.support.api.auth_token.is_some() {
            " (bearer token required)"
        } else {
            ""
        };
        let tls = if self.support.api.endpoint.is_some() {
            match &self.support.api.tls {
                Some(t) if t.client_ca_file.is_some() => " over TLS, client certificates required",
                Some(_) => " over TLS",
                None => "",
            }
        } else {
            ""
        };
        out.push(format!("support API: {api}{tls}{auth}"));
        let ix = &self.support.index;
        if ix.attributes.is_empty() {
            out.push("index: off".into());
        } else {
            out.push(format!(
                "index: {} for {}, at most {} traces and {} (oldest out first){}",
                ix.attributes.join(", "),
                secs(ix.retention),
                ix.max_traces,
                ByteSize(ix.max_bytes as u64),
                if ix.hash_values {
                    ", values hashed"
                } else {
                    ""
                }
            ));
        }
        out.push(match &self.support.archive {
            None => "archive: off (support.archive.dir unset)".into(),
            Some(a) => archive_line(a),
        });
        if let Some(c) = &self.cluster {
            out.push(format!(
                "cluster: member {} of {} (static list); spans of traces another member owns are forwarded to it over OTLP/gRPC",
                c.me,
                c.peers.len()
            ));
        }
        let fmt = if self.logging.format == LogFormat::Json {
            "json"
        } else {
            "text"
        };
        out.push(format!(
            "logging: {} ({fmt}); shutdown within {}",
            self.logging.level,
            secs(self.shutdown_grace)
        ));
        out
    }
}

/// The archive's line: where, how long, how much, and what that bound holds at a stated
/// rate with the measured bytes a span (BENCHMARKS.md, "The archive").
fn archive_line(a: &crate::archive::ArchiveCfg) -> String {
    use crate::archive::{Traces, ESTIMATED_BYTES_PER_SPAN};
    const SPANS_PER_SEC: f64 = 10_000.0;
    let what = match a.traces {
        Traces::All => "spans of every decided trace",
        Traces::Dropped => "spans of dropped traces, summaries of kept ones",
    };
    let hours = a.max_bytes as f64 / (ESTIMATED_BYTES_PER_SPAN as f64 * SPANS_PER_SEC) / 3600.0;
    format!(
        "archive: {} for {}, at most {} (segments of {}), {what}; at ~{ESTIMATED_BYTES_PER_SPAN} B a span, {} holds ~{hours:.0} h of 10 000 spans/s",
        a.dir.display(),
        secs(a.retention),
        ByteSize(a.max_bytes),
        ByteSize(a.segment_bytes()),
        ByteSize(a.max_bytes),
    )
}

/// What kept traces carry besides their spans.
fn kept_traces_carry(o: &crate::policy::Output) -> String {
    let mut parts = vec!["casefile.policy on the root"];
    if o.record == crate::policy::RecordPolicy::Collector {
        parts.push("tailsampling.policy/.composite_policy/.cached_decision on the scope");
    }
    if o.use_tracestate {
        parts.push("ot=th thresholds on spans kept by probabilistic decisions (consistent: ot=rv, else the trace id)");
    }
    if o.adjusted_count_attribute {
        parts.push("casefile.adjusted_count on the root");
    }
    format!("kept traces carry: {}", parts.join("; "))
}
