//! One built policy evaluated against one trace, giving the Collector's per-policy decision (sampled, not sampled, inverted, dropped).

use std::cell::{Cell, OnceCell};
use std::collections::HashSet;
use std::sync::Arc;

use regex::RegexSet;
use tokio::time::Instant;

use super::hash;
use super::limit::{Budget, TokenBucket};
use super::{otep235, tracestate};
use crate::model::{Span, StatusCode, TraceId};
use crate::wire::AnyValueRef;

/// A policy's answer for one trace, as in the Collector's `samplingpolicy.Decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Sampled,
    NotSampled,
    /// `invert_match` found no matching value: sample unless another policy said plain no.
    InvertSampled,
    /// `invert_match` found a matching value: not sampled, whatever the others say.
    InvertNotSampled,
    /// A drop policy matched: not sampled, whatever the others say.
    Dropped,
}

impl Decision {
    fn sampled_if(yes: bool) -> Decision {
        if yes {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }

    /// The attribute policies' answer when `matched` (some resource or span has a matching value).
    fn attribute(matched: bool, invert: bool) -> Decision {
        match (invert, matched) {
            (false, m) => Decision::sampled_if(m),
            (true, true) => Decision::InvertNotSampled,
            (true, false) => Decision::InvertSampled,
        }
    }
}

/// The trace being decided.
pub struct Trace<'a> {
    pub id: &'a TraceId,
    pub spans: &'a [Span],
    pub now: Instant,
    /// Probabilistic decisions compare the trace's OTEP 235 randomness with the policy's
    /// threshold (`use_tracestate`) instead of hashing the trace id with the salt.
    pub consistent: bool,
    /// The randomness, read once: the first valid `ot=rv` of any span, else the trace id.
    pub randomness: OnceCell<u64>,
    /// The composite sub-policy that last sampled the trace (`tailsampling.composite_policy`).
    pub composite_sub: Cell<Option<Arc<str>>>,
}

impl<'a> Trace<'a> {
    pub fn new(id: &'a TraceId, spans: &'a [Span], now: Instant, consistent: bool) -> Self {
        Trace {
            id,
            spans,
            now,
            consistent,
            randomness: OnceCell::new(),
            composite_sub: Cell::new(None),
        }
    }

    fn randomness(&self) -> u64 {
        *self.randomness.get_or_init(|| {
            self.spans
                .iter()
                .find_map(|s| otep235::read(s.trace_state()).ok()?.randomness)
                .unwrap_or_else(|| otep235::trace_id_randomness(self.id))
        })
    }
}

/// A validated, ready-to-run policy. Stateful variants (buckets, budgets) lock internally,
/// so a shared `&Eval` may be evaluated from several threads.
#[derive(Debug)]
pub enum Eval {
    Always,
    /// Duration in whole milliseconds `>= lower`, or in `(lower, upper]` when `upper > 0`.
    Latency {
        lower_ms: i64,
        upper_ms: i64,
    },
    Numeric {
        key: Box<str>,
        min: i64,
        max: i64,
        invert: bool,
    },
    Probabilistic {
        salt: Box<[u8]>,
        threshold: u64,
        /// The OTEP 235 threshold of the same percentage: what a kept trace's spans carry,
        /// and what the randomness is compared with when decisions are consistent.
        otel: u64,
    },
    /// Indexed by `StatusCode as usize`.
    Status {
        codes: [bool; 3],
    },
    String {
        key: Box<str>,
        matcher: Matcher,
        invert: bool,
    },
    /// Charges the trace's span count.
    Rate(TokenBucket),
    /// Charges the trace's OTLP size ([`otlp_size`]).
    Bytes(TokenBucket),
    /// `max == 0` means no upper bound.
    SpanCount {
        min: i64,
        max: i64,
    },
    TraceState {
        key: Box<str>,
        values: Vec<Box<str>>,
    },
    TraceFlags,
    Bool {
        key: Box<str>,
        value: bool,
        invert: bool,
    },
    /// `ottl_condition`: OTTL conditions on spans and span events.
    Ottl(Box<super::ottl::OttlPolicy>),
    And(Vec<Eval>),
    Not(Box<Eval>),
    Drop(Vec<Eval>),
    /// Sub-policies in evaluation order; budget slot `i` belongs to `subs[i]`, and so does
    /// `names[i]`.
    Composite {
        subs: Vec<Eval>,
        budget: Budget,
        names: Vec<Arc<str>>,
    },
}

