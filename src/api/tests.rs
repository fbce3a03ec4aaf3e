//! The support API through its router (`oneshot`, no socket): every path, status code and
//! error body.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::Request;
use prost::Message;
use serde_json::Value;
use tokio::time::{advance, Instant};
use tower::ServiceExt;

use super::*;
use crate::buffer::BufferCfg;
use crate::config::IndexCfg;
use crate::fixture::{self, Gen, Shape};
use crate::model::Span;
use crate::policy::{Policies, PolicyCfg};
use crate::support::complaints::Desk;
use crate::support::index::Index;
use crate::support::store::ComplaintStore;
use crate::wire::decode::decode_request;

fn buffer(index: bool) -> Arc<Buffer> {
    let cfgs: Vec<PolicyCfg> = serde_yaml_ng::from_str(
        "- { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }",
    )
    .unwrap();
    let cfg = BufferCfg {
        decision_wait: Duration::from_secs(10),
        decision_wait_after_root_received: None,
        num_traces: 1000,
        max_bytes: 64 << 20,
        sampled_cache_size: 100,
        non_sampled_cache_size: 100,
        num_shards: 2,
        maximum_trace_size_bytes: None,
    };
    let mut b = Buffer::new(cfg, Policies::build(&cfgs, false).unwrap());
    if index {
        let icfg = IndexCfg {
            attributes: vec!["user.id".into(), "session.id".into()],
            retention: Duration::from_secs(3600),
            max_traces: 1000,
            max_bytes: 64 << 20,
            hash_values: false,
            hash_key: None,
        };
        b = b.with_index(Arc::new(Index::new(&icfg)));
    }
    Arc::new(b)
}

fn state(buffer: Arc<Buffer>, token: Option<&str>) -> ApiState {
    ApiState {
        ready: Arc::new(AtomicBool::new(true)),
        metrics: crate::telemetry::metrics_handle(),
        buffer: Arc::clone(&buffer),
        exporters: vec!["file".into()],
        desk: Some(Arc::new(Desk::new(
            Arc::clone(&buffer),
            Arc::new(ComplaintStore::in_memory().unwrap()),
            Duration::from_secs(3600),
        ))),
        settings: LiveSettings::new(Settings {
            trace_url: Some("http://jaeger:16686/trace/{trace_id}".into()),
            auth_token: token.map(Arc::from),
            limiter: None,
        }),
        cluster: None,
    }
}

async fn get(st: &ApiState, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(st, req.body(Body::empty()).unwrap()).await
}

async fn post(st: &ApiState, uri: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    send(st, req).await
}

async fn send(st: &ApiState, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, v)
}

