//! Support API: health, readiness, metrics, and the support endpoints under `/api/v1`
//! (trace lookups today). `router` is the whole API, so tests call it with `oneshot` and
//! no socket. With `support.api.auth_token` set, `/api/*` needs `Authorization: Bearer`;
//! health and metrics stay open. [`serve`] puts it on a socket, over TLS (optionally
//! mTLS) with `support.api.tls`.

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
    /// Files complaints; None when the support layer is off.
    pub desk: Option<Arc<Desk>>,
    /// Token, rate limit and trace URL: a reload swaps them while the API serves.
    pub settings: LiveSettings,
    /// With `cluster:`: lookups also ask the other members ([`crate::cluster::fanout`]).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// The settings of the API a reload may change, replaced as a whole.
#[derive(Default)]
pub struct Settings {
    /// `support.trace_url`, with `{trace_id}` to fill.
    pub trace_url: Option<String>,
    /// `support.api.auth_token`: when set, `/api/*` requires it as a bearer token.
    pub auth_token: Option<Arc<str>>,
    /// `support.api.max_requests_per_second` for `/api/*`, shared by all clients.
    pub limiter: Option<Arc<Limiter>>,
}

impl Settings {
    /// The settings `support:` asks for. The rate limiter of `previous` is kept when the
    /// rate is the same, so a reload does not refill its bucket.
    pub fn from_config(cfg: &crate::config::SupportCfg, previous: Option<&Settings>) -> Settings {
        let rate = cfg.api.max_requests_per_second;
        let kept = previous
            .and_then(|p| p.limiter.as_ref())
            .filter(|l| l.rate == f64::from(rate))
            .cloned();
        Settings {
            trace_url: cfg.trace_url.clone(),
            auth_token: cfg.api.auth_token.as_deref().map(Arc::from),
            limiter: kept.or_else(|| Limiter::new(rate)),
        }
    }
}

/// The API's [`Settings`] behind a lock taken once per request, only to clone the `Arc`;
/// a reload replaces the whole value, so a request never sees half of one.
#[derive(Clone, Default)]
pub struct LiveSettings(Arc<parking_lot::RwLock<Arc<Settings>>>);

impl LiveSettings {
    pub fn new(settings: Settings) -> LiveSettings {
        LiveSettings(Arc::new(parking_lot::RwLock::new(Arc::new(settings))))
    }

    /// The settings in force now.
    pub fn get(&self) -> Arc<Settings> {
        Arc::clone(&self.0.read())
    }

    /// Puts `settings` in force for the requests that arrive from now on.
    pub fn set(&self, settings: Settings) {
        *self.0.write() = Arc::new(settings);
    }
}

/// A token bucket: `rate` requests a second, bursts of twice that.
pub struct Limiter {
    rate: f64,
    /// (tokens left, when they were counted).
    bucket: parking_lot::Mutex<(f64, std::time::Instant)>,
}

impl Limiter {
    pub fn new(rate: u32) -> Option<Arc<Limiter>> {
        (rate > 0).then(|| {
            let rate = f64::from(rate);
            Arc::new(Limiter {
                rate,
                bucket: parking_lot::Mutex::new((2.0 * rate, std::time::Instant::now())),
            })
        })
    }

    fn admit(&self) -> bool {
        let mut b = self.bucket.lock();
        let now = std::time::Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * self.rate).min(2.0 * self.rate);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
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
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
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

/// Serves the API on `listener` until `shutdown` resolves; over TLS with `tls`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    tls: Option<Arc<crate::tls::ServerTls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            let listener = crate::tls::TlsListener::new(listener, config, "api");
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
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

/// Rate limit, then bearer token, for every `/api/*` route.
async fn guard(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let settings = st.settings.get();
    if settings.limiter.as_ref().is_some_and(|l| !l.admit()) {
        metrics::counter!("casefile_api_throttled_requests_total").increment(1);
        let mut r = ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "too many requests; retry in a second".into(),
        }
        .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return r;
    }
    if let Some(token) = &settings.auth_token {
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
