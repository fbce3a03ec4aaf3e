//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//! The request message is taken as raw bytes (a custom codec) and decoded on the fast
//! path; gzip and zstd are accepted; the size limit applies after decompression. With
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
            let body = request.into_inner();
            match intake.accept(&body, "grpc") {
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
        Box::pin(async move {
            let mut accept = tonic::codec::EnabledCompressionEncodings::default();
            accept.enable(tonic::codec::CompressionEncoding::Gzip);
            accept.enable(tonic::codec::CompressionEncoding::Zstd);
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_compression_config(accept, Default::default())
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(svc, req).await)
        })
    }
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
