//! Part of `reload`: the certificate files of the `tls:` blocks. A reload (SIGHUP or a new
//! config) reads every block's files again, all or nothing; between reloads the watch
//! polls the files' modification times and reads again the blocks whose files changed,
//! each on its own. The loaders are the ones used at start (`tls::server_config`,
//! `tls::client_config`), and a block whose files do not load keeps the configuration it
//! has (see `tls::live` for what applies to which connections).

use std::sync::Arc;

use thiserror::Error;

use crate::config::{Config, ServerTlsCfg};
use crate::tls::{ClientTls, ServerTls, Staged, TlsError};

/// Where the server blocks sit in the config, as they are named in logs.
pub const GRPC: &str = "receivers.otlp.protocols.grpc.tls";
pub const HTTP: &str = "receivers.otlp.protocols.http.tls";
pub const API: &str = "support.api.tls";

/// The server block at `block` (one of [`GRPC`], [`HTTP`], [`API`]) in `config`.
pub fn server_block<'a>(config: &'a Config, block: &str) -> Option<&'a ServerTlsCfg> {
    match block {
        GRPC => config.receivers.grpc.as_ref()?.tls.as_ref(),
        HTTP => config.receivers.http.as_ref()?.tls.as_ref(),
        API => {
            let api = &config.support.api;
            api.endpoint.as_ref().and(api.tls.as_ref())
        }
        _ => None,
    }
}

/// A file of a `tls:` block that does not load: the block, the key, the file and why
/// (`support.api.tls.cert_file "/etc/casefile/api.pem": not valid PEM: ...`).
#[derive(Debug, Error)]
#[error("{block}.{source}")]
pub struct CertError {
    pub block: String,
    pub source: TlsError,
}

/// The live TLS blocks of a running daemon.
#[derive(Default)]
pub struct Certs {
    pub servers: Vec<Arc<ServerTls>>,
    pub clients: Vec<Arc<ClientTls>>,
}

type ServerStaged = Staged<ServerTlsCfg, Arc<rustls::ServerConfig>>;
type ClientStaged =
    Staged<(), hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>>;

/// Every block read again, not yet in force.
pub struct StagedCerts {
    servers: Vec<(Arc<ServerTls>, ServerStaged)>,
    clients: Vec<(Arc<ClientTls>, ClientStaged)>,
}

impl StagedCerts {
    /// Puts every block in force for new handshakes; returns the blocks.
    pub fn commit(self) -> Vec<String> {
        let mut blocks = Vec::new();
        for (live, staged) in self.servers {
            live.commit(staged);
            blocks.push(live.block().to_owned());
        }
        for (live, staged) in self.clients {
            live.commit(staged);
            blocks.push(live.block().to_owned());
        }
        blocks
    }
}

impl Certs {
    /// Reads the files of every block again: a server block those `new` names for it (when
    /// `new` keeps the block; turning TLS on or off takes a restart), an exporter's the
    /// files it started with. Every problem, or nothing changed.
    pub fn stage_all(&self, new: Option<&Config>) -> Result<StagedCerts, Vec<CertError>> {
        let mut errors = Vec::new();
        let mut staged = StagedCerts {
            servers: Vec::new(),
            clients: Vec::new(),
        };
        for live in &self.servers {
            let cfg = new.and_then(|c| server_block(c, live.block()));
            match live.stage(cfg) {
                Ok(s) => staged.servers.push((Arc::clone(live), s)),
                Err(source) => errors.push(error(live.block(), source)),
            }
        }
        for live in &self.clients {
            match live.stage() {
                Ok(s) => staged.clients.push((Arc::clone(live), s)),
                Err(source) => errors.push(error(live.block(), source)),
            }
        }
        if errors.is_empty() {
            Ok(staged)
        } else {
            Err(errors)
        }
    }

    /// Reads again the blocks whose files changed since they were last read, each on its
    /// own: the blocks now in force with new files, and the problems of those refused.
    pub fn reload_changed(&self) -> (Vec<String>, Vec<CertError>) {
        let (mut done, mut errors) = (Vec::new(), Vec::new());
        for live in self.servers.iter().filter(|l| l.changed()) {
            match live.stage(None) {
                Ok(s) => {
                    live.commit(s);
                    done.push(live.block().to_owned());
                }
                Err(source) => errors.push(error(live.block(), source)),
            }
        }
        for live in self.clients.iter().filter(|l| l.changed()) {
            match live.stage() {
                Ok(s) => {
                    live.commit(s);
                    done.push(live.block().to_owned());
                }
                Err(source) => errors.push(error(live.block(), source)),
            }
        }
        (done, errors)
    }
}

fn error(block: &str, source: TlsError) -> CertError {
    CertError {
        block: block.to_owned(),
        source,
    }
}
