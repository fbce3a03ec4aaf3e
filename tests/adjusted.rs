//! Adjusted counts end to end (OTEP 235): a real OTLP client sends traces with and without
//! `ot=rv`/head `ot=th` to the daemon with `use_tracestate`, and a real OTLP receiver
//! checks each kept span's threshold, the root's `casefile.adjusted_count` and the
//! Collector's `tailsampling.*` scope attributes. Every expected value is computed here
//! from the sampling percentages with the specification's formula, not by casefile.

mod common;

use std::collections::HashMap;

use casefile::fixture::{self, Gen, Shape, Trace};
use common::*;
use opentelemetry_proto::tonic::common::v1::{any_value, InstrumentationScope};
use opentelemetry_proto::tonic::trace::v1::Span;

/// 2^56: the randomness values of OTEP 235.
const M: u64 = 1 << 56;

/// The rejection threshold of a percentage: `T = 2^56 - round(p × 2^56)`.
fn t_of(pct: f64) -> u64 {
    M - (pct / 100.0 * M as f64).round() as u64
}

/// `th` as the specification encodes it: 14 hex digits, trailing zeros removed.
fn th_text(t: u64) -> String {
    let s = format!("{t:014x}");
    let s = s.trim_end_matches('0');
    if s.is_empty() {
        "0".into()
    } else {
        s.into()
    }
}

/// The `th` of a header, as a 56-bit threshold.
fn th_in(ts: &str) -> Option<u64> {
    let ot = ts.split(',').find_map(|m| m.trim().strip_prefix("ot="))?;
    let th = ot.split(';').find_map(|f| f.strip_prefix("th:"))?;
    Some(u64::from_str_radix(th, 16).ok()? << (4 * (14 - th.len())))
}

fn rv_in(ts: &str) -> Option<&str> {
    let ot = ts.split(',').find_map(|m| m.trim().strip_prefix("ot="))?;
    ot.split(';').find_map(|f| f.strip_prefix("rv:"))
}

const POLICIES: &[(&str, f64)] = &[("ten", 10.0), ("half", 50.0)];

fn config_text(downstream: std::net::SocketAddr) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: 200ms
    use_tracestate: true
    adjusted_count_attribute: true
    record_policy_attributes: collector
    policies:
      - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}
      - {{ name: ten, type: probabilistic, probabilistic: {{ sampling_percentage: 10 }} }}
      - {{ name: half, type: probabilistic, probabilistic: {{ sampling_percentage: 50 }} }}
exporters:
  otlp:
    endpoint: "{downstream}"
    tls: {{ insecure: true }}
support:
  api: {{ endpoint: "127.0.0.1:0" }}
"#
    )
}

/// One trace sent: its tracestate (the same on every span) and whether it has an error.
struct Sent {
    trace: Trace,
    state: String,
    error: bool,
}

impl Sent {
    /// The randomness: `rv` when the header has one, else the trace id's low 56 bits.
    fn randomness(&self) -> u64 {
        match rv_in(&self.state) {
            Some(rv) => u64::from_str_radix(rv, 16).unwrap(),
            None => u64::from_be_bytes(self.trace.trace_id[8..].try_into().unwrap()) & (M - 1),
        }
    }

    /// The lowest threshold among the policies that keep it (0: kept whatever the
    /// randomness), `None` when dropped.
    fn expected_threshold(&self) -> Option<u64> {
        if self.error {
            return Some(0);
        }
        POLICIES
            .iter()
            .map(|(_, pct)| t_of(*pct))
            .filter(|t| self.randomness() >= *t)
            .min()
    }

