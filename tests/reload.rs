//! Live reload in process: new policies apply to traces already buffered, a config whose
//! policies do not build is refused and the running ones stay, settings that need a
//! restart are named key by key, and the support settings (token, trace URL, watch_for)
//! change through the config file while the API serves.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use casefile::config;
use casefile::fixture::{self, Gen, Shape};
use casefile::policy::PolicyCfg;
use casefile::reload::{self, Source};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_policies_decide_buffered_traces_and_bad_ones_are_refused() {
    let (down, addr) = Downstream::start().await;
    let started = config(addr, "1h", "");
    let daemon = start(started.clone()).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(51);
    let plain = g.trace(Shape::default(), 3);
    client
        .export(fixture::request_for(std::slice::from_ref(&plain)))
        .await
        .unwrap();
    assert_eq!(daemon.buffer.held_traces(), 1);

    // A config whose policies do not build is refused; the running policies stay.
    let mut bad = started.clone();
    bad.tail_sampling.policies = vec![serde_yaml_ng::from_str::<PolicyCfg>(
        "{ name: o, type: ottl_condition, ottl_condition: {} }",
    )
    .unwrap()];
    let err = daemon.reload(&started, &bad).unwrap_err();
    assert!(err.to_string().contains("ottl_condition"), "{err}");
    assert_eq!(
        daemon.buffer.policies().names(),
        ["errors", "slow", "premium"]
    );

    // Keep everything from now on, and say what waits for a restart.
    let mut new = started.clone();
    new.tail_sampling.policies =
        vec![
            serde_yaml_ng::from_str::<PolicyCfg>("{ name: everything, type: always_sample }")
                .unwrap(),
        ];
    new.exporters.clear();
    new.tail_sampling.output.record = casefile::policy::RecordPolicy::Collector;
    let r = daemon.reload(&started, &new).unwrap();
    assert_eq!(r.policies, ["everything"]);
    assert_eq!(
        r.needs_restart,
        ["exporters"],
        "what kept traces carry applies live"
    );
    assert!(r.applied.is_empty(), "{:?}", r.applied);
    assert_eq!(daemon.buffer.held_traces(), 1, "nothing buffered is lost");

    daemon.shutdown().await;
    let id = hex::encode(plain.trace_id);
    let got = down.spans_by_trace();
    assert_eq!(
        got.get(&id).map(Vec::len),
        Some(3),
        "the buffered plain trace is kept by the new policy"
    );
    assert_eq!(
        root_attr(&got[&id], "casefile.policy").as_deref(),
        Some("everything")
    );
    let scoped = down.requests.lock().iter().any(|r| {
        r.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .filter_map(|ss| ss.scope.as_ref())
            .any(|s| s.attributes.iter().any(|a| a.key == "tailsampling.policy"))
    });
    assert!(scoped, "record_policy_attributes: collector took effect");
}

/// A config file for the support tests: the API with `token`, `trace_url` and `watch_for`.
fn support_yaml(down: SocketAddr, token: &str, trace_url: &str, watch_for: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: 1h
{POLICIES}
exporters:
  otlp: {{ endpoint: "{down}", tls: {{ insecure: true }} }}
support:
  api: {{ endpoint: "127.0.0.1:0", auth_token: "{token}" }}
  trace_url: "{trace_url}"
  index: {{ attributes: [user.id] }}
  complaints: {{ watch_for: {watch_for} }}
shutdown_timeout: 5s
"#
    )
}

/// Writes `text` to `path` as a config-management tool would: a new file renamed over the
/// old one. (Within one clock tick of the first write the modification time stays the same:
/// the token watch compares contents.)
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The lookup of one trace with `token`: status and the `url` field.
async fn lookup(api: SocketAddr, id: &str, token: &str) -> (u16, serde_json::Value) {
    let (code, body) = api_get(api, &format!("/api/v1/traces/{id}"), Some(token)).await;
    (code, body["url"].clone())
}

