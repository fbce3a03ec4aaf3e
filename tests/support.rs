//! The support layer end to end: a real OTLP client sends traces, support looks a user up
//! over the real API socket and gets the trace ids, pending first, then decided with
//! their reasons and deep links.

mod common;

use std::net::SocketAddr;

use casefile::fixture::{self, Gen, Shape};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lookup_finds_the_trace_from_pending_to_decided() {
    let (down, addr) = Downstream::start().await;
    let mut cfg = config(addr, "300ms", "");
    cfg.support.trace_url = Some("http://jaeger:16686/trace/{trace_id}".into());
    cfg.support.api.auth_token = Some("tok_e2e".into());
    let daemon = start(cfg).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(41);
    let failed = g.trace(Shape::ERROR, 5);
    let other = g.trace(Shape::default(), 5);
    client
        .export(fixture::request_for(&[failed.clone(), other.clone()]))
        .await
        .unwrap();

    let api = daemon.api_addr.unwrap();
    let path = format!("/api/v1/traces?user.id={}", failed.user_id);
    assert_eq!(
        api_get(api, &path, None).await.0,
        401,
        "the token is required"
    );
    let (code, v) = api_get(api, &path, Some("tok_e2e")).await;
    assert_eq!(code, 200, "{v}");
    let id = hex::encode(failed.trace_id);
    assert_eq!(v["traces"][0]["trace_id"], id.as_str());
    assert_eq!(v["traces"][0]["span_count"], 5);

    let kept = id.clone();
    down.wait_for("the failed trace", |d| {
        d.spans_by_trace().get(&kept).map(Vec::len) == Some(5)
    })
    .await;
    until_all_decided(&daemon).await;
    let (_, v) = api_get(api, &path, Some("tok_e2e")).await;
    let t = &v["traces"][0];
    assert_eq!(t["decision"], "sampled", "{v}");
    assert_eq!(t["reasons"], serde_json::json!(["errors"]));
    assert_eq!(t["error"], true);
    assert_eq!(t["root_service"], "frontend");
    assert_eq!(t["url"], format!("http://jaeger:16686/trace/{id}"));

    let (_, v) = api_get(
        api,
        &format!("/api/v1/traces?user.id={}", other.user_id),
        Some("tok_e2e"),
    )
    .await;
    assert_eq!(v["traces"][0]["decision"], "dropped", "{v}");
    let (code, one) = api_get(api, &format!("/api/v1/traces/{id}"), Some("tok_e2e")).await;
    assert_eq!((code, one["decision"].as_str()), (200, Some("sampled")));
    daemon.shutdown().await;
}

fn store_config(downstream: SocketAddr, store: &std::path::Path) -> casefile::config::Config {
    let mut cfg = config(downstream, "200ms", "");
    cfg.support.complaints.store = Some(store.display().to_string());
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_after_the_decision_rescues_the_whole_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (down, addr) = Downstream::start().await;
    let daemon = start(store_config(addr, &dir.path().join("complaints.db"))).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(42);
    let plain = g.trace(Shape::default(), 7);
    client
        .export(fixture::request_for(std::slice::from_ref(&plain)))
        .await
        .unwrap();
    until_all_decided(&daemon).await;
    let id = hex::encode(plain.trace_id);
    assert!(
        !down.spans_by_trace().contains_key(&id),
        "dropped by the policies"
    );

    let body = format!(r#"{{"ticket_id": "cs_441", "trace_id": "{id}", "label": "order_failed"}}"#);
    let (code, v) = api_post(daemon.api_addr.unwrap(), "/api/v1/complaints", &body).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        v["traces"],
        serde_json::json!([{ "trace_id": id, "outcome": "rescued" }])
    );
    let want = id.clone();
    down.wait_for("the rescued trace", |d| {
        d.spans_by_trace().get(&want).map(Vec::len) == Some(7)
    })
    .await;
    let spans = &down.spans_by_trace()[&id];
    assert_eq!(
        root_attr(spans, "casefile.ticket_id").as_deref(),
        Some("cs_441")
    );
    assert_eq!(
        root_attr(spans, "casefile.complaint_label").as_deref(),
        Some("order_failed")
    );
    let (_, v) = api_get(
        daemon.api_addr.unwrap(),
        &format!("/api/v1/traces?user.id={}", plain.user_id),
        None,
    )
    .await;
    assert_eq!(v["traces"][0]["decision"], "rescued", "{v}");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_keeps_the_next_trace_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("complaints.db");
    let (down, addr) = Downstream::start().await;
    let daemon = start(store_config(addr, &store)).await;
    let api = daemon.api_addr.unwrap();
    let body = r#"{"ticket_id": "cs_777", "user_id": "usr_k8x9m2", "label": "checkout"}"#;
    let (code, v) = api_post(api, "/api/v1/complaints", body).await;
    assert_eq!(code, 201, "{v}");
    assert!(v["watch_until"].is_string());
    let complaint_id = v["complaint_id"].as_str().unwrap().to_owned();

    let mut g = Gen::new(43);
    let mut next = g.trace(Shape::default(), 4);
    next.set_user("usr_k8x9m2");
    let mut grpc = client(&daemon).await;
    grpc.export(fixture::request_for(std::slice::from_ref(&next)))
        .await
        .unwrap();
    let id = hex::encode(next.trace_id);
    let want = id.clone();
    down.wait_for("the watched user's trace", |d| {
        d.spans_by_trace().get(&want).map(Vec::len) == Some(4)
    })
    .await;
    assert_eq!(
        root_attr(&down.spans_by_trace()[&id], "casefile.policy").as_deref(),
        Some("watch")
    );
    daemon.shutdown().await;

    // Restart on the same store: the record is there and the watch still keeps traces.
    let daemon = start(store_config(addr, &store)).await;
    let api = daemon.api_addr.unwrap();
    let (code, v) = api_get(api, &format!("/api/v1/complaints/{complaint_id}"), None).await;
    assert_eq!(
        (code, v["ticket_id"].as_str()),
        (200, Some("cs_777")),
        "{v}"
    );
    assert_eq!(
        v["traces"],
        serde_json::json!([{ "trace_id": id, "outcome": "flagged" }]),
        "the trace the watch kept is on the complaint's record"
    );
    let (_, list) = api_get(api, "/api/v1/complaints?ticket_id=cs_777", None).await;
    assert_eq!(list["complaints"].as_array().unwrap().len(), 1);
    let mut later = g.trace(Shape::default(), 3);
    later.set_user("usr_k8x9m2");
    let mut grpc = client(&daemon).await;
    grpc.export(fixture::request_for(std::slice::from_ref(&later)))
        .await
        .unwrap();
    let want = hex::encode(later.trace_id);
    down.wait_for("a trace kept by the restored watch", |d| {
        d.spans_by_trace().get(&want).map(Vec::len) == Some(3)
    })
    .await;
    daemon.shutdown().await;
}
