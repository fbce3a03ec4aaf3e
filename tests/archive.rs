//! The archive through the real binary: with a tiny in-memory index and the rescue ring
//! off, a dropped trace pushed out of memory is still found by its user and session, with
//! its spans; after a clean restart and after `kill -9`; a complaint rescues it whole to
//! the downstream with the ticket on its root; a complaint about a user over a range
//! rescues that user's archived traces; a disk that fills up leaves ingest and decisions
//! untouched.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use casefile::fixture::{self, kv, Gen, Shape, Trace};
use common::process::Process;
use common::{api_get, api_post, root_attr, Downstream};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

fn write_config(dir: &Path, archive: &Path, downstream: SocketAddr) -> PathBuf {
    write_config_with_ring(dir, archive, downstream, "0s")
}

/// [`write_config`] with the rescue ring on for `window`.
fn write_config_with_ring(
    dir: &Path,
    archive: &Path,
    downstream: SocketAddr,
    window: &str,
) -> PathBuf {
    let path = dir.join("casefile.yaml");
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
      - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}
exporters:
  otlp: {{ endpoint: "{downstream}", tls: {{ insecure: true }}, timeout: 1s }}
support:
  api: {{ endpoint: "127.0.0.1:0" }}
  index: {{ attributes: [user.id, session.id], max_traces: 50 }}
  complaints: {{ rescue_window: {window} }}
  archive: {{ dir: "{}", retention: 72h, max_bytes: 64MiB, traces: all }}
