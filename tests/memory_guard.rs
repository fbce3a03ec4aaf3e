//! The memory guard end to end, in process, with resident memory read from a fake
//! `/proc/self/statm` the test writes: past the limit both receivers refuse with the OTLP
//! throttling codes and count it with `reason="memory"`; data accepted before is still
//! delivered; once memory falls requests are accepted again; past the soft level traces
//! are decided early instead of waiting for their deadline.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use casefile::config::{self, Config};
use casefile::fixture::{self, Gen, Shape};
use casefile::memory::{Host, Level};
use casefile::Daemon;
use common::*;
use prost::Message;

/// Writes a statm saying `mib` MiB are resident (4 KiB pages: the fake tree has no auxv).
fn set_resident(proc_dir: &Path, mib: u64) {
    let pages = (mib << 20) / 4096;
    std::fs::create_dir_all(proc_dir.join("self")).unwrap();
    // Written whole then renamed, so the guard never reads half a file.
    let tmp = proc_dir.join("self/statm.tmp");
    std::fs::write(&tmp, format!("{} {pages} 0 0 0 0 0\n", pages * 2)).unwrap();
    std::fs::rename(tmp, proc_dir.join("self/statm")).unwrap();
}

fn guarded_config(downstream: SocketAddr, decision_wait: &str) -> Config {
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: {decision_wait}
{POLICIES}
  memory_limiter: {{ check_interval: 10ms, limit_mib: 100, spike_limit_mib: 20 }}
exporters:
  otlp:
    endpoint: "{downstream}"
    tls: {{ insecure: true }}
support:
  api: {{ endpoint: "127.0.0.1:0" }}
  index: {{ max_traces: 1000 }}
  complaints: {{ rescue_max_bytes: 1MiB }}
shutdown_timeout: 2s
"#
    );
    config::load_str(&yaml, "guarded.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// The sum of a counter's series that carry `label`.
async fn counter(api: SocketAddr, name: &str, label: &str) -> u64 {
    let text = api_call(api, "GET", "/metrics", None, None).await.1;
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn wait_level(daemon: &Daemon, level: Level) {
    let m = daemon.memory.clone();
    eventually(&format!("memory level {level:?}"), || {
        let m = m.clone();
        async move { m.level() == level }
    })
    .await;
}

/// A fake /proc and cgroup tree (kept while the returned dir lives), resident at `mib`.
fn fake_host(mib: u64) -> (tempfile::TempDir, Host) {
    let fake = tempfile::tempdir().unwrap();
    let host = Host {
        proc_dir: fake.path().join("proc"),
        cgroup_dir: fake.path().join("cgroup"),
    };
    set_resident(&host.proc_dir, mib);
    (fake, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_requests_are_refused_counted_and_resumed() {
    let (_fake, host) = fake_host(40);
    let (down, addr) = Downstream::start().await;
    let daemon = Daemon::start_on(guarded_config(addr, "200ms"), host.clone())
        .await
        .unwrap();
    assert_eq!(daemon.budget.limit, Some(100 << 20));
    assert_eq!(daemon.budget.soft, Some(80 << 20));
    wait_level(&daemon, Level::Normal).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(51);
    // Accepted before the limit is passed: must still be delivered.
    let before = g.trace(Shape::ERROR, 4);
    client
        .export(fixture::request_for(std::slice::from_ref(&before)))
        .await
        .unwrap();

    set_resident(&host.proc_dir, 120);
    wait_level(&daemon, Level::Hard).await;
    let grpc_refusals = 3;
    for _ in 0..grpc_refusals {
        let status = client
            .export(fixture::request_for(&[g.trace(Shape::ERROR, 2)]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("memory limit"), "{status:?}");
        assert!(
            !status.details().is_empty(),
            "the status carries RetryInfo details"
        );
    }
    let body = fixture::request_for(&[g.trace(Shape::ERROR, 2)]).encode_to_vec();
    let (code, headers, _) =
        reqwest_post(daemon.http_addr.unwrap(), "application/x-protobuf", body).await;
    assert_eq!(code, 503);
    assert_eq!(headers["retry-after"], "1");

    let api = daemon.api_addr.unwrap();
    let grpc = "casefile_receiver_refused_requests_total{transport=\"grpc\",reason=\"memory\"}";
    let http = "casefile_receiver_refused_requests_total{transport=\"http\",reason=\"memory\"}";
    assert_eq!(counter(api, grpc, "").await, grpc_refusals);
    assert_eq!(counter(api, http, "").await, 1);
    let text = api_call(api, "GET", "/metrics", None, None).await.1;
    assert!(
        text.contains("casefile_process_resident_memory_bytes 125829120"),
        "the sampled resident memory is exported:\n{text}"
    );

    // The trace accepted before the refusals is delivered whole.
    let id = hex::encode(before.trace_id);
    down.wait_for("the trace accepted before", |d| {
        d.spans_by_trace().get(&id).map(Vec::len) == Some(4)
    })
    .await;

    set_resident(&host.proc_dir, 30);
    wait_level(&daemon, Level::Normal).await;
    let after = g.trace(Shape::ERROR, 3);
    client
        .export(fixture::request_for(std::slice::from_ref(&after)))
        .await
        .expect("accepted again once memory fell");
    let id = hex::encode(after.trace_id);
    down.wait_for("the trace accepted after", |d| {
        d.spans_by_trace().get(&id).map(Vec::len) == Some(3)
    })
    .await;
    assert_eq!(
        counter(api, grpc, "").await,
        grpc_refusals,
        "nothing refused after"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_soft_level_traces_are_decided_early() {
    let (_fake, host) = fake_host(40);
    let (down, addr) = Downstream::start().await;
    // An hour's window: without the soft level nothing would be decided in this test.
    let daemon = Daemon::start_on(guarded_config(addr, "1h"), host.clone())
        .await
        .unwrap();
    let mut client = client(&daemon).await;
    let mut g = Gen::new(52);
    let traces: Vec<_> = (0..20).map(|_| g.trace(Shape::ERROR, 3)).collect();
    client.export(fixture::request_for(&traces)).await.unwrap();
    assert_eq!(daemon.buffer.held_traces(), 20);

    set_resident(&host.proc_dir, 90);
    wait_level(&daemon, Level::Soft).await;
    // Still accepting between the soft level and the limit.
    client
        .export(fixture::request_for(&[g.trace(Shape::ERROR, 3)]))
        .await
        .expect("accepted below the limit");
    down.wait_for("traces decided early for memory", |d| {
        !d.spans_by_trace().is_empty()
    })
    .await;
    let api = daemon.api_addr.unwrap();
    let early = counter(
        api,
        "casefile_processor_tail_sampling_sampling_decision_total",
        "trigger=\"memory\"",
    )
    .await;
    assert!(early > 0, "decisions are counted with trigger=\"memory\"");
    // Decided early, whole: every span of every delivered trace arrived.
    for spans in down.spans_by_trace().values() {
        assert_eq!(spans.len(), 3);
    }
    daemon.shutdown().await;
}
