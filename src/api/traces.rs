//! Lookups: `GET /api/v1/traces?<indexed attribute>=<value>[&start][&end][&status][&limit]`
//! and `GET /api/v1/traces/{trace_id}`, answered from the index, the buffer (traces still
//! in their window), the decision summaries and the archive (days of decided traces on
//! disk), newest first, one row per trace.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::{ApiState, Settings};
use crate::model::TraceId;
use crate::support::index::Summary;
use crate::wire::encode::encode_request;
use crate::wire::json::request_to_json;

/// Default and largest `limit`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Parses a 32-hex-digit trace id (any case).
pub fn parse_trace_id(s: &str) -> Result<TraceId, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid trace id {s:?}: expected 32 hex digits"));
    let bytes = hex::decode(s).map_err(|_| bad())?;
    let id: TraceId = bytes.try_into().map_err(|_| bad())?;
    if id == [0; 16] {
        return Err(bad());
    }
    Ok(id)
}

/// Parses a time filter to Unix nanoseconds (see [`crate::support::time`]).
pub fn parse_time(name: &str, s: &str) -> Result<u64, ApiError> {
    crate::support::time::parse_nanos(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid {name} {s:?}: {}",
            crate::support::time::FORMS
        ))
    })
}

fn with_url(settings: &Settings, s: &Summary) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    let url = settings
        .trace_url
        .as_ref()
        .map(|u| u.replace("{trace_id}", &hex::encode(s.trace_id)));
    v["url"] = url.map(Value::String).unwrap_or(Value::Null);
    v
}

/// The summary of a trace: still pending (buffer), decided (index), or archived.
fn summary(st: &ApiState, id: &TraceId) -> Option<Summary> {
    st.buffer
        .pending_summary(id)
        .or_else(|| st.buffer.index().and_then(|ix| ix.summary(id)))
        .or_else(|| st.buffer.archive().and_then(|a| a.summary(id)))
}

/// The spans of a trace from whichever tier holds them, and its name: the buffer
/// (`pending`), the rescue ring (`rescue_ring`), else the archive (`archive`).
fn held_spans(st: &ApiState, id: &TraceId) -> Option<(Vec<crate::model::Span>, &'static str)> {
    if let Some(spans) = st.buffer.pending_spans(id) {
        return Some((spans, "pending"));
    }
    if let Some(spans) = st.buffer.rescue_buffer().and_then(|r| r.peek(id)) {
        return Some((spans, "rescue_ring"));
    }
    let spans = st.buffer.archive()?.spans(id)?;
    (!spans.is_empty()).then_some((spans, "archive"))
}

pub async fn search(
    State(st): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let index = st
        .buffer
        .index()
        .ok_or_else(|| ApiError::unavailable("the index is off (support.index)"))?;
    let indexed = || index.attributes().join(", ");
    let mut key = None;
    let (mut start, mut end, mut status, mut limit) = (None, None, None, DEFAULT_LIMIT);
    for (k, v) in &q {
        match k.as_str() {
            "start" => start = Some(parse_time("start", v)?),
            "end" => end = Some(parse_time("end", v)?),
            "status" => match v.as_str() {
                "error" => status = Some(true),
                "ok" => status = Some(false),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "invalid status {other:?}: use error or ok"
                    )))
                }
            },
            "limit" => limit = super::parse_limit(v, MAX_LIMIT)?,
            attr => {
                let k = index.query_key(attr, v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "attribute {attr:?} is not indexed; indexed attributes: {}",
                        indexed()
                    ))
                })?;
                if key.replace((k, (attr, v.as_str()))).is_some() {
                    return Err(ApiError::bad_request(
                        "give one indexed attribute per lookup",
                    ));
                }
            }
        }
    }
    let (key, (attr, value)) = key.ok_or_else(|| {
        ApiError::bad_request(format!(
            "name an indexed attribute, e.g. ?user.id=...; indexed: {}",
            indexed()
        ))
    })?;
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(ApiError::bad_request("start is after end"));
        }
    }
    let wanted = |s: &Summary| {
        start.is_none_or(|t| s.start_unix_nano >= t)
            && end.is_none_or(|t| s.start_unix_nano <= t)
            && status.is_none_or(|e| s.error == e)
    };
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (id, decided) in index.lookup(&key) {
        let Some(s) = st.buffer.pending_summary(&id).or(decided) else {
            continue;
        };
        seen.insert(id);
        if wanted(&s) {
            out.push(s);
        }
    }
    // Then the archive: every decided trace, for days; memory's summary wins for a trace
    // both hold (it is the fresher). A status filter reads further, to fill the limit.
    if let Some(archive) = st.buffer.archive().cloned() {
        let want = if status.is_some() {
            MAX_LIMIT * 10
        } else {
            limit
        } + seen.len();
        let key = archive.key(attr, value);
        // Positioned reads of index files: off the async workers.
        let archived = tokio::task::spawn_blocking(move || archive.lookup(&key, start, end, want))
            .await
            .map_err(|e| ApiError::unavailable(format!("archive lookup failed: {e}")))?;
        out.extend(
            archived
                .into_iter()
                .filter(|s| !seen.contains(&s.trace_id) && wanted(s)),
        );
    }
    // Newest first by the traces' own start times (arrival order can differ).
    out.sort_by_key(|s| std::cmp::Reverse(s.start_unix_nano));
    out.truncate(limit);
    let settings = st.settings.get();
    Ok(Json(
        json!({ "traces": out.iter().map(|s| with_url(&settings, s)).collect::<Vec<_>>() }),
    ))
}

pub async fn one(
    State(st): State<ApiState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_trace_id(&trace_id)?;
    let found = {
        let st = st.clone();
        // The archive reads files: off the async workers.
        tokio::task::spawn_blocking(move || summary(&st, &id).map(|s| (s, held_spans(&st, &id))))
            .await
            .map_err(|e| ApiError::unavailable(format!("trace read failed: {e}")))?
    };
    let (s, held) = found.ok_or_else(|| {
        ApiError::not_found(format!(
            "trace {trace_id} is not held or indexed by casefile"
        ))
    })?;
    let mut v = with_url(&st.settings.get(), &s);
    v["indexed_attributes"] = json!(st
        .buffer
        .index()
        .map(|ix| ix.attributes())
        .unwrap_or_default());
    if let Some((spans, tier)) = held {
        let json = request_to_json(&encode_request(&spans))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let req: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
        let mut flat = Vec::new();
        for rs in req["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                flat.extend(ss["spans"].as_array().into_iter().flatten().cloned());
            }
        }
        v["spans"] = Value::Array(flat);
        // The same spans with their resources and scopes, as OTLP/JSON lays them out.
        v["resource_spans"] = req["resourceSpans"].clone();
        v["held"] = json!(tier);
    }
    Ok(Json(v))
}
