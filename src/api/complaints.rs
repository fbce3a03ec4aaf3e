//! Complaints: `POST /api/v1/complaints` (flag, rescue, watch), `GET /api/v1/complaints`
//! (`?ticket_id=`, `?user_id=`, or the newest) and `GET /api/v1/complaints/{id}`. Store
//! work runs on a blocking thread: each complaint is one durable write.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::ApiState;
use crate::support::complaints::{ComplaintError, Desk, NewComplaint};
use crate::support::store::Filter;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

fn desk(st: &ApiState) -> Result<Arc<Desk>, ApiError> {
    st.desk
        .clone()
        .ok_or_else(|| ApiError::unavailable("complaints are off"))
}

impl From<ComplaintError> for ApiError {
    fn from(e: ComplaintError) -> ApiError {
        match e {
            ComplaintError::Invalid(m) => ApiError::bad_request(m),
            ComplaintError::Store(s) => {
                tracing::error!(error = %s, "complaint store failed");
                ApiError::unavailable("the complaint store is unavailable; retry later")
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::unavailable("internal task failed"))?
}

pub async fn file(
    State(st): State<ApiState>,
    body: Result<Json<NewComplaint>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(req) = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError {
            status: e.status(),
            message: format!("complaint body over {} bytes", super::MAX_BODY),
        },
        _ => ApiError::bad_request(format!("invalid complaint: {}", e.body_text())),
    })?;
    let desk = desk(&st)?;
    let c = blocking(move || desk.file(req).map_err(ApiError::from)).await?;
    let body =
        json!({ "complaint_id": c.complaint_id, "traces": c.traces, "watch_until": c.watch_until });
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list(
    State(st): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let desk = desk(&st)?;
    let mut filter = Filter::default();
    let mut limit = DEFAULT_LIMIT;
    for (k, v) in q {
        match k.as_str() {
            "ticket_id" => filter.ticket_id = Some(v),
            "user_id" => filter.user_id = Some(v),
            "limit" => limit = super::parse_limit(&v, MAX_LIMIT)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}: use ticket_id, user_id or limit"
                )))
            }
        }
    }
    let list = blocking(move || {
        desk.store()
            .list(&filter, limit)
            .map_err(|e| ComplaintError::Store(e).into())
    })
    .await?;
    Ok(Json(json!({ "complaints": list })))
}

pub async fn one(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let desk = desk(&st)?;
    let key = id.clone();
    let found = blocking(move || {
        desk.store()
            .get(&key)
            .map_err(|e| ComplaintError::Store(e).into())
    })
    .await?;
    let c = found.ok_or_else(|| ApiError::not_found(format!("no complaint {id}")))?;
    Ok(Json(serde_json::to_value(c).unwrap_or(Value::Null)))
}
