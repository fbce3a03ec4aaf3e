//! The support console in a real browser: casefile runs with a deep-link template, a real
//! OTLP client sends two traces of one user, and `tests/console/console.mjs` drives
//! headless Chromium through the page (search, deep link, Complain on a row, the
//! outcome in words). The complaint the browser filed is then read back over the API and
//! the rescued trace must reach the downstream receiver. `tests/console/token-watch.mjs`
//! does the same against an API that requires a token (asked for, a wrong one refused in
//! words) and files a complaint about a user, whose watch must keep that user's next trace.
//! `tests/console/case-file.mjs` opens a dropped trace's case file served from the archive
//! (problems first, waterfall, attributes, indexed keys) and rescues it to the backend.
//!
//! Needs /usr/bin/chromium (or `CASEFILE_CHROMIUM`) and tests/console/node_modules:
//! `scripts/setup-tests.sh` installs both. Missing either fails the test; it never skips.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use casefile::fixture::{self, kv, Gen, Shape};
use common::*;
use serde_json::Value;

const TRACE_URL: &str = "http://jaeger.example/trace/{trace_id}";
const USER: &str = "usr_console_7";
const TICKET: &str = "cs_console_1";
/// The whole browser run, Chromium start included.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    std::env::var_os("CASEFILE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails (never skips) when what the browser test needs is not installed.
fn require_browser() {
    let setup = "run scripts/setup-tests.sh (it runs scripts/setup-browser.sh), then retry";
    let chromium = chromium();
    assert!(
        chromium.is_file(),
        "Chromium is missing at {}: {setup}",
        chromium.display()
    );
    let modules = root().join("tests/console/node_modules/playwright-core");
    assert!(
        modules.is_dir(),
        "playwright-core is missing at {}: {setup}",
        modules.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is missing or broken ({node:?}): install Node.js 18 or newer, then {setup}"
    );
}