shutdown_timeout: 5s
"#,
        archive.display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A generator whose traces start now (the archive's retention reads their times).
fn gen(seed: u64) -> Gen {
    let mut g = Gen::new(seed);
    g.now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    g
}

/// A plain (dropped) trace of `user` with a session id on its root.
fn dropped_trace(g: &mut Gen, user: &str, session: &str) -> Trace {
    let mut t = g.trace(Shape::default(), 5);
    t.set_user(user);
    t.spans[0].1.attributes.push(kv("session.id", session));
    t
}

async fn send(addr: &str, traces: &[Trace]) {
    let mut c = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for chunk in traces.chunks(20) {
        c.export(fixture::request_for(chunk)).await.unwrap();
    }
}

struct Running {
    process: Process,
    grpc: String,
    api: SocketAddr,
}

async fn run(cfg: &Path) -> Running {
    let mut process = Process::start(cfg);
    let grpc = process.addr("OTLP/gRPC receiver").await;
    let api = process.addr("support API").await.parse().unwrap();
    Running { process, grpc, api }
}

/// Waits (bounded) until a lookup by `query` lists `id`; returns the row.
async fn found(api: SocketAddr, query: &str, id: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        let (code, v) = api_get(api, &format!("/api/v1/traces?{query}"), None).await;
        assert_eq!(code, 200, "{v}");
        if let Some(row) = v["traces"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["trace_id"] == id))
        {
            return row.clone();
        }
        last = v;
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{query} never listed {id}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_trace_pushed_out_of_memory_is_found_restarted_and_rescued() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let (down, down_addr) = Downstream::start().await;
    let cfg = write_config(dir.path(), &archive, down_addr);
    let mut g = gen(71);
    let target = dropped_trace(&mut g, "usr_archived", "sess_42");
    let id = hex::encode(target.trace_id);

    let first = run(&cfg).await;
    send(&first.grpc, std::slice::from_ref(&target)).await;
    // 80 more traces push it out of the 50-trace index.
    let others: Vec<Trace> = (0..80).map(|_| g.trace(Shape::default(), 3)).collect();
    send(&first.grpc, &others).await;
    let row = found(first.api, "user.id=usr_archived", &id).await;
    assert_eq!(row["decision"], "dropped", "{row}");
    assert_eq!(row["span_count"], 5);
    found(first.api, "session.id=sess_42", &id).await;
    let (code, one) = api_get(first.api, &format!("/api/v1/traces/{id}"), None).await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["spans"].as_array().map(Vec::len), Some(5), "{one}");
    assert_eq!(one["held"], "archive", "{one}");
    assert_eq!(one["decision"], "dropped");
    assert!(
        one["resource_spans"][0]["resource"]["attributes"].is_array(),
        "spans come with their resources: {one}"
    );
    assert_eq!(
        one["indexed_attributes"],
        serde_json::json!(["user.id", "session.id"])
    );

    // A clean restart: found again.
    let (ok, log) = first.process.stop();
    assert!(ok, "{}", log.join("\n"));
    let second = run(&cfg).await;
    found(second.api, "user.id=usr_archived", &id).await;

    // kill -9 while more traces are written: the archived trace survives.
    let more: Vec<Trace> = (0..40).map(|_| g.trace(Shape::default(), 3)).collect();
    send(&second.grpc, &more).await;
    second.process.kill9();
    let third = run(&cfg).await;
    found(third.api, "session.id=sess_42", &id).await;

    // A complaint naming the trace rescues it from disk, whole, with the ticket on its root.
    assert!(
        !down.spans_by_trace().contains_key(&id),
        "dropped by the policies"
    );
    let body =
        format!(r#"{{"ticket_id": "cs_9001", "trace_id": "{id}", "label": "checkout_failed"}}"#);
    let (code, v) = api_post(third.api, "/api/v1/complaints", &body).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        v["traces"],
        serde_json::json!([{ "trace_id": id, "outcome": "rescued" }])
    );
    let want = id.clone();
    down.wait_for("the rescued trace", |d| {
        d.spans_by_trace().get(&want).map(Vec::len) == Some(5)
    })
    .await;
    let spans = &down.spans_by_trace()[&id];
    assert_eq!(
        root_attr(spans, "casefile.ticket_id").as_deref(),
        Some("cs_9001")
    );
    assert_eq!(
        root_attr(spans, "casefile.policy").as_deref(),
        Some("complaint")
    );
    // The rescue reaches the archive too: the trace reads rescued, each span once.
    let mut row = serde_json::Value::Null;
    for _ in 0..200 {
        row = found(third.api, "user.id=usr_archived", &id).await;
        if row["decision"] == "rescued" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(row["decision"], "rescued", "{row}");
    assert_eq!(row["span_count"], 5, "{row}");
    let (_, one) = api_get(third.api, &format!("/api/v1/traces/{id}"), None).await;
    assert_eq!(one["spans"].as_array().map(Vec::len), Some(5), "{one}");
    let (ok, log) = third.process.stop();
    assert!(ok, "{}", log.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_about_a_user_over_a_range_rescues_their_archived_traces() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let (down, down_addr) = Downstream::start().await;
    let cfg = write_config(dir.path(), &archive, down_addr);
    let mut g = gen(72);
    let start = g.now_ns;
    let theirs: Vec<Trace> = (0..3)
        .map(|i| dropped_trace(&mut g, "usr_unhappy", &format!("s{i}")))
        .collect();
    let end = g.now_ns;
    let running = run(&cfg).await;
    send(&running.grpc, &theirs).await;
    let others: Vec<Trace> = (0..80).map(|_| g.trace(Shape::default(), 3)).collect();
    send(&running.grpc, &others).await;
    for t in &theirs {
        found(running.api, "user.id=usr_unhappy", &hex::encode(t.trace_id)).await;
    }
    let rfc = |ns: u64| {
        humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_nanos(ns))
            .to_string()
    };
    let body = format!(
        r#"{{"ticket_id": "cs_9002", "user_id": "usr_unhappy", "start": "{}", "end": "{}"}}"#,
        rfc(start),
        rfc(end)
    );
    let (code, v) = api_post(running.api, "/api/v1/complaints", &body).await;
    assert_eq!(code, 201, "{v}");
    let rescued = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] == "rescued")
        .count();
    assert_eq!(rescued, 3, "{v}");
    down.wait_for("every rescued trace", |d| d.has_all(&theirs))
        .await;
    let (ok, log) = running.process.stop();
    assert!(ok, "{}", log.join("\n"));
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_leaves_ingest_and_decisions_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    // A 1 MiB filesystem under the archive (the test runs as root, as CI does).
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&archive)
        .status()
        .expect("mount runs");
    assert!(status.success(), "mounting a 1 MiB tmpfs needs root");
    let _mounted = Mounted(archive.clone());
    let (down, down_addr) = Downstream::start().await;
    // The ring on: it takes the dropped traces the archive cannot write.
    let cfg = write_config_with_ring(dir.path(), &archive, down_addr, "10m");
    let running = run(&cfg).await;
    let mut g = gen(73);
    let mut rng = fastrand::Rng::with_seed(5);
    let noise =
        |rng: &mut fastrand::Rng| -> String { (0..2048).map(|_| rng.alphanumeric()).collect() };
    // 600 traces of incompressible 2 KiB attributes (~6 MiB): the archive fills its disk.
    let mut kept = Vec::new();
    let mut all = Vec::new();
    for i in 0..600 {
        let shape = if i % 3 == 0 {
            Shape::ERROR
        } else {
            Shape::default()
        };
        let mut t = g.trace(shape, 5);
        for (_, s) in &mut t.spans {
            s.attributes.push(kv("payload", &noise(&mut rng)));
        }
        if shape.error {
            kept.push(t.clone());
        }
        all.push(t);
    }
    send(&running.grpc, &all).await;
    down.wait_for("every kept trace", |d| d.has_all(&kept))
        .await;
    // The archive said so, and counted what it could not write.
    let mut dropped = 0;
    for _ in 0..200 {
        let (_, text) = common::api_call(running.api, "GET", "/metrics", None, None).await;
        dropped = text
            .lines()
            .filter(|l| l.starts_with("casefile_archive_dropped_traces_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
        let errors = text
            .lines()
            .any(|l| l.starts_with("casefile_archive_write_errors_total") && !l.ends_with(" 0"));
        if dropped > 0 && errors {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(dropped > 0, "archive drops are counted");
    let (_, text) = common::api_call(running.api, "GET", "/metrics", None, None).await;
    let spilled = text
        .lines()
        .find(|l| l.starts_with("casefile_archive_spilled_traces_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(spilled.is_some_and(|n| n > 0.0), "spilled to the ring");
    // The last dropped trace (its block failed): a complaint still rescues it.
    let last = &all[598];
    let id = hex::encode(last.trace_id);
    let body = format!(r#"{{"ticket_id": "cs_full", "trace_id": "{id}"}}"#);
    let (code, v) = api_post(running.api, "/api/v1/complaints", &body).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["traces"][0]["outcome"], "rescued", "{v}");
    down.wait_for("the trace rescued from the ring", |d| {
        d.has_all(std::slice::from_ref(last))
    })
    .await;
    // Still serving: a new kept trace goes through.
    let late = g.trace(Shape::ERROR, 3);
    send(&running.grpc, std::slice::from_ref(&late)).await;
    down.wait_for("a trace sent after the disk filled", |d| {
        d.has_all(std::slice::from_ref(&late))
    })
    .await;
    let (ok, log) = running.process.stop();
    assert!(ok, "{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("archive")),
        "the archive's trouble is logged"
    );
}
