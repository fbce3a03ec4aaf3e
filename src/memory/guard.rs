//! The memory guard: one background task samples resident memory every
//! `check_interval` (never per request) and publishes a level the receivers read with one
//! atomic load. Past the soft level the buffer gets a lower byte bound and decides its
//! oldest traces early; past the limit the receivers refuse new data with the OTLP
//! throttling codes (`reason="memory"`). Accepted data is never dropped by it.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::host::Rss;
use crate::buffer::Buffer;

/// How far resident memory is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Normal = 0,
    /// Past the soft level: traces are decided early.
    Soft = 1,
    /// Past the limit: new data is refused.
    Hard = 2,
}

/// The buffer bound is cut to this share of what it holds, at most once per
/// [`CUT_EVERY`], while memory stays past the soft level.
const CUT_PERCENT: usize = 75;
const CUT_EVERY: Duration = Duration::from_secs(1);
/// At most one "refusing" log line per this while over the limit.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct State {
    /// A [`Level`] as its number.
    level: AtomicU8,
    /// The last reading, in bytes.
    rss: AtomicU64,
    /// Requests refused for memory since the last log line.
    refused: AtomicU64,
}

/// The receivers' view of the guard. Cheap to clone; without a limit it never refuses.
#[derive(Debug, Clone, Default)]
pub struct MemoryGuard(Arc<State>);

impl MemoryGuard {
    pub fn level(&self) -> Level {
        match self.0.level.load(Ordering::Relaxed) {
            2 => Level::Hard,
            1 => Level::Soft,
            _ => Level::Normal,
        }
    }

    /// True while new data must be refused.
    pub fn over_limit(&self) -> bool {
        self.level() == Level::Hard
    }

    /// The last resident memory read, in bytes.
    pub fn rss(&self) -> u64 {
        self.0.rss.load(Ordering::Relaxed)
    }

    /// Notes a refused request (for the rate-limited log line).
    pub fn refused(&self) {
        self.0.refused.fetch_add(1, Ordering::Relaxed);
    }

    fn set(&self, level: Level, rss: u64) {
        self.0.rss.store(rss, Ordering::Relaxed);
        self.0.level.store(level as u8, Ordering::Relaxed);
    }
}

/// What the guard task works from.
pub struct Watch {
    /// Where the level is published for the receivers.
    pub guard: MemoryGuard,
    pub rss: Rss,
    /// Resident bytes past which new data is refused.
    pub limit: u64,
    /// Resident bytes past which traces are decided early.
    pub soft: u64,
    pub check_interval: Duration,
    /// Told to decide early past the soft level.
    pub buffer: Arc<Buffer>,
}

/// Samples memory until `stop` turns true.
pub async fn run(w: Watch, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(w.check_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    metrics::gauge!("casefile_memory_limit_bytes").set(w.limit as f64);
    metrics::gauge!("casefile_memory_soft_limit_bytes").set(w.soft as f64);
    let mut last_cut: Option<Instant> = None;
    let mut last_log: Option<Instant> = None;
    let mut read_failed = false;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let rss = match w.rss.read() {
            Ok(r) => r,
            Err(e) => {
                // Without a reading the guard keeps its last level.
                if !read_failed {
                    tracing::warn!(error = %e, "cannot read resident memory; the memory guard keeps its last level");
                    read_failed = true;
                }
                continue;
            }
        };
        read_failed = false;
        let before = w.guard.level();
        let level = if rss >= w.limit {
            Level::Hard
        } else if rss >= w.soft {
            Level::Soft
        } else {
            Level::Normal
        };
        w.guard.set(level, rss);
        metrics::gauge!("casefile_process_resident_memory_bytes").set(rss as f64);
        metrics::gauge!("casefile_memory_level").set(level as u8 as f64);
        let now = Instant::now();
        if level == Level::Normal {
            if last_cut.take().is_some() {
                w.buffer.set_memory_cap(None);
            }
        } else if last_cut.is_none_or(|t| now.duration_since(t) >= CUT_EVERY) {
            let cap = w.buffer.held_bytes() / 100 * CUT_PERCENT;
            w.buffer.set_memory_cap(Some(cap));
            last_cut = Some(now);
        }
        if level != Level::Normal {
            w.buffer.relieve(now);
        }
        report(&w.guard, before, level, rss, w.limit, now, &mut last_log);
    }
}

/// Logs entering and leaving the refusing state, and while refusing at most once per
/// [`LOG_EVERY`], with the number of requests refused since the last line.
fn report(
    guard: &MemoryGuard,
    before: Level,
    level: Level,
    rss: u64,
    limit: u64,
    now: Instant,
    last_log: &mut Option<Instant>,
) {
    let due = last_log.is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
    if level == Level::Hard && due {
        let refused = guard.0.refused.swap(0, Ordering::Relaxed);
        tracing::warn!(
            resident_bytes = rss,
            limit_bytes = limit,
            refused_requests = refused,
            "resident memory is over the limit: refusing new data (retryable) and deciding traces early"
        );
        *last_log = Some(now);
    } else if before == Level::Hard && level != Level::Hard && due {
        let refused = guard.0.refused.swap(0, Ordering::Relaxed);
        tracing::info!(
            resident_bytes = rss,
            refused_requests = refused,
            "resident memory is back under the limit: accepting data again"
        );
        *last_log = Some(now);
    }
}
