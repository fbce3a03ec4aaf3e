//! The OpenTelemetry Collector's own policy test tables, replayed against casefile: every case
//! of the Go tests of the policy types casefile runs
//! (`processor/tailsamplingprocessor/internal/sampling/*_test.go`), of the nesting refusals
//! (`*_helper_test.go`) and of the decision-precedence tests of `processor_decisions_test.go`
//! is data in `tests/collector_tables/*.yaml`, each file naming the Collector commit and Go
//! file it was transcribed from. Not transcribed: the tests of policy types casefile does not
//! run (skip, rare_spans, budget_limiting, stratified_probabilistic; refused by name at load)
//! and of the Collector's internals (tracestate manager, time provider, helpers). Each case's policy is the Collector's YAML shape, read by casefile's
//! config types; each trace is built as a real OTLP `ExportTraceServiceRequest`, encoded, and
//! decoded by casefile's ingest decoder, then decided by the policy engine the daemon runs
//! (`Policies::evaluate`), with time passed in (no sleeps).
//!
//! The Collector's tests assert one policy's own decision (`Sampled`, `InvertSampled`, ...),
//! which casefile keeps inside the engine. The driver recovers it from the final decision
//! beside probe policies, through the top-level precedence that is itself the Collector's
//! (see [`decisions`]); the processor-level tables assert the final decision directly.
//!
//! A case where casefile deliberately differs lists what casefile answers (`casefile:`) and
//! why (`differs:`); the test asserts that answer, so a change in either direction shows.
//! Cases whose Go inputs cannot be expressed as OTLP are listed per file (`not_expressible:`)
//! with the reason, and counted.

#[path = "collector_tables/otlp.rs"]
mod otlp;

use std::time::Duration;

use casefile::model::Span;
use casefile::policy::{Policies, PolicyCfg};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use otlp::{decode, kvs, request, trace_id, TraceSpec};
use prost::Message;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use tokio::time::Instant;

/// The tables, in the order they are reported.
const TABLES: [&str; 18] = [
    "always_sample",
    "string_attribute",
    "numeric_attribute",
    "boolean_attribute",
    "status_code",
    "latency",
    "span_count",
    "trace_state",
    "probabilistic",
    "rate_limiting",
    "bytes_limiting",
    "and_drop_not",
    "composite",
    "ottl_condition",
    "precedence",
    "trace_flags",
    "ottl_error_mode",
    "nesting",
];

/// What the replay must find: changing a table changes these on purpose.
const REPLAYED: usize = 180;
const MATCHING: usize = 168;
const EXPECTED_DIFFERENCES: usize = 12;
const NOT_EXPRESSIBLE: usize = 8;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    /// The Go test files transcribed, each at the Collector commit it was read at.
    sources: Vec<Source>,
    cases: Vec<Case>,
    #[serde(default)]
    not_expressible: Vec<NotExpressible>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    /// Path under `processor/tailsamplingprocessor/`.
    file: String,
    commit: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotExpressible {
    /// `GoTest/case` as in the Go file.
    name: String,
    why: String,
}

/// One Go test case: a policy config, the traces it decides in order, and the Collector's answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// `GoTest/case description`, as the Go file names it.
    name: String,
    /// `processors.tail_sampling.policies`, in the Collector's YAML shape. With one policy,
    /// `expect` is its own decision; with several, `kept` is the processor's.
    policies: Value,
    #[serde(default)]
    sample_on_first_match: bool,
    /// Traces decided one after another by the same built policies (stateful policies see
    /// them all). `trace` is the one-trace shorthand.
    #[serde(default)]
    traces: Vec<TraceSpec>,
    trace: Option<TraceSpec>,
    /// The Collector's decision of the policy for each trace.
    expect: Option<Vec<Decision>>,
    /// The Collector's final decision for each trace (several top-level policies).
    kept: Option<Vec<bool>>,
    /// The Collector refuses this config; casefile must too, saying this.
    refused: Option<String>,
    /// The config runs but casefile warns it is probably a mistake (containing this).
    warns: Option<String>,
    /// `random_traces` random trace ids, one span each: the share the policy samples must be
    /// within `delta` points of `share` percent.
    random_traces: Option<usize>,
    share: Option<f64>,
    delta: Option<f64>,
    /// An expected difference: what casefile decides instead, and why.
    casefile: Option<Vec<Decision>>,
    differs: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Decision {
    Sampled,
    NotSampled,
    InvertSampled,
    InvertNotSampled,
    Dropped,
    /// The Collector's decision when evaluating the policy failed (ottl_condition with
    /// `error_mode: propagate`). casefile has no separate error decision: the policy does not
    /// sample the trace (the error is counted and logged), which is what the Collector's
    /// processor makes of `Error` too; so `Error` expects casefile's `NotSampled`.
    Error,
}

