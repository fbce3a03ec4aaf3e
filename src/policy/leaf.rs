//! Builds and checks the basic policy types (everything but and/not/drop/composite), with the Collector's defaults and a one-line description of each.

use std::collections::HashSet;

use regex::{Regex, RegexSet};

use super::compile::{Built, Compiler};
use super::config::{NumericAttributeCfg, PolicyCfg, StringAttributeCfg};
use super::eval::{status_index, Eval, Matcher};
use super::hash;
use super::limit::TokenBucket;
use crate::model::StatusCode;

impl Compiler {
    /// Builds a basic policy whose type and block were already checked by `kind_ok`.
    pub(super) fn leaf(&mut self, cfg: &PolicyCfg, path: &str) -> Option<Built> {
        let start = self.problems.len();
        let built = match cfg.kind.as_str() {
            "always_sample" => Built::leaf(Eval::Always, "always_sample".into()),
            "trace_flags" => Built::leaf(
                Eval::TraceFlags,
                "trace_flags: any span has the sampled flag".into(),
            ),
            "latency" => {
                let c = cfg.latency.as_ref()?;
                let (lower, upper) = (c.threshold_ms, c.upper_threshold_ms);
                let at = format!("{path}.latency");
                if lower < 0 {
                    self.problem(
                        format!("{at}.threshold_ms"),
                        format!("must not be negative, got {lower}"),
                    );
                }
                if upper < 0 {
                    self.problem(
                        format!("{at}.upper_threshold_ms"),
                        format!("must not be negative, got {upper}"),
                    );
                } else if upper > 0 && upper <= lower {
                    self.problem(
                        format!("{at}.upper_threshold_ms"),
                        format!("must be greater than threshold_ms ({lower}), or 0 for no upper bound; got {upper}"),
                    );
                }
                let line = if upper == 0 {
                    format!("latency >= {lower}ms (no upper bound)")
                } else {
                    format!("latency in ({lower}ms, {upper}ms]")
                };
                Built::leaf(
                    Eval::Latency {
                        lower_ms: lower,
                        upper_ms: upper,
                    },
                    line,
                )
            }
            "numeric_attribute" => self.numeric(
                cfg.numeric_attribute.as_ref()?,
                &format!("{path}.numeric_attribute"),
            ),
            "probabilistic" => {
                let c = cfg.probabilistic.as_ref()?;
                let mut pct = c.sampling_percentage;
                let mut clamped_from = String::new();
                if pct.is_nan() {
                    self.problem(
                        format!("{path}.probabilistic.sampling_percentage"),
                        "must be a number between 0 and 100",
                    );
                } else if !(0.0..=100.0).contains(&pct) {
                    // The Collector clamps: below 0 keeps nothing, above 100 everything.
                    let clamped = pct.clamp(0.0, 100.0);
                    self.warning(
                        format!("{path}.probabilistic.sampling_percentage"),
                        format!("{pct} is outside 0-100: sampling {clamped} % of traces, as the Collector does (probably a mistake)"),
                    );
                    clamped_from =
                        format!("sampling_percentage {pct} clamped, as the Collector does; ");
                    pct = clamped;
                }
                let (salt, salt_note) = if c.hash_salt.is_empty() {
                    (hash::DEFAULT_SALT, "default ")
                } else {
                    (c.hash_salt.as_str(), "")
                };
                let eval = Eval::Probabilistic {
                    salt: salt.as_bytes().into(),
                    threshold: hash::threshold(pct),
                    otel: super::otep235::threshold_of(pct),
                };
                Built::leaf(
                    eval,
                    format!("probabilistic {pct}% of trace ids ({clamped_from}hash_salt: {salt_note}{salt:?})"),
                )
            }
            "status_code" => {
                let c = cfg.status_code.as_ref()?;
                let at = format!("{path}.status_code.status_codes");
                if c.status_codes.is_empty() {
                    self.problem(&at, "expected at least one status code (OK, ERROR, UNSET)");
                }
                let mut codes = [false; 3];
                for (i, name) in c.status_codes.iter().enumerate() {
                    let code = match name.as_str() {
                        "OK" => StatusCode::Ok,
                        "ERROR" => StatusCode::Error,
                        "UNSET" => StatusCode::Unset,
                        _ => {
                            self.problem(
                                format!("{at}[{i}]"),
                                format!(
                                    "unknown status code {name:?}; supported: OK, ERROR, UNSET"
                                ),
                            );
                            continue;
                        }
                    };
                    codes[status_index(code)] = true;
                }
                Built::leaf(
                    Eval::Status { codes },
                    format!("status_code in [{}]", c.status_codes.join(", ")),
                )
            }
            "string_attribute" => self.string(
                cfg.string_attribute.as_ref()?,
                &format!("{path}.string_attribute"),
            )?,
            "rate_limiting" => {
                let c = cfg.rate_limiting.as_ref()?;
                let bucket = self.bucket(
                    c.spans_per_second,
                    c.burst_capacity,
                    &format!("{path}.rate_limiting"),
                    "spans_per_second",
                );
                let line = format!(
                    "rate_limiting {} spans/s (burst {} spans{})",
                    bucket.rate(),
                    bucket.burst(),
                    default_burst(c.burst_capacity)
                );
                Built::leaf(Eval::Rate(bucket), line)
            }
            "bytes_limiting" => {
                let c = cfg.bytes_limiting.as_ref()?;
                let bucket = self.bucket(
                    c.bytes_per_second,
                    c.burst_capacity,
                    &format!("{path}.bytes_limiting"),
                    "bytes_per_second",
                );
                let line = format!(
                    "bytes_limiting {} bytes/s (burst {} bytes{}; a trace costs its OTLP size)",
                    bucket.rate(),
                    bucket.burst(),
                    default_burst(c.burst_capacity)
                );
                Built::leaf(Eval::Bytes(bucket), line)
            }
            "span_count" => {
                let c = cfg.span_count.as_ref()?;
                let at = format!("{path}.span_count");
                let (min, max) = (c.min_spans, c.max_spans);
                for (field, v) in [("min_spans", min), ("max_spans", max)] {
                    if !(0..=i64::from(i32::MAX)).contains(&v) {
                        self.problem(
                            format!("{at}.{field}"),
                            format!("must be between 0 and {}, got {v}", i32::MAX),
                        );
                    }
                }
                if max > 0 && min > max {
                    self.problem(
                        format!("{at}.min_spans"),
                        format!("min_spans {min} is greater than max_spans {max}"),
                    );
                }
                let line = if max == 0 {
                    format!("span_count >= {min} (no upper bound)")
                } else {
                    format!("span_count in [{min}, {max}]")
                };
                Built::leaf(Eval::SpanCount { min, max }, line)
            }
            "trace_state" => {
                let c = cfg.trace_state.as_ref()?;
                let at = format!("{path}.trace_state");
                if c.key.is_empty() {
                    self.problem(format!("{at}.key"), "key is required");
                }
                if c.values.is_empty() {
                    self.warning(
                        format!("{at}.values"),
                        "no values: this policy never samples a trace, as in the Collector (probably a mistake)",
                    );
                }
                for (i, v) in c.values.iter().enumerate() {
                    if v.is_empty() || c.key.len() + v.len() >= 256 {
                        self.warning(format!("{at}.values[{i}]"), "can never match: a tracestate value is non-empty and key=value is under 257 characters (run as written, as the Collector does)");
                    }
                }
                let values = c.values.iter().map(|v| v.as_str().into()).collect();
                let never = if c.values.is_empty() {
                    " (no values: never samples)"
                } else {
                    ""
                };
                let line = format!("trace_state {} in [{}]{never}", c.key, c.values.join(", "));
                Built::leaf(
                    Eval::TraceState {
                        key: c.key.as_str().into(),
                        values,
                    },
                    line,
                )
            }
            "boolean_attribute" => {
                let c = cfg.boolean_attribute.as_ref()?;
                if c.key.is_empty() {
                    self.problem(format!("{path}.boolean_attribute.key"), "key is required");
                }
                let op = if c.invert_match { "!=" } else { "==" };
                let line = format!(
                    "boolean_attribute {} {op} {}{}",
                    c.key,
                    c.value,
                    invert_note(c.invert_match)
                );
                Built::leaf(
                    Eval::Bool {
                        key: c.key.as_str().into(),
                        value: c.value,
                        invert: c.invert_match,
                    },
                    line,
                )
            }
            "ottl_condition" => {
                let c = cfg.ottl_condition.as_ref()?;
                match super::ottl::build(c, &cfg.name) {
                    Ok(p) => {
                        let lines = p.describe(c);
                        Built {
                            eval: Eval::Ottl(Box::new(p)),
                            lines,
                        }
                    }
                    Err(problems) => {
                        for (at, message) in problems {
                            let sep = if at.is_empty() { "" } else { "." };
                            self.problem(format!("{path}.ottl_condition{sep}{at}"), message);
                        }
                        return None;
                    }
                }
            }
            _ => return None,
        };
        (self.problems.len() == start).then_some(built)
    }

