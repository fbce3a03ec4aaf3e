//! Certificate reload end to end, with certificates made at test time and rewritten in
//! place as cert-manager does: a rotated server certificate is shown to new connections
//! while open ones keep going; a broken or half-written pair is refused and the running
//! certificate stays; a rotated client CA changes which clients an mTLS listener admits;
//! an exporter reconnects with a rotated `ca_file`. Reloads are driven by explicit calls,
//! or by the watch loop's poll with a bounded wait.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use casefile::config::{self, Config};
use casefile::fixture::{self, Gen, Shape};
use casefile::reload::{self, Source};
use common::certs::{replace, s, Certs, TestCa};
use common::tls::{self as t};
use common::*;

/// The PEM files of one test, in a directory that goes with it.
struct Files {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

impl Files {
    /// A CA and a server certificate of it named `server-one`.
    fn new(ca: &TestCa) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        let (cert, key) = ca.server("server-one");
        let f = Files {
            ca: at("ca.pem"),
            cert: at("server.pem"),
            key: at("server.key"),
            client_ca: at("client-ca.pem"),
            _dir: dir,
        };
        replace(&f.ca, &ca.pem());
        replace(&f.cert, &cert);
        replace(&f.key, &key);
        f
    }

    /// Writes a client certificate of `ca` named `cn`: (cert, key) paths.
    fn client(&self, ca: &TestCa, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = ca.client(cn);
        let dir = self.ca.parent().unwrap();
        let (c, k) = (dir.join(format!("{cn}.pem")), dir.join(format!("{cn}.key")));
        replace(&c, &cert);
        replace(&k, &key);
        (c, k)
    }
}

/// A config whose support API serves TLS with `f` (mTLS with `f.client_ca` when `mtls`),
/// exporting to `exporter`.
fn api_config(f: &Files, mtls: bool, exporter: &str) -> String {
    let client_ca = if mtls {
        format!(", client_ca_file: \"{}\"", s(&f.client_ca))
    } else {
        String::new()
    };
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: 200ms
{POLICIES}
exporters:
{exporter}
support:
  api:
    endpoint: "127.0.0.1:0"
    tls: {{ cert_file: "{}", key_file: "{}"{client_ca} }}
shutdown_timeout: 5s
"#,
        s(&f.cert),
        s(&f.key)
    )
}

fn plain_exporter(down: SocketAddr) -> String {
    format!("  otlp: {{ endpoint: \"{down}\", tls: {{ insecure: true }} }}\n")
}

