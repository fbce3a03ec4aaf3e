//! Certificates made at test time (ECDSA P-256, ring): a CA, a server certificate for
//! `localhost` and `127.0.0.1`, one for `downstream.test` and a client certificate, all
//! signed by it, and a client certificate signed by another CA, written as PEM files
//! into a temporary directory. Shared by the end-to-end TLS tests and (through `#[path]`) the unit tests of `tls`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The PEM files of one test's PKI; the directory goes away with the value.
pub struct Certs {
    pub dir: tempfile::TempDir,
    /// The CA that signed the server and the client certificates.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A server certificate (same CA) for `downstream.test` only: reachable by address
    /// only with `server_name_override`.
    pub named_cert: PathBuf,
    pub named_key: PathBuf,
    /// A client certificate signed by another CA: an mTLS server must refuse it.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate and its key (PEM) signed by `issuer`.
fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let issuer: &Issuer<'static, KeyPair> = issuer;
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Certs {
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let ca = make_ca("casefile test CA");
        let (server_cert, server_key) = leaf(
            &ca,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(&ca, &["client.test"], ExtendedKeyUsagePurpose::ClientAuth);
        let (named_cert, named_key) = leaf(
            &ca,
            &["downstream.test"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let rogue_ca = make_ca("some other CA");
        let (rogue_cert, rogue_key) = leaf(
            &rogue_ca,
            &["rogue.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Certs {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            named_cert: write("named.pem", &named_cert),
            named_key: write("named.key", &named_key),
            rogue_cert: write("rogue.pem", &rogue_cert),
            rogue_key: write("rogue.key", &rogue_key),
            dir,
        }
    }

    /// Writes `content` to `name` in the directory and returns its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

/// A path as it goes into a YAML config.
pub fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A leaf certificate like [`leaf`] whose common name is `cn` (to tell two apart).
fn leaf_cn(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let issuer: &Issuer<'static, KeyPair> = issuer;
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A CA kept to issue more certificates later (rotation tests).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        TestCa {
            issuer: make_ca(name),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `localhost` and `127.0.0.1` named `cn`: (cert, key) PEM.
    pub fn server(&self, cn: &str) -> (String, String) {
        leaf_cn(
            &self.issuer,
            &["localhost", "127.0.0.1"],
            cn,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate named `cn`: (cert, key) PEM.
    pub fn client(&self, cn: &str) -> (String, String) {
        leaf_cn(&self.issuer, &[cn], cn, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// Writes `content` to `path` as cert-manager or a deploy tool does: a new file renamed
/// over the old one.
pub fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
