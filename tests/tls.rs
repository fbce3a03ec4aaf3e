//! TLS end to end, on loopback with certificates made at test time: the receivers and the
//! support API serve TLS (and mTLS), refusing plaintext and certificate-less clients
//! without stopping; the otlp and otlphttp exporters reach TLS downstreams with a custom CA
//! and a client certificate; bad files are reported with their paths, never a panic.

mod common;

use std::net::SocketAddr;

use casefile::config::{self, Config};
use casefile::fixture::{self, Gen, Shape};
use casefile::{Daemon, RunError};
use common::certs::{s, Certs};
use common::tls::{self as t, Identity};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// A server `tls:` block with the test server certificate, requiring client
/// certificates of the test CA when `mtls`.
fn server_tls(c: &Certs, mtls: bool) -> String {
    let ca = if mtls {
        format!(", client_ca_file: \"{}\"", s(&c.ca))
    } else {
        String::new()
    };
    format!(
        "{{ cert_file: \"{}\", key_file: \"{}\"{ca} }}",
        s(&c.server_cert),
        s(&c.server_key)
    )
}

/// A config on port 0 with these `tls:` blocks ("null" for plaintext) and `exporters`.
fn tls_config(grpc: &str, http: &str, api: &str, exporters: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0", tls: {grpc} }}
      http: {{ endpoint: "127.0.0.1:0", tls: {http} }}
processors:
  tail_sampling:
    decision_wait: 200ms
{POLICIES}
exporters:
{exporters}
support:
  api: {{ endpoint: "127.0.0.1:0", auth_token: tok_tls, tls: {api} }}
shutdown_timeout: 5s
"#
    )
}

