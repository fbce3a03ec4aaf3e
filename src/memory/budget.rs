//! The memory budget: the whole-process limit on resident memory (from
//! `processors.memory_limiter`, else 80 % of the cgroup limit), the soft level below it,
//! and the trace buffer's byte bound (`max_buffer_bytes`, else derived from the soft level
//! after the other holders' bounds are set aside). Resolved once at start and by
//! `casefile check`; the guard and the buffer work from these figures.

use std::time::Duration;

use super::host::{self, Host};
use crate::config::{Config, MemoryAmount};

/// The buffer bound when no memory limit is known.
pub const DEFAULT_BUFFER_BYTES: usize = 512 << 20;
/// Without `limit_mib`/`limit_percentage`, the limit is this share of the cgroup limit
/// (the rest is for the kernel's view of the cgroup: page cache, sockets, stacks).
pub const CGROUP_SHARE_PERCENT: u64 = 80;
/// Without a spike limit, the soft level is this far below the limit: a fifth of it.
pub const SPIKE_DIVISOR: u64 = 5;
/// Resident memory of an idle daemon (runtime, code, metrics, TLS): measured 20-30 MiB.
pub const PROCESS_BYTES: u64 = 32 << 20;
/// Resident bytes per indexed trace (377 B measured, BENCHMARKS.md).
pub const INDEX_ENTRY_BYTES: u64 = 400;
/// Resident bytes per decision cache entry (about 20 B, `buffer/cache.rs`).
pub const CACHE_ENTRY_BYTES: u64 = 24;
/// Resident memory per byte the buffer counts, in percent, outbox included: 236 B of RSS
/// per 200 counted bytes (a 152 B span and its 48 B record) is 1.2, and the outbox may
/// hold another quarter of the bound: 1.2 × 1.25 = 1.5.
pub const BUFFER_RSS_PERCENT: u64 = 150;
/// The smallest derived buffer bound.
pub const MIN_BUFFER_BYTES: usize = 4 << 20;

/// The resolved figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Past this much resident memory the receivers refuse new data; None: no guard.
    pub limit: Option<u64>,
    /// Past this the buffer decides traces early to get back under it.
    pub soft: Option<u64>,
    /// Where the limit comes from, in words, for the log and `casefile check`.
    pub limit_from: String,
    pub check_interval: Duration,
    /// The trace buffer's byte bound.
    pub max_buffer_bytes: usize,
    /// `set`, `derived` or `default`.
    pub buffer_from: &'static str,
    /// Kept spans waiting for the exporters past this make the receivers push back.
    pub outbox_bytes: usize,
    /// What the other holders may take (index, rescue buffer, decision caches, requests
    /// in flight, the process itself), set aside before the buffer is derived.
    pub reserved: u64,
    /// Things the operator should know (an unreadable cgroup file, a budget too small).
    pub warnings: Vec<String>,
}

/// A size for people: `118.3MiB`.
fn mib(b: u64) -> String {
    format!("{:.1}MiB", b as f64 / (1 << 20) as f64)
}

fn pct(total: u64, p: u32) -> u64 {
    (total as u128 * p as u128 / 100) as u64
}

/// What the holders other than the buffer may take, by their configured bounds.
pub fn reserved(config: &Config) -> u64 {
    let s = &config.support;
    let index = if s.index.attributes.is_empty() {
        0
    } else {
        s.index.max_traces as u64 * INDEX_ENTRY_BYTES
    };
    let c = &s.complaints;
    let rescue = if c.rescue_window.is_zero() {
        0
    } else {
        c.rescue_max_bytes as u64
    };
    let t = &config.tail_sampling;
    let caches = (t.sampled_cache_size + t.non_sampled_cache_size) as u64 * CACHE_ENTRY_BYTES;
    let r = &config.receivers;
    let largest = [
        r.grpc.as_ref().map(|g| g.max_recv_msg_size),
        r.http.as_ref().map(|h| h.max_request_body_size),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0) as u64;
    // Spans waiting to be forwarded to the other members of a tier.
    let forwarding = if config.cluster.is_some() {
        crate::cluster::MAX_QUEUED as u64
    } else {
        0
    };
    // Two of the largest requests decoded at once per core of this machine class.
    PROCESS_BYTES + 2 * largest + index + rescue + caches + forwarding
}

