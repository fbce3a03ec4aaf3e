//! Turns policy configs into built policies in one pass that also collects every problem with its path: type and block checks, nesting rules, and the and/not/drop/composite combinators.

use std::collections::HashSet;
use std::sync::Arc;

use super::config::{CompositeCfg, PolicyCfg};
use super::eval::Eval;
use super::limit::Budget;
use crate::config::Problem;

/// Every policy type the Collector knows, with whether casefile supports it.
pub const LEAF_TYPES: [&str; 13] = [
    "always_sample",
    "latency",
    "numeric_attribute",
    "probabilistic",
    "status_code",
    "string_attribute",
    "rate_limiting",
    "bytes_limiting",
    "span_count",
    "trace_state",
    "trace_flags",
    "boolean_attribute",
    "ottl_condition",
];
const COMBINATOR_TYPES: [&str; 4] = ["and", "composite", "not", "drop"];

/// Where a policy sits, which decides the types allowed there (as in the Collector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Top,
    And,
    Not,
    Drop,
    Composite,
}

impl Place {
    fn label(self) -> &'static str {
        match self {
            Place::Top => "policies",
            Place::And => "and_sub_policy",
            Place::Not => "not_sub_policy",
            Place::Drop => "drop_sub_policy",
            Place::Composite => "composite_sub_policy",
        }
    }

    fn allows(self, kind: &str) -> bool {
        LEAF_TYPES.contains(&kind)
            || match self {
                Place::Top => COMBINATOR_TYPES.contains(&kind),
                Place::Composite => kind == "and",
                // As the newest Collector: `not` inside `and` and `drop`, nothing inside `not`.
                Place::And | Place::Drop => kind == "not",
                Place::Not => false,
            }
    }

    fn allowed_list(self) -> String {
        let mut all: Vec<&str> = LEAF_TYPES.to_vec();
        all.extend(COMBINATOR_TYPES.iter().filter(|k| self.allows(k)));
        all.join(", ")
    }
}

/// A built policy and its description: `lines[0]` describes it, later lines (already
/// indented) describe its sub-policies.
pub struct Built {
    pub eval: Eval,
    pub lines: Vec<String>,
}

impl Built {
    pub fn leaf(eval: Eval, line: String) -> Built {
        Built {
            eval,
            lines: vec![line],
        }
    }
}

