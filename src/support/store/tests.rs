//! Complaint store tests: round trips, ordering and filters, persistence across reopen, watches, bad files.

use super::*;
use std::sync::Arc;
use std::time::Duration;

fn at(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn tid(n: u8) -> String {
    format!("{:032x}", n)
}

fn complaint(id: &str, ticket: &str, user: Option<&str>, created_ms: u64) -> Complaint {
    Complaint {
        complaint_id: id.to_string(),
        ticket_id: ticket.to_string(),
        created_at: at(created_ms),
        label: Some("wrong_policy_answer".to_string()),
        text: Some("the bot said no".to_string()),
        user_id: user.map(str::to_string),
        attributes: BTreeMap::from([("session.id".to_string(), "sess_918".to_string())]),
        start: Some(at(created_ms.saturating_sub(60_000))),
        end: None,
        traces: vec![TraceOutcome {
            trace_id: tid(1),
            outcome: Outcome::Flagged,
        }],
        watch_until: None,
    }
}

fn ids(v: &[Complaint]) -> Vec<&str> {
    v.iter().map(|c| c.complaint_id.as_str()).collect()
}

const T0: u64 = 1_700_000_000_000;

#[test]
fn new_id_shape() {
    let a = new_id();
    assert_eq!(a.len(), 4 + 16);
    assert!(a.starts_with("cmp_"));
    assert!(a[4..]
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(a, new_id());
}

#[test]
fn insert_get_round_trip() {
    let s = ComplaintStore::in_memory().unwrap();
    let c = complaint("cmp_a", "cs_441", Some("usr_k8x9m2"), T0);
    s.insert(&c).unwrap();
    assert_eq!(s.get("cmp_a").unwrap(), Some(c));
    assert_eq!(s.get("cmp_missing").unwrap(), None);
    assert_eq!(s.len().unwrap(), 1);
}

#[test]
fn insert_same_id_replaces_and_reindexes() {
    let s = ComplaintStore::in_memory().unwrap();
    s.insert(&complaint("cmp_a", "cs_1", Some("u1"), T0))
        .unwrap();
    let mut c = complaint("cmp_a", "cs_2", Some("u2"), T0 + 5);
    c.watch_until = Some(at(T0 + 10_000));
    s.insert(&c).unwrap();
    assert_eq!(s.len().unwrap(), 1);
    let by = |t: Option<&str>, u: Option<&str>| {
        let f = Filter {
            ticket_id: t.map(str::to_string),
            user_id: u.map(str::to_string),
        };
        s.list(&f, 10).unwrap().len()
    };
    assert_eq!(by(Some("cs_1"), None), 0);
    assert_eq!(by(None, Some("u1")), 0);
    assert_eq!(by(Some("cs_2"), None), 1);
    assert_eq!(by(None, Some("u2")), 1);
    assert_eq!(by(None, None), 1);
    let w = s
        .active_watches(UNIX_EPOCH + Duration::from_millis(T0))
        .unwrap();
    assert_eq!(ids(&w), vec!["cmp_a"]);
}

#[test]
fn list_newest_first_with_limit_and_filters() {
    let s = ComplaintStore::in_memory().unwrap();
    // Insert out of order; two share a timestamp (order then by id, descending).
    s.insert(&complaint("cmp_3", "cs_b", Some("u1"), T0 + 3000))
        .unwrap();
    s.insert(&complaint("cmp_1", "cs_a", Some("u1"), T0 + 1000))
        .unwrap();
    s.insert(&complaint("cmp_5", "cs_a", None, T0 + 5000))
        .unwrap();
    s.insert(&complaint("cmp_2", "cs_a", Some("u2"), T0 + 2000))
        .unwrap();
    s.insert(&complaint("cmp_4a", "cs_b", Some("u1"), T0 + 4000))
        .unwrap();
    s.insert(&complaint("cmp_4b", "cs_c", Some("u1"), T0 + 4000))
        .unwrap();
    // Neighbouring keys in the ticket index must not leak into the range.
    s.insert(&complaint("cmp_x", "cs_", Some("u"), T0 + 9000))
        .unwrap();
    s.insert(&complaint("cmp_y", "cs_aa", Some("u10"), T0 + 9000))
        .unwrap();

    let all = Filter::default();
    assert_eq!(
        ids(&s.list(&all, 100).unwrap()),
        vec!["cmp_y", "cmp_x", "cmp_5", "cmp_4b", "cmp_4a", "cmp_3", "cmp_2", "cmp_1"]
    );
    assert_eq!(
        ids(&s.list(&all, 3).unwrap()),
        vec!["cmp_y", "cmp_x", "cmp_5"]
    );
    assert!(s.list(&all, 0).unwrap().is_empty());

    let ticket = Filter {
        ticket_id: Some("cs_a".into()),
        user_id: None,
    };
    assert_eq!(
        ids(&s.list(&ticket, 100).unwrap()),
        vec!["cmp_5", "cmp_2", "cmp_1"]
    );
    assert_eq!(ids(&s.list(&ticket, 2).unwrap()), vec!["cmp_5", "cmp_2"]);

    let user = Filter {
        ticket_id: None,
        user_id: Some("u1".into()),
    };
    assert_eq!(
        ids(&s.list(&user, 100).unwrap()),
        vec!["cmp_4b", "cmp_4a", "cmp_3", "cmp_1"]
    );
    assert_eq!(ids(&s.list(&user, 1).unwrap()), vec!["cmp_4b"]);

    let both = Filter {
        ticket_id: Some("cs_b".into()),
        user_id: Some("u1".into()),
    };
    assert_eq!(ids(&s.list(&both, 100).unwrap()), vec!["cmp_4a", "cmp_3"]);
    let none = Filter {
        ticket_id: Some("cs_zzz".into()),
        user_id: None,
    };
    assert!(s.list(&none, 100).unwrap().is_empty());
    let first = Filter {
        ticket_id: Some("a".into()),
        user_id: None,
    };
    assert!(s.list(&first, 100).unwrap().is_empty());
}

#[test]
fn set_traces_and_add_trace_update_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("complaints.db");
    {
        let s = ComplaintStore::open(&path).unwrap();
        s.insert(&complaint("cmp_a", "cs_1", Some("u1"), T0))
            .unwrap();
        let new = vec![
            TraceOutcome {
                trace_id: tid(2),
                outcome: Outcome::Rescued,
            },
            TraceOutcome {
                trace_id: tid(3),
                outcome: Outcome::NotFound,
            },
        ];
        assert!(s.set_traces("cmp_a", &new).unwrap());
        assert_eq!(s.get("cmp_a").unwrap().unwrap().traces, new);
        assert!(!s.set_traces("cmp_nope", &new).unwrap());

        // Append a new trace.
        assert!(s
            .add_trace(
                "cmp_a",
                TraceOutcome {
                    trace_id: tid(4),
                    outcome: Outcome::Flagged
                }
            )
            .unwrap());
        // Update the outcome of an existing trace.
        assert!(s
            .add_trace(
                "cmp_a",
                TraceOutcome {
                    trace_id: tid(3),
                    outcome: Outcome::Rescued
                }
            )
            .unwrap());
        // Same outcome again: still true, nothing duplicated.
        assert!(s
            .add_trace(
                "cmp_a",
                TraceOutcome {
                    trace_id: tid(4),
                    outcome: Outcome::Flagged
                }
            )
            .unwrap());
        assert!(!s
            .add_trace(
                "cmp_nope",
                TraceOutcome {
                    trace_id: tid(4),
                    outcome: Outcome::Flagged
                }
            )
            .unwrap());
    }
    let s = ComplaintStore::open(&path).unwrap();
    let c = s.get("cmp_a").unwrap().unwrap();
    assert_eq!(
        c.traces,
        vec![
            TraceOutcome {
                trace_id: tid(2),
                outcome: Outcome::Rescued
            },
            TraceOutcome {
                trace_id: tid(3),
                outcome: Outcome::Rescued
            },
            TraceOutcome {
                trace_id: tid(4),
                outcome: Outcome::Flagged
            },
        ]
    );
    // Other fields and indexes untouched by trace updates.
    assert_eq!(c.ticket_id, "cs_1");
    let f = Filter {
        ticket_id: Some("cs_1".into()),
        user_id: None,
    };
    assert_eq!(ids(&s.list(&f, 10).unwrap()), vec!["cmp_a"]);
}

#[test]
fn records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("complaints.db");
    let mut written = Vec::new();
    {
        let s = ComplaintStore::open(&path).unwrap();
        assert_eq!(s.path(), Some(path.as_path()));
        for i in 0..20u64 {
            let mut c = complaint(&format!("cmp_{i:02}"), "cs_9", Some("u"), T0 + i);
            if i % 2 == 0 {
                c.watch_until = Some(at(T0 + 3_600_000));
            }
            s.insert(&c).unwrap();
            written.push(c);
        }
    }
    let s = ComplaintStore::open(&path).unwrap();
    assert_eq!(s.len().unwrap(), 20);
    for c in &written {
        assert_eq!(s.get(&c.complaint_id).unwrap().as_ref(), Some(c));
    }
    let listed = s.list(&Filter::default(), 100).unwrap();
    written.reverse();
    assert_eq!(listed, written);
    let w = s
        .active_watches(UNIX_EPOCH + Duration::from_millis(T0))
        .unwrap();
    assert_eq!(w.len(), 10);
}

