//! The gateway tier with members as separate processes on loopback: a client sends each
//! trace's spans to two members, half to each; the member that owns the trace gets them
//! all (the other forwards its half over OTLP/gRPC, once) and decides the trace whole.
//! Support asks any member: lookups merge every member's rows, a trace by id comes from
//! its owner, and a member that does not answer is named in `partial`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use casefile::cluster::ring::Ring;
use casefile::fixture::{self, Gen, Shape, Trace};
use common::certs::{s, Certs};
use common::process::Process;
use common::tls::{self as t, Identity};
use common::{api_get, api_post, Downstream};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

/// A port free a moment ago (members must know each other's addresses up front).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A member's config: `me` is its OTLP address, `members` every member's (otlp, api).
fn member_config(
    dir: &Path,
    me: &(String, String),
    members: &[(String, String)],
    downstream: SocketAddr,
) -> PathBuf {
    member_config_waiting(dir, me, members, downstream, "300ms")
}

/// [`member_config`] with its own `decision_wait`.
fn member_config_waiting(
    dir: &Path,
    me: &(String, String),
    members: &[(String, String)],
    downstream: SocketAddr,
    wait: &str,
) -> PathBuf {
    member_config_with(dir, me, members, downstream, wait, None)
}

/// TLS of a tier: the members' receivers and APIs serve the test server certificate and
/// require client certificates of the test CA; `cluster.tls` shows the client certificate.
struct TierTls {
    server: String,
    cluster: String,
}

impl TierTls {
    fn new(c: &Certs) -> TierTls {
        TierTls {
            server: format!(
                "{{ cert_file: \"{}\", key_file: \"{}\", client_ca_file: \"{}\" }}",
                s(&c.server_cert),
                s(&c.server_key),
                s(&c.ca)
            ),
            cluster: format!(
                "{{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\", server_name_override: localhost }}",
                s(&c.ca),
                s(&c.client_cert),
                s(&c.client_key)
            ),
        }
    }
}

/// [`member_config_waiting`], over TLS with `tls`.
fn member_config_with(
    dir: &Path,
    me: &(String, String),
    members: &[(String, String)],
    downstream: SocketAddr,
    wait: &str,
    tls: Option<&TierTls>,
) -> PathBuf {
    let (server, cluster) = match tls {
        Some(t) => (t.server.as_str(), t.cluster.as_str()),
        None => ("null", "null"),
    };
    let peers: Vec<String> = members
        .iter()
        .map(|(otlp, api)| format!("{{ otlp: \"{otlp}\", api: \"{api}\" }}"))
        .collect();
    let (me, api) = me;
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "{me}", tls: {server} }}
processors:
  tail_sampling:
    decision_wait: {wait}
    policies:
      - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}
exporters:
  otlp: {{ endpoint: "{downstream}", tls: {{ insecure: true }}, timeout: 1s }}
support:
  api: {{ endpoint: "{api}", tls: {server} }}
  index: {{ attributes: [user.id] }}
cluster:
  self: "{me}"
  peers: [{}]
  tls: {cluster}
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

/// (otlp, api) addresses for `n` members, free a moment ago.
fn tier_addrs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            (
                format!("127.0.0.1:{}", free_port()),
                format!("127.0.0.1:{}", free_port()),
            )
        })
        .collect()
}