/// Replaces `trace_size`, `trace_size * 2`, `trace_size / 2`, `trace_size - 1`, ... in the
/// policy YAML by the value over the encoded size of the case's trace, as the Go tests size
/// their limits from `ProtoMarshaler.TracesSize` (the same bytes: `TracesData` and
/// `ExportTraceServiceRequest` share their field numbers).
fn substitute(v: &mut Value, size: i64) {
    match v {
        Value::String(s) if s.starts_with("trace_size") => {
            let rest: String = s["trace_size".len()..].split_whitespace().collect();
            let n = |t: &str| t.parse::<i64>().expect("an integer after the operator");
            let out = match rest.chars().next() {
                None => size,
                Some('*') => size * n(&rest[1..]),
                Some('/') => size / n(&rest[1..]),
                Some('+') => size + n(&rest[1..]),
                Some('-') => size - n(&rest[1..]),
                Some(_) => panic!("cannot read {s:?}"),
            };
            *v = Value::Number(out.into());
        }
        Value::Sequence(items) => items.iter_mut().for_each(|i| substitute(i, size)),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, i)| substitute(i, size)),
        _ => {}
    }
}

/// A trace ready to decide: id, decoded spans, time since the previous one.
struct Ready {
    id: [u8; 16],
    spans: Vec<Span>,
    advance: Duration,
}

/// Builds the policies once and decides every trace in order; `true` = kept.
fn run(cfgs: &[PolicyCfg], first_match: bool, traces: &[Ready]) -> Vec<bool> {
    let policies = Policies::build(cfgs, first_match).expect("built before");
    let mut now = Instant::now();
    traces
        .iter()
        .map(|t| {
            now += t.advance;
            policies.evaluate(&t.id, &t.spans, now).sampled
        })
        .collect()
}

fn probe(yaml: &str) -> PolicyCfg {
    serde_yaml_ng::from_str(yaml).expect("probe yaml")
}

/// The single top-level policy's own decision for each trace, recovered through the
/// Collector's precedence (which casefile's top level follows):
/// - kept alone, and beside a plain "not sampled": `Sampled`; kept alone only: `InvertSampled`
///   (an inverted yes does not count once another policy says plain no);
/// - not kept alone, kept beside `always_sample`: `NotSampled`; not even then: a veto,
///   `Dropped` from a drop policy, `InvertNotSampled` otherwise.
fn decisions(cfg: &PolicyCfg, traces: &[Ready]) -> Vec<Decision> {
    let alone = run(std::slice::from_ref(cfg), false, traces);
    let no = probe("{ name: probe-no, type: string_attribute, string_attribute: { key: casefile.probe.absent, values: [x] } }");
    let yes = probe("{ name: probe-yes, type: always_sample }");
    let beside_no = run(&[cfg.clone(), no], false, traces);
    let beside_yes = run(&[cfg.clone(), yes], false, traces);
    (0..traces.len())
        .map(|i| match (alone[i], beside_no[i], beside_yes[i]) {
            (true, true, _) => Decision::Sampled,
            (true, false, _) => Decision::InvertSampled,
            (false, _, true) => Decision::NotSampled,
            (false, _, false) if cfg.kind == "drop" => Decision::Dropped,
            (false, _, false) => Decision::InvertNotSampled,
        })
        .collect()
}

#[derive(Debug, Default)]
struct Tally {
    replayed: usize,
    matching: usize,
    differences: usize,
    not_expressible: usize,
    failures: Vec<String>,
}

