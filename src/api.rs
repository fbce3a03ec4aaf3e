//! Support API: health, readiness and metrics today; lookups and complaints build on it.
//! `router` is the whole API, so tests call it with `oneshot` and no socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::buffer::Buffer;

/// What the API reads.
#[derive(Clone)]
pub struct ApiState {
    /// True once the receivers listen and the exporters are started.
    pub ready: Arc<AtomicBool>,
    pub metrics: PrometheusHandle,
    pub buffer: Arc<Buffer>,
    pub exporters: Vec<String>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
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