    fn numeric(&mut self, c: &NumericAttributeCfg, at: &str) -> Built {
        if c.key.is_empty() {
            self.problem(format!("{at}.key"), "key is required");
        }
        // The Collector passes a bound on only when it is non-zero.
        let min = c.min_value.filter(|v| *v != 0);
        let max = c.max_value.filter(|v| *v != 0);
        match (min, max) {
            (None, None) => self.problem(
                at,
                "set min_value or max_value (a bound of 0 counts as unset, as in the Collector)",
            ),
            (Some(lo), Some(hi)) if lo > hi => self.problem(
                format!("{at}.min_value"),
                format!("min_value {lo} is greater than max_value {hi}"),
            ),
            _ => {}
        }
        let show = |v: Option<i64>, inf: &str| v.map_or(inf.to_owned(), |v| v.to_string());
        let op = if c.invert_match { "not in" } else { "in" };
        let zeros: Vec<&str> = [("min_value", c.min_value), ("max_value", c.max_value)]
            .into_iter()
            .filter(|(_, v)| *v == Some(0))
            .map(|(field, _)| field)
            .collect();
        let zero_note = if zeros.is_empty() {
            String::new()
        } else {
            format!(" ({} 0 = no bound, as in the Collector)", zeros.join(", "))
        };
        let line = format!(
            "numeric_attribute {} {op} [{}, {}]{zero_note}{}",
            c.key,
            show(min, "-inf"),
            show(max, "+inf"),
            invert_note(c.invert_match)
        );
        let eval = Eval::Numeric {
            key: c.key.as_str().into(),
            min: min.unwrap_or(i64::MIN),
            max: max.unwrap_or(i64::MAX),
            invert: c.invert_match,
        };
        Built::leaf(eval, line)
    }

