//! `otlp` exporter: OTLP/gRPC `TraceService/Export` with the request bytes sent as they
//! are (a codec that writes pre-encoded bytes and decodes only the response), compressed
//! with gzip or zstd by tonic, or with snappy (the framing format, as the Collector's gRPC
//! codec) here.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use std::sync::Arc;

use crate::tls::ClientTls;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

use super::config::{OtlpCfg, Security, TlsCfg};
use super::{Accepted, ExportBatch, ExportError};
use crate::wire::{Field, Fields};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const USER_AGENT: &str = concat!("casefile/", env!("CARGO_PKG_VERSION"));

/// Encodes pre-encoded request bytes as they are; decodes the response with prost.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RawRequestCodec;

impl Codec for RawRequestCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawRequestCodec;
    type Decoder = RawRequestCodec;
    fn encoder(&mut self) -> RawRequestCodec {
        RawRequestCodec
    }
    fn decoder(&mut self) -> RawRequestCodec {
        RawRequestCodec
    }
}

impl Encoder for RawRequestCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawRequestCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;
    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, Status> {
        let len = src.remaining();
        ExportTraceServiceResponse::decode(src.copy_to_bytes(len))
            .map(Some)
            // UNKNOWN, not INTERNAL: the downstream answered, so the request is no reason
            // to split and send again (see `ExportError::refusal_reason`).
            .map_err(|e| Status::unknown(format!("undecodable ExportTraceServiceResponse: {e}")))
    }
}

pub(crate) struct GrpcSink {
    channel: Channel,
    /// With TLS: its files, read again on a reload.
    pub(super) tls: Option<Arc<ClientTls>>,
    compression: Option<CompressionEncoding>,
    /// `compression: snappy`: tonic has no snappy, so the request is compressed here and
    /// [`Snappy`] marks the message compressed.
    snappy: bool,
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    timeout: Duration,
}