fn load(yaml: &str) -> Config {
    config::load_str(yaml, "tls.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// The usual plaintext exporter to a plain downstream.
fn plain_exporter(down: SocketAddr) -> String {
    format!(
        "  otlp:\n    endpoint: \"{down}\"\n    tls: {{ insecure: true }}\n    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}\n"
    )
}

/// A trace the `errors` policy keeps: its id and the request that carries it.
fn error_trace(seed: u64) -> (String, ExportTraceServiceRequest) {
    let t = Gen::new(seed).trace(Shape::ERROR, 4);
    (
        hex::encode(t.trace_id),
        fixture::request_for(std::slice::from_ref(&t)),
    )
}

async fn arrives(down: &Downstream, id: &str) {
    down.wait_for("the trace", |d| d.spans_by_trace().contains_key(id))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receiver_serves_tls_and_refuses_plaintext() {
    let c = Certs::new();
    let (down, addr) = Downstream::start().await;
    let daemon = start(load(&tls_config(
        &server_tls(&c, false),
        "null",
        "null",
        &plain_exporter(addr),
    )))
    .await;
    let grpc = daemon.grpc_addr.unwrap();

    // A plaintext client on the TLS port gets an error, not a hang or a crash.
    let (_, request) = error_trace(1);
    let plain = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut client = TraceServiceClient::connect(format!("http://{grpc}"))
            .await
            .map_err(|e| e.to_string())?;
        client
            .export(request)
            .await
            .map(|_| ())
            .map_err(|s| s.to_string())
    })
    .await
    .expect("plaintext client answered within 5s");
    assert!(plain.is_err(), "plaintext must be refused");

    // The TLS client, after it, on the same listener.
    let (id, request) = error_trace(2);
    t::grpc_export(grpc, t::client_config(&c, Identity::None), request)
        .await
        .unwrap();
    arrives(&down, &id).await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_receiver_serves_tls_and_refuses_plaintext() {
    let c = Certs::new();
    let (down, addr) = Downstream::start().await;
    let daemon = start(load(&tls_config(
        "null",
        &server_tls(&c, false),
        "null",
        &plain_exporter(addr),
    )))
    .await;
    let http = daemon.http_addr.unwrap();
    let answer = t::plaintext_answer(http).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plaintext got an HTTP answer"
    );

    let (id, request) = error_trace(3);
    let body = prost::Message::encode_to_vec(&request);
    let (status, _) = t::https(
        http,
        t::client_config(&c, Identity::None),
        "POST",
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        body,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    arrives(&down, &id).await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_clients_without_a_certificate_of_the_ca() {
    let c = Certs::new();
    let (down, addr) = Downstream::start().await;
    let yaml = tls_config(
        &server_tls(&c, true),
        &server_tls(&c, true),
        "null",
        &plain_exporter(addr),
    );
    let daemon = start(load(&yaml)).await;
    let (grpc, http) = (daemon.grpc_addr.unwrap(), daemon.http_addr.unwrap());

    for who in [Identity::None, Identity::Rogue] {
        let (_, request) = error_trace(4);
        let r = t::grpc_export(grpc, t::client_config(&c, who), request).await;
        assert!(r.is_err(), "gRPC client with {who:?} was accepted");
        let r = t::https(
            http,
            t::client_config(&c, who),
            "POST",
            "/v1/traces",
            &[("content-type", "application/x-protobuf")],
            Vec::new(),
        )
        .await;
        assert!(r.is_err(), "HTTP client with {who:?} was accepted: {r:?}");
    }

    let (id, request) = error_trace(5);
    t::grpc_export(grpc, t::client_config(&c, Identity::Client), request)
        .await
        .unwrap();
    arrives(&down, &id).await;
    let (id, request) = error_trace(6);
    let (status, _) = t::https(
        http,
        t::client_config(&c, Identity::Client),
        "POST",
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        prost::Message::encode_to_vec(&request),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    arrives(&down, &id).await;

    // Refusals are counted per listener.
    let (_, metrics) = api_call(daemon.api_addr.unwrap(), "GET", "/metrics", None, None).await;
    for listener in ["otlp_grpc", "otlp_http"] {
        let line = format!("casefile_tls_refused_connections_total{{listener=\"{listener}\"}}");
        assert!(metrics.contains(&line), "{line} missing");
    }
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_api_serves_tls_with_its_token() {
    let c = Certs::new();
    let (_down, addr) = Downstream::start().await;
    let daemon = start(load(&tls_config(
        "null",
        "null",
        &server_tls(&c, false),
        &plain_exporter(addr),
    )))
    .await;
    let api = daemon.api_addr.unwrap();
    let get = |path: &'static str, token: Option<&'static str>| {
        let tls = t::client_config(&c, Identity::None);
        async move {
            let auth = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            let (status, body) = t::https(api, tls, "GET", path, &headers, Vec::new())
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
            )
        }
    };
    let (status, body) = get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    assert_eq!(get("/api/v1/traces?user.id=usr_1", None).await.0, 401);
    let (status, body) = get("/api/v1/traces?user.id=usr_1", Some("tok_tls")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["traces"].is_array(), "{body}");
    assert!(!t::plaintext_answer(api).await.starts_with(b"HTTP/"));
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_exporter_reaches_an_mtls_downstream_with_a_custom_ca() {
    let c = Certs::new();
    let server = t::server_config(&c, &c.server_cert, &c.server_key, true);
    let (down, addr) = Downstream::start_tls(server).await;
    // host:port without `insecure` is TLS, as in the Collector; the name checked is localhost.
    let exporter = format!(
        "  otlp:\n    endpoint: \"localhost:{}\"\n    tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}\n    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}\n",
        addr.port(),
        s(&c.ca),
        s(&c.client_cert),
        s(&c.client_key)
    );
    let daemon = start(load(&tls_config("null", "null", "null", &exporter))).await;
    let mut client = client(&daemon).await;
    let (id, request) = error_trace(7);
    client.export(request).await.unwrap();
    arrives(&down, &id).await;
    daemon.shutdown().await;
    assert_eq!(down.spans_by_trace()[&id].len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlphttp_exporter_reaches_an_mtls_downstream_by_name_override_or_skip_verify() {
    let c = Certs::new();
    // The downstream's certificate names downstream.test only; the exporters dial its address.
    let server = t::server_config(&c, &c.named_cert, &c.named_key, true);
    let (down, addr) = Downstream::start_https(server).await;
    let client_cert = format!(
        "cert_file: \"{}\", key_file: \"{}\"",
        s(&c.client_cert),
        s(&c.client_key)
    );
    let exporters = format!(
        "  otlphttp/override:\n    endpoint: \"https://{addr}\"\n    compression: none\n    tls: {{ ca_file: \"{}\", {client_cert}, server_name_override: downstream.test }}\n    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}\n  otlphttp/skip:\n    endpoint: \"https://{addr}\"\n    compression: none\n    tls: {{ insecure_skip_verify: true, {client_cert} }}\n    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}\n",
        s(&c.ca)
    );
    let daemon = start(load(&tls_config("null", "null", "null", &exporters))).await;
    let mut client = client(&daemon).await;
    let (id, request) = error_trace(8);
    client.export(request).await.unwrap();
    down.wait_for("the trace from both exporters", |d| {
        d.spans_by_trace().get(&id).map(Vec::len) == Some(8)
    })
    .await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_reported_with_their_paths_and_never_panic() {
    let c = Certs::new();
    let garbage = c.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let missing_key = format!("{{ cert_file: \"{}\" }}", s(&c.server_cert));
    let bad_pem = format!(
        "{{ cert_file: \"{}\", key_file: \"{}\" }}",
        s(&garbage),
        s(&c.server_key)
    );
    let yaml = tls_config(
        &missing_key,
        &bad_pem,
        "null",
        "  file: { path: /dev/null }\n",
    );
    let err = config::load_str(&yaml, "tls.yaml").unwrap_err().to_string();
    assert!(err.starts_with("tls.yaml: 2 problems"), "{err}");
    assert!(
        err.contains("tls.yaml:5: receivers.otlp.protocols.grpc.tls.key_file: missing"),
        "{err}"
    );
    let want = format!(
        "tls.yaml:6: receivers.otlp.protocols.http.tls.cert_file: \"{}\": not valid PEM",
        s(&garbage)
    );
    assert!(err.contains(&want), "{err}");

    // A key that turns bad between validation and start: an error naming it, not a panic.
    let key = c.write(
        "later.key",
        &std::fs::read_to_string(&c.server_key).unwrap(),
    );
    let good = format!(
        "{{ cert_file: \"{}\", key_file: \"{}\" }}",
        s(&c.server_cert),
        s(&key)
    );
    let cfg = load(&tls_config(
        &good,
        "null",
        "null",
        "  file: { path: /dev/null }\n",
    ));
    std::fs::write(&key, "gone\n").unwrap();
    match Daemon::start(cfg).await {
        Err(e @ RunError::Tls { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("OTLP/gRPC receiver"), "{msg}");
            assert!(
                msg.contains(&s(&key)) && msg.contains("no private key"),
                "{msg}"
            );
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("started with a bad key"),
    }
}
