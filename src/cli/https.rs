//! Part of the support client (`cli::client`): the HTTP client `lookup` and `complain`
//! send their request with. `http://` is plaintext; `https://` is TLS through the same
//! loaders as the exporters (`tls::client_config`): `--ca-file` or the system trust
//! store, and `--cert-file`/`--key-file` for an API that requires a client certificate.
//! A refused certificate comes back as a sentence that names the problem and the option.

use std::error::Error;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;

use crate::export::config::TlsCfg;

/// The TLS files of the client, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

impl TlsFiles {
    fn any(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// Sends `req` over plaintext or TLS, as its URL's scheme says.
pub fn send(req: http::Request<Full<Bytes>>, files: &TlsFiles) -> Result<ResponseFuture, String> {
    let builder = Client::builder(TokioExecutor::new());
    if req.uri().scheme() != Some(&http::uri::Scheme::HTTPS) {
        if files.any() {
            eprintln!("casefile: note: --ca-file, --cert-file and --key-file apply to an https:// --api only");
        }
        let client: Client<_, Full<Bytes>> = builder.build_http();
        return Ok(client.request(req));
    }
    let cfg = TlsCfg {
        ca_file: files.ca_file.clone(),
        cert_file: files.cert_file.clone(),
        key_file: files.key_file.clone(),
        ..TlsCfg::default()
    };
    let config = crate::tls::client_config(&cfg).map_err(|e| {
        let option = match e.field {
            "key_file" => "--key-file",
            "cert_file" => "--cert-file",
            _ => "--ca-file",
        };
        format!("{option}: {}", e.message())
    })?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = builder.build(connector);
    Ok(client.request(req))
}

/// Why a request could not be sent: each cause once, and for a refused certificate what
/// to do about it.
pub fn explain(e: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut hint = None;
    let mut next = Some(e);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            hint = hint.or(tls_hint(tls));
        }
        // An I/O error's `source` skips the error it wraps: look inside it instead.
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
            None => e.source(),
        };
    }
    let mut s = parts.join(": ");
    if let Some(h) = hint {
        s.push_str(&format!("\n  ({h})"));
    }
    s
}

fn tls_hint(e: &rustls::Error) -> Option<&'static str> {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            Some("the API's certificate does not name the host in --api: use the name it was issued for")
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            Some("the API's certificate has expired")
        }
        rustls::Error::InvalidCertificate(_) => Some(
            "the API's certificate is not trusted: pass --ca-file with the CA that signed it",
        ),
        rustls::Error::AlertReceived(_) | rustls::Error::NoCertificatesPresented => Some(
            "the API refused the connection: it may require a client certificate (--cert-file and --key-file)",
        ),
        _ => None,
    }
}