/// `host:port`, `http://host:port[/]` or `https://host:port[/]` -> the URI tonic connects
/// to, with the scheme `security` chose (see [`OtlpCfg::security`]).
pub(super) fn endpoint_uri(
    name: &str,
    endpoint: &str,
    security: Security,
) -> Result<String, ExportError> {
    let bad = |reason: &str| ExportError::InvalidEndpoint {
        name: name.to_owned(),
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let e = endpoint.trim();
    let rest = match e.split_once("://") {
        None => e,
        Some((scheme, rest))
            if matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") =>
        {
            rest
        }
        Some(_) => {
            return Err(bad(
                "the scheme must be http:// or https:// (or none: host:port)",
            ))
        }
    };
    let scheme = if security.is_tls() { "https" } else { "http" };
    let uri = format!("{scheme}://{rest}");
    let parsed: http::Uri = uri
        .parse()
        .map_err(|err: http::uri::InvalidUri| bad(&err.to_string()))?;
    match parsed.authority() {
        Some(a) if !a.host().is_empty() => {}
        _ => return Err(bad("no host")),
    }
    if parsed.path() != "/" && !parsed.path().is_empty() {
        return Err(bad("a gRPC endpoint has no path (host:port)"));
    }
    Ok(uri)
}

impl GrpcSink {
    pub(crate) fn new(name: &str, cfg: &OtlpCfg) -> Result<GrpcSink, ExportError> {
        let config_err = |reason: String| ExportError::Config {
            name: name.to_owned(),
            reason,
        };
        let security = cfg.security(false).map_err(|p| tls_error(name, p))?;
        let uri = endpoint_uri(name, &cfg.endpoint, security)?;
        let (compression, snappy) = match cfg.compression.trim().to_ascii_lowercase().as_str() {
            "gzip" => (Some(CompressionEncoding::Gzip), false),
            "zstd" => (Some(CompressionEncoding::Zstd), false),
            "snappy" => (None, true),
            "none" | "" => (None, false),
            other => {
                return Err(config_err(format!(
                    "unknown compression {other:?} ({} or none)",
                    crate::wire::compression::GRPC_EXPORTER_CHOICES.join(", ")
                )))
            }
        };
        let mut metadata = Vec::with_capacity(cfg.headers.len());
        for (k, v) in &cfg.headers {
            let key =
                AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    config_err(format!("header {k:?} is not a valid gRPC metadata key"))
                })?;
            // Never echo the value: it may hold a token.
            let mut value = AsciiMetadataValue::try_from(v.as_str()).map_err(|_| {
                config_err(format!(
                    "the value of header {k:?} is not valid ASCII metadata"
                ))
            })?;
            value.set_sensitive(true);
            metadata.push((key, value));
        }
        let timeout = cfg.timeout.get();
        let connect_timeout = if timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            timeout
        };
        let endpoint = Endpoint::from_shared(uri.clone())
            .and_then(|e| e.user_agent(USER_AGENT))
            .map_err(|e| ExportError::InvalidEndpoint {
                name: name.to_owned(),
                endpoint: cfg.endpoint.clone(),
                reason: e.to_string(),
            })?
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout);
        let (channel, tls) = match security {
            Security::Plaintext => (endpoint.connect_lazy(), None),
            Security::Tls => {
                let tls = tls_connector(name, &cfg.tls, true, connect_timeout)?;
                (
                    endpoint.connect_with_connector_lazy(tls.connector()),
                    Some(tls),
                )
            }
        };
        Ok(GrpcSink {
            channel,
            tls,
            compression,
            snappy,
            metadata,
            timeout,
        })
    }

    pub(crate) async fn export(&self, batch: &ExportBatch) -> Result<Accepted, ExportError> {
        let body = if !self.snappy {
            batch.request.clone()
        } else if batch.request.len() < super::http::BLOCKING_COMPRESS_ABOVE {
            snappy_framed(&batch.request)?
        } else {
            let data = batch.request.clone();
            tokio::task::spawn_blocking(move || snappy_framed(&data))
                .await
                .map_err(std::io::Error::other)??
        };
        let call = async {
            let mut grpc = tonic::client::Grpc::new(Snappy {
                inner: self.channel.clone(),
                on: self.snappy,
            });
            if let Some(c) = self.compression {
                grpc = grpc.send_compressed(c);
            }
            grpc.ready()
                .await
                .map_err(|e| ExportError::Transport(e.to_string()))?;
            let mut request = tonic::Request::new(body);
            for (k, v) in &self.metadata {
                request.metadata_mut().insert(k.clone(), v.clone());
            }
            if !self.timeout.is_zero() {
                request.set_timeout(self.timeout);
            }
            let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
            grpc.unary(request, path, RawRequestCodec)
                .await
                .map_err(status_error)
        };
        let response = if self.timeout.is_zero() {
            call.await?
        } else {
            tokio::time::timeout(self.timeout, call)
                .await
                .map_err(|_| ExportError::Timeout(self.timeout))??
        };
        let partial = response.into_inner().partial_success.unwrap_or_default();
        Ok(Accepted {
            rejected_spans: partial.rejected_spans,
            error_message: partial.error_message,
        })
    }
}

fn snappy_framed(data: &[u8]) -> Result<Bytes, ExportError> {
    Ok(
        crate::wire::compression::compress(crate::wire::compression::Codec::SnappyFramed, data)?
            .into(),
    )
}

/// The channel, and with `on` a request whose message the codec wrote already
/// snappy-compressed: its frame is flagged compressed and `grpc-encoding: snappy` set.
#[derive(Clone)]
struct Snappy {
    inner: Channel,
    on: bool,
}