/// Runs a browser script of tests/console with `args` after the API's base URL, with a
/// timeout; returns its JSON line, or why it failed.
fn run_browser(
    script: &str,
    api: SocketAddr,
    args: &[&str],
    out_dir: &Path,
) -> Result<Value, String> {
    let script = root().join("tests/console").join(script);
    let stdout_path = out_dir.join("stdout");
    let stderr_path = out_dir.join("stderr");
    let mut child = Command::new("node")
        .arg(&script)
        .arg(format!("http://{api}"))
        .args(args)
        .current_dir(root())
        .env("CASEFILE_CHROMIUM", chromium())
        .env("CASEFILE_CONSOLE_TRACE_URL", TRACE_URL)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .map_err(|e| format!("node {} does not start: {e}", script.display()))?;
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the browser test took over {BROWSER_TIMEOUT:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "the browser test failed ({status}); see target/console-failure.png\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line)
        .map_err(|e| format!("no JSON line from the browser test ({e}):\n{stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_finds_a_user_and_files_a_complaint_in_a_browser() {
    require_browser();
    let (down, addr) = Downstream::start().await;
    let mut cfg = config(addr, "300ms", "");
    cfg.support.trace_url = Some(TRACE_URL.into());
    let daemon = start(cfg).await;
    let mut client = client(&daemon).await;

    // Two traces of one user: a failed one (kept by `errors`) and a plain one (dropped).
    let mut g = Gen::new(61);
    let mut failed = g.trace(Shape::ERROR, 5);
    let mut plain = g.trace(Shape::default(), 4);
    for t in [&mut failed, &mut plain] {
        t.set_user(USER);
    }
    client
        .export(fixture::request_for(&[failed.clone(), plain.clone()]))
        .await
        .unwrap();
    let failed_id = hex::encode(failed.trace_id);
    let plain_id = hex::encode(plain.trace_id);
    let kept = failed_id.clone();
    down.wait_for("the failed trace", |d| {
        d.spans_by_trace().get(&kept).map(Vec::len) == Some(5)
    })
    .await;
    until_all_decided(&daemon).await;
    assert!(
        !down.spans_by_trace().contains_key(&plain_id),
        "the plain trace is dropped by the policies"
    );

    // The browser: search the user, check the plain trace's row, complain about it.
    let api = daemon.api_addr.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (out_dir, id) = (dir.path().to_owned(), plain_id.clone());
    let report = tokio::task::spawn_blocking(move || {
        run_browser("console.mjs", api, &[USER, &id, TICKET], &out_dir)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["rows"], 2, "{report}");
    assert_eq!(
        report["href"],
        TRACE_URL.replace("{trace_id}", &plain_id),
        "{report}"
    );
    assert_eq!(report["decision_before"], "dropped", "{report}");
    assert_eq!(report["outcome"], "rescued", "{report}");
    assert_eq!(report["decision_after"], "rescued", "{report}");

    // The complaint the browser filed is stored, and the rescued trace is exported.
    let (code, v) = api_get(api, &format!("/api/v1/complaints?ticket_id={TICKET}"), None).await;
    assert_eq!(code, 200, "{v}");
    let complaints = v["complaints"].as_array().expect("a complaints list");
    assert_eq!(complaints.len(), 1, "{v}");
    let c = &complaints[0];
    assert_eq!(c["ticket_id"], TICKET);
    assert_eq!(c["label"], "order_failed");
    assert_eq!(
        c["traces"],
        serde_json::json!([{ "trace_id": plain_id, "outcome": "rescued" }]),
        "{v}"
    );
    assert!(
        c["user_id"].is_null(),
        "a row's complaint names the trace only: {v}"
    );
    let want = plain_id.clone();
    down.wait_for("the rescued trace", |d| {
        d.spans_by_trace().get(&want).map(Vec::len) == Some(4)
    })
    .await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_for_the_token_and_opens_a_watch_on_a_user() {
    require_browser();
    const TOKEN: &str = "tok_console_2";
    const USER2: &str = "usr_console_watch";
    const TICKET2: &str = "cs_console_2";
    let (down, addr) = Downstream::start().await;
    let mut cfg = config(addr, "100ms", "");
    cfg.support.api.auth_token = Some(TOKEN.into());
    let daemon = start(cfg).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(62);
    let mut first = g.trace(Shape::default(), 3);
    first.set_user(USER2);
    client
        .export(fixture::request_for(std::slice::from_ref(&first)))
        .await
        .unwrap();
    until_all_decided(&daemon).await;

    let api = daemon.api_addr.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_owned();
    let report = tokio::task::spawn_blocking(move || {
        run_browser("token-watch.mjs", api, &[USER2, TOKEN, TICKET2], &out_dir)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["rows"], 1, "{report}");

    // The watch the browser opened keeps the user's next trace, which the policies drop.
    let (code, v) = api_get(
        api,
        &format!("/api/v1/complaints?ticket_id={TICKET2}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["complaints"][0]["user_id"], USER2, "{v}");
    assert!(v["complaints"][0]["watch_until"].is_string(), "{v}");
    let mut next = g.trace(Shape::default(), 4);
    next.set_user(USER2);
    client
        .export(fixture::request_for(std::slice::from_ref(&next)))
        .await
        .unwrap();
    let id = hex::encode(next.trace_id);
    down.wait_for("the watched user's next trace", |d| {
        d.spans_by_trace().get(&id).map(Vec::len) == Some(4)
    })
    .await;
    assert_eq!(
        root_attr(&down.spans_by_trace()[&id], "casefile.ticket_id").as_deref(),
        Some(TICKET2)
    );
    daemon.shutdown().await;
}

/// The case file's daemon: only slow traces are kept (errors are not: a failed request is
/// dropped, as a declined card is), a 50-trace index, the rescue ring off and an archive
/// in `dir`, so a dropped trace is read, and rescued, from disk.
fn archive_config(downstream: SocketAddr, dir: &Path) -> casefile::config::Config {
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: 100ms
    policies:
      - {{ name: slow, type: latency, latency: {{ threshold_ms: 5000 }} }}
exporters:
  otlp:
    endpoint: "{downstream}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}
support:
  api: {{ endpoint: "127.0.0.1:0" }}
  trace_url: "{TRACE_URL}"
  index: {{ attributes: [user.id, session.id], max_traces: 50 }}
  complaints: {{ rescue_window: 0s }}
  archive: {{ dir: "{}", max_bytes: 64MiB }}
shutdown_timeout: 5s
"#,
        dir.display()
    );
    casefile::config::load_str(&yaml, "case-file.yaml").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_file_shows_an_archived_trace_problems_first_and_rescues_it() {
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    require_browser();
    const USER3: &str = "usr_case_file";
    const SESSION: &str = "sess_case_42";
    const TICKET3: &str = "cs_case_file_1";
    let dir = tempfile::tempdir().unwrap();
    let (down, addr) = Downstream::start().await;
    let daemon = start(archive_config(addr, &dir.path().join("archive"))).await;
    let mut client = client(&daemon).await;

    // Traces that start now (the archive's retention reads their times).
    let mut g = Gen::new(64);
    g.now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // A failed checkout: its last span has status ERROR ("payment declined"), its second
    // an `exception` event with status unset; the root carries the session and a value
    // holding HTML.
    let mut target = g.trace(Shape::ERROR, 5);
    target.set_user(USER3);
    let root = &mut target.spans[0].1;
    root.attributes.push(kv("session.id", SESSION));
    root.attributes.push(kv(
        "note",
        r#"<img src=x onerror="window.__casefileXss=1">"#,
    ));
    let second = &mut target.spans[1].1;
    second.events.push(Event {
        time_unix_nano: second.start_time_unix_nano + 1_000_000,
        name: "exception".into(),
        attributes: vec![
            kv("exception.type", "CardDeclinedError"),
            kv("exception.message", "card was declined (insufficient_funds)"),
            kv(
                "exception.stacktrace",
                "CardDeclinedError: card was declined\n    at charge (payments/charge.js:88:11)\n    at async handler (payments/server.js:41:5)",
            ),
        ],
        dropped_attributes_count: 0,
    });
    let mut big = g.trace(Shape::default(), 1000);
    big.set_user(USER3);
    client
        .export(fixture::request_for(&[target.clone(), big.clone()]))
        .await
        .unwrap();
    // 80 more traces push both out of the 50-trace index: lookups reach the archive.
    let others: Vec<_> = (0..80).map(|_| g.trace(Shape::default(), 3)).collect();
    for chunk in others.chunks(20) {
        client.export(fixture::request_for(chunk)).await.unwrap();
    }
    until_all_decided(&daemon).await;
    let api = daemon.api_addr.unwrap();
    let (id, big_id) = (hex::encode(target.trace_id), hex::encode(big.trace_id));
    for want in [&id, &big_id] {
        eventually("the trace in the archive", || async {
            let (code, v) = api_get(api, &format!("/api/v1/traces/{want}"), None).await;
            code == 200 && v["held"] == "archive"
        })
        .await;
    }
    let (code, v) = api_get(api, &format!("/api/v1/traces?user.id={USER3}"), None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["traces"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(
        !down.spans_by_trace().contains_key(&id),
        "the failed trace is dropped by the policies"
    );

    let out = tempfile::tempdir().unwrap();
    let (out_dir, i, b) = (out.path().to_owned(), id.clone(), big_id.clone());
    let report = tokio::task::spawn_blocking(move || {
        run_browser(
            "case-file.mjs",
            api,
            &[USER3, &i, &b, SESSION, TICKET3],
            &out_dir,
        )
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["rows"], 2, "{report}");
    assert_eq!(report["problems"], 2, "{report}");
    assert_eq!(report["span_rows"], 5, "{report}");
    assert_eq!(report["decision_before"], "dropped", "{report}");
    assert_eq!(report["outcome"], "rescued", "{report}");
    assert_eq!(report["decision_after"], "rescued", "{report}");
    eprintln!("case file: {report}");

    // The rescue the browser filed: stored, and the whole trace sent with the ticket on its root.
    let (code, v) = api_get(
        api,
        &format!("/api/v1/complaints?ticket_id={TICKET3}"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["complaints"][0]["label"], "order_failed", "{v}");
    assert_eq!(
        v["complaints"][0]["traces"],
        serde_json::json!([{ "trace_id": id, "outcome": "rescued" }]),
        "{v}"
    );
    let want = id.clone();
    down.wait_for("the rescued trace", |d| {
        d.spans_by_trace().get(&want).map(Vec::len) == Some(5)
    })
    .await;
    let spans = &down.spans_by_trace()[&id];
    assert_eq!(
        root_attr(spans, "casefile.ticket_id").as_deref(),
        Some(TICKET3)
    );
    assert_eq!(
        root_attr(spans, "casefile.policy").as_deref(),
        Some("complaint")
    );
    assert!(
        !down.spans_by_trace().contains_key(&big_id),
        "only the trace rescued is sent"
    );
    daemon.shutdown().await;
}
