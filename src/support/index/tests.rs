//! Index behaviour: keys from span and resource attributes, newest first, bounds, hashing.

use std::time::Duration;

use proptest::prelude::*;
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
        max_bytes: 64 << 20,
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
    // HMAC-SHA256 of the attribute's name, a zero byte and the value, truncated: nothing
    // else (the archive stores this very digest).
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(b"secret").unwrap();
    hmac::Mac::update(&mut mac, b"user.id\0");
    hmac::Mac::update(&mut mac, t.user_id.as_bytes());
    let digest = hmac::Mac::finalize(mac).into_bytes();
    assert_eq!(key.0[..], digest[..16]);
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
    ix.set_bounds(Duration::from_secs(3600), 2, usize::MAX);
    ix.add_at(ix.keys_of(&spans_of(&g.trace(Shape::default(), 2))), 2_000);
    assert_eq!(ix.len(), 2, "max_traces now 2");
    ix.set_bounds(Duration::from_secs(1), 1000, usize::MAX);
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

    ix.set_attributes(&["order.id".into(), "user.id".into()]);
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
        "a key digests the name and the value: it keeps its meaning"
    );
    assert_eq!(ids(&ix.lookup(&user_a)), vec![a.trace_id]);

    // Dropped: out of reach; added back: its old entries with it.
    ix.set_attributes(&["user.id".into()]);
    assert!(ix.query_key("order.id", "o-1").is_none());
    ix.set_attributes(&["user.id".into(), "order.id".into()]);
    assert_eq!(ids(&ix.lookup(&order)), vec![b.trace_id]);
}

#[test]
fn any_number_of_attributes_over_reloads() {
    let ix = Index::new(&cfg());
    for round in 0..3 {
        let many: Vec<String> = (0..300).map(|i| format!("a{round}.{i}")).collect();
        ix.set_attributes(&many);
        assert_eq!(ix.attributes().len(), 300);
    }
}

/// The key is a function of (name, value, seed or hash key) only: the archive computes the
/// index's digest of a value without the index, and stores it.
#[test]
fn keys_are_digests_of_name_and_value_under_the_seed_or_key() {
    let hashed = IndexCfg {
        hash_values: true,
        hash_key: Some("s3cret".into()),
        ..cfg()
    };
    let a = Index::new(&hashed);
    let b = Index::new(&hashed);
    let k = a.query_key("user.id", "u-1").unwrap();
    assert_eq!(
        b.query_key("user.id", "u-1"),
        Some(k),
        "same key, same digest"
    );
    assert_eq!(KeyHash::hmac(b"s3cret").key(b"user.id", b"u-1"), k);
    assert_ne!(a.query_key("session.id", "u-1"), Some(k), "the name counts");
    let other = Index::new(&IndexCfg {
        hash_key: Some("other".into()),
        ..hashed
    });
    assert_ne!(other.query_key("user.id", "u-1"), Some(k), "the key counts");
    // Seeded: the seed handed over (the archive's) decides, not the process.
    let (c, d) = (Index::new(&cfg()), Index::new(&cfg()));
    assert_ne!(c.query_key("user.id", "u-1"), d.query_key("user.id", "u-1"));
    c.set_key_hash(KeyHash::Seeded(7));
    d.set_key_hash(KeyHash::Seeded(7));
    let k = c.query_key("user.id", "u-1").unwrap();
    assert_eq!(d.query_key("user.id", "u-1"), Some(k));
    assert_eq!(KeyHash::Seeded(7).key(b"user.id", b"u-1"), k);
    // Ingest computes the same key as a query.
    let mut t = Gen::new(3).trace(Shape::default(), 3);
    t.set_user("u-1");
    c.add_at(c.keys_of(&spans_of(&t)), 1_000);
    assert_eq!(ids(&c.lookup(&k)), vec![t.trace_id]);
}

/// A summary of nothing, for tests that only count bytes.
fn bare(id: TraceId, reasons: &[&str]) -> Summary {
    Summary::of(
        id,
        &[],
        Decision::Dropped,
        reasons.iter().map(|r| Arc::from(*r)).collect(),
    )
}

fn id(n: u64) -> TraceId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id[8..].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    id
}

