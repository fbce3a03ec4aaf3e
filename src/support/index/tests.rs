//! Index behaviour: keys from span and resource attributes, newest first, bounds, hashing.

use prost::Message;

use super::*;
use crate::config::IndexCfg;
use crate::fixture::{self, kv, Gen, Shape};
use crate::wire::decode::decode_request;

fn cfg() -> IndexCfg {
    IndexCfg {
        attributes: vec!["user.id".into(), "enduser.id".into(), "session.id".into()],
        retention: Duration::from_secs(3600),
        max_traces: 1000,
        hash_values: false,
        hash_key: None,
    }
}

fn spans_of(t: &fixture::Trace) -> Vec<Span> {
    decode_request(&fixture::request_for(std::slice::from_ref(t)).encode_to_vec())
        .unwrap()
        .spans
}

fn ids(v: &[(TraceId, Option<Summary>)]) -> Vec<TraceId> {
    v.iter().map(|(id, _)| *id).collect()
}

#[test]
fn finds_values_on_spans_and_resources_newest_first() {
    let ix = Index::new(&cfg());
    let mut g = Gen::new(1);
    let a = g.trace(Shape::default(), 5);
    let mut b = g.trace(Shape::default(), 5);
    // b carries the same user on a resource attribute, and a session id on one span.
    b.user_id = a.user_id.clone();
    for (_, s) in b.spans.iter_mut() {
        s.attributes.retain(|k| k.key != "user.id");
    }
    b.spans[2].1.attributes.push(kv("session.id", "sess_918"));
    let mut req = fixture::request_for(std::slice::from_ref(&b));
    for rs in &mut req.resource_spans {
        rs.resource
            .as_mut()
            .unwrap()
            .attributes
            .push(kv("user.id", &a.user_id));
    }
    let b_spans = decode_request(&req.encode_to_vec()).unwrap().spans;

    ix.add_at(ix.keys_of(&spans_of(&a)), 1_000);
    ix.add_at(ix.keys_of(&b_spans), 2_000);
    let user = ix.query_key("user.id", &a.user_id).unwrap();
    assert_eq!(
        ids(&ix.lookup(&user)),
        vec![b.trace_id, a.trace_id],
        "newest first"
    );
    let sess = ix.query_key("session.id", "sess_918").unwrap();
    assert_eq!(ids(&ix.lookup(&sess)), vec![b.trace_id]);
    assert!(ix
        .lookup(&ix.query_key("user.id", "nobody").unwrap())
        .is_empty());
    assert!(ix.query_key("http.route", "/").is_none(), "not indexed");
    assert_eq!(ix.len(), 2);
}

#[test]
fn summaries_follow_the_decision() {
    let ix = Index::new(&cfg());
    let mut g = Gen::new(2);
    let t = g.trace(Shape::ERROR, 6);
    let spans = spans_of(&t);
    ix.add_at(ix.keys_of(&spans), 1_000);
    let key = ix.query_key("user.id", &t.user_id).unwrap();
    assert_eq!(ix.lookup(&key)[0].1, None, "pending: no summary yet");
    ix.decided(vec![Summary::of(
        t.trace_id,
        &spans,
        Decision::Dropped,
        vec![],
    )]);
    let s = ix.summary(&t.trace_id).unwrap();
    assert_eq!(
        (s.decision, s.span_count, s.error),
        (Decision::Dropped, 6, true)
    );
    assert_eq!(&*s.root_service, "frontend");
    assert!(!s.root_name.is_empty());
    ix.set_decision(&t.trace_id, Decision::Rescued, Some("complaint"));
    let s = ix.lookup(&key)[0].1.clone().unwrap();
    assert_eq!(s.decision, Decision::Rescued);
    assert_eq!(
        s.reasons.iter().map(|r| &**r).collect::<Vec<_>>(),
        ["complaint"]
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["trace_id"], hex::encode(t.trace_id));
    assert_eq!(json["decision"], "rescued");
    assert!(json["start"].as_str().unwrap().ends_with('Z'), "{json}");
}

#[test]
fn bounded_by_count_and_retention_oldest_out_first() {
    let mut c = cfg();
    c.max_traces = 3;
    c.retention = Duration::from_secs(60);
    let ix = Index::new(&c);
    let mut g = Gen::new(3);
    let traces: Vec<_> = (0..5).map(|_| g.trace(Shape::default(), 2)).collect();
    for (i, t) in traces.iter().enumerate() {
        ix.add_at(ix.keys_of(&spans_of(t)), 1_000 + i as u64);
    }
    assert_eq!(ix.len(), 3);
    assert!(!ix.contains(&traces[0].trace_id) && !ix.contains(&traces[1].trace_id));
    assert!(
        ix.lookup(&ix.query_key("user.id", &traces[0].user_id).unwrap())
            .is_empty(),
        "keys go with the trace"
    );
    // Past the retention, everything older goes at the next insert.
    let late = g.trace(Shape::default(), 2);
    ix.add_at(ix.keys_of(&spans_of(&late)), 1_000 + 61_000);
    assert_eq!(ix.len(), 1);
    assert!(ix.contains(&late.trace_id));
}

