//! Routing: this member's spans stay, the others go to their owner's forwarder; a member
//! that cannot be reached leaves the ring and its spans are decided here — none lost, and
//! routing never waits.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use super::*;
use crate::buffer::{Buffer, BufferCfg};
use crate::fixture::{self, Gen, Shape};
use crate::policy::{Policies, PolicyCfg};

fn cfg(me: &str, other: &str) -> ClusterCfg {
    let peer = |otlp: &str| PeerCfg {
        otlp: otlp.into(),
        api: None,
    };
    ClusterCfg {
        me: me.into(),
        peers: vec![peer(me), peer(other)],
        tls: None,
    }
}

fn buffer() -> Arc<Buffer> {
    let policies: Vec<PolicyCfg> =
        serde_yaml_ng::from_str("- { name: all, type: always_sample }").unwrap();
    let cfg = BufferCfg {
        decision_wait: Duration::from_secs(60),
        decision_wait_after_root_received: None,
        num_traces: 10_000,
        max_bytes: 64 << 20,
        sampled_cache_size: 1000,
        non_sampled_cache_size: 1000,
        num_shards: 4,
        maximum_trace_size_bytes: None,
    };
    Arc::new(Buffer::new(cfg, Policies::build(&policies, false).unwrap()))
}

#[tokio::test]
async fn a_member_that_cannot_be_reached_leaves_the_ring_and_nothing_is_lost() {
    // The other member listens nowhere.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = dead.local_addr().unwrap().to_string();
    drop(dead);
    let b = buffer();
    let c = Cluster::start(&cfg("127.0.0.1:1", &other), Arc::clone(&b)).unwrap();
    let mut g = Gen::new(5);
    let traces: Vec<_> = (0..40).map(|_| g.trace(Shape::default(), 3)).collect();
    let req = fixture::request_for(&traces).encode_to_vec();
    let spans = crate::wire::decode::decode_request(&req).unwrap().spans;
    let mine = spans
        .iter()
        .filter(|s| c.owner_of(&s.trace_id()) == "127.0.0.1:1")
        .count();
    assert!(mine > 10 && mine < 110, "{mine}");
    // Both members up: this member keeps its own, the rest goes to the forwarder.
    let t = std::time::Instant::now();
    let here = c.route(spans.clone());
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "routing never waits"
    );
    assert_eq!(here.len(), mine);
    b.ingest(here, tokio::time::Instant::now());
    // The forwarder cannot connect: the member is marked down (bounded wait for the
    // network, not for a decision) and its spans are handed back to this buffer.
    for _ in 0..200 {
        if c.members_up() == 1 && b.held_traces() == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(c.members_up(), 1);
    assert_eq!(b.held_traces(), 40, "every trace is held here, none lost");
    // While it is down, everything stays here.
    assert_eq!(c.route(spans.clone()).len(), spans.len());
    c.finish(Duration::from_millis(50)).await;
    assert_eq!(c.route(spans.clone()).len(), spans.len());
}

/// A member that answers again rejoins the ring and owns its traces again.
#[tokio::test]
async fn a_member_that_answers_again_rejoins_the_ring() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = dead.local_addr().unwrap().to_string();
    drop(dead);
    let b = buffer();
    let c = Cluster::start(&cfg("127.0.0.1:1", &other), Arc::clone(&b)).unwrap();
    let mut g = Gen::new(6);
    let traces: Vec<_> = (0..20).map(|_| g.trace(Shape::default(), 2)).collect();
    let req = fixture::request_for(&traces).encode_to_vec();
    let spans = crate::wire::decode::decode_request(&req).unwrap().spans;
    b.ingest(c.route(spans.clone()), tokio::time::Instant::now());
    for _ in 0..200 {
        if c.members_up() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(c.members_up(), 1);
    // Something listens there again: the probe (every second) brings it back.
    let _back = tokio::net::TcpListener::bind(&other).await.unwrap();
    for _ in 0..200 {
        if c.members_up() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(c.members_up(), 2);
    assert!(c.route(spans.clone()).len() < spans.len());
    c.finish(Duration::from_millis(50)).await;
}
