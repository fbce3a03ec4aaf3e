//! `storage.dir` through the real binary: after `kill -9` and a restart on the same
//! directory, every acknowledged span of a kept trace reaches the downstream, including
//! kept traces whose export had not finished; a damaged log tail is skipped at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use casefile::fixture::{self, Gen, Shape, Trace};
use common::process::Process;
use common::report::Row;
use common::Downstream;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

fn write_config(dir: &Path, data: &Path, wait: &str, downstream: SocketAddr) -> PathBuf {
    let path = dir.join(format!("run-{wait}.yaml"));
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: {wait}
    policies:
      - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}
exporters:
  otlp: {{ endpoint: "{downstream}", tls: {{ insecure: true }}, timeout: 1s }}
support:
  api: {{ endpoint: "" }}
storage:
  dir: "{}"
  segment_size: 4KiB
shutdown_timeout: 2s
"#,
        data.display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

type Client = TraceServiceClient<tonic::transport::Channel>;

async fn client(addr: &str) -> Client {
    TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// Sends `n` requests of one error trace and one plain trace (5 spans each); returns the
/// error traces, every one acknowledged.
async fn send(client: &mut Client, g: &mut Gen, n: usize) -> (Vec<Trace>, Vec<Trace>) {
    let (mut kept, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (e, p) = (g.trace(Shape::ERROR, 5), g.trace(Shape::default(), 5));
        let req = fixture::request_for(&[e.clone(), p.clone()]);
        client.export(req).await.unwrap();
        kept.push(e);
        plain.push(p);
    }
    (kept, plain)
}

fn segments(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("wal-"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_span_of_a_kept_trace() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (down, down_addr) = Downstream::start().await;
    let mut g = Gen::new(41);

    // A long decision_wait: nothing is decided before the kill.
    let mut first = Process::start(&write_config(dir.path(), &data, "30s", down_addr));
    let mut c = client(&first.addr("OTLP/gRPC receiver").await).await;
    let (kept, plain) = send(&mut c, &mut g, 20).await;
    drop(c);
    first.kill9();
    let before = segments(&data);
    assert!(!before.is_empty());
    assert_eq!(down.span_count(), 0);

    let mut second = Process::start(&write_config(dir.path(), &data, "200ms", down_addr));
    second.line("write-ahead log replayed").await;
    down.wait_for("every kept trace", |d| d.has_all(&kept))
        .await;
    let got = down.spans_by_trace();
    for t in &plain {
        assert!(
            !got.contains_key(&hex::encode(t.trace_id)),
            "plain traces stay dropped"
        );
    }
    assert!(got.values().map(Vec::len).sum::<usize>() >= 100);
    Row {
        test: "kill -9 with every trace pending, restart".into(),
        sent: 200,
        accepted: 200,
        ..Row::default()
    }
    .count(&down, &kept)
    .report();
    // Decided and exported: the replayed segments are deleted (after decision_wait + 2 s).
    common::eventually("the old segments are truncated", || {
        let gone = before.iter().all(|s| !segments(&data).contains(s));
        async move { gone }
    })
    .await;
    second.stop();
    assert_eq!(
        segments(&data),
        Vec::<String>::new(),
        "a clean stop clears the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_traces_not_yet_exported_at_kill_9_are_exported_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A downstream that accepts connections and never answers: every export times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut g = Gen::new(42);

    let mut first = Process::start(&write_config(
        dir.path(),
        &data,
        "100ms",
        silent.local_addr().unwrap(),
    ));
    let mut c = client(&first.addr("OTLP/gRPC receiver").await).await;
    let (kept, _) = send(&mut c, &mut g, 10).await;
    drop(c);
    // Decided, handed to the exporter, and not delivered; then longer than decision_wait
    // + the 2 s margin, so only the unfinished export keeps the segment (a fixed wait on
    // purpose: the point is that time alone truncates nothing).
    first.line("will retry").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!segments(&data).is_empty());
    first.kill9();

    let (down, down_addr) = Downstream::start().await;
    let second = Process::start(&write_config(dir.path(), &data, "200ms", down_addr));
    down.wait_for("the kept traces of the first run", |d| d.has_all(&kept))
        .await;
    second.stop();
    Row {
        test: "kill -9 with kept traces not yet exported, restart".into(),
        sent: 100,
        accepted: 100,
        ..Row::default()
    }
    .count(&down, &kept)
    .report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_log_tail_is_skipped_and_the_daemon_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut g = Gen::new(43);
    // One intact record of a kept trace, then a record whose payload was damaged.
    let old = g.trace(Shape::ERROR, 4);
    let payload = fixture::request_for(std::slice::from_ref(&old)).encode_to_vec();
    let mut bytes = Vec::new();
    for damaged in [false, true] {
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        let mut p = payload.clone();
        if damaged {
            p[3] ^= 0xff;
        }
        bytes.extend_from_slice(&p);
    }
    bytes.extend_from_slice(&[9, 9, 9]);
    std::fs::write(data.join("wal-0000000000000007.log"), &bytes).unwrap();

    let (down, down_addr) = Downstream::start().await;
    let mut d = Process::start(&write_config(dir.path(), &data, "200ms", down_addr));
    let warning = d.line("write-ahead log segment damaged").await;
    assert!(warning.contains("wal-0000000000000007.log"), "{warning}");
    assert!(
        warning.contains(&format!("offset={}", 8 + payload.len())),
        "{warning}"
    );
    let mut c = client(&d.addr("OTLP/gRPC receiver").await).await;
    let (kept, _) = send(&mut c, &mut g, 2).await;
    down.wait_for("the old trace and the new ones", |d| {
        d.has_all(&kept) && d.has_all(std::slice::from_ref(&old))
    })
    .await;
    assert!(
        segments(&data).contains(&"wal-0000000000000008.log".to_owned()),
        "appends go to a new segment after the damaged one"
    );
    d.stop();
    // The intact record's trace and the new ones; the damaged record was never
    // acknowledged by this log (written by hand above), so it is not counted.
    Row {
        test: "corrupt log tail, restart".into(),
        sent: 20 + old.spans.len(),
        accepted: 20 + old.spans.len(),
        ..Row::default()
    }
    .count(&down, &[kept, vec![old]].concat())
    .report();
}

/// Whether a segment holds a delivery record (`00 02` + 24 bytes per span) listing at
/// least `spans` spans in all.
fn delivery_logged(data: &Path, spans: usize) -> bool {
    let mut listed = 0;
    for name in segments(data) {
        let bytes = std::fs::read(data.join(name)).unwrap_or_default();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
                break;
            };
            if payload.starts_with(&[0, 2]) {
                listed += (len - 2) / 24;
            }
            at += 8 + len;
        }
    }
    listed >= spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_delivered_before_kill_9_are_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (down, down_addr) = Downstream::start().await;
    let mut g = Gen::new(44);

    let mut first = Process::start(&write_config(dir.path(), &data, "100ms", down_addr));
    let mut c = client(&first.addr("OTLP/gRPC receiver").await).await;
    let (kept, _) = send(&mut c, &mut g, 10).await;
    drop(c);
    down.wait_for("every kept trace", |d| d.has_all(&kept))
        .await;
    // The next checkpoint lists them as delivered; kill before their segments go (2 s on).
    common::eventually("the delivery logged", || {
        let logged = delivery_logged(&data, 50);
        async move { logged }
    })
    .await;
    first.kill9();

    let mut second = Process::start(&write_config(dir.path(), &data, "100ms", down_addr));
    let replayed = second.line("write-ahead log replayed").await;
    assert!(
        replayed.contains("skipped_delivered_spans=50"),
        "every delivered span is skipped: {replayed}"
    );
    // Stopping decides and flushes whatever the replay brought back.
    let (ok, log) = second.stop();
    assert!(ok, "{}", log.join("\n"));
    let row = Row {
        test: "kill -9 after delivery, before truncation, restart".into(),
        sent: 100,
        accepted: 100,
        ..Row::default()
    }
    .count(&down, &kept);
    assert_eq!(row.duplicates, 0, "nothing delivered is sent again");
    row.report();
}
