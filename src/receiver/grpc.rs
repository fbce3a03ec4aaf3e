//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//! The request message is taken as raw bytes (a custom codec) and decoded on the fast
//! path. Compressed requests (grpc-encoding zstd, snappy or deflate, as the Collector's
//! exporters send them) are decompressed here, through [`crate::wire::compression`], never
//! past the size limit; tonic then sees plain messages. gzip is tonic's own (same limit,
//! same answer past it, one copy less). With
//! `tls:` the connections come through [`TlsListener`] (handshake done, mTLS checked).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tokio::net::TcpListener;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, StdError};
use tonic::server::NamedService;
use tonic::{Code, Status};

use super::{encode_response, Intake, IntakeError};
use crate::tls::TlsListener;
use crate::wire::compression::{self, Codec as Compression, DecompressError};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A gRPC codec for messages that are already bytes, both ways: the receiver reads
/// requests raw for the fast path; the load tool and tests send pre-encoded requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The TraceService, answering Export from raw bytes.
#[derive(Clone)]
pub struct TraceService {
    intake: Intake,
    max_message_size: usize,
}

impl NamedService for TraceService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

#[derive(Clone)]
struct ExportSvc(Intake);

impl tonic::server::UnaryService<Bytes> for ExportSvc {
    type Response = Bytes;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let intake = self.0.clone();
        Box::pin(async move {
            let forwarded = request
                .metadata()
                .contains_key(crate::cluster::FORWARDED_BY);
            let body = request.into_inner();
            match intake.accept_from(&body, "grpc", forwarded) {
                Ok(a) => Ok(tonic::Response::new(Bytes::from(encode_response(&a)))),
                Err(e) => Err(status_of(&e)),
            }
        })
    }
}

/// The one place intake errors become gRPC statuses.
fn status_of(e: &IntakeError) -> Status {
    if e.is_throttling() {
        // UNAVAILABLE is always retried by OTLP clients (RESOURCE_EXHAUSTED only with
        // RetryInfo); the RetryInfo says when.
        return Status::with_details(
            Code::Unavailable,
            e.to_string(),
            Bytes::from(crate::wire::encode::status_with_retry_info(
                Code::Unavailable as i32,
                std::time::Duration::from_secs(1),
            )),
        );
    }
    Status::invalid_argument(e.to_string())
}

