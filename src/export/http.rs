//! `otlphttp` exporter: the request bytes POSTed as `application/x-protobuf` (compressed
//! as configured: every Content-Encoding the Collector's exporter sends) to
//! `<endpoint>/v1/traces` or `traces_endpoint`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT,
};
use http::{HeaderMap, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use prost::Message;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

use super::config::{OtlpCfg, Security};
use super::grpc::{tls_connector, tls_error};
use super::{Accepted, ExportBatch, ExportError};
use crate::tls::{ClientTls, LiveConnector};
use crate::wire::compression::{self, Codec};

const PROTOBUF: &str = "application/x-protobuf";
/// Most of a response body read (for a partial success or an error message).
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Bodies larger than this are compressed on the blocking pool.
pub(super) const BLOCKING_COMPRESS_ABOVE: usize = 256 * 1024;

/// The same legacy client over plain TCP or over TLS.
enum HttpClient {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<LiveConnector, Full<Bytes>>),
}

impl HttpClient {
    fn request(&self, request: Request<Full<Bytes>>) -> ResponseFuture {
        match self {
            HttpClient::Plain(c) => c.request(request),
            HttpClient::Tls(c) => c.request(request),
        }
    }
}

pub(super) struct HttpSink {
    client: HttpClient,
    /// With TLS: its files, read again on a reload.
    pub(super) tls: Option<Arc<ClientTls>>,
    uri: Uri,
    headers: HeaderMap,
    codec: Option<Codec>,
    timeout: Duration,
}

/// The URL requests go to: `traces_endpoint` as given, else `endpoint` + `/v1/traces`.
pub(super) fn traces_uri(name: &str, cfg: &OtlpCfg) -> Result<Uri, ExportError> {
    let (given, url) = match &cfg.traces_endpoint {
        Some(t) => (t.as_str(), t.trim().to_owned()),
        None => (
            cfg.endpoint.as_str(),
            format!("{}/v1/traces", cfg.endpoint.trim().trim_end_matches('/')),
        ),
    };
    let bad = |reason: &str| ExportError::InvalidEndpoint {
        name: name.to_owned(),
        endpoint: given.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http" | "https") => {}
        _ => {
            return Err(bad(
                "an OTLP/HTTP endpoint is a URL starting with http:// or https://",
            ))
        }
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() => Ok(uri),
        _ => Err(bad("no host")),
    }
}

impl HttpSink {
    pub(super) fn new(name: &str, cfg: &OtlpCfg) -> Result<HttpSink, ExportError> {
        let config_err = |reason: String| ExportError::Config {
            name: name.to_owned(),
            reason,
        };
        let uri = traces_uri(name, cfg)?;
        let security = cfg.security(true).map_err(|p| tls_error(name, p))?;
        let codec = match cfg.compression.trim().to_ascii_lowercase().as_str() {
            "none" | "" => None,
            other => match Codec::from_http(other) {
                Some(c) if other != "x-gzip" => Some(c),
                _ => {
                    return Err(config_err(format!(
                        "unknown compression {other:?} for otlphttp ({} or none)",
                        compression::HTTP_EXPORTER_CHOICES.join(", ")
                    )))
                }
            },
        };
        let mut headers = HeaderMap::with_capacity(cfg.headers.len() + 3);
        for (k, v) in &cfg.headers {
            let key = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| config_err(format!("header {k:?} is not a valid HTTP header name")))?;
            // Never echo the value: it may hold a token.
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                config_err(format!(
                    "the value of header {k:?} is not a valid HTTP header value"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(key, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
        if let Some(c) = codec {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(c.http_name()));
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("casefile/", env!("CARGO_PKG_VERSION"))),
            );
        }
        let timeout = cfg.timeout.get();
        let connect_timeout = if timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            timeout
        };
        let builder = Client::builder(TokioExecutor::new());
        let mut tls = None;
        let client = match security {
            Security::Plaintext => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(connect_timeout));
                HttpClient::Plain(builder.build(connector))
            }
            Security::Tls => {
                let live = tls_connector(name, &cfg.tls, false, connect_timeout)?;
                tls = Some(Arc::clone(&live));
                HttpClient::Tls(builder.build(live.connector()))
            }
        };
        Ok(HttpSink {
            client,
            tls,
            uri,
            headers,
            codec,
            timeout,
        })
    }

    pub(super) async fn export(&self, batch: &ExportBatch) -> Result<Accepted, ExportError> {
        let body = match self.codec {
            None => batch.request.clone(),
            Some(c) if batch.request.len() < BLOCKING_COMPRESS_ABOVE => {
                compression::compress(c, &batch.request)?.into()
            }
            Some(c) => {
                // Large bodies take milliseconds to compress: off the async worker threads.
                let data = batch.request.clone();
                tokio::task::spawn_blocking(move || compression::compress(c, &data))
                    .await
                    .map_err(std::io::Error::other)??
                    .into()
            }
        };
        let mut request = Request::post(self.uri.clone())
            .body(Full::new(body))
            .map_err(|e| ExportError::Transport(e.to_string()))?;
        *request.headers_mut() = self.headers.clone();
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ExportError::Transport(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BODY)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Ok::<_, ExportError>((parts, body))
        };
        let (parts, body) = if self.timeout.is_zero() {
            exchange.await?
        } else {
            tokio::time::timeout(self.timeout, exchange)
                .await
                .map_err(|_| ExportError::Timeout(self.timeout))??
        };
        let is_protobuf = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with(PROTOBUF));
        if parts.status.is_success() {
            let partial = if is_protobuf {
                ExportTraceServiceResponse::decode(body)
                    .ok()
                    .and_then(|r| r.partial_success)
                    .unwrap_or_default()
            } else {
                Default::default()
            };
            return Ok(Accepted {
                rejected_spans: partial.rejected_spans,
                error_message: partial.error_message,
            });
        }
        let retry_after = parts
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(ExportError::Http {
            status: parts.status.as_u16(),
            message: error_message(&body, is_protobuf),
            retry_after,
        })
    }
}

/// The message of an error body: `google.rpc.Status.message` for protobuf, else the text
/// (cut to 256 characters).
fn error_message(body: &[u8], is_protobuf: bool) -> String {
    if is_protobuf {
        if let Some(m) = crate::wire::string_field(body, 2) {
            return m.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(256) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// An error with its sources ("client error (Connect): tcp connect error: Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