fn ingest(b: &Buffer, t: &fixture::Trace) {
    let spans = decode_request(&fixture::request_for(std::slice::from_ref(t)).encode_to_vec())
        .unwrap()
        .spans;
    b.ingest(spans, Instant::now());
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let st = state(buffer(false), Some("t0k"));
    assert_eq!(
        get(&st, "/healthz", None).await,
        (StatusCode::OK, serde_json::json!({ "status": "ok" }))
    );
    let (code, v) = get(&st, "/readyz", None).await;
    assert_eq!((code, v["ready"].as_bool()), (StatusCode::OK, Some(true)));
    st.ready.store(false, Ordering::Relaxed);
    assert_eq!(
        get(&st, "/readyz", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (code, text) = get(&st, "/metrics", None).await;
    assert_eq!(code, StatusCode::OK, "metrics stay open with a token set");
    assert!(text
        .as_str()
        .unwrap()
        .contains("casefile_processor_tail_sampling_sampling_traces_on_memory"));
    let (code, v) = get(&st, "/nope", None).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no such endpoint"))
    );
}

#[tokio::test]
async fn bearer_token_guards_the_api() {
    let st = state(buffer(true), Some("s3cret"));
    for token in [None, Some("wrong"), Some("s3cre")] {
        let (code, v) = get(&st, "/api/v1/traces?user.id=u", token).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(v["error"].as_str().unwrap().contains("bearer token"));
    }
    assert_eq!(
        get(&st, "/api/v1/traces?user.id=u", Some("s3cret")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn lookup_errors_are_400_with_a_json_message() {
    let st = state(buffer(true), None);
    let cases = [
        ("/api/v1/traces", "name an indexed attribute"),
        (
            "/api/v1/traces?http.route=/x",
            "\"http.route\" is not indexed; indexed attributes: user.id, session.id",
        ),
        ("/api/v1/traces?user.id=u&start=yesterday", "invalid start"),
        (
            "/api/v1/traces?user.id=u&end=2026-13-01T00:00:00Z",
            "invalid end",
        ),
        ("/api/v1/traces?user.id=u&status=slow", "invalid status"),
        ("/api/v1/traces?user.id=u&limit=0", "invalid limit"),
        (
            "/api/v1/traces?user.id=u&session.id=s",
            "one indexed attribute",
        ),
        (
            "/api/v1/traces?user.id=u&start=2026-02-06T15:00:00Z&end=2026-02-06T14:00:00Z",
            "start is after end",
        ),
        ("/api/v1/traces/xyz", "invalid trace id"),
        (
            "/api/v1/traces/00000000000000000000000000000000",
            "invalid trace id",
        ),
    ];
    for (uri, want) in cases {
        let (code, v) = get(&st, uri, None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{uri}: {v}");
    }
    let (code, v) = get(&st, "/api/v1/traces/0123456789abcdef0123456789abcdef", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(
        get(&st, "/api/v1/traces?user.id=nobody", None).await,
        (StatusCode::OK, serde_json::json!({ "traces": [] }))
    );
    let off = state(buffer(false), None);
    assert_eq!(
        get(&off, "/api/v1/traces?user.id=u", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(start_paused = true)]
async fn lookups_show_pending_then_decided_traces_newest_first() {
    let b = buffer(true);
    let st = state(Arc::clone(&b), None);
    let mut g = Gen::new(5);
    let older = g.trace(Shape::ERROR, 4);
    let mut newer = g.trace(Shape::default(), 3);
    newer.set_user(&older.user_id);
    ingest(&b, &older);
    ingest(&b, &newer);
    let uri = format!("/api/v1/traces?user.id={}", older.user_id);
    let (code, v) = get(&st, &uri, None).await;
    assert_eq!(code, StatusCode::OK);
    let traces = v["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 2);
    assert_eq!(
        traces[0]["trace_id"],
        hex::encode(newer.trace_id),
        "newest first"
    );
    assert_eq!(traces[0]["decision"], "pending");
    assert_eq!(traces[1]["span_count"], 4);
    assert_eq!(traces[1]["error"], true);
    assert_eq!(
        traces[1]["url"],
        format!("http://jaeger:16686/trace/{}", hex::encode(older.trace_id))
    );

    // The trace endpoint shows a pending trace with its spans.
    let (code, one) = get(
        &st,
        &format!(
            "/api/v1/traces/{}",
            hex::encode(older.trace_id).to_uppercase()
        ),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(one["spans"].as_array().unwrap().len(), 4);

    advance(Duration::from_secs(11)).await;
    b.decide_due(Instant::now());
    let (_, v) = get(&st, &uri, None).await;
    let traces = v["traces"].as_array().unwrap();
    assert_eq!(traces[1]["decision"], "sampled");
    assert_eq!(traces[1]["reasons"], serde_json::json!(["errors"]));
    assert_eq!(traces[0]["decision"], "dropped");

    let (_, v) = get(&st, &format!("{uri}&status=error"), None).await;
    assert_eq!(v["traces"].as_array().unwrap().len(), 1);
    let (_, v) = get(&st, &format!("{uri}&limit=1"), None).await;
    assert_eq!(v["traces"][0]["trace_id"], hex::encode(newer.trace_id));
    let start = crate::support::index::rfc3339(g.now_ns + 3_600_000_000_000);
    let (_, v) = get(&st, &format!("{uri}&start={start}"), None).await;
    assert_eq!(
        v["traces"],
        serde_json::json!([]),
        "nothing after the window"
    );
    // The same instant with an offset (`+` as typed in a URL, a space once decoded, or
    // %2B), or as epoch seconds or milliseconds, filters the same.
    let later = g.now_ns / 1_000_000_000 + 3_600;
    let local = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(later + 3_600),
    )
    .to_string();
    let local = local.trim_end_matches('Z');
    for start in [
        format!("{local}%2B01:00"),
        format!("{local}+01:00"),
        later.to_string(),
        (later * 1000).to_string(),
    ] {
        let (code, v) = get(&st, &format!("{uri}&start={start}"), None).await;
        assert_eq!(code, StatusCode::OK, "{start}: {v}");
        assert_eq!(v["traces"], serde_json::json!([]), "{start}");
    }
    let before = g.now_ns / 1_000_000_000 - 3_600;
    let (_, v) = get(&st, &format!("{uri}&start={before}"), None).await;
    assert_eq!(v["traces"].as_array().unwrap().len(), 2, "epoch seconds");
    let (code, one) = get(
        &st,
        &format!("/api/v1/traces/{}", hex::encode(older.trace_id)),
        None,
    )
    .await;
    assert_eq!(
        (code, one["decision"].as_str()),
        (StatusCode::OK, Some("sampled"))
    );
    assert!(one.get("spans").is_none(), "spans are no longer held");
}

fn root_attr(spans: &[Span], key: &str) -> Option<String> {
    let root = spans.iter().find(|s| s.is_root())?;
    root.attribute(key)
        .and_then(|v| v.as_str().map(str::to_owned))
}

#[tokio::test]
async fn complaint_errors_are_400_with_a_json_message() {
    let st = state(buffer(true), None);
    let cases = [
        ("{", "invalid complaint"),
        (
            r#"{"trace_id": "0123456789abcdef0123456789abcdef"}"#,
            "invalid complaint",
        ),
        (
            r#"{"ticket_id": "cs_1"}"#,
            "name a trace_id, a user_id or attributes",
        ),
        (
            r#"{"ticket_id": "", "user_id": "u"}"#,
            "ticket_id is required",
        ),
        (
            r#"{"ticket_id": "cs_1", "trace_id": "xyz"}"#,
            "invalid trace_id",
        ),
        (
            r#"{"ticket_id": "cs_1", "user_id": "u", "start": "noon"}"#,
            "invalid start",
        ),
        (
            r#"{"ticket_id": "cs_1", "attributes": {"http.route": "/x"}}"#,
            "\"http.route\" is not indexed",
        ),
        (
            r#"{"ticket_id": "cs_1", "user_id": "u", "surprise": 1}"#,
            "unknown field",
        ),
    ];
    for (body, want) in cases {
        let (code, v) = post(&st, "/api/v1/complaints", body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{body}: {v}");
    }
    let (code, v) = get(&st, "/api/v1/complaints/cmp_nope", None).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no complaint cmp_nope"))
    );
    let (code, _) = get(&st, "/api/v1/complaints?limit=0", None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let big = format!(
        r#"{{"ticket_id": "cs_1", "user_id": "u", "text": "{}"}}"#,
        "x".repeat(MAX_BODY)
    );
    assert_eq!(
        post(&st, "/api/v1/complaints", &big).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test(start_paused = true)]
async fn a_complaint_flags_a_pending_trace_and_watches_its_user() {
    let b = buffer(true);
    let st = state(Arc::clone(&b), None);
    let mut g = Gen::new(6);
    let t = g.trace(Shape::default(), 3);
    ingest(&b, &t);
    let id = hex::encode(t.trace_id);
    let body = format!(
        r#"{{"ticket_id": "cs_441", "trace_id": "{id}", "label": "wrong_policy_answer", "text": "order failed"}}"#
    );
    let (code, v) = post(&st, "/api/v1/complaints", &body).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["traces"],
        serde_json::json!([{ "trace_id": id, "outcome": "flagged" }])
    );
    assert_eq!(
        v["watch_until"],
        Value::Null,
        "a trace alone opens no watch"
    );

    // At its deadline the plain trace is kept for the complaint, with the link back.
    advance(Duration::from_secs(11)).await;
    b.decide_due(Instant::now());
    let out = b.take_outbox();
    assert_eq!(out.spans.len(), 3);
    assert_eq!(
        root_attr(&out.spans, "casefile.ticket_id").as_deref(),
        Some("cs_441")
    );
    assert_eq!(
        root_attr(&out.spans, "casefile.complaint_label").as_deref(),
        Some("wrong_policy_answer")
    );
    assert_eq!(
        root_attr(&out.spans, "casefile.policy").as_deref(),
        Some("complaint")
    );
    let (_, again) = post(
        &st,
        "/api/v1/complaints",
        &format!(r#"{{"ticket_id": "cs_442", "trace_id": "{id}"}}"#),
    )
    .await;
    assert_eq!(again["traces"][0]["outcome"], "already_sampled");
    let (_, unknown) = post(
        &st,
        "/api/v1/complaints",
        r#"{"ticket_id": "cs_443", "trace_id": "0123456789abcdef0123456789abcdef"}"#,
    )
    .await;
    assert_eq!(unknown["traces"][0]["outcome"], "not_found");

    // A user complaint: a watch keeps that user's next trace.
    let (code, w) = post(
        &st,
        "/api/v1/complaints",
        &format!(r#"{{"ticket_id": "cs_500", "user_id": "{}"}}"#, t.user_id),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert!(w["watch_until"].as_str().is_some(), "{w}");
    let mut next = g.trace(Shape::default(), 2);
    next.set_user(&t.user_id);
    ingest(&b, &next);
    advance(Duration::from_secs(11)).await;
    b.decide_due(Instant::now());
    let out = b.take_outbox();
    assert_eq!(out.spans.len(), 2, "the watched user's plain trace is kept");
    assert_eq!(
        root_attr(&out.spans, "casefile.policy").as_deref(),
        Some("watch")
    );
    assert_eq!(
        root_attr(&out.spans, "casefile.ticket_id").as_deref(),
        Some("cs_500")
    );

    let (code, list) = get(&st, "/api/v1/complaints?ticket_id=cs_441", None).await;
    assert_eq!(code, StatusCode::OK);
    let list = list["complaints"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["text"], "order failed");
    let cid = list[0]["complaint_id"].as_str().unwrap();
    let (code, one) = get(&st, &format!("/api/v1/complaints/{cid}"), None).await;
    assert_eq!(
        (code, one["ticket_id"].as_str()),
        (StatusCode::OK, Some("cs_441"))
    );
    let (_, newest) = get(&st, "/api/v1/complaints", None).await;
    assert_eq!(newest["complaints"].as_array().unwrap().len(), 4);
    let (_, by_user) = get(
        &st,
        &format!("/api/v1/complaints?user_id={}", t.user_id),
        None,
    )
    .await;
    assert_eq!(by_user["complaints"][0]["ticket_id"], "cs_500");
}

#[tokio::test]
async fn the_console_page_is_served_without_a_token() {
    let st = state(buffer(true), Some("t0k"));
    let resp = router(st)
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("casefile"));
}

#[tokio::test]
async fn the_api_is_rate_limited_with_429_and_retry_after() {
    let st = state(buffer(true), None);
    st.settings.set(Settings {
        limiter: Limiter::new(2),
        ..Settings::default()
    });
    // A burst of twice the rate goes through, the next is refused.
    for _ in 0..4 {
        assert_eq!(
            get(&st, "/api/v1/traces?user.id=u", None).await.0,
            StatusCode::OK
        );
    }
    let resp = router(st.clone())
        .oneshot(
            Request::get("/api/v1/traces?user.id=u")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(
        get(&st, "/healthz", None).await.0,
        StatusCode::OK,
        "health is not limited"
    );
}