impl<B> tower::Service<http::Request<B>> for TraceService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async move {
                Ok(Status::new(
                    Code::Unimplemented,
                    "only TraceService/Export is served here",
                )
                .into_http())
            });
        }
        // Over the memory limit the request body is not even read.
        if let Err(e) = self.intake.check_early("grpc", false) {
            return Box::pin(async move { Ok(status_of(&e).into_http()) });
        }
        let svc = ExportSvc(self.intake.clone());
        let max = self.max_message_size;
        let codec = match req.headers().get(GRPC_ENCODING).map(|v| v.as_bytes()) {
            None | Some(b"identity") => None,
            Some(name) => match std::str::from_utf8(name)
                .ok()
                .and_then(Compression::from_grpc)
            {
                Some(c) => Some(c),
                None => {
                    let name = String::from_utf8_lossy(name).into_owned();
                    return Box::pin(async move { Ok(unsupported_encoding(&name).into_http()) });
                }
            },
        };
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(RawCodec).apply_max_message_size_config(Some(max), None);
            let codec = match codec {
                None => return Ok(grpc.unary(svc, req).await),
                // gzip, the default of every OTLP exporter, is left to tonic: it inflates
                // into its own frame buffer, within the same limit and with the same
                // RESOURCE_EXHAUSTED past it, where the path below would copy each
                // decompressed message once more (~3 % of the CPU a span, measured).
                Some(Compression::Gzip) => {
                    let mut accept = tonic::codec::EnabledCompressionEncodings::default();
                    accept.enable(tonic::codec::CompressionEncoding::Gzip);
                    let mut grpc = grpc.apply_compression_config(accept, Default::default());
                    return Ok(grpc.unary(svc, req).await);
                }
                Some(c) => c,
            };
            match decompress_request(req, codec, max).await {
                Ok(req) => Ok(grpc.unary(svc, req).await),
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

const GRPC_ENCODING: &str = "grpc-encoding";

/// UNIMPLEMENTED with grpc-accept-encoding, as gRPC asks of a server that does not know
/// the request's compression.
fn unsupported_encoding(name: &str) -> Status {
    let list = compression::GRPC_ENCODINGS.join(",");
    let mut status = Status::unimplemented(format!(
        "grpc-encoding {name:?} is not supported: casefile accepts {} (or identity)",
        compression::GRPC_ENCODINGS.join(", ")
    ));
    if let Ok(v) = tonic::metadata::MetadataValue::try_from(list.as_str()) {
        status.metadata_mut().insert("grpc-accept-encoding", v);
    }
    status
}

/// The request with its messages decompressed (and marked uncompressed) and grpc-encoding
/// removed. The body is read up to the limit (plus a frame header), as tonic would; each
/// message is decompressed through the bounded reader: past the limit RESOURCE_EXHAUSTED,
/// as tonic answers for its own codecs.
async fn decompress_request<B>(
    req: http::Request<B>,
    codec: Compression,
    max: usize,
) -> Result<http::Request<tonic::body::Body>, Status>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<StdError> + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(GRPC_ENCODING);
    let raw = match http_body_util::Limited::new(body, max.saturating_add(5))
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(too_large(
                format!("Error, compressed message length too large: the limit is {max} bytes"),
                Code::OutOfRange,
            ));
        }
        Err(e) => return Err(Status::cancelled(format!("reading the request: {e}"))),
    };
    // Each message as a frame header and its payload, without copying the payload again.
    let mut out: Vec<Bytes> = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        if rest.len() < 5 {
            return Err(Status::internal("Unexpected EOF decoding stream."));
        }
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(payload) = rest.get(5..5 + len) else {
            return Err(Status::internal("Unexpected EOF decoding stream."));
        };
        rest = &rest[5 + len..];
        let plain = match flag {
            0 => raw.slice_ref(payload),
            1 => match compression::decompress_async(codec, raw.slice_ref(payload), max).await {
                Ok(v) => Bytes::from(v),
                Err(DecompressError::TooLarge { .. }) => {
                    return Err(too_large(format!(
                        "Error decompressing: size limit, of {max} bytes, exceeded while decompressing message"
                    ), Code::ResourceExhausted));
                }
                Err(e) => {
                    metrics::counter!("casefile_receiver_refused_requests_total", "transport" => "grpc", "reason" => "malformed").increment(1);
                    return Err(Status::invalid_argument(format!(
                        "could not decompress the request: {e}"
                    )));
                }
            },
            f => {
                return Err(Status::internal(format!(
                    "protocol error: received message with invalid compression flag: {f}"
                )))
            }
        };
        let mut header = bytes::BytesMut::with_capacity(5);
        header.put_u8(0);
        header.put_u32(plain.len() as u32);
        out.push(header.freeze());
        out.push(plain);
    }
    drop(raw);
    let frames = out
        .into_iter()
        .map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)));
    let body = tonic::body::Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
        frames,
    )));
    Ok(http::Request::from_parts(parts, body))
}

fn too_large(message: String, code: Code) -> Status {
    metrics::counter!("casefile_receiver_refused_requests_total", "transport" => "grpc", "reason" => "too_large").increment(1);
    Status::new(code, message)
}

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves; over TLS with `tls`.
pub async fn serve(
    listener: TcpListener,
    intake: Intake,
    max_message_size: usize,
    tls: Option<Arc<crate::tls::ServerTls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, tls = tls.is_some(), "OTLP/gRPC receiver listening");
    let svc = TraceService {
        intake,
        max_message_size,
    };
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .add_service(svc);
    match tls {
        None => {
            server
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    shutdown,
                )
                .await
        }
        Some(config) => {
            let incoming = TlsListener::new(listener, config, "otlp_grpc").into_stream();
            server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    }
}
