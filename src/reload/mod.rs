//! Live reload: on SIGHUP, or when the config file changes on disk, the file is read and
//! validated with the same code as `casefile check`. A valid file replaces the sampling
//! policies at once (traces already buffered are decided with the new ones; nothing is
//! lost) and the support settings that have a live form (`apply`); an invalid one is
//! rejected with every problem logged, and the running config stays. Settings that need
//! new listeners, connections or stores are named key by key as waiting for a restart
//! (`restart`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::config::{self, Config, ConfigError, Problem};
use crate::daemon::Daemon;

mod apply;
pub mod certs;
mod restart;

pub use apply::live_support_keys;

/// How often the config file's modification time is checked.
pub const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("invalid policies: {}", .0.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "))]
    Policies(Vec<Problem>),
    #[error("certificate files that do not load: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Certificates(Vec<certs::CertError>),
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The policy names now in force.
    pub policies: Vec<String>,
    /// Live support keys whose values changed, now in force (names only, never values).
    pub applied: Vec<&'static str>,
    /// The `tls:` blocks whose files were read again, now in force for new handshakes.
    pub certificates: Vec<String>,
    /// Keys that differ from the config the daemon started with but apply only after a
    /// restart, each exact (`support.api.endpoint`, `receivers.otlp.protocols.grpc.tls`, ...).
    pub needs_restart: Vec<String>,
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

/// The token in `support.api.auth_token_file` when it differs from the one in force.
/// Compared by content, not modification time: a secret rewritten within the clock tick
/// of the last read (timestamps move in steps of a few milliseconds) is still seen.
fn rotated_token(daemon: &Daemon) -> Option<String> {
    let (file, current) = {
        let s = daemon.support.lock();
        (s.api.auth_token_file.clone()?, s.api.auth_token.clone())
    };
    let text = std::fs::read_to_string(file).ok()?;
    let token = text.trim();
    (!token.is_empty() && Some(token) != current.as_deref()).then(|| token.to_owned())
}

/// Reloads on SIGHUP, whenever the file's modification time changes, and when the token in
/// `support.api.auth_token_file` (a mounted secret) is not the one in force; reads again the certificate files
/// that changed in between, until the returned future is dropped. Every attempt is
/// logged; a bad file never stops casefile.
pub async fn watch(daemon: &Daemon, mut source: Source, started: Config) {
    let mut seen = source.path.as_deref().and_then(modified);
    // The rotated token a reload was last tried for: a reload refused for another reason
    // is not tried again every second for the same token.
    let mut tried: Option<String> = None;
    let mut every = tokio::time::interval(POLL);
    loop {
        let why = tokio::select! {
            _ = hangup(&mut source.hup) => "SIGHUP",
            _ = every.tick() => {
                let now = source.path.as_deref().and_then(modified);
                let token = rotated_token(daemon);
                if now == seen && (token.is_none() || token == tried) {
                    certificates_changed(daemon);
                    continue;
                }
                let why = if now != seen { "file changed" } else { "token file changed" };
                (seen, tried) = (now, token);
                why
            }
        };
        let Some(path) = &source.path else {
            tracing::warn!(
                trigger = why,
                "running on the embedded default config: there is no file to reload; certificate files are read again"
            );
            match daemon.reload_certificates() {
                Ok(blocks) => {
                    tracing::info!(trigger = why, ?blocks, "certificate files read again")
                }
                Err(e) => tracing::error!(
                    trigger = why,
                    "certificates not reloaded, the running ones stay: {e}"
                ),
            }
            continue;
        };
        match config::load_file(path)
            .map_err(ReloadError::from)
            .and_then(|new| daemon.reload(&started, &new))
        {
            Ok(r) => {
                tracing::info!(trigger = why, config = %path.display(), policies = ?r.policies, changed = ?r.applied, certificates = ?r.certificates, "config reloaded: policies, support settings and certificates in force");
                if !r.needs_restart.is_empty() {
                    tracing::warn!(keys = ?r.needs_restart, "these changes apply after a restart");
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

/// Reads again the certificate files that changed since the last look, and logs it.
fn certificates_changed(daemon: &Daemon) {
    let (done, refused) = daemon.reload_changed_certificates();
    if !done.is_empty() {
        tracing::info!(blocks = ?done, "certificate files changed: read again, in force for new connections");
    }
    for e in refused {
        tracing::error!(block = %e.block, "certificate files changed but do not load; the running certificate stays until they change again: {e}");
    }
}