/// Files a complaint about user `user` with `token`; its `watch_until`.
async fn complain(api: SocketAddr, user: &str, token: &str) -> serde_json::Value {
    let json = format!(r#"{{ "ticket_id": "T-{user}", "user_id": "{user}" }}"#);
    let (code, body) = api_call(api, "POST", "/api/v1/complaints", Some(token), Some(&json)).await;
    assert!((200..300).contains(&code), "{code} {body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["watch_until"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_settings_reload_live_and_a_bad_support_section_is_refused() {
    let (_down, addr) = Downstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casefile.yaml");
    let url = "http://old.example/trace/{trace_id}";
    replace_file(&path, &support_yaml(addr, "old-token", url, "1h"));
    let started = config::load_file(&path).unwrap();
    let daemon = start(started.clone()).await;
    let api = daemon.api_addr.unwrap();
    let mut client = client(&daemon).await;
    let mut t = Gen::new(7).trace(Shape::default(), 3);
    t.set_user("u1");
    client
        .export(fixture::request_for(std::slice::from_ref(&t)))
        .await
        .unwrap();
    let id = hex::encode(t.trace_id);

    let body = async {
        let old_url = format!("http://old.example/trace/{id}");
        assert_eq!(lookup(api, &id, "old-token").await, (200, old_url.into()));
        assert_eq!(lookup(api, &id, "new-token").await.0, 401);
        assert!(complain(api, "u1", "old-token").await.is_string());

        // The file changes: new token, trace URL and watch_for, in force without a restart.
        let new_url = "http://new.example/t/{trace_id}";
        replace_file(&path, &support_yaml(addr, "new-token", new_url, "0s"));
        eventually("the new token", || async {
            lookup(api, &id, "new-token").await.0 == 200
        })
        .await;
        assert_eq!(lookup(api, &id, "old-token").await.0, 401);
        let url = lookup(api, &id, "new-token").await.1;
        assert_eq!(url, format!("http://new.example/t/{id}").as_str());
        // watch_for 0s: the next complaint opens no watch.
        assert!(complain(api, "u1", "new-token").await.is_null());

        // A support section that does not validate is refused; the running settings stay.
        let bad = support_yaml(addr, "third-token", "http://no-placeholder/", "1h");
        assert!(config::load_str(&bad, "bad.yaml").is_err());
        replace_file(&path, &bad);
        tokio::time::sleep(reload::POLL * 2 + Duration::from_millis(300)).await;
        assert_eq!(lookup(api, &id, "third-token").await.0, 401);
        assert_eq!(lookup(api, &id, "new-token").await.0, 200);
        assert!(complain(api, "u1", "new-token").await.is_null());
        assert_eq!(daemon.buffer.held_traces(), 1, "the buffered trace stays");
    };
    tokio::select! {
        _ = reload::watch(&daemon, Source::new(Some(path.clone())), started) => unreachable!(),
        _ = body => {}
    }
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_restart_only_support_keys_are_named_exactly() {
    let (_down, addr) = Downstream::start().await;
    let started = config(addr, "1h", "");
    let daemon = start(started.clone()).await;
    let yaml = |api: &str, rest: &str| {
        support_yaml(addr, "tok", "http://x/{trace_id}", "1h")
            .replace(
                r#"endpoint: "127.0.0.1:0", auth_token"#,
                &format!(r#"endpoint: "{api}", auth_token"#),
            )
            .replace("  index: { attributes: [user.id] }\n", rest)
    };
    let new = config::load_str(
        &yaml(
            "127.0.0.1:1",
            "  index: { attributes: [user.id], retention: 1m, max_traces: 10 }\n",
        ),
        "new.yaml",
    )
    .unwrap();
    let r = daemon.reload(&started, &new).unwrap();
    for key in [
        "support.api.auth_token",
        "support.trace_url",
        "support.index.attributes",
        "support.index.retention",
        "support.index.max_traces",
    ] {
        assert!(r.applied.contains(&key), "{key} not in {:?}", r.applied);
    }
    for key in ["support.api.endpoint", "receivers.otlp.protocols.http"] {
        assert!(
            r.needs_restart.iter().any(|k| k == key),
            "{key} not in {:?}",
            r.needs_restart
        );
    }
    assert!(
        !r.needs_restart.iter().any(|k| k == "support"),
        "{:?}",
        r.needs_restart
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_index_attribute_applies_to_spans_arriving_after_the_reload() {
    let (_down, addr) = Downstream::start().await;
    let yaml = |attributes: &str| {
        support_yaml(addr, "tok", "http://x/{trace_id}", "1h").replace(
            "index: { attributes: [user.id] }",
            &format!("index: {{ attributes: [{attributes}] }}"),
        )
    };
    let started = config::load_str(&yaml("user.id"), "a.yaml").unwrap();
    let daemon = start(started.clone()).await;
    let api = daemon.api_addr.unwrap();
    let mut client = client(&daemon).await;
    let mut g = Gen::new(9);
    let mut send = async |user: &str| {
        let mut t = g.trace(Shape::default(), 2);
        t.set_user(user);
        t.spans[0].1.attributes.push(fixture::kv("order.id", "o-1"));
        client
            .export(fixture::request_for(std::slice::from_ref(&t)))
            .await
            .unwrap();
        hex::encode(t.trace_id)
    };
    let found = async |query: &str| {
        let (code, v) = api_get(api, &format!("/api/v1/traces?{query}"), Some("tok")).await;
        let ids: Vec<String> = v["traces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["trace_id"].as_str().map(str::to_owned))
            .collect();
        (code, ids)
    };
    let before = send("u1").await;
    assert_eq!(found("order.id=o-1").await.0, 400, "not indexed yet");

    let new = config::load_str(&yaml("user.id, order.id"), "b.yaml").unwrap();
    let r = daemon.reload(&started, &new).unwrap();
    assert_eq!(r.applied, ["support.index.attributes"]);
    assert!(r.needs_restart.is_empty(), "{:?}", r.needs_restart);
    let after = send("u2").await;
    assert_eq!(found("order.id=o-1").await, (200, vec![after.clone()]));
    assert_eq!(
        found("user.id=u1").await,
        (200, vec![before]),
        "old keys stay"
    );
    assert_eq!(found("user.id=u2").await, (200, vec![after]));

    // Turning the index off takes a restart.
    let off = config::load_str(&yaml(""), "c.yaml").unwrap();
    let r = daemon.reload(&started, &off).unwrap();
    assert_eq!(r.needs_restart, ["support.index.attributes"]);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_file_is_in_force_without_a_reload_signal() {
    let (_down, addr) = Downstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    replace_file(&token, "first-token\n");
    let path = dir.path().join("casefile.yaml");
    let yaml = support_yaml(addr, "unused", "http://x/{trace_id}", "1h").replace(
        r#"auth_token: "unused""#,
        &format!(r#"auth_token_file: "{}""#, token.display()),
    );
    replace_file(&path, &yaml);
    let started = config::load_file(&path).unwrap();
    let daemon = start(started.clone()).await;
    let api = daemon.api_addr.unwrap();
    let status = |t: &'static str| async move {
        api_get(api, "/api/v1/traces?user.id=nobody", Some(t))
            .await
            .0
    };
    let body = async {
        assert_eq!(status("first-token").await, 200);
        assert_eq!(status("second-token").await, 401);
        // The secret is rotated in place (as a mounted Kubernetes secret is); the config
        // file does not change.
        replace_file(&token, "second-token\n");
        eventually("the rotated token", || async {
            status("second-token").await == 200
        })
        .await;
        assert_eq!(status("first-token").await, 401);
    };
    tokio::select! {
        _ = reload::watch(&daemon, Source::new(Some(path.clone())), started) => unreachable!(),
        _ = body => {}
    }
    daemon.shutdown().await;
}
