//! Validation of the `tls:` blocks, part of the second config layer: a server block
//! (receivers, `support.api`) needs a certificate and its key; an exporter's block must
//! agree with its endpoint's scheme. The PEM files are read here too (by the loaders the
//! listeners and exporters use), so a missing file, a file that is not PEM or a key that
//! does not fit its certificate is reported by `casefile check` with its path and line.

use super::build::Reader;
use super::{raw, Problem, ServerTlsCfg};
use crate::export::config::OtlpCfg;
use crate::tls::{self, TlsError};

impl Reader {
    fn tls_problem(&mut self, path: &str, e: &TlsError) {
        self.problems
            .push(Problem::new(format!("{path}.{}", e.field), e.message()));
    }

    /// A server's `tls:` at `path`, its files loaded; None when absent or wrong.
    pub(super) fn server_tls(
        &mut self,
        path: &str,
        raw: Option<raw::ServerTls>,
    ) -> Option<ServerTlsCfg> {
        let raw = raw?;
        let before = self.problems.len();
        let mut problem = |field: &str, message: &str| {
            self.problems
                .push(Problem::new(format!("{path}.{field}"), message));
        };
        if raw.ca_file.is_some() {
            problem("ca_file", "a server verifies client certificates with client_ca_file (ca_file is for exporters): rename it to client_ca_file to require client certificates signed by that CA, or remove it");
        }
        let cert = set(raw.cert_file);
        let key = set(raw.key_file);
        let client_ca = set(raw.client_ca_file);
        match (&cert, &key) {
            (Some(_), Some(_)) => {}
            (Some(_), None) => problem("key_file", "missing: cert_file needs the private key of that certificate in key_file"),
            (None, Some(_)) => problem("cert_file", "missing: key_file needs its certificate in cert_file"),
            (None, None) if client_ca.is_some() => problem("cert_file", "missing: client_ca_file (mTLS) needs the server's own cert_file and key_file too"),
            (None, None) => problem("cert_file", "missing: a tls block needs cert_file and key_file (remove the block to serve plaintext)"),
        }
        let ca = client_ca.as_deref().map(|p| ("client_ca_file", p));
        for e in tls::check_files(cert.as_deref(), key.as_deref(), ca) {
            self.tls_problem(path, &e);
        }
        if self.problems.len() > before {
            return None;
        }
        Some(ServerTlsCfg {
            cert_file: cert?,
            key_file: key?,
            client_ca_file: client_ca,
        })
    }

    /// An `otlp` (`http` false) or `otlphttp` exporter's `tls:` against its endpoint, and
    /// when it speaks TLS, the files it names.
    pub(super) fn exporter_tls(&mut self, path: &str, cfg: &OtlpCfg, http: bool) {
        let (security, problems) = cfg.tls_mode(http);
        for (field, message) in problems {
            self.problems
                .push(Problem::new(format!("{path}.{field}"), message));
        }
        if security.is_tls() {
            let t = &cfg.tls;
            let ca = set(t.ca_file.clone());
            let ca = ca.as_deref().map(|p| ("ca_file", p));
            let (cert, key) = (set(t.cert_file.clone()), set(t.key_file.clone()));
            for e in tls::check_files(cert.as_deref(), key.as_deref(), ca) {
                self.tls_problem(&format!("{path}.tls"), &e);
            }
        }
    }
}

/// A path that is set and not blank (`${env:CA:-}` expands to nothing: unset).
fn set(path: Option<String>) -> Option<String> {
    path.filter(|p| !p.trim().is_empty())
}