impl Tally {
    fn fail(&mut self, table: &str, case: &str, what: String) {
        self.failures.push(format!("{table}: {case}: {what}"));
    }
}

fn replay(table: &str, t: &Table, tally: &mut Tally) {
    assert!(!t.sources.is_empty(), "{table}: names its Go files");
    for s in &t.sources {
        assert!(
            s.commit.len() == 40,
            "{table}: {}: a full commit hash",
            s.file
        );
    }
    for ne in &t.not_expressible {
        assert!(!ne.why.is_empty(), "{table}: {}: a reason", ne.name);
        tally.not_expressible += 1;
    }
    for case in &t.cases {
        tally.replayed += 1;
        match replay_case(case) {
            Ok(Outcome::Matches) => tally.matching += 1,
            Ok(Outcome::Differs) => tally.differences += 1,
            Err(e) => tally.fail(table, &case.name, e),
        }
    }
}

enum Outcome {
    Matches,
    Differs,
}

fn replay_case(case: &Case) -> Result<Outcome, String> {
    let mut specs = case.traces.clone();
    specs.extend(case.trace.clone());
    let size = specs.first().map_or(0, |s| request(s).len() as i64);
    let mut yaml = case.policies.clone();
    substitute(&mut yaml, size);
    let cfgs: Vec<PolicyCfg> =
        serde_yaml_ng::from_value(yaml).map_err(|e| format!("policy YAML: {e}"))?;
    let built = Policies::build(&cfgs, case.sample_on_first_match);
    if let Some(want) = &case.refused {
        return match built {
            Ok(_) => Err(format!(
                "the Collector refuses this config ({want}); casefile ran it"
            )),
            Err(problems) if problems.iter().any(|p| p.message.contains(want.as_str())) => {
                Ok(Outcome::Matches)
            }
            Err(problems) => Err(format!("refused, but not saying {want:?}: {problems:?}")),
        };
    }
    let built =
        built.map_err(|p| format!("the Collector runs this config; casefile refuses: {p:?}"))?;
    match (&case.warns, built.warnings.is_empty()) {
        (Some(w), _)
            if !built
                .warnings
                .iter()
                .any(|p| p.message.contains(w.as_str())) =>
        {
            return Err(format!(
                "expected a warning saying {w:?}, got {:?}",
                built.warnings
            ));
        }
        (None, false) => return Err(format!("unexpected warnings {:?}", built.warnings)),
        _ => {}
    }
    if let Some(n) = case.random_traces {
        return share(case, &cfgs, n);
    }
    let traces: Vec<Ready> = specs
        .iter()
        .map(|s| Ready {
            id: trace_id(s),
            spans: decode(&request(s)),
            advance: Duration::from_millis(s.advance_ms),
        })
        .collect();
    let (got, want): (Vec<String>, Vec<String>) = match (&case.expect, &case.kept) {
        (Some(want), None) => {
            let [cfg] = cfgs.as_slice() else {
                return Err("`expect` takes exactly one policy (use `kept`)".into());
            };
            let got = decisions(cfg, &traces);
            let want: Vec<Decision> = want
                .iter()
                .map(|d| match d {
                    Decision::Error => Decision::NotSampled,
                    d => *d,
                })
                .collect();
            if let Some(cf) = &case.casefile {
                return differs(case, &fmt(&got), &fmt(cf), &fmt(&want));
            }
            (fmt(&got), fmt(&want))
        }
        (None, Some(want)) => {
            let got = run(&cfgs, case.sample_on_first_match, &traces);
            if let Some(cf) = &case.casefile {
                let cf: Vec<bool> = cf.iter().map(|d| *d == Decision::Sampled).collect();
                return differs(case, &fmt(&got), &fmt(&cf), &fmt(want));
            }
            (fmt(&got), fmt(want))
        }
        _ => return Err("give one of `expect` and `kept`".into()),
    };
    if got.len() != specs.len() || want.len() != specs.len() {
        return Err(format!(
            "{} traces, {} expected answers",
            specs.len(),
            want.len()
        ));
    }
    if got == want {
        Ok(Outcome::Matches)
    } else {
        Err(format!("the Collector decides {want:?}, casefile {got:?}"))
    }
}

