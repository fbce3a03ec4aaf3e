//! Live reload: on SIGHUP, or when the config file changes on disk, the file is read and
//! validated with the same code as `casefile check`. A valid file replaces the sampling
//! policies at once (traces already buffered are decided with the new ones; nothing is
//! lost); an invalid one is rejected with every problem logged, and the running config
//! stays. Settings that need new listeners or connections are reported as waiting for a
//! restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::config::{self, Config, ConfigError, Problem};
use crate::daemon::Daemon;
use crate::policy::Policies;

/// How often the config file's modification time is checked.
pub const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("invalid policies: {}", .0.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "))]
    Policies(Vec<Problem>),
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The policy names now in force.
    pub policies: Vec<String>,
    /// Sections that differ from the running config but apply only after a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Daemon {
    /// Applies what can change while running: the sampling policies (and
    /// `sample_on_first_match`). `started` is the config the daemon was started with.
    pub fn reload(&self, started: &Config, new: &Config) -> Result<Reloaded, ReloadError> {
        let running = started;
        let ts = &new.tail_sampling;
        let policies = Policies::build(&ts.policies, ts.sample_on_first_match)
            .map_err(ReloadError::Policies)?;
        let names = policies.names();
        self.buffer.set_policies(policies);
        let mut needs_restart = Vec::new();
        let differs =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        if differs(&running.receivers, &new.receivers) {
            needs_restart.push("receivers");
        }
        if differs(&running.exporters, &new.exporters) {
            needs_restart.push("exporters");
        }
        if differs(&running.support, &new.support) {
            needs_restart.push("support");
        }
        let (a, b) = (&running.tail_sampling, &new.tail_sampling);
        if (
            a.decision_wait,
            a.num_traces,
            a.max_buffer_bytes,
            a.num_shards,
        ) != (
            b.decision_wait,
            b.num_traces,
            b.max_buffer_bytes,
            b.num_shards,
        ) {
            needs_restart.push("processors.tail_sampling (bounds and windows)");
        }
        if running.memory_limiter != new.memory_limiter {
            needs_restart.push("processors.memory_limiter");
        }
        Ok(Reloaded {
            policies: names,
            needs_restart,
        })
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Where reloads come from: SIGHUP (its handler installed when this is made, so a
/// SIGHUP during start-up is not fatal) and the config file, when there is one.
pub struct Source {
    path: Option<PathBuf>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Source {
    /// Must be called inside the runtime.
    pub fn new(path: Option<PathBuf>) -> Source {
        use tokio::signal::unix::{signal, SignalKind};
        let hup = signal(SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP; config reload only on file change"))
            .ok();
        Source { path, hup }
    }
}

async fn hangup(hup: &mut Option<tokio::signal::unix::Signal>) {
    match hup {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Reloads on SIGHUP and whenever the file's modification time changes, until the
/// returned future is dropped. Every attempt is logged; a bad file never stops casefile.
pub async fn watch(daemon: &Daemon, mut source: Source, started: Config) {
    let mut seen = source.path.as_deref().and_then(modified);
    let mut every = tokio::time::interval(POLL);
    loop {
        let why = tokio::select! {
            _ = hangup(&mut source.hup) => "SIGHUP",
            _ = every.tick() => {
                let now = source.path.as_deref().and_then(modified);
                if now == seen {
                    continue;
                }
                seen = now;
                "file changed"
            }
        };
        let Some(path) = &source.path else {
            tracing::warn!(
                trigger = why,
                "running on the embedded default config: there is no file to reload"
            );
            continue;
        };
        match config::load_file(path)
            .map_err(ReloadError::from)
            .and_then(|new| daemon.reload(&started, &new))
        {
            Ok(r) => {
                tracing::info!(trigger = why, config = %path.display(), policies = ?r.policies, "config reloaded: new policies in force");
                if !r.needs_restart.is_empty() {
                    tracing::warn!(sections = ?r.needs_restart, "these changes apply after a restart");
                }
            }
            Err(e) => {
                // One line, so a log pipeline keeps every problem with the event.
                let problems = e.to_string().replace("\n  ", " | ");
                tracing::error!(trigger = why, config = %path.display(), "config reload rejected, the running config stays: {problems}")
            }
        }
    }
}