#[test]
fn active_watches_only_unexpired() {
    let s = ComplaintStore::in_memory().unwrap();
    let now = T0 + 100_000;
    let mk = |id: &str, until: Option<u64>| {
        let mut c = complaint(id, "cs_w", Some("u"), T0);
        c.watch_until = until.map(at);
        c
    };
    s.insert(&mk("cmp_none", None)).unwrap();
    s.insert(&mk("cmp_past", Some(now - 1))).unwrap();
    s.insert(&mk("cmp_exact", Some(now))).unwrap();
    s.insert(&mk("cmp_soon", Some(now + 1))).unwrap();
    s.insert(&mk("cmp_later", Some(now + 3_600_000))).unwrap();
    let w = s
        .active_watches(UNIX_EPOCH + Duration::from_millis(now))
        .unwrap();
    assert_eq!(ids(&w), vec!["cmp_soon", "cmp_later"]);
    // Far future: nothing is active; before everything: all watches.
    assert!(s
        .active_watches(UNIX_EPOCH + Duration::from_millis(now + 10_000_000))
        .unwrap()
        .is_empty());
    assert_eq!(s.active_watches(UNIX_EPOCH).unwrap().len(), 4);
}

#[test]
fn open_creates_missing_parent_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("nested").join("complaints.db");
    assert!(!path.parent().unwrap().exists());
    let s = ComplaintStore::open(&path).unwrap();
    s.insert(&complaint("cmp_a", "cs_1", None, T0)).unwrap();
    assert!(path.is_file());
}

