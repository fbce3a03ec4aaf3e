//! Support API: health, readiness, metrics, and the support endpoints under `/api/v1`
//! (trace lookups today). `router` is the whole API, so tests call it with `oneshot` and
//! no socket. With `support.api.auth_token` set, `/api/*` needs `Authorization: Bearer`;
//! health and metrics stay open.

mod complaints;
mod error;
pub mod traces;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

pub use error::ApiError;

use crate::buffer::Buffer;
use crate::support::complaints::Desk;

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// What the API reads.
#[derive(Clone)]
pub struct ApiState {
    /// True once the receivers listen and the exporters are started.
    pub ready: Arc<AtomicBool>,
    pub metrics: PrometheusHandle,
    pub buffer: Arc<Buffer>,
    pub exporters: Vec<String>,
    /// `support.trace_url`, with `{trace_id}` to fill.
    pub trace_url: Option<String>,
    /// `support.api.auth_token`: when set, `/api/*` requires it as a bearer token.
    pub auth_token: Option<Arc<str>>,
    /// Files complaints; None when the support layer is off.
    pub desk: Option<Arc<Desk>>,
}

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/traces", get(traces::search))
        .route("/api/v1/traces/{trace_id}", get(traces::one))
        .route(
            "/api/v1/complaints",
            get(complaints::list).post(complaints::file),
        )
        .route("/api/v1/complaints/{complaint_id}", get(complaints::one))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(console))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Parses a `limit` query parameter: a number from 1 to `max`.
pub(crate) fn parse_limit(v: &str, max: usize) -> Result<usize, ApiError> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!("invalid limit {v:?}: a number from 1 to {max}"))
        })
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.auth_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// The support console: one static page, compiled in, that calls `/api/v1`.
async fn console() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("console.html"),
    )
        .into_response()
}

async fn readyz(State(st): State<ApiState>) -> Response {
    let body = serde_json::json!({
        "ready": st.ready.load(Ordering::Relaxed),
        "exporters": st.exporters,
        "traces_held": st.buffer.held_traces(),
        "bytes_held": st.buffer.held_bytes(),
    });
    let code = if st.ready.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(st): State<ApiState>) -> Response {
    metrics::gauge!("casefile_processor_tail_sampling_sampling_traces_on_memory")
        .set(st.buffer.held_traces() as f64);
    metrics::gauge!("casefile_processor_tail_sampling_sampling_bytes_on_memory")
        .set(st.buffer.held_bytes() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