fn fmt<T: std::fmt::Debug>(v: &[T]) -> Vec<String> {
    v.iter().map(|d| format!("{d:?}")).collect()
}

/// An expected difference: casefile answers what the table says it does, and that is not
/// what the Collector answers.
fn differs(case: &Case, got: &[String], cf: &[String], want: &[String]) -> Result<Outcome, String> {
    if case.differs.as_deref().unwrap_or("").is_empty() {
        return Err("`casefile:` needs a `differs:` reason".into());
    }
    if cf == want {
        return Err("`casefile:` equals the Collector's answer: not a difference".into());
    }
    if got != cf {
        return Err(format!(
            "expected difference changed: casefile now decides {got:?} (listed {cf:?}, the Collector {want:?})"
        ));
    }
    Ok(Outcome::Differs)
}

/// The probabilistic tables: the share of `n` random trace ids (one span each) kept, within
/// `delta` points of `share` percent. The Go test draws its ids from Go's `math/rand` seeded
/// with 1, for which its 0.2 points hold; these come from another seeded generator, so the
/// bound is widened to four standard deviations of the binomial share where that is larger
/// (0.6 points at 33 %; 0 % and 100 % stay exact). Hash and threshold are bit-exact with the
/// Collector (unit tests in `src/policy/hash.rs`); this checks the shares they give.
fn share(case: &Case, cfgs: &[PolicyCfg], n: usize) -> Result<Outcome, String> {
    let (Some(want), Some(delta)) = (case.share, case.delta) else {
        return Err("`random_traces` needs `share` and `delta`".into());
    };
    let mut rng = fastrand::Rng::with_seed(1);
    let spans = (0..n)
        .map(|_| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&rng.u64(..).to_be_bytes());
            id[8..].copy_from_slice(&rng.u64(..).to_be_bytes());
            opentelemetry_proto::tonic::trace::v1::Span {
                trace_id: id.to_vec(),
                span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
                attributes: kvs(&Mapping::from_iter([("example".into(), "value".into())])),
                ..Default::default()
            }
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let spans = decode(&req.encode_to_vec());
    let policies = Policies::build(cfgs, false).expect("built before");
    let now = Instant::now();
    let kept = spans
        .chunks(1)
        .filter(|s| policies.evaluate(&s[0].trace_id(), s, now).sampled)
        .count();
    let got = kept as f64 / n as f64 * 100.0;
    let p = want / 100.0;
    let bound = delta.max(400.0 * (p * (1.0 - p) / n as f64).sqrt());
    if (got - want).abs() <= bound {
        Ok(Outcome::Matches)
    } else {
        Err(format!(
            "kept {got:.3} % of {n} traces; the Collector keeps {want} % ± {bound:.3}"
        ))
    }
}

#[test]
fn the_collectors_policy_tables_decide_as_the_collector_does() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/collector_tables");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/collector_tables")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".yaml").map(str::to_owned))
        .collect();
    on_disk.sort();
    let mut listed = TABLES.map(str::to_owned).to_vec();
    listed.sort();
    assert_eq!(on_disk, listed, "every table file is listed in TABLES");
    let mut tally = Tally::default();
    for name in TABLES {
        let path = dir.join(format!("{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let table: Table =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let before = (tally.replayed, tally.matching, tally.differences);
        replay(name, &table, &mut tally);
        println!(
            "{name}: {} cases, {} matching, {} expected differences ({})",
            tally.replayed - before.0,
            tally.matching - before.1,
            tally.differences - before.2,
            table
                .sources
                .iter()
                .map(|s| format!("{} @ {}", s.file, &s.commit[..12]))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "total: {} replayed, {} matching, {} expected differences, {} not expressible as OTLP",
        tally.replayed, tally.matching, tally.differences, tally.not_expressible
    );
    assert!(
        tally.failures.is_empty(),
        "{} cases do not decide as expected:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
    assert_eq!(
        (
            tally.replayed,
            tally.matching,
            tally.differences,
            tally.not_expressible
        ),
        (REPLAYED, MATCHING, EXPECTED_DIFFERENCES, NOT_EXPRESSIBLE),
        "the counts changed: update them with the tables"
    );
}