impl Budget {
    pub fn resolve(config: &Config, host: &Host) -> Budget {
        let m = &config.memory_limiter;
        let mut warnings = Vec::new();
        let cgroup = match host::cgroup_limit(host) {
            Ok(l) => l,
            Err(e) => {
                warnings.push(format!("{e}; treated as no cgroup limit"));
                None
            }
        };
        // What percentages refer to: the cgroup limit, else the host's memory.
        let total = || -> Option<(u64, String)> {
            if let Some(c) = &cgroup {
                return Some((
                    c.bytes,
                    format!("the cgroup limit {} in {}", mib(c.bytes), c.file.display()),
                ));
            }
            host::host_total(host)
                .map(|t| (t, format!("the host's {}", mib(t))))
                .ok()
        };
        let (limit, limit_from) = match m.limit {
            MemoryAmount::Bytes(b) => (Some(b), "processors.memory_limiter.limit_mib".to_owned()),
            MemoryAmount::Percent(p) => match total() {
                Some((t, what)) => (Some(pct(t, p)), format!("limit_percentage {p}% of {what}")),
                None => {
                    warnings.push("limit_percentage is set but neither a cgroup limit nor the host's memory could be read: no memory limit".into());
                    (None, "none (limit_percentage of unknown memory)".into())
                }
            },
            MemoryAmount::Unset => match &cgroup {
                Some(c) => (
                    Some(c.bytes * CGROUP_SHARE_PERCENT / 100),
                    format!(
                        "{CGROUP_SHARE_PERCENT}% of the cgroup limit {} in {}",
                        mib(c.bytes),
                        c.file.display()
                    ),
                ),
                None => (
                    None,
                    "none (no cgroup memory limit, processors.memory_limiter unset)".into(),
                ),
            },
        };
        let soft = limit.map(|l| {
            let spike = match m.spike {
                MemoryAmount::Bytes(b) => b,
                MemoryAmount::Percent(p) => total().map_or(l / SPIKE_DIVISOR, |(t, _)| pct(t, p)),
                MemoryAmount::Unset => l / SPIKE_DIVISOR,
            };
            if spike >= l {
                warnings.push(format!(
                    "the spike limit {} is not below the memory limit {}: the soft level is half the limit",
                    mib(spike),
                    mib(l)
                ));
                l / 2
            } else {
                l - spike
            }
        });
        let reserved = reserved(config);
        let (max_buffer_bytes, buffer_from) = match (config.tail_sampling.max_buffer_bytes, soft) {
            (Some(b), _) => (b, "set"),
            (None, None) => (DEFAULT_BUFFER_BYTES, "default"),
            (None, Some(soft)) => {
                let room = soft.saturating_sub(reserved);
                let derived = (room * 100 / BUFFER_RSS_PERCENT) as usize;
                if derived < MIN_BUFFER_BYTES {
                    warnings.push(format!(
                        "the memory limit leaves {} for traces after {} for the index, rescue buffer, decision caches and requests in flight: the buffer gets {}; lower support.index.max_traces or support.complaints.rescue_max_bytes, or raise the limit",
                        mib(room),
                        mib(reserved),
                        mib(MIN_BUFFER_BYTES as u64)
                    ));
                }
                (derived.max(MIN_BUFFER_BYTES), "derived")
            }
        };
        if let (Some(soft), "set") = (soft, buffer_from) {
            let needs = max_buffer_bytes as u64 * BUFFER_RSS_PERCENT / 100 + reserved;
            if needs > soft {
                warnings.push(format!(
                    "max_buffer_bytes {} and the other bounds may take about {}, over the soft memory level {}: traces will often be decided early for memory",
                    mib(max_buffer_bytes as u64),
                    mib(needs),
                    mib(soft)
                ));
            }
        }
        Budget {
            limit,
            soft,
            limit_from,
            check_interval: m.check_interval,
            max_buffer_bytes,
            buffer_from,
            outbox_bytes: (max_buffer_bytes / 4).max(MIN_BUFFER_BYTES),
            reserved,
            warnings,
        }
    }

    /// The figures in words: one line for the limit, one for the buffer bound.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        match (self.limit, self.soft) {
            (Some(l), Some(s)) => out.push(format!(
                "memory: limit {} ({}); past {} traces are decided early, past the limit new data is refused (resident memory checked every {:?})",
                mib(l), self.limit_from, mib(s), self.check_interval
            )),
            _ => out.push(format!("memory: no limit: {}", self.limit_from)),
        }
        let how = match self.buffer_from {
            "derived" => format!(
                "derived: (soft level − {} for the other holders) / {}",
                mib(self.reserved),
                BUFFER_RSS_PERCENT as f64 / 100.0
            ),
            "set" => "processors.tail_sampling.max_buffer_bytes".to_owned(),
            _ => "default".to_owned(),
        };
        out.push(format!(
            "buffer bound: {} of pending spans ({how}); kept spans waiting for export up to {}",
            mib(self.max_buffer_bytes as u64),
            mib(self.outbox_bytes as u64)
        ));
        out
    }
}