#[test]
fn hashed_values_never_hold_the_raw_id() {
    let mut c = cfg();
    c.hash_values = true;
    c.hash_key = Some("secret".into());
    let ix = Index::new(&c);
    let mut g = Gen::new(4);
    let t = g.trace(Shape::default(), 3);
    ix.add_at(ix.keys_of(&spans_of(&t)), 1_000);
    let key = ix.query_key("user.id", &t.user_id).unwrap();
    assert_eq!(key.len(), 33, "attribute byte + SHA-256 digest");
    assert!(!key
        .windows(t.user_id.len())
        .any(|w| w == t.user_id.as_bytes()));
    assert_eq!(ids(&ix.lookup(&key)), vec![t.trace_id]);
    let other = Index::new(&IndexCfg {
        hash_key: Some("other".into()),
        ..c
    });
    assert_ne!(
        other.query_key("user.id", &t.user_id).unwrap(),
        key,
        "keyed hash"
    );
}

#[test]
fn new_bounds_apply_at_the_next_eviction() {
    let ix = Index::new(&cfg());
    let mut g = Gen::new(21);
    for i in 0..5 {
        ix.add_at(
            ix.keys_of(&spans_of(&g.trace(Shape::default(), 2))),
            1_000 + i,
        );
    }
    assert_eq!(ix.len(), 5);
    ix.set_bounds(Duration::from_secs(3600), 2);
    ix.add_at(ix.keys_of(&spans_of(&g.trace(Shape::default(), 2))), 2_000);
    assert_eq!(ix.len(), 2, "max_traces now 2");
    ix.set_bounds(Duration::from_secs(1), 1000);
    ix.add_at(ix.keys_of(&spans_of(&g.trace(Shape::default(), 2))), 10_000);
    assert_eq!(ix.len(), 1, "retention now 1 s: only the newest is left");
}

#[test]
fn a_new_attribute_list_applies_to_spans_indexed_from_then_on() {
    let ix = Index::new(&IndexCfg {
        attributes: vec!["user.id".into()],
        ..cfg()
    });
    let mut g = Gen::new(31);
    let mut a = g.trace(Shape::default(), 2);
    a.spans[0].1.attributes.push(kv("order.id", "o-1"));
    ix.add_at(ix.keys_of(&spans_of(&a)), 1_000);
    assert!(ix.query_key("order.id", "o-1").is_none(), "not indexed yet");
    let user_a = ix.query_key("user.id", &a.user_id).unwrap();

    assert!(ix.set_attributes(&["order.id".into(), "user.id".into()]));
    assert_eq!(ix.attributes(), ["order.id", "user.id"]);
    let mut b = g.trace(Shape::default(), 2);
    b.spans[0].1.attributes.push(kv("order.id", "o-1"));
    ix.add_at(ix.keys_of(&spans_of(&b)), 2_000);
    let order = ix.query_key("order.id", "o-1").unwrap();
    assert_eq!(
        ids(&ix.lookup(&order)),
        vec![b.trace_id],
        "only spans from then on"
    );
    assert_eq!(
        ix.query_key("user.id", &a.user_id).unwrap(),
        user_a,
        "an attribute keeps its slot, so its keys keep their meaning"
    );
    assert_eq!(ids(&ix.lookup(&user_a)), vec![a.trace_id]);

    // Dropped: out of reach; added back: its old entries with it.
    assert!(ix.set_attributes(&["user.id".into()]));
    assert!(ix.query_key("order.id", "o-1").is_none());
    assert!(ix.set_attributes(&["user.id".into(), "order.id".into()]));
    assert_eq!(ids(&ix.lookup(&order)), vec![b.trace_id]);
}

#[test]
fn the_index_refuses_a_257th_distinct_attribute() {
    let ix = Index::new(&cfg());
    let many: Vec<String> = (0..253).map(|i| format!("a{i}")).collect();
    assert!(ix.set_attributes(&many), "3 + 253 = 256 slots");
    assert!(!ix.set_attributes(&["one.more".into()]));
    assert_eq!(ix.attributes().len(), 253, "unchanged");
}
