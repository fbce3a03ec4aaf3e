//! Sampling policies, compatible with the OpenTelemetry Collector's tail_sampling processor: builds `processors.tail_sampling.policies` and decides each trace the buffer hands over (drop first, then inverted vetoes, then any sample).

// Layout: `config` (YAML shape), `compile` + `leaf` (validation and building, every problem
// at once), `eval` (per-policy decisions), `limit` (token buckets, composite budgets), `hash`
// (probabilistic), `tracestate` (W3C header). This file combines the top-level decisions as
// the Collector's `processor.go` does.
mod compile;
mod config;
mod eval;
mod hash;
mod leaf;
mod limit;
pub mod otep235;
mod ottl;
mod tracestate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_adjusted;
#[cfg(test)]
mod tests_attributes;
#[cfg(test)]
mod tests_combine;
#[cfg(test)]
mod tests_validate;

use std::sync::{Arc, OnceLock};

use metrics::Counter;
use tokio::time::Instant;

use self::compile::{Compiler, Place};
pub use self::config::{
    AndCfg, BooleanAttributeCfg, BytesLimitingCfg, CompositeCfg, DropCfg, EmptyCfg, LatencyCfg,
    NotCfg, NumericAttributeCfg, PolicyCfg, ProbabilisticCfg, RateAllocationCfg, RateLimitingCfg,
    SpanCountCfg, StatusCodeCfg, StringAttributeCfg, TraceStateCfg,
};
use self::eval::{Decision, Eval, Trace};
use crate::config::Problem;
use crate::model::{Span, TraceId};

/// Counter of per-policy decisions, labelled `policy` and `sampled` (the Collector's
/// `otelcol_processor_tail_sampling_count_traces_sampled`).
const COUNT_TRACES_SAMPLED: &str = "casefile_processor_tail_sampling_count_traces_sampled";

/// The built policies. Shared by `Arc` between the threads that decide traces; stateful
/// policies (rate limits, composite budgets) lock only their own small state.
#[derive(Debug)]
pub struct Policies {
    /// Top-level policies in config order.
    policies: Vec<TopPolicy>,
    /// Evaluation order: drop policies first (their decision wins), then the rest, each group
    /// in config order.
    order: Vec<usize>,
    /// Stop at the first policy that samples (inverted samples do not stop).
    sample_on_first_match: bool,
    /// What `describe` prints, built once.
    lines: Vec<String>,
    /// Configs the Collector runs as written but that are probably mistakes (an empty
    /// value list, a percentage out of range): run the same way, and said (path, message).
    pub warnings: Vec<Problem>,
    /// What is written on kept traces.
    output: Output,
}

#[derive(Debug)]
struct TopPolicy {
    /// Also the metric label value and the reason recorded on kept traces.
    name: Arc<str>,
    eval: Eval,
    /// The OTEP 235 threshold of a trace this policy samples (`Eval::threshold`).
    threshold: u64,
    /// This policy's decision counters (`sampled` false, true), registered at its first
    /// evaluation, after the daemon installed its recorder, so that deciding a trace costs no
    /// metric lookup.
    counters: OnceLock<[Counter; 2]>,
}

impl TopPolicy {
    fn counter(&self, sampled: bool) -> &Counter {
        let pair = self.counters.get_or_init(|| {
            [false, true].map(|s| {
                let label = if s { "true" } else { "false" };
                metrics::counter!(COUNT_TRACES_SAMPLED, "policy" => Arc::clone(&self.name), "sampled" => label)
            })
        });
        &pair[usize::from(sampled)]
    }
}

/// The decision for one trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub sampled: bool,
    /// Names of the top-level policies that sampled the trace, in config order (empty when
    /// not sampled). A policy that sampled through `invert_match` is listed when its vote
    /// counted, i.e. when no policy answered a plain "not sampled".
    pub policies: Vec<Arc<str>>,
    /// The OTEP 235 threshold the trace was kept with: the lowest of the policies that
    /// sampled it (the likeliest way it would have been kept), 0 when any of them keeps
    /// it whatever its randomness (it stands for itself) or when not sampled.
    pub threshold: u64,
    /// The policy the Collector names in `tailsampling.policy`: the first that sampled
    /// (plain votes before inverted ones); with `use_tracestate`, the first whose
    /// threshold is the trace's.
    pub recorded: Option<Arc<str>>,
    /// The composite sub-policy that sampled the trace (`tailsampling.composite_policy`).
    pub composite: Option<Arc<str>>,
}

/// Where `tailsampling.*` attributes go, besides `casefile.policy` on the root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordPolicy {
    /// `casefile.policy` only.
    #[default]
    Casefile,
    /// Also the Collector's `recordpolicy` attributes, on the instrumentation scope of the
    /// kept spans as the Collector writes them.
    Collector,
}

/// What is written on kept traces besides their spans (`processors.tail_sampling`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Output {
    /// `use_tracestate`: consistent probabilistic decisions and `ot=th:` on the spans of
    /// traces kept by them.
    pub use_tracestate: bool,
    /// `adjusted_count_attribute`: `casefile.adjusted_count` on the root of kept traces.
    pub adjusted_count_attribute: bool,
    /// `record_policy_attributes`.
    pub record: RecordPolicy,
}