    fn expected_policy(&self) -> &'static str {
        if self.error {
            return "errors";
        }
        let t = self.expected_threshold().unwrap();
        POLICIES.iter().find(|(_, p)| t_of(*p) == t).unwrap().0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_spans_carry_thresholds_computed_from_the_percentages() {
    let (down, addr) = Downstream::start().await;
    let config = casefile::config::load_str(&config_text(addr), "adjusted.yaml").unwrap();
    let daemon = start(config).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(235);
    let mut sent = Vec::new();
    // rv across the whole range, so every policy keeps some and drops some.
    for i in 0..24u64 {
        let rv = i * (M / 24) + 0x1234;
        sent.push((Shape::default(), format!("vendor=a,ot=rv:{rv:014x}")));
    }
    // No sampling values: the trace id is the randomness.
    for _ in 0..24 {
        sent.push((Shape::default(), String::new()));
    }
    // Head-sampled at 25 % (th:c): our 50 % threshold must not lower it.
    sent.push((Shape::default(), "ot=th:c;rv:d0000000000000".into()));
    // Head-sampled at 75 % (th:4) and kept by both policies: raised to 50 %.
    sent.push((Shape::default(), "ot=th:4;rv:f0000000000000".into()));
    // Kept by `errors`: no threshold of ours, whatever the header holds.
    sent.push((Shape::ERROR, "ot=rv:00000000000001".into()));
    sent.push((Shape::ERROR, "ot=th:zz".into()));
    let sent: Vec<Sent> = sent
        .into_iter()
        .map(|(shape, state)| {
            let mut trace = g.trace(shape, 3);
            for (_, s) in &mut trace.spans {
                s.trace_state = state.clone();
            }
            Sent {
                trace,
                state,
                error: shape.error,
            }
        })
        .collect();
    let traces: Vec<Trace> = sent.iter().map(|s| s.trace.clone()).collect();
    client.export(fixture::request_for(&traces)).await.unwrap();

    let kept: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.expected_threshold().is_some())
        .collect();
    assert!(kept.len() > 10 && kept.len() < sent.len(), "{}", kept.len());
    down.wait_for("every kept trace", |d| {
        let got = d.spans_by_trace();
        kept.iter()
            .all(|s| got.get(&hex::encode(s.trace.trace_id)).map(Vec::len) == Some(3))
    })
    .await;
    until_all_decided(&daemon).await;
    daemon.shutdown().await;

    let got = down.spans_by_trace();
    assert_eq!(got.len(), kept.len(), "only the expected traces are kept");
    let scope_policy = scope_policies(&down);
    for s in &kept {
        let id = hex::encode(s.trace.trace_id);
        let spans = &got[&id];
        let ours = s.expected_threshold().unwrap();
        let head = th_in(&s.state);
        for span in spans {
            if ours == 0 || head.is_some_and(|h| h >= ours) {
                assert_eq!(span.trace_state, s.state, "{id}: left as sent");
                continue;
            }
            assert_eq!(
                th_in(&span.trace_state),
                Some(ours),
                "{id}: {}",
                span.trace_state
            );
            assert!(
                span.trace_state.contains(&format!("th:{}", th_text(ours))),
                "{}",
                span.trace_state
            );
            assert_eq!(rv_in(&span.trace_state), rv_in(&s.state), "rv kept");
            assert_eq!(
                s.state.contains("vendor=a"),
                span.trace_state.contains("vendor=a"),
                "other members kept"
            );
        }
        let effective = head.unwrap_or(0).max(ours);
        let want = M as f64 / (M - effective) as f64;
        let got_count = root_double(spans, "casefile.adjusted_count").unwrap();
        assert!(
            (got_count - want).abs() < 1e-9 * want,
            "{id}: {got_count} vs {want}"
        );
        assert_eq!(
            scope_policy[&id],
            s.expected_policy(),
            "{id}: tailsampling.policy"
        );
    }
}

/// The `tailsampling.policy` scope attribute each trace's spans arrived with (all spans
/// of a trace must agree).
fn scope_policies(down: &Downstream) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for req in down.requests.lock().iter() {
        for ss in req.resource_spans.iter().flat_map(|r| &r.scope_spans) {
            let policy = scope_string(&ss.scope, "tailsampling.policy")
                .expect("every kept span's scope names the policy");
            for span in &ss.spans {
                let prev = out.insert(hex::encode(&span.trace_id), policy.clone());
                assert!(prev.is_none_or(|p| p == policy));
            }
        }
    }
    out
}