/// Starts a member on `cfg`: the process and its support API's address.
async fn start_member(cfg: &Path) -> (Process, SocketAddr) {
    let mut p = Process::start(cfg);
    p.addr("OTLP/gRPC receiver").await;
    let api = p.addr("support API").await.parse().unwrap();
    (p, api)
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
    let addrs = tier_addrs(2);
    let members: Vec<String> = addrs.iter().map(|(otlp, _)| otlp.clone()).collect();
    let mut procs = Vec::new();
    for me in &addrs {
        procs.push(start_member(&member_config(dir.path(), me, &addrs, down_addr)).await);
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
            let mut t = g.trace(shape, 6);
            t.set_user(&format!("usr_{i:02}"));
            t
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

    // Support asks either member. A dropped trace the second member owns, by its user on
    // the first member's API: found there, with the member that holds it.
    let ring = Ring::new(members.clone());
    let (i, theirs) = traces
        .iter()
        .enumerate()
        .find(|(i, t)| i % 3 != 0 && ring.owner(&t.trace_id) == 1)
        .expect("a dropped trace the second member owns");
    let id = hex::encode(theirs.trace_id);
    let q = format!("/api/v1/traces?user.id=usr_{i:02}");
    let mut v = serde_json::Value::Null;
    for _ in 0..200 {
        let (code, got) = api_get(api_a, &q, None).await;
        assert_eq!(code, 200, "{got}");
        v = got;
        if v["traces"][0]["decision"] == "dropped" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(v["traces"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["traces"][0]["trace_id"], id.as_str(), "{v}");
    assert_eq!(v["traces"][0]["member"], members[1].as_str(), "{v}");
    assert_eq!(v["traces"][0]["decision"], "dropped", "{v}");
    assert_eq!(v["partial"], serde_json::json!([]), "{v}");
    // Asked for itself only, the first member has nothing of it.
    let (_, v) = api_get(api_a, &format!("{q}&scope=member"), None).await;
    assert_eq!(v["traces"], serde_json::json!([]), "{v}");
    assert!(v.get("partial").is_none(), "{v}");
    // By id on the first member: the owner's case file, with the spans it holds.
    let (code, v) = api_get(api_a, &format!("/api/v1/traces/{id}"), None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["member"], members[1].as_str(), "{v}");
    assert_eq!(v["spans"].as_array().map(Vec::len), Some(6), "{v}");
    // A complaint naming that trace, filed with the first member, reaches its owner, which
    // rescues it whole to the downstream.
    let body = format!(r#"{{"ticket_id": "cs_tier_1", "trace_id": "{id}"}}"#);
    let (code, v) = api_post(api_a, "/api/v1/complaints", &body).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["member"], members[1].as_str(), "{v}");
    assert_eq!(v["traces"][0]["outcome"], "rescued", "{v}");
    down.wait_for("the trace rescued by its owner", |d| {
        d.has_all(std::slice::from_ref(theirs))
    })
    .await;
    // A complaint about a user is filed on every member: the member that owns the user's
    // dropped trace rescues it, and both watch the user.
    let (k, other) = traces
        .iter()
        .enumerate()
        .find(|(k, t)| k % 3 != 0 && *k != i && ring.owner(&t.trace_id) == 1)
        .expect("another dropped trace the second member owns");
    let body = format!(r#"{{"ticket_id": "cs_tier_2", "user_id": "usr_{k:02}"}}"#);
    let (code, v) = api_post(api_a, "/api/v1/complaints", &body).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["partial"], serde_json::json!([]), "{v}");
    let outcomes: Vec<(String, String)> = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["trace_id"].as_str().unwrap().to_owned(),
                t["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        outcomes.contains(&(hex::encode(other.trace_id), "rescued".to_owned())),
        "{v}"
    );
    down.wait_for("the user's trace rescued by its owner", |d| {
        d.has_all(std::slice::from_ref(other))
    })
    .await;
    // The ticket finds the complaint's record on both members.
    let (code, v) = api_get(api_b, "/api/v1/complaints?ticket_id=cs_tier_2", None).await;
    assert_eq!(code, 200, "{v}");
    let mut on: Vec<&str> = v["complaints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["member"].as_str().unwrap())
        .collect();
    on.sort();
    let mut both: Vec<&str> = members.iter().map(String::as_str).collect();
    both.sort();
    assert_eq!(on, both, "{v}");

    // A member that is gone is named in `partial`; the others still answer.
    let mut procs = procs.into_iter();
    let (first, _) = procs.next().unwrap();
    let (second, _) = procs.next().unwrap();
    let (ok, log) = second.stop();
    assert!(ok, "{}", log.join("\n"));
    let (j, ours) = traces
        .iter()
        .enumerate()
        .find(|(_, t)| ring.owner(&t.trace_id) == 0)
        .expect("a trace the first member owns");
    let (code, v) = api_get(api_a, &format!("/api/v1/traces?user.id=usr_{j:02}"), None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["traces"][0]["trace_id"],
        hex::encode(ours.trace_id).as_str(),
        "{v}"
    );
    assert_eq!(v["partial"][0]["member"], members[1].as_str(), "{v}");
    // The CLI shows the rows and says which member is missing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_casefile"))
        .args(["lookup", "--api", &format!("http://{api_a}")])
        .arg(format!("user.id=usr_{j:02}"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&hex::encode(ours.trace_id)), "{stdout}");
    assert!(
        stderr.contains(&format!("member {} did not answer", members[1])),
        "{stderr}"
    );
    let (ok, log) = first.stop();
    assert!(ok, "{}", log.join("\n"));
}

/// A member that is gone leaves the ring: the spans of its traces that reached another
/// member (and could not be forwarded) are decided there, whole, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_is_gone_leaves_the_ring_and_its_traces_are_decided_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let (down, down_addr) = Downstream::start().await;
    let addrs = tier_addrs(2);
    // Only the first member runs; the second is listed but never started.
    let (p, api) = start_member(&member_config(dir.path(), &addrs[0], &addrs, down_addr)).await;
    let mut g = Gen::new(82);
    let traces: Vec<Trace> = (0..30).map(|_| g.trace(Shape::ERROR, 4)).collect();
    let ring = Ring::new(addrs.iter().map(|(o, _)| o.clone()).collect());
    assert!(traces.iter().any(|t| ring.owner(&t.trace_id) == 1));
    let spans: Vec<_> = traces.iter().flat_map(|t| &t.spans).collect();
    send(&addrs[0].0, &spans).await;
    down.wait_for("every trace, whole, decided by the member left", |d| {
        d.has_all(&traces)
    })
    .await;
    assert_eq!(down.span_count(), 120, "each span once");
    let rerouted = counter(api, "casefile_cluster_rerouted_spans_total").await;
    assert!(
        rerouted > 0.0,
        "spans for the gone member were routed again"
    );
    assert_eq!(counter(api, "casefile_cluster_members_up").await, 1.0);
    let (ok, log) = p.stop();
    assert!(ok, "{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("cannot be reached")),
        "the member's absence is logged"
    );
}

/// A member that stops hands its pending traces to the members that own them without it:
/// they are decided there, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_member_hands_its_pending_traces_over() {
    let dir = tempfile::tempdir().unwrap();
    let (down, down_addr) = Downstream::start().await;
    let addrs = tier_addrs(2);
    // The second member waits long: its traces are still pending when it stops.
    let waits = ["300ms", "60s"];
    let mut procs = Vec::new();
    for (me, wait) in addrs.iter().zip(waits) {
        let cfg = member_config_waiting(dir.path(), me, &addrs, down_addr, wait);
        procs.push(start_member(&cfg).await);
    }
    let ring = Ring::new(addrs.iter().map(|(o, _)| o.clone()).collect());
    let mut g = Gen::new(83);
    let theirs: Vec<Trace> = std::iter::from_fn(|| Some(g.trace(Shape::ERROR, 4)))
        .filter(|t| ring.owner(&t.trace_id) == 1)
        .take(10)
        .collect();
    let spans: Vec<_> = theirs.iter().flat_map(|t| &t.spans).collect();
    send(&addrs[1].0, &spans).await;
    let (second, api_b) = procs.pop().unwrap();
    let (first, api_a) = procs.pop().unwrap();
    // Held by the second member, pending.
    for _ in 0..100 {
        if counter(api_b, "casefile_receiver_accepted_spans_total").await >= 40.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(down.span_count(), 0, "nothing decided yet");
    let (ok, log) = second.stop();
    assert!(ok, "{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("handed to the members")),
        "{}",
        log.join("\n")
    );
    // The first member got them and decides them, whole, once.
    down.wait_for("the handed-over traces, decided by the first member", |d| {
        d.has_all(&theirs)
    })
    .await;
    assert_eq!(down.span_count(), 40);
    assert_eq!(
        counter(api_a, "casefile_cluster_received_spans_total").await,
        40.0,
        "they came from the stopping member"
    );
    let (ok, log) = first.stop();
    assert!(ok, "{}", log.join("\n"));
}

/// Members talk to each other over mutual TLS (`cluster.tls`): forwarding and the
/// tier-wide API both, while refusing clients without a certificate of the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_forward_and_ask_each_other_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new();
    let tls = TierTls::new(&certs);
    let (down, down_addr) = Downstream::start().await;
    let addrs = tier_addrs(2);
    let mut apis = Vec::new();
    let mut procs = Vec::new();
    for me in &addrs {
        let cfg = member_config_with(dir.path(), me, &addrs, down_addr, "300ms", Some(&tls));
        let (p, api) = start_member(&cfg).await;
        procs.push(p);
        apis.push(api);
    }
    let ring = Ring::new(addrs.iter().map(|(o, _)| o.clone()).collect());
    let mut g = Gen::new(84);
    let traces: Vec<Trace> = (0..12)
        .map(|i| {
            let mut t = g.trace(Shape::ERROR, 4);
            t.set_user(&format!("usr_tls_{i:02}"));
            t
        })
        .collect();
    let client = || t::client_config(&certs, Identity::Client);
    for (member, range) in [(0, 0..2), (1, 2..4)] {
        let spans = traces.iter().flat_map(|t| &t.spans[range.clone()]);
        let addr: SocketAddr = addrs[member].0.parse().unwrap();
        t::grpc_export(addr, client(), fixture::request(spans))
            .await
            .unwrap();
    }
    down.wait_for("every trace whole, forwarded over TLS", |d| {
        d.has_all(&traces)
    })
    .await;
    assert_eq!(down.span_count(), 48, "each span once");
    // A trace the second member owns, looked up on the first over HTTPS: it asks the
    // second over mutual TLS.
    let (i, theirs) = traces
        .iter()
        .enumerate()
        .find(|(_, t)| ring.owner(&t.trace_id) == 1)
        .expect("a trace the second member owns");
    let path = format!("/api/v1/traces?user.id=usr_tls_{i:02}");
    let (status, body) = t::https(apis[0], client(), "GET", &path, &[], Vec::new())
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["traces"][0]["trace_id"],
        hex::encode(theirs.trace_id).as_str(),
        "{v}"
    );
    assert_eq!(v["traces"][0]["member"], addrs[1].0.as_str(), "{v}");
    assert_eq!(v["partial"], serde_json::json!([]), "{v}");
    // A client without a certificate is refused: members accept members only.
    let anonymous = t::client_config(&certs, Identity::None);
    assert!(t::https(
        apis[1],
        anonymous,
        "GET",
        "/api/v1/traces?user.id=x",
        &[],
        Vec::new()
    )
    .await
    .is_err());
    for p in procs {
        let (ok, log) = p.stop();
        assert!(ok, "{}", log.join("\n"));
    }
}
