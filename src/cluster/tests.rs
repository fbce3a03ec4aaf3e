//! Routing: this member's spans stay, the others go to their owner's forwarder, and a
//! forwarder that cannot take more gives them back to be decided here, never dropped and
//! never waited for.

use prost::Message;

use super::*;
use crate::fixture::{self, Gen, Shape};

fn cfg(me: &str, other: &str) -> ClusterCfg {
    let peer = |otlp: &str| PeerCfg {
        otlp: otlp.into(),
        api: None,
    };
    ClusterCfg {
        me: me.into(),
        peers: vec![peer(me), peer(other)],
    }
}

#[tokio::test]
async fn foreign_spans_are_forwarded_and_given_back_when_the_forwarder_is_full() {
    // The other member listens nowhere: its forwarder retries and fills up.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = dead.local_addr().unwrap().to_string();
    drop(dead);
    let c = Cluster::start(&cfg("127.0.0.1:1", &other)).unwrap();
    let mut g = Gen::new(5);
    let traces: Vec<_> = (0..40).map(|_| g.trace(Shape::default(), 3)).collect();
    let req = fixture::request_for(&traces).encode_to_vec();
    let spans = crate::wire::decode::decode_request(&req).unwrap().spans;
    let mine = spans
        .iter()
        .filter(|s| c.owner_of(&s.trace_id()) == "127.0.0.1:1")
        .count();
    assert!(mine > 10 && mine < 110, "{mine}");
    // The first call forwards every foreign span.
    let here = c.route(spans.clone());
    assert_eq!(here.len(), mine);
    assert!(here
        .iter()
        .all(|s| c.owner_of(&s.trace_id()) == "127.0.0.1:1"));
    // Calls keep returning at once; once the forwarder is full, foreign spans come back.
    let t = std::time::Instant::now();
    let mut given_back = 0;
    for _ in 0..3000 {
        given_back += c.route(spans.clone()).len() - mine;
        if given_back > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(given_back > 0, "a full forwarder gives spans back");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // After shutdown nothing is forwarded: everything is decided here.
    c.finish(std::time::Duration::from_millis(50)).await;
    assert_eq!(c.route(spans.clone()).len(), spans.len());
}