#[test]
fn garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("complaints.db");
    let mut rng = fastrand::Rng::with_seed(7);
    let bytes: Vec<u8> = (0..64 * 1024).map(|_| rng.u8(..)).collect();
    std::fs::write(&path, &bytes).unwrap();
    let err = ComplaintStore::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::Open { .. } | StoreError::Init { .. }),
        "{err:?}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    // The file is left as it was: the store never overwrites what it cannot read.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn small_garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("complaints.db");
    std::fs::write(&path, b"this is not a database\n").unwrap();
    let err = ComplaintStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("complaints.db"), "{err}");
}

#[test]
fn json_has_exactly_the_spec_fields() {
    let mut c = complaint("cmp_a", "cs_441", Some("usr_1"), T0);
    c.watch_until = Some(at(T0 + 1));
    c.traces.push(TraceOutcome {
        trace_id: tid(9),
        outcome: Outcome::AlreadySampled,
    });
    let v = serde_json::to_value(&c).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "complaint_id",
        "ticket_id",
        "created_at",
        "label",
        "text",
        "user_id",
        "attributes",
        "start",
        "end",
        "traces",
        "watch_until",
    ];
    let mut got = keys.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let t = &v["traces"][0];
    let mut tkeys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    tkeys.sort();
    assert_eq!(tkeys, vec!["outcome", "trace_id"]);
    assert_eq!(v["traces"][0]["outcome"], "flagged");
    assert_eq!(v["traces"][1]["outcome"], "already_sampled");
    assert_eq!(
        serde_json::to_value(Outcome::NotFound).unwrap(),
        serde_json::json!("not_found")
    );
    assert_eq!(
        serde_json::to_value(Outcome::Rescued).unwrap(),
        serde_json::json!("rescued")
    );
    // Nulls are present, not omitted.
    c.watch_until = None;
    c.end = None;
    let v = serde_json::to_value(&c).unwrap();
    assert!(v["watch_until"].is_null() && v.get("watch_until").is_some());
    assert!(v.get("end").is_some());
    // Round trip.
    let back: Complaint = serde_json::from_value(v).unwrap();
    assert_eq!(back, c);
}