fn load(yaml: &str) -> Config {
    config::load_str(yaml, "tls.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// The certificate a new connection to the API is shown (DER).
async fn shown(api: SocketAddr, f: &Files) -> Vec<u8> {
    t::https_connection(api, t::client_trusting(&f.ca, None))
        .await
        .unwrap()
        .1
}

/// `/healthz` on a new connection showing the client certificate `id`.
async fn healthz_as(api: SocketAddr, f: &Files, id: (&Path, &Path)) -> Result<u16, String> {
    let (mut send, _) = t::https_connection(api, t::client_trusting(&f.ca, Some(id))).await?;
    t::get_on(&mut send, "/healthz").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_server_certificate_is_shown_to_new_connections_and_open_ones_keep_going() {
    let ca = TestCa::new("rotation CA");
    let f = Files::new(&ca);
    let (_down, addr) = Downstream::start().await;
    let daemon = start(load(&api_config(&f, false, &plain_exporter(addr)))).await;
    let api = daemon.api_addr.unwrap();
    let first = t::first_cert_der(&f.cert);
    let (mut open, peer) = t::https_connection(api, t::client_trusting(&f.ca, None))
        .await
        .unwrap();
    assert_eq!(peer, first);
    assert_eq!(t::get_on(&mut open, "/healthz").await, Ok(200));
    assert!(
        daemon.reload_changed_certificates().0.is_empty(),
        "nothing changed yet"
    );

    let (cert, key) = ca.server("server-two");
    replace(&f.key, &key);
    replace(&f.cert, &cert);
    let (done, refused) = daemon.reload_changed_certificates();
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(done, ["support.api.tls"]);

    let second = t::first_cert_der(&f.cert);
    assert_ne!(first, second);
    assert_eq!(
        shown(api, &f).await,
        second,
        "a new connection sees the new one"
    );
    assert_eq!(
        t::get_on(&mut open, "/healthz").await,
        Ok(200),
        "the connection opened before keeps going"
    );
    assert!(
        daemon.reload_changed_certificates().0.is_empty(),
        "read once"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_half_written_new_file_keeps_the_running_certificate() {
    let ca = TestCa::new("rotation CA");
    let f = Files::new(&ca);
    let (_down, addr) = Downstream::start().await;
    let yaml = api_config(&f, false, &plain_exporter(addr));
    let started = load(&yaml);
    let daemon = start(started.clone()).await;
    let api = daemon.api_addr.unwrap();
    let first = t::first_cert_der(&f.cert);

    // Not a certificate: refused with the key and the file, the old one keeps serving.
    replace(&f.cert, "-----BEGIN CERTIFICATE-----\nbroken\n");
    let (done, refused) = daemon.reload_changed_certificates();
    assert!(done.is_empty());
    let msg = refused[0].to_string();
    assert!(msg.starts_with("support.api.tls.cert_file"), "{msg}");
    assert!(msg.contains(&s(&f.cert)), "{msg}");
    assert_eq!(shown(api, &f).await, first);
    let (done, refused) = daemon.reload_changed_certificates();
    assert!(
        done.is_empty() && refused.is_empty(),
        "not tried again until it changes"
    );
    // A reload refuses the whole config, naming the file; `casefile check` adds the line.
    let err = daemon.reload(&started, &started).unwrap_err().to_string();
    assert!(err.contains(&s(&f.cert)), "{err}");
    let err = config::load_str(&yaml, "tls.yaml").unwrap_err().to_string();
    assert!(
        err.contains("tls.yaml:") && err.contains("support.api.tls.cert_file"),
        "{err}"
    );
    assert_eq!(shown(api, &f).await, first);

    // The new certificate lands before its key: the pair is refused until the key arrives.
    let (cert, key) = ca.server("server-two");
    replace(&f.cert, &cert);
    let (done, refused) = daemon.reload_changed_certificates();
    assert!(done.is_empty());
    let msg = refused[0].to_string();
    assert!(msg.contains("does not belong"), "{msg}");
    assert_eq!(shown(api, &f).await, first);
    replace(&f.key, &key);
    let (done, refused) = daemon.reload_changed_certificates();
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(done, ["support.api.tls"]);
    assert_eq!(shown(api, &f).await, t::first_cert_der(&f.cert));
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_ca_admits_its_clients_and_refuses_the_old_ones() {
    let ca = TestCa::new("server CA");
    let f = Files::new(&ca);
    let (old_ca, new_ca) = (TestCa::new("old client CA"), TestCa::new("new client CA"));
    replace(&f.client_ca, &old_ca.pem());
    let old = f.client(&old_ca, "old-client");
    let new = f.client(&new_ca, "new-client");
    let (_down, addr) = Downstream::start().await;
    let started = load(&api_config(&f, true, &plain_exporter(addr)));
    let daemon = start(started.clone()).await;
    let api = daemon.api_addr.unwrap();
    let as_old = || healthz_as(api, &f, (&old.0, &old.1));
    let as_new = || healthz_as(api, &f, (&new.0, &new.1));
    assert_eq!(as_old().await, Ok(200));
    assert!(as_new().await.is_err());

    // Rotated by a reload (the same path, new content).
    replace(&f.client_ca, &new_ca.pem());
    let r = daemon.reload(&started, &started).unwrap();
    assert!(
        r.certificates.iter().any(|b| b == "support.api.tls"),
        "{r:?}"
    );
    assert_eq!(as_new().await, Ok(200));
    assert!(as_old().await.is_err(), "the old CA's clients are refused");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_reconnects_with_a_rotated_ca_file_found_by_the_poll() {
    let c = Certs::new();
    let server = t::server_config(&c, &c.server_cert, &c.server_key, false);
    let (down, down_addr) = Downstream::start_tls(server).await;
    // The exporter starts trusting another CA: its handshakes fail and it retries.
    let wrong = TestCa::new("wrong CA");
    let f = Files::new(&TestCa::new("api CA"));
    let ca_file = f.ca.parent().unwrap().join("exporter-ca.pem");
    replace(&ca_file, &wrong.pem());
    let exporter = format!(
        "  otlp:\n    endpoint: \"localhost:{}\"\n    tls: {{ ca_file: \"{}\" }}\n    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}\n",
        down_addr.port(),
        s(&ca_file)
    );
    let started = load(&api_config(&f, false, &exporter));
    let daemon = start(started.clone()).await;
    let mut client = client(&daemon).await;
    let t = Gen::new(3).trace(Shape::ERROR, 4);
    let id = hex::encode(t.trace_id);
    client
        .export(fixture::request_for(std::slice::from_ref(&t)))
        .await
        .unwrap();

    let api = daemon.api_addr.unwrap();
    eventually("the exporter retrying", || async {
        let tls = t::client_trusting(&f.ca, None);
        let (_, body) = t::https(api, tls, "GET", "/metrics", &[], Vec::new())
            .await
            .unwrap();
        String::from_utf8_lossy(&body)
            .contains("casefile_exporter_retries_total{exporter=\"otlp\"}")
    })
    .await;
    assert!(down.spans_by_trace().is_empty());

    // cert-manager puts the right CA in place; the watch's poll finds it.
    replace(&ca_file, &std::fs::read_to_string(&c.ca).unwrap());
    let arrives = down.wait_for("the trace after the CA rotation", |d| {
        d.spans_by_trace().contains_key(&id)
    });
    tokio::select! {
        _ = reload::watch(&daemon, Source::new(None), started) => unreachable!(),
        _ = arrives => {}
    }
    daemon.shutdown().await;
    assert_eq!(down.spans_by_trace()[&id].len(), 4);
}