/// How string_attribute compares values.
#[derive(Debug)]
pub enum Matcher {
    /// Exact match against the non-empty configured values.
    Exact(HashSet<Box<str>>),
    /// Unanchored search: any of the regexes matches somewhere in the value.
    Regex(RegexSet),
}

impl Matcher {
    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Exact(set) => set.contains(s),
            Matcher::Regex(set) => set.is_match(s),
        }
    }
}

impl Eval {
    pub fn evaluate(&self, t: &Trace<'_>) -> Decision {
        let spans = t.spans;
        match self {
            Eval::Always => Decision::Sampled,
            Eval::Latency { lower_ms, upper_ms } => {
                Decision::sampled_if(duration_ms(spans).is_some_and(|d| {
                    if *upper_ms == 0 {
                        d >= *lower_ms
                    } else {
                        *lower_ms < d && d <= *upper_ms
                    }
                }))
            }
            Eval::Numeric {
                key,
                min,
                max,
                invert,
            } => {
                let in_range =
                    |v: AnyValueRef<'_>| v.as_i64().is_some_and(|i| *min <= i && i <= *max);
                Decision::attribute(any_attribute(spans, key, in_range, in_range), *invert)
            }
            Eval::Probabilistic {
                salt,
                threshold,
                otel,
            } => Decision::sampled_if(if t.consistent {
                t.randomness() >= *otel
            } else {
                hash::trace_hash(salt, t.id) <= *threshold
            }),
            Eval::Status { codes } => {
                Decision::sampled_if(spans.iter().any(|s| codes[s.status as usize]))
            }
            Eval::String {
                key,
                matcher,
                invert,
            } => {
                // As in the Collector: a resource value is read as a string ("" when it is not
                // one); a span value must be a non-empty string.
                let on_resource = |v: AnyValueRef<'_>| matcher.matches(v.as_str().unwrap_or(""));
                let on_span = |v: AnyValueRef<'_>| {
                    v.as_str()
                        .is_some_and(|s| !s.is_empty() && matcher.matches(s))
                };
                Decision::attribute(any_attribute(spans, key, on_resource, on_span), *invert)
            }
            Eval::Rate(bucket) => Decision::sampled_if(bucket.allow(t.now, spans.len() as u64)),
            Eval::Bytes(bucket) => Decision::sampled_if(bucket.allow(t.now, otlp_size(spans))),
            Eval::SpanCount { min, max } => {
                let n = spans.len() as i64;
                Decision::sampled_if(n >= *min && (*max == 0 || n <= *max))
            }
            Eval::TraceState { key, values } => Decision::sampled_if(spans.iter().any(|s| {
                tracestate::get(s.trace_state(), key)
                    .is_some_and(|v| values.iter().any(|want| **want == *v))
            })),
            Eval::TraceFlags => Decision::sampled_if(spans.iter().any(|s| s.flags & 0x01 != 0)),
            Eval::Bool { key, value, invert } => {
                let equal = |v: AnyValueRef<'_>| v.as_bool() == Some(*value);
                Decision::attribute(any_attribute(spans, key, equal, equal), *invert)
            }
            Eval::Ottl(p) => p.evaluate(spans),
            Eval::And(subs) => {
                if subs.iter().any(|p| says_no(p.evaluate(t))) {
                    Decision::NotSampled
                } else {
                    Decision::Sampled
                }
            }
            Eval::Drop(subs) => {
                if subs.iter().any(|p| says_no(p.evaluate(t))) {
                    Decision::NotSampled
                } else {
                    Decision::Dropped
                }
            }
            // Only plain decisions are swapped; inverted ones pass through, as in the Collector.
            Eval::Not(sub) => match sub.evaluate(t) {
                Decision::Sampled => Decision::NotSampled,
                Decision::NotSampled => Decision::Sampled,
                other => other,
            },
            Eval::Composite {
                subs,
                budget,
                names,
            } => {
                for (i, sub) in subs.iter().enumerate() {
                    if matches!(sub.evaluate(t), Decision::Sampled | Decision::InvertSampled) {
                        let within = budget.take(i, spans.len() as i64, t.now);
                        if within {
                            t.composite_sub.set(Some(Arc::clone(&names[i])));
                        }
                        return Decision::sampled_if(within);
                    }
                }
                Decision::NotSampled
            }
        }
    }

    /// The OTEP 235 threshold a trace this policy sampled was kept with: a probabilistic
    /// policy's, the highest of an `and`'s parts (all of them sampled, with one
    /// randomness), 0 for every other policy (the trace stands for itself; a composite's
    /// rate budget and a `not` keep shares no threshold describes).
    pub fn threshold(&self) -> u64 {
        match self {
            Eval::Probabilistic { otel, .. } => *otel,
            Eval::And(subs) => subs.iter().map(Eval::threshold).max().unwrap_or(0),
            _ => 0,
        }
    }
}

