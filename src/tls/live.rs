//! Part of `tls`: certificates that change while casefile runs (cert-manager rewrites the
//! files in place). Each `tls:` block is a live handle around the rustls configuration
//! built from its files by the same loaders as at start ([`server_config`],
//! [`client_config`]). A reload reads the files again and builds a whole new configuration
//! ([`ServerTls::stage`], [`ClientTls::stage`]); only when that succeeds is it swapped in
//! ([`ServerTls::commit`]), so a broken file leaves the running certificate in place.
//!
//! What applies when: a listener takes the configuration in force at each accepted
//! connection, so every handshake after the swap uses the new certificate, key and client
//! CA; connections already open keep their session. An exporter's connector takes it at
//! each new connection; its open connection (gRPC keeps one HTTP/2 connection, otlphttp a
//! pool of idle ones) keeps going until it closes, then reconnects with the new files.
//!
//! Each handle remembers the modification time and size of its files when they were last
//! read, so a poll ([`ServerTls::changed`]) can tell when to read them again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tower::Service;

use super::{https_connector, server_config, Alpn, TlsError};
use crate::config::ServerTlsCfg;
use crate::export::config::TlsCfg;

/// A file's modification time and size; None when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(paths: &[&str]) -> Vec<Stamp> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// A configuration built from the files, not yet in force.
pub struct Staged<C, T> {
    cfg: C,
    /// Taken before the files were read: a write after it shows at the next poll.
    stamps: Vec<Stamp>,
    built: T,
}

/// The stamps of a handle's files when they were last read: the files in force, or the
/// ones last refused (so a broken file is not tried again until it changes).
type Seen = Vec<Stamp>;

fn server_paths(cfg: &ServerTlsCfg) -> Vec<&str> {
    let mut paths = vec![cfg.cert_file.as_str(), cfg.key_file.as_str()];
    paths.extend(cfg.client_ca_file.as_deref());
    paths
}

/// The TLS side of a listener (a receiver or the support API).
pub struct ServerTls {
    /// Where the block sits in the config (`support.api.tls`), for logs.
    block: String,
    alpn: Alpn,
    /// The block in force (a reload may name other files) and what was read of it.
    source: Mutex<(ServerTlsCfg, Seen)>,
    /// Taken once per accepted connection.
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads the files of `cfg`; an error names the file and what is wrong with it.
    pub fn load(
        block: impl Into<String>,
        cfg: &ServerTlsCfg,
        alpn: Alpn,
    ) -> Result<Arc<ServerTls>, TlsError> {
        let s = stage_server(cfg, alpn)?;
        Ok(Arc::new(ServerTls {
            block: block.into(),
            alpn,
            source: Mutex::new((s.cfg, s.stamps)),
            current: RwLock::new(s.built),
        }))
    }

    pub fn block(&self) -> &str {
        &self.block
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read())
    }

    /// True when a file changed since it was last read (or last refused).
    pub fn changed(&self) -> bool {
        let s = self.source.lock();
        stamps(&server_paths(&s.0)) != s.1
    }

    /// Reads the files of `cfg` (None: of the block in force) into a new configuration.
    /// A failure is remembered, so [`ServerTls::changed`] waits for the next change.
    pub fn stage(
        &self,
        cfg: Option<&ServerTlsCfg>,
    ) -> Result<Staged<ServerTlsCfg, Arc<ServerConfig>>, TlsError> {
        let cfg = cfg.cloned().unwrap_or_else(|| self.source.lock().0.clone());
        stage_server(&cfg, self.alpn).inspect_err(|_| {
            let mut s = self.source.lock();
            // Other files than those in force: the poll keeps watching the ones in force.
            if s.0 == cfg {
                s.1 = stamps(&server_paths(&cfg));
            }
        })
    }

    /// Puts a staged configuration in force for the handshakes from now on.
    pub fn commit(&self, staged: Staged<ServerTlsCfg, Arc<ServerConfig>>) {
        *self.current.write() = staged.built;
        *self.source.lock() = (staged.cfg, staged.stamps);
    }
}