#[test]
fn bounded_by_bytes_oldest_out_first() {
    let mut c = cfg();
    c.max_traces = 1_000_000;
    c.max_bytes = 16 << 10;
    let ix = Index::new(&c);
    let mut total = 0;
    for n in 0..2_000u64 {
        let mut found = Found::default();
        found.push(
            id(n),
            ix.query_key("user.id", &format!("u{}", n % 50)).unwrap(),
        );
        found.push(id(n), ix.query_key("session.id", &format!("s{n}")).unwrap());
        ix.add_at(found, 1_000 + n);
        assert!(ix.bytes() <= c.max_bytes, "{} after adding {n}", ix.bytes());
        ix.decided(vec![bare(id(n), &["baseline", "errors"])]);
        assert!(
            ix.bytes() <= c.max_bytes,
            "{} after deciding {n}",
            ix.bytes()
        );
        total += 1;
    }
    let held = ix.len();
    assert!(held > 10 && held < total, "{held} traces held");
    // The newest `held` traces are the ones left, every one of them whole.
    for n in 0..2_000u64 {
        let present = n >= 2_000 - held as u64;
        assert_eq!(ix.contains(&id(n)), present, "trace {n}");
        if present {
            assert_eq!(ix.keys_for(&id(n)).len(), 2);
            assert!(ix.summary(&id(n)).is_some());
        }
    }
    let oldest_user = ix.query_key("session.id", "s0").unwrap();
    assert!(ix.lookup(&oldest_user).is_empty(), "keys go with the trace");
    let u = ix.query_key("user.id", "u49").unwrap();
    let got = ids(&ix.lookup(&u));
    assert_eq!(got[0], id(1_999), "newest first");
    assert!(got.windows(2).all(|w| w[0] > w[1]));
}

#[test]
fn everything_goes_with_the_retention() {
    let mut c = cfg();
    c.retention = Duration::from_secs(10);
    let ix = Index::new(&c);
    for n in 0..100u64 {
        let mut found = Found::default();
        found.push(
            id(n),
            ix.query_key("user.id", &format!("u{}", n % 7)).unwrap(),
        );
        ix.add_at(found, 1_000 + n);
        ix.decided(vec![bare(id(n), &["errors"])]);
    }
    assert!(ix.bytes() > 0);
    ix.add_at(Found::default(), 1_000 + 100 + 10_000);
    assert_eq!(
        (ix.len(), ix.bytes()),
        (0, 0),
        "entries, postings, keys and summaries"
    );
}

#[test]
fn a_later_request_adds_keys_to_a_trace_once() {
    let ix = Index::new(&cfg());
    let (u, s) = (
        ix.query_key("user.id", "u1").unwrap(),
        ix.query_key("session.id", "s1").unwrap(),
    );
    let mut first = Found::default();
    first.push(id(1), u);
    first.push(id(1), u);
    ix.add_at(first, 1_000);
    let mut other = Found::default();
    other.push(id(2), u);
    ix.add_at(other, 1_001);
    let mut later = Found::default();
    later.push(id(1), u);
    later.push(id(1), s);
    ix.add_at(later, 1_002);
    let mut keys = ix.keys_for(&id(1));
    keys.sort();
    let mut want = vec![u, s];
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(ids(&ix.lookup(&u)), vec![id(2), id(1)], "one row per trace");
    assert_eq!(ids(&ix.lookup(&s)), vec![id(1)]);
    assert_eq!(ix.len(), 2);
}

#[test]
fn summaries_go_to_the_slots_ingest_gave() {
    let mut c = cfg();
    c.max_traces = 2;
    let ix = Index::new(&c);
    let mut slots = Vec::new();
    for n in 0..3u64 {
        let mut found = Found::default();
        found.push(id(n), ix.query_key("user.id", "u").unwrap());
        slots.extend(ix.add_at(found, 1_000 + n));
    }
    assert_eq!(slots.len(), 3);
    // Trace 0 has left: its summary is let go; the others land where they are.
    ix.decided_at(
        vec![
            (slots[0], bare(id(0), &[])),
            (slots[2], bare(id(2), &[])),
            // A slot that names another trace's entry: the id decides.
            (slots[2], bare(id(1), &["errors"])),
        ],
        std::iter::empty(),
    );
    assert!(ix.summary(&id(0)).is_none() && !ix.contains(&id(0)));
    assert!(ix.summary(&id(2)).is_some());
    assert_eq!(&*ix.summary(&id(1)).unwrap().reasons[0], "errors");
    assert_eq!(ix.len(), 2);
}

