//! TLS around the data flow's sockets: the OTLP receivers and the support API serve TLS
//! (and with `client_ca_file` require client certificates: mTLS), the `otlp` and
//! `otlphttp` exporters connect with it. This module reads the PEM files named in `tls:`
//! blocks into rustls configurations on the ring provider; the config layer calls the same
//! loaders, so `casefile check` reports a missing or broken file with its path. `accept`
//! runs the server handshakes in front of tonic and axum; `live` reads the files again on
//! a reload or when they change, and swaps the configuration for new handshakes.
//!
//! No key material is ever logged or printed: errors name the file and what is wrong.

mod accept;
mod live;
mod verify;

pub use accept::TlsListener;
pub use live::{ClientTls, LiveConnector, ServerTls, Staged};

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;

use crate::config::ServerTlsCfg;
use crate::export::config::TlsCfg;

/// A PEM file larger than this is refused unread (a certificate chain is a few KiB; this
/// keeps `cert_file: /dev/zero` from filling the memory).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// What is wrong with a `tls:` block: the key it concerns (`cert_file`, `key_file`,
/// `ca_file`, `client_ca_file`, ...), the file when there is one, and why.
#[derive(Debug, Error)]
#[error("{field}{}: {reason}", .path.as_ref().map(|p| format!(" {p:?}")).unwrap_or_default())]
pub struct TlsError {
    /// The key of the `tls:` block the problem is about.
    pub field: &'static str,
    /// The file it names, as written in the configuration.
    pub path: Option<String>,
    /// What is wrong, without any of the file's content.
    pub reason: String,
}

impl TlsError {
    fn file(field: &'static str, path: &str, reason: impl Into<String>) -> TlsError {
        TlsError {
            field,
            path: Some(path.to_owned()),
            reason: reason.into(),
        }
    }

    /// The message without the key (the config layer puts the key in the path).
    pub fn message(&self) -> String {
        match &self.path {
            Some(p) => format!("{p:?}: {}", self.reason),
            None => self.reason.clone(),
        }
    }
}

/// The protocols a server offers in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// gRPC: HTTP/2 only.
    Grpc,
    /// OTLP/HTTP and the support API: HTTP/2 or HTTP/1.1.
    Http,
}

/// Every config here uses ring, named explicitly: no process-wide default to install.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(field: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    let file = std::fs::File::open(path)
        .map_err(|e| TlsError::file(field, path, format!("cannot read it: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TlsError::file(field, path, format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::file(
            field,
            path,
            "larger than 1 MiB: not a PEM certificate or key file",
        ));
    }
    Ok(bytes)
}

fn bad_pem(field: &'static str, path: &str, e: pem::Error) -> TlsError {
    TlsError::file(field, path, format!("not valid PEM: {e}"))
}

/// Every certificate in a PEM file; none is an error.
fn load_certs(field: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(field, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::file(
            field,
            path,
            "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The first private key of a PEM file, checked to be one ring can sign with.
fn load_key(path: &str, provider: &CryptoProvider) -> Result<PrivateKeyDer<'static>, TlsError> {
    const F: &str = "key_file";
    let bytes = read_pem(F, path)?;
    let key = match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => {
            let encrypted = bytes
                .windows(b"ENCRYPTED PRIVATE KEY".len())
                .any(|w| w == b"ENCRYPTED PRIVATE KEY");
            let reason = if encrypted {
                "the private key is encrypted: casefile reads unencrypted keys only (openssl pkey -in KEY -out PLAIN)"
            } else {
                "no private key in it (expected PEM: PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
            };
            return Err(TlsError::file(F, path, reason));
        }
        Err(e) => return Err(bad_pem(F, path, e)),
    };
    provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::file(F, path, format!("not a usable private key: {e}")))?;
    Ok(key)
}

/// A CA bundle: every certificate must parse as a trust anchor.
fn load_roots(field: &'static str, path: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in load_certs(field, path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            TlsError::file(
                field,
                path,
                format!("certificate {} is not a usable CA certificate: {e}", i + 1),
            )
        })?;
    }
    Ok(roots)
}

/// The operating system's trust store (what the Collector uses when `ca_file` is unset).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(TlsError {
            field: "ca_file",
            path: None,
            reason: format!("no CA certificate found in the system trust store{why}: set ca_file to the CA that signed the server's certificate"),
        });
    }
    Ok(roots)
}