fn stage_server(
    cfg: &ServerTlsCfg,
    alpn: Alpn,
) -> Result<Staged<ServerTlsCfg, Arc<ServerConfig>>, TlsError> {
    let stamps = stamps(&server_paths(cfg));
    Ok(Staged {
        cfg: cfg.clone(),
        stamps,
        built: server_config(cfg, alpn)?,
    })
}

/// The TLS side of an exporter: an HTTPS connector rebuilt from its files on reload.
pub struct ClientTls {
    /// Where the block sits in the config (`exporters.otlp/tempo.tls`), for logs.
    block: String,
    cfg: TlsCfg,
    http2: bool,
    connect_timeout: Duration,
    seen: Mutex<Seen>,
    /// Cloned once per new connection.
    current: RwLock<HttpsConnector<HttpConnector>>,
}

/// `ca_file`, `cert_file`, `key_file` when set (the system trust store is not watched).
fn client_paths(cfg: &TlsCfg) -> Vec<&str> {
    [&cfg.ca_file, &cfg.cert_file, &cfg.key_file]
        .into_iter()
        .filter_map(|p| p.as_deref().filter(|p| !p.trim().is_empty()))
        .collect()
}

impl ClientTls {
    /// Reads the files of `cfg` into an HTTPS connector offering HTTP/2 (`http2`) or
    /// HTTP/1.1 in ALPN.
    pub fn load(
        block: impl Into<String>,
        cfg: &TlsCfg,
        http2: bool,
        connect_timeout: Duration,
    ) -> Result<Arc<ClientTls>, TlsError> {
        let s = stage_client(cfg, http2, connect_timeout)?;
        Ok(Arc::new(ClientTls {
            block: block.into(),
            cfg: cfg.clone(),
            http2,
            connect_timeout,
            seen: Mutex::new(s.stamps),
            current: RwLock::new(s.built),
        }))
    }

    pub fn block(&self) -> &str {
        &self.block
    }

    /// True when a file changed since it was last read (or last refused).
    pub fn changed(&self) -> bool {
        stamps(&client_paths(&self.cfg)) != *self.seen.lock()
    }

    /// Reads the files again into a new connector (the block itself changes only with a
    /// restart). A failure is remembered, so [`ClientTls::changed`] waits for the next change.
    pub fn stage(&self) -> Result<Staged<(), HttpsConnector<HttpConnector>>, TlsError> {
        stage_client(&self.cfg, self.http2, self.connect_timeout).inspect_err(|_| {
            *self.seen.lock() = stamps(&client_paths(&self.cfg));
        })
    }

    /// Puts a staged connector in force for the connections opened from now on.
    pub fn commit(&self, staged: Staged<(), HttpsConnector<HttpConnector>>) {
        *self.current.write() = staged.built;
        *self.seen.lock() = staged.stamps;
    }

    /// A connector for hyper and tonic that connects with the configuration in force.
    pub fn connector(self: &Arc<Self>) -> LiveConnector {
        LiveConnector(Arc::clone(self))
    }
}

fn stage_client(
    cfg: &TlsCfg,
    http2: bool,
    connect_timeout: Duration,
) -> Result<Staged<(), HttpsConnector<HttpConnector>>, TlsError> {
    let stamps = stamps(&client_paths(cfg));
    let config = super::client_config(cfg)?;
    let name = cfg
        .server_name_override
        .as_deref()
        .filter(|n| !n.trim().is_empty());
    Ok(Staged {
        cfg: (),
        stamps,
        built: https_connector(config, name, http2, connect_timeout)?,
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects through the [`ClientTls`] connector in force when the connection is opened.
#[derive(Clone)]
pub struct LiveConnector(Arc<ClientTls>);

impl Service<http::Uri> for LiveConnector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    /// Always ready: the TCP connector underneath is.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let mut connector = self.0.current.read().clone();
        connector.call(dst)
    }
}
