//! The support layer end to end: a real OTLP client sends traces, support looks a user up
//! over the real API socket and gets the trace ids, pending first, then decided with
//! their reasons and deep links.

mod common;

use std::net::SocketAddr;

use casefile::fixture::{self, Gen, Shape};
use common::*;
use serde_json::Value;

async fn get_json(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lookup_finds_the_trace_from_pending_to_decided() {
    let (down, addr) = Downstream::start().await;
    let mut cfg = config(addr, "300ms", "");
    cfg.support.trace_url = Some("http://jaeger:16686/trace/{trace_id}".into());
    cfg.support.api.auth_token = Some("tok_e2e".into());
    let daemon = start(cfg).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(41);
    let failed = g.trace(
        Shape {
            error: true,
            ..Default::default()
        },
        5,
    );
    let other = g.trace(Shape::default(), 5);
    client
        .export(fixture::request_for(&[failed.clone(), other.clone()]))
        .await
        .unwrap();

    let api = daemon.api_addr.unwrap();
    let path = format!("/api/v1/traces?user.id={}", failed.user_id);
    assert_eq!(
        get_json(api, &path, None).await.0,
        401,
        "the token is required"
    );
    let (code, v) = get_json(api, &path, Some("tok_e2e")).await;
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
    let (_, v) = get_json(api, &path, Some("tok_e2e")).await;
    let t = &v["traces"][0];
    assert_eq!(t["decision"], "sampled", "{v}");
    assert_eq!(t["reasons"], serde_json::json!(["errors"]));
    assert_eq!(t["error"], true);
    assert_eq!(t["root_service"], "frontend");
    assert_eq!(t["url"], format!("http://jaeger:16686/trace/{id}"));

    let (_, v) = get_json(
        api,
        &format!("/api/v1/traces?user.id={}", other.user_id),
        Some("tok_e2e"),
    )
    .await;
    assert_eq!(v["traces"][0]["decision"], "dropped", "{v}");
    let (code, one) = get_json(api, &format!("/api/v1/traces/{id}"), Some("tok_e2e")).await;
    assert_eq!((code, one["decision"].as_str()), (200, Some("sampled")));
    daemon.shutdown().await;
}