/// Collects problems (refusals) and warnings (run as the Collector runs them) while building.
#[derive(Default)]
pub struct Compiler {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Compiler {
    pub fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    pub fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem::new(path, message));
    }

    /// Builds one policy at `path` (e.g. `policies[2]`), or returns `None` after recording why
    /// not. The description line is prefixed with the policy's name when it has one.
    pub fn policy(&mut self, cfg: &PolicyCfg, path: &str, place: Place) -> Option<Built> {
        let kind = cfg.kind.as_str();
        if !self.kind_ok(cfg, path, place) {
            return None;
        }
        let mut built = match kind {
            "and" => self.all_of(
                &cfg.and.as_ref()?.and_sub_policy,
                &format!("{path}.and.and_sub_policy"),
                Place::And,
            ),
            "drop" => self.all_of(
                &cfg.drop.as_ref()?.drop_sub_policy,
                &format!("{path}.drop.drop_sub_policy"),
                Place::Drop,
            ),
            "not" => self.not(cfg, path),
            "composite" => self.composite(cfg.composite.as_ref()?, &format!("{path}.composite")),
            _ => self.leaf(cfg, path),
        }?;
        if !cfg.name.is_empty() {
            built.lines[0] = format!("{}: {}", cfg.name, built.lines[0]);
        }
        Some(built)
    }

    /// Checks the type (known, supported, allowed here) and that exactly its block is present.
    fn kind_ok(&mut self, cfg: &PolicyCfg, path: &str, place: Place) -> bool {
        let kind = cfg.kind.as_str();
        if kind.is_empty() || !(LEAF_TYPES.contains(&kind) || COMBINATOR_TYPES.contains(&kind)) {
            let what = if kind.is_empty() {
                "a policy type is required".to_owned()
            } else {
                format!("unknown policy type {kind:?}")
            };
            self.problem(
                format!("{path}.type"),
                format!("{what}; supported: {}", place.allowed_list()),
            );
            return false;
        }
        if !place.allows(kind) {
            self.problem(
                format!("{path}.type"),
                format!(
                    "a {kind} policy cannot be used in {}; allowed there: {}",
                    place.label(),
                    place.allowed_list()
                ),
            );
            return false;
        }
        let mut ok = true;
        for (block, present) in blocks(cfg) {
            if present && block != kind {
                ok = false;
                self.problem(
                    format!("{path}.{block}"),
                    format!("a policy of type {kind} takes no {block} block (set type: {block}, or remove the block)"),
                );
            }
        }
        let needs_block = !matches!(kind, "always_sample" | "trace_flags");
        if needs_block
            && !blocks(cfg)
                .into_iter()
                .any(|(block, present)| present && block == kind)
        {
            ok = false;
            self.problem(
                format!("{path}.{kind}"),
                format!("a policy of type {kind} needs a {kind} block"),
            );
        }
        ok
    }

    /// `and` / `drop`: every sub-policy must sample.
    fn all_of(&mut self, subs: &[PolicyCfg], path: &str, place: Place) -> Option<Built> {
        if subs.is_empty() {
            self.problem(
                path,
                format!("{} needs at least one sub-policy", place.label()),
            );
            return None;
        }
        let built: Vec<Option<Built>> = subs
            .iter()
            .enumerate()
            .map(|(i, sub)| self.policy(sub, &format!("{path}[{i}]"), place))
            .collect();
        let built: Vec<Built> = built.into_iter().collect::<Option<_>>()?;
        let head = match place {
            Place::Drop => "drop (evaluated first; wins over every other policy) when all of:",
            _ => "and: all of:",
        };
        let (evals, lines) = nest(head, built);
        let eval = if place == Place::Drop {
            Eval::Drop(evals)
        } else {
            Eval::And(evals)
        };
        Some(Built { eval, lines })
    }

    fn not(&mut self, cfg: &PolicyCfg, path: &str) -> Option<Built> {
        let path = format!("{path}.not.not_sub_policy");
        let Some(sub) = cfg.not.as_ref()?.not_sub_policy.as_deref() else {
            self.problem(path, "not needs a not_sub_policy");
            return None;
        };
        let built = self.policy(sub, &path, Place::Not)?;
        let (mut evals, lines) = nest("not: the opposite of:", vec![built]);
        Some(Built {
            eval: Eval::Not(Box::new(evals.remove(0))),
            lines,
        })
    }

    fn composite(&mut self, c: &CompositeCfg, path: &str) -> Option<Built> {
        let start = self.problems.len();
        let total = c.max_total_spans_per_second;
        if total <= 0 {
            self.problem(
                format!("{path}.max_total_spans_per_second"),
                format!("must be greater than 0, got {total}"),
            );
        }
        if c.composite_sub_policy.is_empty() {
            self.problem(
                format!("{path}.composite_sub_policy"),
                "composite needs at least one sub-policy",
            );
        }
        let mut names: Vec<&str> = Vec::new();
        let mut built = Vec::new();
        for (i, sub) in c.composite_sub_policy.iter().enumerate() {
            let sub_path = format!("{path}.composite_sub_policy[{i}]");
            if sub.name.is_empty() {
                self.problem(format!("{sub_path}.name"), "a composite sub-policy needs a name (rate_allocation and policy_order refer to it)");
            } else if names.contains(&sub.name.as_str()) {
                self.problem(
                    format!("{sub_path}.name"),
                    format!("duplicate sub-policy name {:?}", sub.name),
                );
            }
            names.push(&sub.name);
            built.push(self.policy(sub, &sub_path, Place::Composite));
        }
        let order = self.composite_order(c, path, &names);
        let allocated = self.allocations(c, path, &names);
        if self.problems.len() > start {
            return None;
        }
        let mut slots: Vec<Option<Built>> = built;
        let mut ordered = Vec::with_capacity(order.len());
        let mut shares = Vec::with_capacity(order.len());
        let ordered_names = order.iter().map(|&i| Arc::from(names[i])).collect();
        for &i in &order {
            let mut b = slots[i].take()?;
            let share = match c.rate_allocation.iter().find(|r| r.policy == names[i]) {
                Some(r) if r.percent > 0 => format!("{}% = {} spans/s", r.percent, allocated[i]),
                Some(_) => format!("equal share = {} spans/s", allocated[i]),
                None => "no rate_allocation: never samples".to_owned(),
            };
            b.lines[0] = format!("{} [{share}]", b.lines[0]);
            shares.push(allocated[i]);
            ordered.push(b);
        }
        let head = format!("composite: first sub-policy that samples, within max {total} spans/s:");
        let (subs, lines) = nest(&head, ordered);
        Some(Built {
            eval: Eval::Composite {
                subs,
                budget: Budget::new(shares, total),
                names: ordered_names,
            },
            lines,
        })
    }

    /// Evaluation order: `policy_order` first, then sub-policies it leaves out, in config order.
    fn composite_order(&mut self, c: &CompositeCfg, path: &str, names: &[&str]) -> Vec<usize> {
        let mut order: Vec<usize> = Vec::new();
        for (k, name) in c.policy_order.iter().enumerate() {
            match names.iter().position(|n| n == name) {
                None => self.problem(
                    format!("{path}.policy_order[{k}]"),
                    format!("no composite_sub_policy is named {name:?}"),
                ),
                Some(i) if order.contains(&i) => self.problem(
                    format!("{path}.policy_order[{k}]"),
                    format!("{name:?} is listed twice"),
                ),
                Some(i) => order.push(i),
            }
        }
        order.extend(
            (0..names.len())
                .filter(|i| !order.contains(i))
                .collect::<Vec<_>>(),
        );
        order
    }

    /// Spans a second per sub-policy (config order), computed as the Collector does: `percent`
    /// of the total, an equal share for percent 0, nothing without an entry.
    fn allocations(&mut self, c: &CompositeCfg, path: &str, names: &[&str]) -> Vec<i64> {
        let mut allocated = vec![0i64; names.len()];
        let mut seen = HashSet::new();
        let mut sum = 0i64;
        let total = c.max_total_spans_per_second as f64;
        for (k, r) in c.rate_allocation.iter().enumerate() {
            let at = format!("{path}.rate_allocation[{k}]");
            if r.percent < 0 {
                self.problem(
                    format!("{at}.percent"),
                    format!("must not be negative, got {}", r.percent),
                );
            }
            sum = sum.saturating_add(r.percent.max(0));
            let Some(i) = names.iter().position(|n| *n == r.policy) else {
                self.problem(
                    format!("{at}.policy"),
                    format!("no composite_sub_policy is named {:?}", r.policy),
                );
                continue;
            };
            if !seen.insert(i) {
                self.problem(
                    format!("{at}.policy"),
                    format!("{:?} already has a rate_allocation", r.policy),
                );
            }
            allocated[i] = if r.percent > 0 {
                (r.percent as f64 / 100.0 * total) as i64
            } else {
                (total / names.len() as f64) as i64
            };
        }
        if sum > 100 {
            self.problem(
                format!("{path}.rate_allocation"),
                format!("percents add up to {sum}%, more than 100%"),
            );
        }
        allocated
    }
}

