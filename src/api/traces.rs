//! Lookups: `GET /api/v1/traces?<indexed attribute>=<value>[&start][&end][&status][&limit]`
//! and `GET /api/v1/traces/{trace_id}`, answered from the index, the buffer (traces still
//! in their window), the decision summaries and the archive (days of decided traces on
//! disk), newest first, one row per trace. In a tier (`cluster:`), every member asks the
//! others too and merges their rows (`partial` names those that did not answer); a trace by
//! id is asked of its owner first. `scope=member` answers for this member only.

use std::collections::HashMap;

use axum::extract::{Path, Query, RawQuery, State};
use axum::Json;
use http::HeaderMap;
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

/// With `cluster:` (and no `scope=member`): whether to ask the other members too.
fn tier(st: &ApiState, member_only: bool) -> Option<&crate::cluster::Cluster> {
    st.cluster.as_deref().filter(|_| !member_only)
}

/// `scope`: `member` (answer for this member only: what members ask each other) or `tier`.
fn member_only(v: &str) -> Result<bool, ApiError> {
    match v {
        "member" => Ok(true),
        "tier" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "invalid scope {other:?}: use member or tier"
        ))),
    }
}

/// A row as this member serves it: its summary, trace URL and (in a tier) the member.
fn row(st: &ApiState, settings: &Settings, s: &Summary) -> Value {
    let mut v = with_url(settings, s);
    if let Some(c) = &st.cluster {
        v["member"] = json!(c.name());
    }
    v
}

/// The `start` of a row, for ordering rows of several members.
fn row_start(v: &Value) -> u64 {
    v["start"]
        .as_str()
        .and_then(crate::support::time::parse_nanos)
        .unwrap_or(0)
}

pub async fn search(
    State(st): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let index = st
        .buffer
        .index()
        .ok_or_else(|| ApiError::unavailable("the index is off (support.index)"))?;
    let indexed = || index.attributes().join(", ");
    let mut key = None;
    let (mut start, mut end, mut status, mut limit) = (None, None, None, DEFAULT_LIMIT);
    let mut member_only = false;
    for (k, v) in &q {
        match k.as_str() {
            "scope" => member_only = self::member_only(v)?,
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
    let mut rows: Vec<Value> = out.iter().map(|s| row(&st, &settings, s)).collect();
    let Some(c) = tier(&st, member_only) else {
        return Ok(Json(json!({ "traces": rows })));
    };
    // The tier: every other member answers for itself; one row per trace (this member's
    // first, then in the members' order), newest first.
    let members = c.others(None);
    let path = format!("/api/v1/traces?{}", raw.unwrap_or_default());
    let auth = headers.get(http::header::AUTHORIZATION);
    let answers = c.asker().get_all(&members, &path, auth).await;
    let mut partial = Vec::new();
    for ((name, _), answer) in members.iter().zip(answers) {
        match answer {
            Ok((200, v)) => rows.extend(v["traces"].as_array().into_iter().flatten().cloned()),
            Ok((code, v)) => partial
                .push(json!({ "member": name, "error": format!("HTTP {code}: {}", v["error"]) })),
            Err(e) => partial.push(json!({ "member": name, "error": e })),
        }
    }
    let mut seen = std::collections::HashSet::new();
    rows.retain(|r| seen.insert(r["trace_id"].as_str().unwrap_or_default().to_owned()));
    rows.sort_by_key(|r| std::cmp::Reverse(row_start(r)));
    rows.truncate(limit);
    Ok(Json(json!({ "traces": rows, "partial": partial })))
}

pub async fn one(
    State(st): State<ApiState>,
    Path(trace_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let id = parse_trace_id(&trace_id)?;
    let member_only = match q.get("scope") {
        Some(v) => self::member_only(v)?,
        None => false,
    };
    let found = {
        let st = st.clone();
        // The archive reads files: off the async workers.
        tokio::task::spawn_blocking(move || summary(&st, &id).map(|s| (s, held_spans(&st, &id))))
            .await
            .map_err(|e| ApiError::unavailable(format!("trace read failed: {e}")))?
    };
    let Some((s, held)) = found else {
        // In a tier, the owner holds it (asked first), else a member that decided it when
        // the owner could not be reached.
        let mut partial = Vec::new();
        if let Some(c) = tier(&st, member_only) {
            let auth = headers.get(http::header::AUTHORIZATION);
            let path = format!("/api/v1/traces/{trace_id}");
            for (name, api) in c.others(Some(&id)) {
                match c.asker().get(api.as_deref(), &path, auth).await {
                    Ok((200, v)) => return Ok(Json(v)),
                    Ok((404, _)) => {}
                    Ok((code, v)) => partial.push(format!("{name} (HTTP {code}: {})", v["error"])),
                    Err(e) => partial.push(format!("{name} ({e})")),
                }
            }
        }
        let unanswered = if partial.is_empty() {
            String::new()
        } else {
            format!("; members that did not answer: {}", partial.join(", "))
        };
        return Err(ApiError::not_found(format!(
            "trace {trace_id} is not held or indexed by casefile{unanswered}"
        )));
    };
    let mut v = row(&st, &st.settings.get(), &s);
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