impl tower::Service<http::Request<tonic::body::Body>> for Snappy {
    type Response = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if !self.on {
            return self.inner.call(req);
        }
        use http_body_util::BodyExt;
        let (mut parts, body) = req.into_parts();
        parts
            .headers
            .insert("grpc-encoding", http::HeaderValue::from_static("snappy"));
        let mut first = true;
        let body = body.map_frame(move |frame| {
            frame.map_data(|data: Bytes| {
                if !std::mem::take(&mut first) || data.is_empty() {
                    return data;
                }
                // The first byte of the first frame is the compressed flag.
                let mut d = bytes::BytesMut::from(&data[..]);
                d[0] = 1;
                d.freeze()
            })
        });
        self.inner.call(http::Request::from_parts(
            parts,
            tonic::body::Body::new(body),
        ))
    }
}

/// Contradicting TLS settings as one start error.
pub(super) fn tls_error(name: &str, problems: Vec<(String, String)>) -> ExportError {
    let reason = problems
        .into_iter()
        .map(|(key, message)| format!("{key}: {message}"))
        .collect::<Vec<_>>()
        .join("; ");
    ExportError::Tls {
        name: name.to_owned(),
        reason,
    }
}

/// The live TLS side of an exporter (HTTP/2 in ALPN for gRPC, HTTP/1.1 for otlphttp),
/// logging how the server is authenticated. Its files are read again on a reload.
pub(super) fn tls_connector(
    name: &str,
    tls: &TlsCfg,
    http2: bool,
    connect_timeout: Duration,
) -> Result<Arc<ClientTls>, ExportError> {
    let live = ClientTls::load(format!("exporters.{name}.tls"), tls, http2, connect_timeout)
        .map_err(|e| ExportError::Tls {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
    let client_cert = tls
        .cert_file
        .as_deref()
        .is_some_and(|c| !c.trim().is_empty());
    if tls.insecure_skip_verify {
        tracing::warn!(exporter = %name, "insecure_skip_verify: the server's certificate is not checked; anyone on the path can read and change what this exporter sends");
    } else {
        let verified_with = if tls.ca_file.as_deref().is_some_and(|c| !c.trim().is_empty()) {
            "ca_file"
        } else {
            "the system trust store"
        };
        tracing::info!(exporter = %name, verified_with, client_cert, "exporter speaks TLS");
    }
    Ok(live)
}

fn status_error(status: Status) -> ExportError {
    ExportError::Grpc {
        code: status.code(),
        message: status.message().to_owned(),
        retry_delay: if status.code() == Code::Ok {
            None
        } else {
            retry_info_delay(status.details())
        },
    }
}

/// `google.rpc.RetryInfo.retry_delay` from the details of a status (`google.rpc.Status`:
/// field 3 holds `Any`s; `Any`: 1 type_url, 2 value; `RetryInfo`: 1 `Duration`
/// {1 seconds, 2 nanos}).
pub(super) fn retry_info_delay(details: &[u8]) -> Option<Duration> {
    let mut found = None;
    for field in Fields::new(details) {
        let Ok((3, Field::Len(any))) = field else {
            continue;
        };
        let (mut type_url, mut value) = ("", &[][..]);
        for f in Fields::new(any) {
            match f {
                Ok((1, Field::Len(t))) => type_url = std::str::from_utf8(t).unwrap_or(""),
                Ok((2, Field::Len(v))) => value = v,
                _ => {}
            }
        }
        if !type_url.ends_with("/google.rpc.RetryInfo") {
            continue;
        }
        let (mut seconds, mut nanos) = (0u64, 0u32);
        for f in Fields::new(value) {
            let Ok((1, Field::Len(duration))) = f else {
                continue;
            };
            for d in Fields::new(duration) {
                match d {
                    Ok((1, Field::Varint(s))) => seconds = (s as i64).max(0) as u64,
                    Ok((2, Field::Varint(n))) => nanos = (n as i64).clamp(0, 999_999_999) as u32,
                    _ => {}
                }
            }
        }
        found = Some(Duration::new(seconds, nanos));
    }
    found
}