/// Joins sub-policies under a heading: their evaluators, and their lines indented.
fn nest(head: &str, subs: Vec<Built>) -> (Vec<Eval>, Vec<String>) {
    let mut lines = vec![head.to_owned()];
    let mut evals = Vec::with_capacity(subs.len());
    for b in subs {
        lines.extend(b.lines.into_iter().map(|l| format!("  {l}")));
        evals.push(b.eval);
    }
    (evals, lines)
}

/// Each policy-type block of a config and whether it is present.
fn blocks(cfg: &PolicyCfg) -> [(&'static str, bool); 17] {
    [
        ("always_sample", cfg.always_sample.is_some()),
        ("latency", cfg.latency.is_some()),
        ("numeric_attribute", cfg.numeric_attribute.is_some()),
        ("probabilistic", cfg.probabilistic.is_some()),
        ("status_code", cfg.status_code.is_some()),
        ("string_attribute", cfg.string_attribute.is_some()),
        ("rate_limiting", cfg.rate_limiting.is_some()),
        ("bytes_limiting", cfg.bytes_limiting.is_some()),
        ("span_count", cfg.span_count.is_some()),
        ("trace_state", cfg.trace_state.is_some()),
        ("trace_flags", cfg.trace_flags.is_some()),
        ("boolean_attribute", cfg.boolean_attribute.is_some()),
        ("ottl_condition", cfg.ottl_condition.is_some()),
        ("and", cfg.and.is_some()),
        ("composite", cfg.composite.is_some()),
        ("not", cfg.not.is_some()),
        ("drop", cfg.drop.is_some()),
    ]
}