/// The sub-policy answers that make `and` and `drop` fail (stopping evaluation there).
fn says_no(d: Decision) -> bool {
    matches!(d, Decision::NotSampled | Decision::InvertNotSampled)
}

/// Whole milliseconds from the earliest start to the latest end (truncated toward zero like
/// Go's `Duration.Milliseconds`), or `None` for no spans.
fn duration_ms(spans: &[Span]) -> Option<i64> {
    let start = spans.iter().map(|s| s.start_unix_nano).min()?;
    let end = spans.iter().map(|s| s.end_unix_nano).max()?;
    let ms = (i128::from(end) - i128::from(start)) / 1_000_000;
    Some(ms.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// Whether the first `key` attribute of any span's resource satisfies `on_resource`, or the
/// first `key` attribute of any span satisfies `on_span` (the Collector's
/// `hasResourceOrSpanWithCondition`; `Map.Get` returns the first of duplicate keys). Each
/// resource block is looked at once per run of spans sharing it.
fn any_attribute(
    spans: &[Span],
    key: &str,
    on_resource: impl Fn(AnyValueRef<'_>) -> bool,
    on_span: impl Fn(AnyValueRef<'_>) -> bool,
) -> bool {
    let key = key.as_bytes();
    let mut last_resource = None;
    for span in spans {
        if last_resource != Some(span.resource().id) {
            last_resource = Some(span.resource().id);
            if let Some(v) = span.resource().resource_attributes().get(key) {
                if on_resource(v) {
                    return true;
                }
            }
        }
        if let Some(v) = span.attributes().get(key) {
            if on_span(v) {
                return true;
            }
        }
    }
    false
}

/// The trace's size as the Collector's bytes_limiting counts it: the protobuf size of its
/// received batches (`ProtoMarshaler.TracesSize`), i.e. one `ResourceSpans` per run of spans
/// from one received resource block and one `ScopeSpans` per run from one scope block, with
/// their resource and scope messages (always present, as pdata encodes them) and schema URLs.
pub fn otlp_size(spans: &[Span]) -> u64 {
    /// A length-delimited field of `len` bytes: tag, length, bytes.
    fn field(len: u64) -> u64 {
        1 + crate::wire::varint_len(len) as u64 + len
    }
    fn schema(url: &[u8]) -> u64 {
        if url.is_empty() {
            0
        } else {
            field(url.len() as u64)
        }
    }
    let mut total = 0;
    for by_resource in spans.chunk_by(|a, b| a.resource().id == b.resource().id) {
        let resource = by_resource[0].resource();
        let mut rs = field(resource.message.len() as u64) + schema(&resource.schema_url);
        for by_scope in by_resource.chunk_by(|a, b| a.scope().id == b.scope().id) {
            let scope = by_scope[0].scope();
            let mut ss = field(scope.message.len() as u64) + schema(&scope.schema_url);
            ss += by_scope
                .iter()
                .map(|s| field(s.bytes.len() as u64))
                .sum::<u64>();
            rs += field(ss);
        }
        total += field(rs);
    }
    total
}

/// Index of a status code in [`Eval::Status`].
pub fn status_index(code: StatusCode) -> usize {
    code as usize
}
