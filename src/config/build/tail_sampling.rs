//! Part of the second config layer: `processors.tail_sampling`, its policies (each read on
//! its own) and what is written on the traces it keeps.

use serde_yaml_ng::Value;

use super::{join, raw, Reader};
use crate::config::TailSamplingCfg;
use crate::policy::{Output, PolicyCfg, RecordPolicy};

impl Reader {
    pub(super) fn tail_sampling(&mut self, value: Option<Value>) -> Option<TailSamplingCfg> {
        const P: &str = "processors.tail_sampling";
        let Some(value) = value else {
            self.problem(
                P,
                "missing: casefile needs processors.tail_sampling with at least one policy",
            );
            return None;
        };
        let t: raw::TailSampling = self.read(value, P)?;
        let mut policies = Vec::with_capacity(t.policies.len());
        let mut ok = true;
        for (i, v) in t.policies.into_iter().enumerate() {
            match self.read::<PolicyCfg>(v, &format!("{P}.policies[{i}]")) {
                Some(p) => policies.push(p),
                None => ok = false,
            }
        }
        if ok && policies.is_empty() {
            self.problem(
                format!("{P}.policies"),
                "no policies: every trace would be dropped (use `type: always_sample` to keep all)",
            );
        }
        if ok {
            match crate::policy::Policies::build(&policies, t.sample_on_first_match) {
                Ok(built) => {
                    for w in built.warnings {
                        self.warning(join(P, &w.path), w.message);
                    }
                }
                Err(problems) => {
                    for p in problems {
                        self.problem(join(P, &p.path), p.message);
                    }
                }
            }
        }
        if t.decision_wait.0.is_zero() {
            self.problem(format!("{P}.decision_wait"), "must be more than 0");
        }
        if t.num_traces == 0 {
            self.problem(format!("{P}.num_traces"), "must be at least 1");
        }
        if t.max_buffer_bytes.is_some_and(|b| b.0 < 1 << 20) {
            self.problem(format!("{P}.max_buffer_bytes"), "must be at least 1MiB");
        }
        if !(1..=1024).contains(&t.num_shards) {
            self.problem(format!("{P}.num_shards"), "must be between 1 and 1024");
        }
        // The Collector's feature gates (`--feature-gates`) turn these on as the keys do.
        let gates = crate::config::gates::current();
        let use_tracestate = t.use_tracestate || gates.use_tracestate;
        if t.adjusted_count_attribute && !use_tracestate {
            self.problem(
                format!("{P}.adjusted_count_attribute"),
                "needs `use_tracestate: true` or --feature-gates=processor.tailsamplingprocessor.usetracestate (adjusted counts come from the thresholds it writes)",
            );
        }
        if use_tracestate {
            for path in salted(&policies, &format!("{P}.policies")) {
                self.warning(
                    path,
                    "has no effect with use_tracestate: probabilistic decisions use the trace's randomness (ot=rv, else the trace id)",
                );
            }
            if t.sample_on_first_match {
                self.warning(
                    format!("{P}.sample_on_first_match"),
                    "with use_tracestate, a later policy that would keep the trace with a lower threshold is not evaluated: the threshold written can be higher than the trace's (its adjusted count too high)",
                );
            }
        }
        let output = Output {
            use_tracestate,
            adjusted_count_attribute: t.adjusted_count_attribute,
            record: match t.record_policy_attributes {
                _ if gates.record_policy => RecordPolicy::Collector,
                raw::RecordPolicyAttributes::Casefile => RecordPolicy::Casefile,
                raw::RecordPolicyAttributes::Collector => RecordPolicy::Collector,
            },
        };
        Some(TailSamplingCfg {
            decision_wait: t.decision_wait.0,
            decision_wait_after_root_received: t
                .decision_wait_after_root_received
                .map(|d| d.0)
                .filter(|d| !d.is_zero()),
            num_traces: t.num_traces as usize,
            expected_new_traces_per_sec: t.expected_new_traces_per_sec as usize,
            sampled_cache_size: t.decision_cache.sampled_cache_size as usize,
            non_sampled_cache_size: t.decision_cache.non_sampled_cache_size as usize,
            sample_on_first_match: t.sample_on_first_match,
            drop_pending_traces_on_shutdown: t.drop_pending_traces_on_shutdown,
            maximum_trace_size_bytes: Some(t.maximum_trace_size_bytes.0 as usize)
                .filter(|n| *n > 0),
            max_buffer_bytes: t.max_buffer_bytes.map(|b| b.0 as usize),
            num_shards: t.num_shards,
            policies,
            output,
        })
    }
}

/// Paths of the `hash_salt`s set on probabilistic policies, at any depth.
fn salted(policies: &[PolicyCfg], at: &str) -> Vec<String> {
    let salt = |p: &PolicyCfg| {
        p.probabilistic
            .as_ref()
            .is_some_and(|c| !c.hash_salt.is_empty())
    };
    let mut out = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        let path = format!("{at}[{i}]");
        if salt(p) {
            out.push(format!("{path}.probabilistic.hash_salt"));
        }
        let subs: [(&str, &[PolicyCfg]); 3] = [
            (
                "and.and_sub_policy",
                p.and.as_ref().map_or(&[], |c| &c.and_sub_policy),
            ),
            (
                "drop.drop_sub_policy",
                p.drop.as_ref().map_or(&[], |c| &c.drop_sub_policy),
            ),
            (
                "composite.composite_sub_policy",
                p.composite
                    .as_ref()
                    .map_or(&[], |c| &c.composite_sub_policy),
            ),
        ];
        for (key, list) in subs {
            out.extend(salted(list, &format!("{path}.{key}")));
        }
        // Nothing nests inside `not`.
        if p.not
            .as_ref()
            .and_then(|c| c.not_sub_policy.as_deref())
            .is_some_and(salt)
        {
            out.push(format!("{path}.not.not_sub_policy.probabilistic.hash_salt"));
        }
    }
    out
}
