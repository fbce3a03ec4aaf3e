//! Interop with OpenTelemetry SDKs written by other people: the Python SDK (gRPC and
//! HTTP/protobuf exporters) and the JS SDK (OTLP/HTTP JSON) send through casefile to a
//! real downstream receiver; and requests compressed in every encoding by independent
//! Python libraries (zlib, zstandard, lz4, cramjam, grpcio) and snappy written in the test
//! from the format description. `scripts/setup-tests.sh`
//! installs all of it.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let p = std::env::var_os("CASEFILE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup-tests.sh (or scripts/test.sh)",
        p.display()
    );
    p
}

fn node_modules() -> PathBuf {
    let p = std::env::var_os("CASEFILE_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("tests/interop/js/node_modules"));
    assert!(
        p.join("@opentelemetry/exporter-trace-otlp-http").exists(),
        "{} lacks the JS SDK: run scripts/setup-tests.sh",
        p.display()
    );
    p
}

/// Runs a sender script off the async runtime and parses its JSON output.
async fn run_sender(mut cmd: Command) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("sender runs"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "sender failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("bad output {stdout:?}: {e}"))
}

/// Checks what arrived: the kept trace whole with its span names, the dropped one absent.
async fn assert_kept(
    down: &Downstream,
    daemon: casefile::Daemon,
    ids: &serde_json::Value,
    names: &[&str],
) {
    let kept = ids["kept"].as_str().unwrap().to_owned();
    let dropped = ids["dropped"].as_str().unwrap().to_owned();
    down.wait_for("the kept trace", |d| {
        d.spans_by_trace().get(&kept).map(Vec::len) == Some(names.len())
    })
    .await;
    until_all_decided(&daemon).await;
    daemon.shutdown().await;
    let got = down.spans_by_trace();
    assert!(!got.contains_key(&dropped), "the plain trace is dropped");
    let mut got_names: Vec<_> = got[&kept].iter().map(|s| s.name.as_str()).collect();
    got_names.sort();
    let mut want: Vec<_> = names.to_vec();
    want.sort();
    assert_eq!(got_names, want);
    let root = got[&kept]
        .iter()
        .find(|s| s.parent_span_id.is_empty())
        .expect("root arrives");
    assert!(
        root.attributes.iter().any(|a| a.key == "casefile.policy"),
        "root carries casefile.policy"
    );
    assert!(got[&kept].iter().all(|s| hex::encode(&s.trace_id) == kept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_grpc() {
    let (down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "300ms", "")).await;
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/interop/send.py"))
        .arg("grpc")
        .arg(format!("http://{}", daemon.grpc_addr.unwrap()));
    let ids = run_sender(cmd).await;
    assert_kept(
        &down,
        daemon,
        &ids,
        &["POST /checkout", "charge card", "send receipt"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_protobuf() {
    let (down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "300ms", "")).await;
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/interop/send.py"))
        .arg("http")
        .arg(format!("http://{}", daemon.http_addr.unwrap()));
    let ids = run_sender(cmd).await;
    assert_kept(
        &down,
        daemon,
        &ids,
        &["POST /checkout", "charge card", "send receipt"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_over_http_json() {
    let (down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "300ms", "")).await;
    let modules = node_modules();
    let mut cmd = Command::new("node");
    cmd.current_dir(modules.parent().unwrap())
        .arg(root().join("tests/interop/js/send.mjs"))
        .arg(format!("http://{}", daemon.http_addr.unwrap()));
    let ids = run_sender(cmd).await;
    assert_kept(&down, daemon, &ids, &["POST /checkout", "reserve stock"]).await;
}

/// Every Content-Encoding the Collector accepts and grpcio's gzip and deflate, compressed by
/// libraries casefile does not use, arrive whole at the real downstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_compressed_requests_in_every_encoding() {
    let (down, addr) = Downstream::start().await;
    let daemon = start(config(addr, "300ms", "")).await;
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/interop/send_compressed.py"))
        .arg(daemon.http_addr.unwrap().to_string())
        .arg(daemon.grpc_addr.unwrap().to_string());
    let out = run_sender(cmd).await;
    let traces = out["traces"].as_object().unwrap().clone();
    for label in [
        "http/gzip",
        "http/zstd",
        "http/zstd-stream",
        "http/zlib",
        "http/deflate",
        "http/snappy",
        "http/snappy-cramjam",
        "http/snappy-framed",
        "http/x-snappy-framed",
        "http/x-snappy-framed-cramjam",
        "http/lz4",
        "http/lz4-linked-checksums",
        "grpc/gzip",
        "grpc/deflate",
    ] {
        assert!(traces.contains_key(label), "{label} was sent: {traces:?}");
    }
    for (label, id) in &traces {
        let id = id.as_str().unwrap().to_owned();
        down.wait_for(label, |d| {
            d.spans_by_trace().get(&id).map(Vec::len) == Some(3)
        })
        .await;
    }
    until_all_decided(&daemon).await;
    daemon.shutdown().await;
}