    fn string(&mut self, c: &StringAttributeCfg, at: &str) -> Option<Built> {
        if c.key.is_empty() {
            self.problem(format!("{at}.key"), "key is required");
        }
        if c.values.is_empty() {
            let what = if c.invert_match {
                "with invert_match it samples every trace"
            } else {
                "it never samples a trace"
            };
            self.warning(
                format!("{at}.values"),
                format!("no values: {what}, as in the Collector (probably a mistake)"),
            );
        }
        let matcher = if c.enabled_regex_matching {
            let mut ok = true;
            for (i, v) in c.values.iter().enumerate() {
                if let Err(e) = Regex::new(v) {
                    ok = false;
                    self.problem(
                        format!("{at}.values[{i}]"),
                        format!("invalid regex {v:?}: {e}"),
                    );
                }
            }
            if !ok {
                return None;
            }
            match RegexSet::new(&c.values) {
                Ok(set) => Matcher::Regex(set),
                Err(e) => {
                    self.problem(format!("{at}.values"), format!("invalid regex set: {e}"));
                    return None;
                }
            }
        } else {
            let set: HashSet<Box<str>> = c
                .values
                .iter()
                .filter(|v| !v.is_empty())
                .map(|v| v.as_str().into())
                .collect();
            if set.is_empty() && !c.values.is_empty() {
                self.problem(
                    format!("{at}.values"),
                    "every value is empty, and an empty value never matches",
                );
            }
            Matcher::Exact(set)
        };
        let op = match (c.enabled_regex_matching, c.invert_match) {
            (false, false) => "in",
            (false, true) => "not in",
            (true, false) => "matches any of",
            (true, true) => "matches none of",
        };
        let mut notes = vec![if c.enabled_regex_matching {
            "regex, unanchored"
        } else {
            "exact"
        }];
        if c.values.is_empty() {
            notes.push(if c.invert_match {
                "no values: samples every trace"
            } else {
                "no values: never samples"
            });
        }
        let cache = format!(
            "cache_max_size {} unused: no cache needed",
            c.cache_max_size
        );
        if c.cache_max_size != 0 {
            notes.push(&cache);
        }
        if c.invert_match {
            notes.push("invert_match: a match vetoes sampling");
        }
        let line = format!(
            "string_attribute {} {op} [{}] ({})",
            c.key,
            c.values.join(", "),
            notes.join("; ")
        );
        Some(Built::leaf(
            Eval::String {
                key: c.key.as_str().into(),
                matcher,
                invert: c.invert_match,
            },
            line,
        ))
    }

    /// A token bucket of `rate` a second holding `burst` (0 = twice the rate, as in the Collector).
    fn bucket(&mut self, rate: i64, burst: i64, at: &str, rate_field: &str) -> TokenBucket {
        if rate <= 0 {
            self.problem(
                format!("{at}.{rate_field}"),
                format!("must be greater than 0, got {rate}"),
            );
        }
        if burst < 0 {
            self.problem(
                format!("{at}.burst_capacity"),
                format!("must not be negative (0 means twice the rate), got {burst}"),
            );
        }
        let rate = rate.max(0) as u64;
        let burst = if burst > 0 {
            burst as u64
        } else {
            rate.saturating_mul(2)
        };
        TokenBucket::new(rate, burst)
    }
}

/// `, default: twice the rate` when `burst_capacity` was left at 0.
fn default_burst(configured: i64) -> &'static str {
    if configured == 0 {
        ": default, twice the rate"
    } else {
        ""
    }
}

fn invert_note(invert: bool) -> &'static str {
    if invert {
        " (invert_match: a match vetoes sampling)"
    } else {
        ""
    }
}
