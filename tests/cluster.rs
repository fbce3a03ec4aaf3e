//! The gateway tier with members as separate processes on loopback: a client sends each
//! trace's spans to two members, half to each; the member that owns the trace gets them
//! all (the other forwards its half over OTLP/gRPC, once) and decides the trace whole.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use casefile::fixture::{self, Gen, Shape, Trace};
use common::process::Process;
use common::Downstream;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

/// A port free a moment ago (members must know each other's addresses up front).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn member_config(dir: &Path, me: &str, members: &[String], downstream: SocketAddr) -> PathBuf {
    let peers: Vec<String> = members
        .iter()
        .map(|m| format!("{{ otlp: \"{m}\" }}"))
        .collect();
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "{me}" }}
processors:
  tail_sampling:
    decision_wait: 300ms
    policies:
      - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}
exporters:
  otlp: {{ endpoint: "{downstream}", tls: {{ insecure: true }}, timeout: 1s }}
support:
  api: {{ endpoint: "127.0.0.1:0" }}
cluster:
  self: "{me}"
  peers: [{}]
shutdown_timeout: 5s
"#,
        peers.join(", ")
    );
    let path = dir.join(format!("member-{}.yaml", me.replace(':', "_")));
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn send(addr: &str, spans: &[&(&'static str, opentelemetry_proto::tonic::trace::v1::Span)]) {
    let mut c = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    c.export(fixture::request(spans.iter().copied()))
        .await
        .unwrap();
}

/// A member's counter (summed over its labels) from `/metrics`.
async fn counter(api: SocketAddr, name: &str) -> f64 {
    let (_, text) = common::api_call(api, "GET", "/metrics", None, None).await;
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_trace_is_decided_whole_by_its_owner_whichever_member_its_spans_reached() {
    let dir = tempfile::tempdir().unwrap();
    let (down, down_addr) = Downstream::start().await;
    let members: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut procs: Vec<(Process, SocketAddr)> = Vec::new();
    for me in &members {
        let cfg = member_config(dir.path(), me, &members, down_addr);
        let mut p = Process::start(&cfg);
        let grpc = p.addr("OTLP/gRPC receiver").await;
        assert_eq!(&grpc, me);
        let api = p.addr("support API").await.parse().unwrap();
        procs.push((p, api));
    }
    // 30 traces of 6 spans, every third an error (on its last span): the first three
    // spans of each go to the first member, the rest to the second.
    let mut g = Gen::new(81);
    let traces: Vec<Trace> = (0..30)
        .map(|i| {
            let shape = if i % 3 == 0 {
                Shape::ERROR
            } else {
                Shape::default()
            };
            g.trace(shape, 6)
        })
        .collect();
    let first: Vec<_> = traces.iter().flat_map(|t| &t.spans[..3]).collect();
    let second: Vec<_> = traces.iter().flat_map(|t| &t.spans[3..]).collect();
    send(&members[0], &first).await;
    send(&members[1], &second).await;

    let kept: Vec<Trace> = traces.iter().step_by(3).cloned().collect();
    down.wait_for("every error trace, whole", |d| d.has_all(&kept))
        .await;
    // Every trace was decided by one member: kept ones arrive once, whole; the others not
    // at all (a member deciding half a trace would send the error half alone).
    let (api_a, api_b) = (procs[0].1, procs[1].1);
    for api in [api_a, api_b] {
        let mut forwarded = 0.0;
        for _ in 0..100 {
            forwarded = counter(api, "casefile_cluster_forwarded_spans_total").await;
            if forwarded > 0.0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            forwarded > 0.0,
            "each member forwarded the halves it does not own"
        );
    }
    let received = counter(api_a, "casefile_cluster_received_spans_total").await
        + counter(api_b, "casefile_cluster_received_spans_total").await;
    assert_eq!(
        received, 90.0,
        "half of the 180 spans were forwarded, once each"
    );
    let got = down.spans_by_trace();
    let want: std::collections::HashMap<String, usize> = kept
        .iter()
        .map(|t| (hex::encode(t.trace_id), t.spans.len()))
        .collect();
    let got_counts: std::collections::HashMap<String, usize> =
        got.iter().map(|(id, s)| (id.clone(), s.len())).collect();
    assert_eq!(got_counts, want);
    for (p, _) in procs {
        let (ok, log) = p.stop();
        assert!(ok, "{}", log.join("\n"));
    }
}
