//! TLS for the end-to-end tests, built from rustls directly (not from casefile's own
//! loaders): client configs trusting the test CA with or without a client certificate,
//! a tonic client and an HTTPS client over them, and downstreams (OTLP/gRPC, OTLP/HTTP)
//! that serve TLS and may require client certificates.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

use super::certs::Certs;
use super::Downstream;

/// Which certificate a client shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    None,
    /// Signed by the test CA.
    Client,
    /// Signed by another CA.
    Rogue,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap()
}

fn roots(c: &Certs) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs(&c.ca) {
        roots.add(cert).unwrap();
    }
    Arc::new(roots)
}

/// A client trusting the test CA, showing `identity`.
pub fn client_config(c: &Certs, identity: Identity) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(c));
    match identity {
        Identity::None => builder.with_no_client_auth(),
        Identity::Client => builder
            .with_client_auth_cert(certs(&c.client_cert), key(&c.client_key))
            .unwrap(),
        Identity::Rogue => builder
            .with_client_auth_cert(certs(&c.rogue_cert), key(&c.rogue_key))
            .unwrap(),
    }
}

/// A server with `cert`/`key`, requiring client certificates of the test CA when `mtls`.
pub fn server_config(c: &Certs, cert: &Path, key_file: &Path, mtls: bool) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if mtls {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots(c), provider())
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder
        .with_single_cert(certs(cert), key(key_file))
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// An OTLP/gRPC client to `https://localhost:<port>` over `tls`: connects and exports
/// `request`; any failure (handshake, refusal, status) comes back as text. Bounded to 5 s.
pub async fn grpc_export(
    addr: SocketAddr,
    tls: ClientConfig,
    request: ExportTraceServiceRequest,
) -> Result<(), String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .build();
    let call = async {
        let channel: Channel = Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
            .map_err(|e| e.to_string())?
            .connect_with_connector(connector)
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        TraceServiceClient::new(channel)
            .export(request)
            .await
            .map(|_| ())
            .map_err(|s| format!("export: {s:?}"))
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| Err("no answer within 5s".into()))
}

/// One HTTPS request to `https://localhost:<port><path>` over `tls`: status and body, or
/// the failure as text. Bounded to 5 s.
pub async fn https(
    addr: SocketAddr,
    tls: ClientConfig,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost:{}{path}", addr.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let call = async {
        let resp = client
            .request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, body.to_bytes().to_vec()))
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| Err("no answer within 5s".into()))
}

/// Sends a plaintext HTTP request to a TLS port: what comes back (at most 5 s of waiting).
/// A TLS server answers with nothing or a TLS alert, never with HTTP.
pub async fn plaintext_answer(addr: SocketAddr) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

impl Downstream {
    /// An OTLP/gRPC downstream serving TLS with `config` on 127.0.0.1:0. Failed
    /// handshakes are skipped.
    pub async fn start_tls(config: Arc<ServerConfig>) -> (Downstream, SocketAddr) {
        let d = Downstream::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                    }
                });
            }
        });
        let incoming =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
            );
        let svc = TraceServiceServer::new(d.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        (d, addr)
    }

    /// An OTLP/HTTP downstream (`POST /v1/traces`, uncompressed protobuf) serving TLS with
    /// `config` on 127.0.0.1:0; requests land in the same record as the gRPC one's.
    pub async fn start_https(config: Arc<ServerConfig>) -> (Downstream, SocketAddr) {
        let d = Downstream::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let record = d.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, d) = (acceptor.clone(), record.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let d = d.clone();
                            async move {
                                let body = req.into_body().collect().await?.to_bytes();
                                let request: ExportTraceServiceRequest =
                                    prost::Message::decode(body).unwrap_or_default();
                                d.requests.lock().push(request);
                                d.notify.notify_waiters();
                                let response = http::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap();
                                Ok::<_, hyper::Error>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        (d, addr)
    }
}

/// A client trusting the CA in `ca` (PEM file), showing the certificate and key in
/// `identity` (PEM files) when given.
pub fn client_trusting(ca: &Path, identity: Option<(&Path, &Path)>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca) {
        roots.add(cert).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key_file)) => builder
            .with_client_auth_cert(certs(cert), key(key_file))
            .unwrap(),
    }
}

/// The first certificate of a PEM file, DER (to compare with a peer's).
pub fn first_cert_der(path: &Path) -> Vec<u8> {
    certs(path).remove(0).to_vec()
}

/// An HTTP/1.1 connection over TLS to `localhost:<port>`, kept open: its sender and the
/// DER of the certificate the server showed. Bounded to 5 s.
pub async fn https_connection(
    addr: SocketAddr,
    tls: ClientConfig,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        Vec<u8>,
    ),
    String,
> {
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok((send, peer))
    };
    tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .unwrap_or_else(|_| Err("no connection within 5s".into()))
}

/// GET `path` on an open connection: the status. Bounded to 5 s.
pub async fn get_on(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> Result<u16, String> {
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let call = async {
        send.ready().await.map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        Ok(status)
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| Err("no answer within 5s".into()))
}