impl Policies {
    /// Validates and builds. On failure returns every problem, with paths relative to
    /// `processors.tail_sampling` (e.g. `policies[2].latency.threshold_ms`).
    pub fn build(
        cfgs: &[PolicyCfg],
        sample_on_first_match: bool,
    ) -> Result<Policies, Vec<Problem>> {
        let mut c = Compiler::default();
        let mut policies = Vec::with_capacity(cfgs.len());
        let mut lines = Vec::new();
        let mut drops = Vec::new();
        let mut others = Vec::new();
        for (i, cfg) in cfgs.iter().enumerate() {
            let path = format!("policies[{i}]");
            if cfg.name.is_empty() {
                c.problem(format!("{path}.name"), "policy name cannot be empty");
            } else if let Some(j) = cfgs[..i].iter().position(|p| p.name == cfg.name) {
                c.problem(
                    format!("{path}.name"),
                    format!("duplicate policy name {:?} (also policies[{j}])", cfg.name),
                );
            }
            let Some(built) = c.policy(cfg, &path, Place::Top) else {
                continue;
            };
            if cfg.kind == "drop" {
                drops.push(policies.len());
            } else {
                others.push(policies.len());
            }
            lines.extend(built.lines);
            let threshold = built.eval.threshold();
            policies.push(TopPolicy {
                name: cfg.name.as_str().into(),
                eval: built.eval,
                threshold,
                counters: OnceLock::new(),
            });
        }
        if !c.problems.is_empty() {
            return Err(c.problems);
        }
        drops.extend(others);
        Ok(Policies {
            policies,
            order: drops,
            sample_on_first_match,
            lines,
            warnings: c.warnings,
            output: Output::default(),
        })
    }

    /// The policies of `processors.tail_sampling`, with what is written on kept traces.
    pub fn for_config(ts: &crate::config::TailSamplingCfg) -> Result<Policies, Vec<Problem>> {
        Ok(Policies::build(&ts.policies, ts.sample_on_first_match)?.with_output(ts.output))
    }

    pub fn with_output(mut self, output: Output) -> Policies {
        self.output = output;
        self
    }

    pub fn output(&self) -> &Output {
        &self.output
    }

    /// Decides one trace from all its buffered spans (any order). `now` drives the token
    /// buckets and composite budgets.
    pub fn evaluate(&self, id: &TraceId, spans: &[Span], now: Instant) -> Verdict {
        let trace = Trace::new(id, spans, now, self.output.use_tracestate);
        let mut seen = Seen::default();
        // Indices of the policies that sampled, and whether by an inverted vote.
        let mut kept: Vec<(usize, bool)> = Vec::new();
        for &i in &self.order {
            let p = &self.policies[i];
            let decision = p.eval.evaluate(&trace);
            let sampled = matches!(decision, Decision::Sampled | Decision::InvertSampled);
            p.counter(sampled).increment(1);
            match decision {
                Decision::Dropped => {
                    seen.dropped = true;
                    break;
                }
                Decision::Sampled => {
                    seen.sampled = true;
                    kept.push((i, false));
                    if self.sample_on_first_match {
                        break;
                    }
                }
                Decision::InvertSampled => {
                    seen.invert_sampled = true;
                    kept.push((i, true));
                }
                Decision::NotSampled => seen.not_sampled = true,
                Decision::InvertNotSampled => seen.invert_not_sampled = true,
            }
        }
        let sampled = seen.final_decision();
        if !sampled {
            return Verdict::default();
        }
        if seen.not_sampled && seen.invert_sampled {
            // Inverted votes did not count.
            kept.retain(|&(_, inverted)| !inverted);
        }
        let threshold = kept
            .iter()
            .map(|&(i, _)| self.policies[i].threshold)
            .min()
            .unwrap_or(0);
        let wanted = if self.output.use_tracestate {
            threshold
        } else {
            0
        };
        let recorded = [false, true].iter().find_map(|&inverted| {
            kept.iter()
                .filter(|&&(_, inv)| inv == inverted)
                .find(|&&(i, _)| {
                    !self.output.use_tracestate || self.policies[i].threshold == wanted
                })
        });
        Verdict {
            sampled,
            policies: kept
                .iter()
                .map(|&(i, _)| Arc::clone(&self.policies[i].name))
                .collect(),
            threshold,
            recorded: recorded.map(|&(i, _)| Arc::clone(&self.policies[i].name)),
            composite: trace.composite_sub.take(),
        }
    }

    /// Top-level policy names in config order.
    pub fn names(&self) -> Vec<String> {
        self.policies.iter().map(|p| p.name.to_string()).collect()
    }

    /// One human line per policy (`errors: status_code in [ERROR]`), sub-policies indented
    /// below their parent, in config order.
    pub fn describe(&self) -> Vec<String> {
        self.lines.clone()
    }
}

/// Semantic checks of the policy list, the same problems `Policies::build` reports (for the
/// config loader to report them with its own).
pub fn validate(policies: &[PolicyCfg]) -> Vec<Problem> {
    Policies::build(policies, false).err().unwrap_or_default()
}

/// Which decisions the top-level policies gave one trace.
#[derive(Default)]
struct Seen {
    dropped: bool,
    invert_not_sampled: bool,
    sampled: bool,
    invert_sampled: bool,
    not_sampled: bool,
}

impl Seen {
    /// The Collector's precedence: dropped, then an inverted "not sampled", then any
    /// "sampled", then an inverted "sampled" if no policy said plain "not sampled".
    fn final_decision(&self) -> bool {
        if self.dropped || self.invert_not_sampled {
            false
        } else {
            self.sampled || (self.invert_sampled && !self.not_sampled)
        }
    }
}
