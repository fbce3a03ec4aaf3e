//! what-if: reading captures, deciding them with the capture's clock, Collector configs, estimates.

use super::*;
use crate::fixture::{self, Gen, Shape};
use prost::Message;

fn policies(yaml: &str) -> Policies {
    let cfgs: Vec<crate::policy::PolicyCfg> = serde_yaml_ng::from_str(yaml).unwrap();
    Policies::build(&cfgs, false).unwrap()
}

#[test]
fn reads_json_lines_documents_and_protobuf_and_groups_by_trace() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(81);
    let t = g.trace(Shape::ERROR, 4);
    let (mut a, mut b) = (t.clone(), t.clone());
    a.spans.truncate(2);
    b.spans.drain(..2);
    let other = g.trace(Shape::default(), 3);
    let proto = |ts: &[fixture::Trace]| fixture::request_for(ts).encode_to_vec();
    let json = |ts: &[fixture::Trace]| crate::wire::json::request_to_json(&proto(ts)).unwrap();
    let lines = dir.path().join("kept.jsonl");
    std::fs::write(
        &lines,
        format!("{}\n\n{}\n", json(&[a]), json(std::slice::from_ref(&other))),
    )
    .unwrap();
    let pb = dir.path().join("rest.pb");
    std::fs::write(&pb, proto(&[b])).unwrap();
    let mut c = Capture::default();
    c.read(&lines).unwrap();
    c.read(&pb).unwrap();
    assert_eq!((c.traces.len(), c.spans), (2, 7));
    assert_eq!(
        c.traces[&t.trace_id].len(),
        4,
        "a trace split over files is one trace"
    );

    let (o, each) = decide(
        &c,
        &policies("[{ name: errors, type: status_code, status_code: { status_codes: [ERROR] } }]"),
        "x.yaml",
    );
    assert_eq!((o.kept_traces, o.kept_spans), (1, 4));
    assert_eq!(o.by_policy, [("errors".to_owned(), 1)]);
    let kept: Vec<_> = each
        .iter()
        .filter(|(_, k, _)| *k)
        .map(|(id, _, r)| (*id, r.clone()))
        .collect();
    assert_eq!(kept, [(t.trace_id, vec![Arc::from("errors")])]);
}

#[test]
fn bad_lines_are_reported_with_file_and_line_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    std::fs::write(
        &p,
        "{\"resourceSpans\":[]}\n{oops\n{\"resourceSpans\": 7}\n",
    )
    .unwrap();
    let problems = Capture::default().read(&p).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("{}:2: ", p.display())),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with(&format!("{}:3: ", p.display())),
        "{problems:?}"
    );
    let bin = dir.path().join("bad.pb");
    std::fs::write(&bin, [0x0a, 0xff]).unwrap();
    let problems = Capture::default().read(&bin).unwrap_err();
    assert!(
        problems[0].contains("neither OTLP/JSON nor a protobuf"),
        "{problems:?}"
    );
}

#[test]
fn rate_limiting_sees_the_capture_own_clock() {
    // Ten 1-span traces a second apart: a 1-span-per-second limit keeps them all; the
    // same traces decided "now" would keep one.
    let mut g = Gen::new(82);
    let mut c = Capture::default();
    for i in 0..10u64 {
        let mut t = g.trace(Shape::default(), 1);
        let s = &mut t.spans[0].1;
        s.start_time_unix_nano = 1_700_000_000_000_000_000 + i * 1_000_000_000;
        s.end_time_unix_nano = s.start_time_unix_nano + 1_000;
        c.add(
            decode_request(&fixture::request_for(&[t]).encode_to_vec())
                .unwrap()
                .spans,
        );
    }
    let (o, _) = decide(
        &c,
        &policies("[{ name: rl, type: rate_limiting, rate_limiting: { spans_per_second: 1 } }]"),
        "x",
    );
    assert_eq!(o.kept_traces, 10);
}

#[test]
fn a_collector_config_gives_its_tail_sampling_policies() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("otelcol.yaml");
    std::fs::write(
        &p,
        "receivers: { otlp: { protocols: { grpc: {} } } }\nprocessors:\n  batch: {}\n  tail_sampling/errors:\n    decision_wait: 10s\n    policies:\n      - { name: errs, type: status_code, status_code: { status_codes: [ERROR] } }\nservice: { pipelines: {} }\n",
    )
    .unwrap();
    let (p, _) = policies_of(&p).unwrap();
    assert_eq!(p.names(), ["errs"]);
    let missing = dir.path().join("nothing.yaml");
    std::fs::write(&missing, "receivers: {}\n").unwrap();
    let problems = policies_of(&missing).err().unwrap();
    assert!(
        problems[0].contains("no receiver configured"),
        "{problems:?}"
    );
}

/// `n` traces of 3 spans, each span with `tracestate`, as a capture.
fn capture(seed: u64, n: usize, tracestate: &str) -> Capture {
    let mut g = Gen::new(seed);
    let mut c = Capture::default();
    for _ in 0..n {
        let mut t = g.trace(Shape::default(), 3);
        for (_, s) in &mut t.spans {
            s.trace_state = tracestate.into();
        }
        c.add(
            decode_request(&fixture::request_for(&[t]).encode_to_vec())
                .unwrap()
                .spans,
        );
    }
    c
}

#[test]
fn the_estimate_adds_up_the_kept_traces_adjusted_counts() {
    // 10 %: each kept trace stands for 10 (2^56 / round(0.1 × 2^56), computed here).
    let c = capture(83, 2000, "");
    let (o, _) = decide(
        &c,
        &policies("[{ name: p, type: probabilistic, probabilistic: { sampling_percentage: 10 } }]"),
        "x",
    );
    let each = (1u64 << 56) as f64 / (0.1f64 * (1u64 << 56) as f64).round();
    assert!((o.estimated_traces - o.kept_traces as f64 * each).abs() < 1e-6);
    assert!((o.estimated_spans - 3.0 * o.estimated_traces).abs() < 1e-6);
    assert!(
        (1600.0..2400.0).contains(&o.estimated_traces),
        "{} estimated for 2000 captured ({} kept)",
        o.estimated_traces,
        o.kept_traces
    );
    // Traces kept whatever their randomness count once.
    let (o, _) = decide(&c, &policies("[{ name: all, type: always_sample }]"), "x");
    assert_eq!((o.estimated_traces, o.estimated_spans), (2000.0, 6000.0));
}

#[test]
fn a_head_threshold_counts_too() {
    // Head-sampled at 25 % (th:c): every captured trace stands for 4.
    let c = capture(84, 10, "ot=th:c");
    let (o, _) = decide(&c, &policies("[{ name: all, type: always_sample }]"), "x");
    assert_eq!((o.kept_traces, o.estimated_traces), (10, 40.0));
    // The Collector's hash at 100 % on top: still 4 (the probabilities multiply).
    let hashed =
        policies("[{ name: p, type: probabilistic, probabilistic: { sampling_percentage: 100 } }]");
    assert_eq!(decide(&c, &hashed, "x").0.estimated_traces, 40.0);
    // Consistent decisions at 50 % with randomness above both thresholds: the stricter
    // threshold (the head's 25 %) is the one that counts.
    let c = capture(85, 10, "ot=th:c;rv:f0000000000000");
    let consistent =
        policies("[{ name: p, type: probabilistic, probabilistic: { sampling_percentage: 50 } }]")
            .with_output(crate::policy::Output {
                use_tracestate: true,
                ..Default::default()
            });
    let (o, _) = decide(&c, &consistent, "x");
    assert_eq!((o.kept_traces, o.estimated_traces), (10, 40.0));
}
