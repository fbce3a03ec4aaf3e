//! OTLP/HTTP receiver: `POST /v1/traces` with `application/x-protobuf` or
//! `application/json` bodies, chunked or not, in every Content-Encoding the Collector's
//! receiver accepts (gzip, zstd, zlib, deflate, snappy, x-snappy-framed, lz4; see
//! [`crate::wire::compression`]). The body limit applies to the body as received and again
//! to the decompressed size (never more is allocated). Answers in the request's content type. With `tls:` the
//! connections come through [`TlsListener`] (handshake done, mTLS checked).

use std::future::Future;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;

use super::{encode_response, Intake};
use crate::tls::TlsListener;
use crate::wire::compression::{self, Codec, DecompressError};
use crate::wire::{put_key, put_len, put_varint, VARINT};

#[derive(Clone)]
struct HttpState {
    intake: Intake,
    max_body: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Proto,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Proto => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The OTLP/HTTP router, for tests and for [`serve`].
pub fn router(intake: Intake, max_body: usize) -> Router {
    Router::new()
        .route("/v1/traces", post(export))
        .with_state(HttpState { intake, max_body })
}

/// The media type of a Content-Type header, lower-cased, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

async fn export(State(st): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let format = match media_type(&headers).as_str() {
        "application/x-protobuf" | "application/protobuf" => Format::Proto,
        "application/json" => Format::Json,
        other => {
            let msg = format!("unsupported content type {other:?}: use application/x-protobuf or application/json");
            return error(Format::Json, StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg);
        }
    };
    let codec = match content_encoding(&headers) {
        Ok(c) => c,
        Err(other) => {
            let msg = format!(
                "unsupported Content-Encoding {other:?}: casefile accepts {}",
                compression::http_encodings_list()
            );
            return error(format, StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg);
        }
    };
    if let Err(e) = st.intake.check_early("http", true) {
        return throttle(format, &e.to_string());
    }
    let too_large = || {
        metrics::counter!("casefile_receiver_refused_requests_total", "transport" => "http", "reason" => "too_large").increment(1);
        let msg = format!(
            "request body exceeds {} bytes (after decompression)",
            st.max_body
        );
        error(format, StatusCode::PAYLOAD_TOO_LARGE, &msg)
    };
    let bytes = match to_bytes(body, st.max_body).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => return too_large(),
        Err(e) => {
            return error(
                format,
                StatusCode::BAD_REQUEST,
                &format!("could not read the request body: {e}"),
            )
        }
    };
    let bytes = match codec {
        None => bytes,
        Some(codec) => {
            // The compressed body is dropped once decoded, not kept beside it.
            let decoded = compression::decompress_async(codec, bytes, st.max_body).await;
            match decoded {
                Ok(b) => b.into(),
                Err(DecompressError::TooLarge { .. }) => return too_large(),
                Err(e) => {
                    metrics::counter!("casefile_receiver_refused_requests_total", "transport" => "http", "reason" => "malformed").increment(1);
                    return error(
                        format,
                        StatusCode::BAD_REQUEST,
                        &format!("could not decompress the request body: {e}"),
                    );
                }
            }
        }
    };
    let result = match format {
        Format::Proto => st.intake.accept(&bytes, "http"),
        Format::Json => st.intake.accept_json(&bytes, "http"),
    };
    match result {
        Ok(a) => {
            let body = match format {
                Format::Proto => encode_response(&a),
                Format::Json => {
                    crate::wire::json::response_to_json(a.rejected as i64, &a.message).into_bytes()
                }
            };
            ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
        }
        Err(e) if e.is_throttling() => throttle(format, &e.to_string()),
        Err(e) => error(format, StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// The body's compression: `None` without Content-Encoding (or `identity`), the unknown
/// name otherwise. One coding only, as the Collector accepts.
fn content_encoding(headers: &HeaderMap) -> Result<Option<Codec>, String> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(None);
    };
    let name = String::from_utf8_lossy(v.as_bytes()).trim().to_owned();
    if name.is_empty() || name.eq_ignore_ascii_case("identity") {
        return Ok(None);
    }
    Codec::from_http(&name).map(Some).ok_or(name)
}

/// 503 + Retry-After: OTLP/HTTP clients retry it.
fn throttle(format: Format, message: &str) -> Response {
    let mut r = error(format, StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        src = err.source();
    }
    false
}

/// An error response: a `google.rpc.Status` in the request's encoding, as OTLP asks.
fn error(format: Format, code: StatusCode, message: &str) -> Response {
    let grpc_code: u64 = match code {
        StatusCode::SERVICE_UNAVAILABLE => 14,
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        _ => 3,
    };
    let body = match format {
        Format::Json => serde_json::json!({ "code": grpc_code, "message": message })
            .to_string()
            .into_bytes(),
        Format::Proto => {
            let mut b = Vec::new();
            put_key(&mut b, 1, VARINT);
            put_varint(&mut b, grpc_code);
            put_len(&mut b, 2, message.as_bytes());
            b
        }
    };
    (code, [(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// Serves OTLP/HTTP on `listener` until `shutdown` resolves; over TLS with `tls`.
pub async fn serve(
    listener: TcpListener,
    intake: Intake,
    max_body: usize,
    tls: Option<Arc<crate::tls::ServerTls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), tls = tls.is_some(), "OTLP/HTTP receiver listening");
    let app = router(intake, max_body);
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            axum::serve(TlsListener::new(listener, config, "otlp_http"), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