fn root_double(spans: &[Span], key: &str) -> Option<f64> {
    let root = spans.iter().find(|s| s.parent_span_id.is_empty())?;
    root.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::DoubleValue(d) => Some(*d),
            _ => None,
        }
    })
}

fn scope_attr(scope: &Option<InstrumentationScope>, key: &str) -> Option<any_value::Value> {
    scope
        .as_ref()?
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .clone()
}

/// (span name, its tracestate, its scope) of every span of `trace_id` received.
fn received(
    down: &Downstream,
    trace_id: &[u8],
) -> Vec<(String, String, Option<InstrumentationScope>)> {
    let mut out = Vec::new();
    for req in down.requests.lock().iter() {
        for ss in req.resource_spans.iter().flat_map(|r| &r.scope_spans) {
            for s in ss.spans.iter().filter(|s| s.trace_id == trace_id) {
                out.push((s.name.clone(), s.trace_state.clone(), ss.scope.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_spans_and_composites_carry_what_the_collector_records() {
    let (down, addr) = Downstream::start().await;
    let text = config_text(addr).replace(
        "      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }\n",
        "      - name: mix\n        type: composite\n        composite:\n          max_total_spans_per_second: 1000\n          composite_sub_policy: [ { name: errors-sub, type: status_code, status_code: { status_codes: [ERROR] } } ]\n          rate_allocation: [ { policy: errors-sub, percent: 100 } ]\n",
    );
    let config = casefile::config::load_str(&text, "adjusted.yaml").unwrap();
    let daemon = start(config).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(236);
    let mut coin = g.trace(Shape::default(), 4);
    let mut error = g.trace(Shape::ERROR, 3);
    // Above both thresholds: kept by `ten` and `half`, `half`'s threshold counts.
    for (_, s) in &mut coin.spans {
        s.trace_state = "ot=rv:fa000000000000".into();
    }
    // Below both: only the composite keeps it.
    for (_, s) in &mut error.spans {
        s.trace_state = "ot=rv:00000000000010".into();
    }
    let (late, early) = coin.spans.split_at(1);
    client
        .export(fixture::request(early.iter().chain(&error.spans)))
        .await
        .unwrap();
    down.wait_for("both traces", |d| {
        let got = d.spans_by_trace();
        got.get(&hex::encode(coin.trace_id)).map(Vec::len) == Some(3)
            && got.get(&hex::encode(error.trace_id)).map(Vec::len) == Some(3)
    })
    .await;
    client.export(fixture::request(late.iter())).await.unwrap();
    down.wait_for("the late span", |d| {
        d.spans_by_trace()
            .get(&hex::encode(coin.trace_id))
            .map(Vec::len)
            == Some(4)
    })
    .await;
    daemon.shutdown().await;

    let half = format!("ot=rv:fa000000000000;th:{}", th_text(t_of(50.0)));
    for (name, state, scope) in received(&down, &coin.trace_id) {
        assert_eq!(state, half, "{name}");
        let cached = scope_attr(&scope, "tailsampling.cached_decision");
        if name == late[0].1.name {
            assert_eq!(cached, Some(any_value::Value::BoolValue(true)));
            assert_eq!(scope_attr(&scope, "tailsampling.policy"), None);
        } else {
            assert_eq!(cached, None);
            assert_eq!(
                scope_attr(&scope, "tailsampling.policy"),
                Some(any_value::Value::StringValue("half".into()))
            );
        }
    }
    for (name, state, scope) in received(&down, &error.trace_id) {
        assert_eq!(
            state, "ot=rv:00000000000010",
            "{name}: no threshold of ours"
        );
        assert_eq!(
            scope_attr(&scope, "tailsampling.policy"),
            Some(any_value::Value::StringValue("mix".into()))
        );
        assert_eq!(
            scope_attr(&scope, "tailsampling.composite_policy"),
            Some(any_value::Value::StringValue("errors-sub".into()))
        );
    }
}
