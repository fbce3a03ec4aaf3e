//! The YAML shape of `processors.tail_sampling.policies`: the Collector's field names, one optional block per policy type.

use serde::Deserialize;

/// One entry of `processors.tail_sampling.policies` (and of every sub-policy list), with the
/// Collector's field names. Exactly the block named by `type` must be present (except for
/// `always_sample` and `trace_flags`, which have no settings); [`super::validate`] says so otherwise.
/// `name` and `type` default to empty so that a missing one is reported with the other problems.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyCfg {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub always_sample: Option<EmptyCfg>,
    pub latency: Option<LatencyCfg>,
    pub numeric_attribute: Option<NumericAttributeCfg>,
    pub probabilistic: Option<ProbabilisticCfg>,
    pub status_code: Option<StatusCodeCfg>,
    pub string_attribute: Option<StringAttributeCfg>,
    pub rate_limiting: Option<RateLimitingCfg>,
    pub bytes_limiting: Option<BytesLimitingCfg>,
    pub span_count: Option<SpanCountCfg>,
    pub trace_state: Option<TraceStateCfg>,
    pub trace_flags: Option<EmptyCfg>,
    pub boolean_attribute: Option<BooleanAttributeCfg>,
    pub ottl_condition: Option<super::ottl::OttlConditionCfg>,
    pub and: Option<AndCfg>,
    pub composite: Option<CompositeCfg>,
    pub not: Option<NotCfg>,
    pub drop: Option<DropCfg>,
}

/// The settings-less block of `always_sample` and `trace_flags` (`always_sample: {}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyCfg {}

/// `latency`: trace duration (earliest start to latest end) at least `threshold_ms`, or in
/// `(threshold_ms, upper_threshold_ms]` when the upper bound is non-zero.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyCfg {
    pub threshold_ms: i64,
    pub upper_threshold_ms: i64,
}

/// `numeric_attribute`: an integer attribute in `[min_value, max_value]`. As in the Collector,
/// a bound that is absent or 0 is unbounded.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumericAttributeCfg {
    pub key: String,
    pub min_value: Option<i64>,
    pub max_value: Option<i64>,
    pub invert_match: bool,
}

/// `probabilistic`: a share of trace ids, by FNV-1a hash of salt and trace id.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticCfg {
    /// Empty means the Collector's default salt `default-hash-seed`.
    pub hash_salt: String,
    pub sampling_percentage: f64,
}

/// `status_code`: any span with one of these status codes (`OK`, `ERROR`, `UNSET`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusCodeCfg {
    pub status_codes: Vec<String>,
}

/// `string_attribute`: a string attribute equal to (or, with regex matching, containing a
/// match of) one of `values`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StringAttributeCfg {
    pub key: String,
    pub values: Vec<String>,
    pub enabled_regex_matching: bool,
    /// Accepted for compatibility; casefile's regex set needs no result cache.
    pub cache_max_size: i64,
    pub invert_match: bool,
}

/// `rate_limiting`: a token bucket of spans; `burst_capacity` 0 means twice the rate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitingCfg {
    pub spans_per_second: i64,
    pub burst_capacity: i64,
}

/// `bytes_limiting`: a token bucket of bytes; `burst_capacity` 0 means twice the rate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BytesLimitingCfg {
    pub bytes_per_second: i64,
    pub burst_capacity: i64,
}

/// `span_count`: at least `min_spans` and, when `max_spans` is non-zero, at most `max_spans`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanCountCfg {
    pub min_spans: i64,
    pub max_spans: i64,
}

/// `trace_state`: a span whose W3C tracestate has `key` set to one of `values`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceStateCfg {
    pub key: String,
    pub values: Vec<String>,
}

/// `boolean_attribute`: a boolean attribute equal to `value`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BooleanAttributeCfg {
    pub key: String,
    pub value: bool,
    pub invert_match: bool,
}

/// `and`: sampled only if every sub-policy samples.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AndCfg {
    pub and_sub_policy: Vec<PolicyCfg>,
}

/// `not`: the opposite of its one sub-policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotCfg {
    pub not_sub_policy: Option<Box<PolicyCfg>>,
}

/// `drop`: drops the trace, whatever the other policies say, when every sub-policy samples.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropCfg {
    pub drop_sub_policy: Vec<PolicyCfg>,
}

/// `composite`: the first sub-policy that samples decides, within its share of a per-second
/// span budget.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompositeCfg {
    pub max_total_spans_per_second: i64,
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<PolicyCfg>,
    pub rate_allocation: Vec<RateAllocationCfg>,
}

/// One share of a composite budget: `percent` of `max_total_spans_per_second` for `policy`
/// (0 means an equal share of the sub-policies).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateAllocationCfg {
    pub policy: String,
    pub percent: i64,
}