/// One step of the model check: add a trace's keys (a trace id from a small set, so some
/// come again) or decide a trace.
#[derive(Debug, Clone)]
enum Op {
    Add(u8, Vec<u8>),
    Decide(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..40, prop::collection::vec(0u8..12, 1..4)).prop_map(|(t, k)| Op::Add(t, k)),
        1 => (0u8..40).prop_map(Op::Decide),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Against a plain model (a list of traces in first-seen order, each with its keys):
    /// lookups newest first, keys per trace, the count bound, and the byte bound held.
    #[test]
    fn agrees_with_a_plain_model(
        ops in prop::collection::vec(op(), 1..120),
        max_traces in 1usize..30,
        max_bytes in 2_000usize..20_000,
    ) {
        let mut c = cfg();
        c.max_traces = max_traces;
        c.max_bytes = max_bytes;
        let ix = Index::new(&c);
        let key = |k: u8| ix.query_key("user.id", &format!("v{k}")).unwrap();
        let mut model: Vec<(TraceId, Vec<Key>)> = Vec::new();
        for (t, op) in ops.iter().enumerate() {
            match op {
                Op::Add(trace, keys) => {
                    let mut found = Found::default();
                    for k in keys {
                        found.push(id(*trace as u64), key(*k));
                    }
                    ix.add_at(found, 1_000 + t as u64);
                    let tid = id(*trace as u64);
                    match model.iter_mut().find(|(i, _)| *i == tid) {
                        Some((_, ks)) => {
                            for k in keys {
                                if !ks.contains(&key(*k)) {
                                    ks.push(key(*k));
                                }
                            }
                        }
                        None => {
                            let mut ks = Vec::new();
                            for k in keys {
                                if !ks.contains(&key(*k)) {
                                    ks.push(key(*k));
                                }
                            }
                            model.push((tid, ks));
                        }
                    }
                }
                Op::Decide(trace) => ix.decided(vec![bare(id(*trace as u64), &["baseline"])]),
            }
            prop_assert!(ix.bytes() <= max_bytes);
            prop_assert!(ix.len() <= max_traces);
            prop_assert!(ix.len() <= model.len());
            // What left the index leaves the model (a trace seen again is then new).
            let gone: Vec<_> = model.drain(..model.len() - ix.len()).collect();
            for (tid, ks) in &gone {
                prop_assert!(!ix.contains(tid));
                prop_assert!(ks.iter().all(|k| !ids(&ix.lookup(k)).contains(tid)));
            }
            for (tid, ks) in &model {
                prop_assert!(ix.contains(tid));
                let mut got = ix.keys_for(tid);
                got.sort();
                let mut want = ks.clone();
                want.sort();
                prop_assert_eq!(got, want);
            }
        }
        // Each key: the held traces that carry it, and only those.
        for k in 0u8..12 {
            let got = ids(&ix.lookup(&key(k)));
            let mut with: Vec<TraceId> = model.iter().filter(|(_, ks)| ks.contains(&key(k))).map(|(t, _)| *t).collect();
            with.sort();
            let mut sorted = got.clone();
            sorted.sort();
            prop_assert_eq!(sorted, with, "key {}", k);
        }
    }

    /// A value scanned from a span and the same value asked for by a lookup make the same
    /// key; other values and other attributes make other keys.
    #[test]
    fn scanned_keys_meet_query_keys(
        user in "[a-zA-Z0-9_.@-]{1,40}",
        other in "[a-zA-Z0-9_.@-]{1,40}",
        hashed in any::<bool>(),
    ) {
        let mut c = cfg();
        c.hash_values = hashed;
        c.hash_key = Some("k".into());
        let ix = Index::new(&c);
        let mut g = Gen::new(9);
        let mut t = g.trace(Shape::default(), 3);
        t.set_user(&user);
        let found = ix.keys_of(&spans_of(&t));
        let want = ix.query_key("user.id", &user).unwrap();
        prop_assert!(found.pairs.iter().any(|&(i, k)| i == t.trace_id && k == want));
        prop_assert_ne!(ix.query_key("enduser.id", &user).unwrap(), want);
        if other != user {
            prop_assert_ne!(ix.query_key("user.id", &other).unwrap(), want);
        }
    }

    /// The short-string shortcut keys an encoded value exactly as the general parse does,
    /// for well-formed values of every kind and for arbitrary bytes.
    #[test]
    fn raw_values_key_as_parsed(
        text in "\\PC{0,150}",
        int in any::<i64>(),
        junk in prop::collection::vec(any::<u8>(), 0..40),
        hashed in any::<bool>(),
    ) {
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
        let mut c = cfg();
        c.hash_values = hashed;
        c.hash_key = Some("k".into());
        let ix = Index::new(&c);
        let parsed = |raw: &[u8]| {
            let s = crate::wire::AnyValueRef::parse(raw).to_display_string();
            (!s.is_empty()).then(|| ix.key_hash().key(b"user.id", s.as_bytes()))
        };
        let encoded = [
            AnyValue { value: Some(any_value::Value::StringValue(text.clone())) }.encode_to_vec(),
            AnyValue { value: Some(any_value::Value::IntValue(int)) }.encode_to_vec(),
            junk.clone(),
            [&[0x0a, junk.len() as u8][..], &junk].concat(),
        ];
        for raw in &encoded {
            prop_assert_eq!(ix.key_hash().key_of_raw(b"user.id", raw), parsed(raw), "{:?}", raw);
        }
    }
}
