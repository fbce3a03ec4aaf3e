//! Complaints: `POST /api/v1/complaints` (flag, rescue, watch), `GET /api/v1/complaints`
//! (`?ticket_id=`, `?user_id=`, or the newest) and `GET /api/v1/complaints/{id}`. Store
//! work runs on a blocking thread: each complaint is one durable write.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, RawQuery, State};
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
    Query(q): Query<HashMap<String, String>>,
    headers: http::HeaderMap,
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
    let member_only = q.get("scope").is_some_and(|s| s == "member");
    let Some(c) = st.cluster.clone().filter(|_| !member_only) else {
        let c = blocking(move || desk.file(req).map_err(ApiError::from)).await?;
        let mut body = json!({ "complaint_id": c.complaint_id, "traces": c.traces, "watch_until": c.watch_until });
        if let Some(c) = &st.cluster {
            body["member"] = json!(c.name());
        }
        return Ok((StatusCode::CREATED, Json(body)));
    };
    let auth = headers.get(http::header::AUTHORIZATION).cloned();
    tier::file(c, desk, req, auth).await
}

/// Complaints in a tier (`cluster:`): one naming a trace goes to the trace's owner (filed
/// here if the owner does not answer); one about a user or attributes is filed on every
/// member (each rescues what it holds and watches for what it will own), the outcomes
/// merged.
mod tier {
    use super::*;
    use crate::cluster::Cluster;

    /// A member that did not take the complaint, and why.
    pub(super) fn missed(name: &str, answer: Result<(u16, Value), String>) -> Value {
        let error = match answer {
            Ok((code, v)) => format!("HTTP {code}: {}", v["error"]),
            Err(e) => e,
        };
        json!({ "member": name, "error": error })
    }

    pub(super) async fn file(
        c: Arc<Cluster>,
        desk: Arc<Desk>,
        req: NewComplaint,
        auth: Option<http::HeaderValue>,
    ) -> Result<(StatusCode, Json<Value>), ApiError> {
        let body = serde_json::to_value(&req).unwrap_or(Value::Null);
        let path = "/api/v1/complaints";
        let named = req
            .trace_id
            .as_deref()
            .and_then(crate::support::complaints::parse_trace_id);
        let mut partial = Vec::new();
        if let Some(id) = named.filter(|id| c.owner_of(id) != c.name()) {
            let (name, api) = c.others(Some(&id)).remove(0);
            match c
                .asker()
                .post(api.as_deref(), path, auth.as_ref(), &body)
                .await
            {
                Ok((201, v)) => return Ok((StatusCode::CREATED, Json(v))),
                Ok((code, v)) if (400..500).contains(&code) => {
                    return Err(ApiError {
                        status: StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                        message: v["error"].as_str().unwrap_or("refused").to_owned(),
                    })
                }
                answer => partial.push(missed(&name, answer)),
            }
        }
        let here = blocking(move || desk.file(req).map_err(ApiError::from)).await?;
        let mut traces = serde_json::to_value(&here.traces).unwrap_or(Value::Null);
        let mut members = vec![json!({ "member": c.name(), "complaint_id": here.complaint_id })];
        if named.is_none() {
            let others = c.others(None);
            let answers = c
                .asker()
                .post_all(&others, path, auth.as_ref(), &body)
                .await;
            for ((name, _), answer) in others.iter().zip(answers) {
                match answer {
                    Ok((201, v)) => {
                        let more = v["traces"].as_array().cloned().unwrap_or_default();
                        if let Some(all) = traces.as_array_mut() {
                            all.extend(more);
                        }
                        members.push(json!({ "member": name, "complaint_id": v["complaint_id"] }));
                    }
                    answer => partial.push(missed(name, answer)),
                }
            }
        }
        let body = json!({
            "complaint_id": here.complaint_id,
            "traces": traces,
            "watch_until": here.watch_until,
            "member": c.name(),
            "members": members,
            "partial": partial,
        });
        Ok((StatusCode::CREATED, Json(body)))
    }
}

pub async fn list(
    State(st): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
    RawQuery(raw): RawQuery,
    headers: http::HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let desk = desk(&st)?;
    let mut filter = Filter::default();
    let mut limit = DEFAULT_LIMIT;
    let mut member_only = false;
    for (k, v) in q {
        match k.as_str() {
            "ticket_id" => filter.ticket_id = Some(v),
            "user_id" => filter.user_id = Some(v),
            "limit" => limit = super::parse_limit(&v, MAX_LIMIT)?,
            "scope" => member_only = v == "member",
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}: use ticket_id, user_id, limit or scope"
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
    let Some(c) = st.cluster.as_ref().filter(|_| !member_only) else {
        return Ok(Json(json!({ "complaints": list })));
    };
    // In a tier each member keeps the records of what it was asked: all of them, this
    // member's first.
    let mut rows: Vec<Value> = list
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            v["member"] = json!(c.name());
            v
        })
        .collect();
    let others = c.others(None);
    let path = format!("/api/v1/complaints?{}", raw.unwrap_or_default());
    let auth = headers.get(http::header::AUTHORIZATION);
    let mut partial = Vec::new();
    for ((name, _), answer) in others
        .iter()
        .zip(c.asker().get_all(&others, &path, auth).await)
    {
        match answer {
            Ok((200, v)) => {
                for mut r in v["complaints"].as_array().cloned().unwrap_or_default() {
                    r["member"] = json!(name);
                    rows.push(r);
                }
            }
            answer => partial.push(tier::missed(name, answer)),
        }
    }
    rows.truncate(limit);
    Ok(Json(json!({ "complaints": rows, "partial": partial })))
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