/// A certificate chain and its key as a server or client identity; rustls checks that the
/// key belongs to the first certificate.
fn mismatch(e: rustls::Error, cert_file: &str, key_file: &str) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::file(
            "key_file",
            key_file,
            format!("this private key does not belong to the certificate in {cert_file:?}"),
        ),
        e => TlsError::file(
            "cert_file",
            cert_file,
            format!("the certificate is not usable: {e}"),
        ),
    }
}

/// The rustls configuration a receiver or the API serves with.
pub fn server_config(cfg: &ServerTlsCfg, alpn: Alpn) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let certs = load_certs("cert_file", &cfg.cert_file)?;
    let key = load_key(&cfg.key_file, &provider)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            field: "cert_file",
            path: None,
            reason: e.to_string(),
        })?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = load_roots("client_ca_file", path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::file("client_ca_file", path, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| mismatch(e, &cfg.cert_file, &cfg.key_file))?;
    config.alpn_protocols = match alpn {
        Alpn::Grpc => vec![b"h2".to_vec()],
        Alpn::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(Arc::new(config))
}

/// The rustls configuration an exporter connects with: `ca_file` or the system trust
/// store, and the client certificate when `cert_file` and `key_file` are set.
pub fn client_config(cfg: &TlsCfg) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            field: "ca_file",
            path: None,
            reason: e.to_string(),
        })?;
    let set = |o: &Option<String>| o.clone().filter(|p| !p.trim().is_empty());
    let roots = match set(&cfg.ca_file).as_deref() {
        Some(path) => load_roots("ca_file", path)?,
        None if !cfg.insecure_skip_verify => system_roots()?,
        None => RootCertStore::empty(),
    };
    let builder =
        if cfg.insecure_skip_verify {
            builder.dangerous().with_custom_certificate_verifier(
                verify::SkipServerVerification::new(Arc::clone(&provider)),
            )
        } else {
            builder.with_root_certificates(roots)
        };
    match (set(&cfg.cert_file), set(&cfg.key_file)) {
        (Some(cert_file), Some(key_file)) => {
            let certs = load_certs("cert_file", &cert_file)?;
            let key = load_key(&key_file, &provider)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| mismatch(e, &cert_file, &key_file))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Loads each file a `tls:` block names on its own and, when the certificate and the key
/// both load, checks that they belong together: every problem, for `casefile check`.
/// `ca` is `ca_file` (exporters) or `client_ca_file` (servers).
pub fn check_files(
    cert_file: Option<&str>,
    key_file: Option<&str>,
    ca: Option<(&'static str, &str)>,
) -> Vec<TlsError> {
    let provider = provider();
    fn keep<T>(errors: &mut Vec<TlsError>, r: Result<T, TlsError>) -> Option<T> {
        r.map_err(|e| errors.push(e)).ok()
    }
    let mut errors = Vec::new();
    let certs = cert_file.and_then(|p| keep(&mut errors, load_certs("cert_file", p)));
    let key = key_file.and_then(|p| keep(&mut errors, load_key(p, &provider)));
    if let Some((field, path)) = ca {
        keep(&mut errors, load_roots(field, path));
    }
    if let (Some(certs), Some(key), Some(cert_file), Some(key_file)) =
        (certs, key, cert_file, key_file)
    {
        if let Err(e) = rustls::sign::CertifiedKey::from_der(certs, key, &provider) {
            errors.push(mismatch(e, cert_file, key_file));
        }
    }
    errors
}

/// `server_name_override` as the name rustls verifies, or why it cannot be one.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError {
        field: "server_name_override",
        path: None,
        reason: format!("{name:?} is not a DNS name or an IP address"),
    })
}

/// An HTTPS connector for an exporter: TCP with `connect_timeout`, then TLS with `config`,
/// offering HTTP/2 only (gRPC) or HTTP/1.1 only (otlphttp) in ALPN.
/// `server_name_override` replaces the endpoint's host in SNI and in the certificate check.
pub fn https_connector(
    config: ClientConfig,
    server_name_override: Option<&str>,
    http2: bool,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    let mut builder = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    if let Some(name) = server_name_override {
        builder =
            builder.with_server_name_resolver(FixedServerNameResolver::new(server_name(name)?));
    }
    Ok(if http2 {
        builder.enable_http2().wrap_connector(tcp)
    } else {
        builder.enable_http1().wrap_connector(tcp)
    })
}

#[cfg(test)]
#[path = "../../tests/common/certs.rs"]
pub(crate) mod test_certs;
#[cfg(test)]
mod tests;