#[test]
fn invalid_timestamps_are_rejected() {
    let s = ComplaintStore::in_memory().unwrap();
    let mut c = complaint("cmp_a", "cs_1", None, T0);
    c.created_at = "yesterday".into();
    assert!(matches!(
        s.insert(&c),
        Err(StoreError::InvalidTime {
            field: "created_at",
            ..
        })
    ));
    let mut c = complaint("cmp_a", "cs_1", None, T0);
    c.watch_until = Some("soon".into());
    assert!(matches!(
        s.insert(&c),
        Err(StoreError::InvalidTime {
            field: "watch_until",
            ..
        })
    ));
    let mut c = complaint("", "cs_1", None, T0);
    c.complaint_id.clear();
    assert!(matches!(s.insert(&c), Err(StoreError::EmptyId)));
    assert!(s.is_empty().unwrap());
}

#[test]
fn parses_rfc3339_variants() {
    let base = parse_millis("2024-05-01T12:00:00Z").unwrap();
    assert_eq!(parse_millis("2024-05-01T12:00:00.000Z"), Some(base));
    assert_eq!(parse_millis("2024-05-01T12:00:00"), Some(base));
    assert_eq!(parse_millis("2024-05-01T12:00:00+00:00"), Some(base));
    assert_eq!(parse_millis("2024-05-01T14:00:00+02:00"), Some(base));
    assert_eq!(
        parse_millis("2024-05-01T14:00:00.250+02:00"),
        Some(base + 250)
    );
    assert_eq!(parse_millis("2024-05-01T07:30:00-04:30"), Some(base));
    assert_eq!(parse_millis("2024-05-01T12:00:00.5Z"), Some(base + 500));
    assert_eq!(parse_millis("nope"), None);
    assert_eq!(parse_millis(&at(T0)), Some(T0));
}

#[test]
fn concurrent_writers_from_threads() {
    let s = Arc::new(ComplaintStore::in_memory().unwrap());
    s.insert(&complaint("cmp_shared", "cs_1", None, T0))
        .unwrap();
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..10u8 {
                    let id = format!("cmp_t{t}_{i}");
                    s.insert(&complaint(&id, "cs_2", None, T0 + u64::from(i)))
                        .unwrap();
                    s.add_trace(
                        "cmp_shared",
                        TraceOutcome {
                            trace_id: tid(t * 16 + i + 2),
                            outcome: Outcome::Flagged,
                        },
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(s.len().unwrap(), 41);
    // 40 new traces + the original one.
    assert_eq!(s.get("cmp_shared").unwrap().unwrap().traces.len(), 41);
}

#[test]
fn store_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ComplaintStore>();
}
