//! OTEP 235 sampling thresholds in the W3C tracestate (`ot=th:…;rv:…`), as OpenTelemetry's specification and the Collector's `pkg/sampling` encode them: what a kept trace's spans carry so a backend can count how many traces each one stands for.
//!
//! A threshold `T` is a 56-bit rejection threshold: a trace is kept when its randomness
//! `R` (the `rv` value, else the low 56 bits of the trace id) is `>= T`, so the sampling
//! probability is `(2^56 - T) / 2^56` and the adjusted count its inverse. `T = 0` keeps
//! everything (`th:0`); `T = 2^56` keeps nothing (never written).

use super::tracestate;

/// 2^56: the number of randomness values.
pub const MAX_ADJUSTED_COUNT: u64 = 1 << 56;

/// The threshold that keeps nothing (not encodable: nothing is ever kept with it).
pub const NEVER: u64 = MAX_ADJUSTED_COUNT;

/// The randomness values are the low 56 bits.
const RANDOMNESS_MASK: u64 = MAX_ADJUSTED_COUNT - 1;

/// The longest `ot` value the specification allows.
const MAX_OT_LEN: usize = 256;

/// The threshold of `percentage` % (the Collector's `ProbabilityToThreshold` at full
/// precision): `2^56 - round(p × 2^56)`. At or above 100 % everything is kept; below the
/// smallest probability (2^-56), zero and NaN, nothing.
pub fn threshold_of(percentage: f64) -> u64 {
    let p = percentage / 100.0;
    if p >= 1.0 {
        return 0;
    }
    if p.is_nan() || p < 1.0 / MAX_ADJUSTED_COUNT as f64 {
        return NEVER;
    }
    // p × 2^56 is exact in f64; `round` is half away from zero, as Go's `math.Round`.
    MAX_ADJUSTED_COUNT - (p * MAX_ADJUSTED_COUNT as f64).round() as u64
}

/// The `th` value of a threshold below [`NEVER`]: 14 hex digits with the trailing zeros
/// removed, `0` for keep-all.
pub fn encode(threshold: u64) -> String {
    debug_assert!(threshold < NEVER);
    if threshold == 0 {
        return "0".to_owned();
    }
    let digits = format!("{threshold:014x}");
    digits.trim_end_matches('0').to_owned()
}

/// The number of traces a trace kept with `threshold` stands for (`1 / probability`).
pub fn adjusted_count(threshold: u64) -> f64 {
    if threshold >= NEVER {
        return 0.0;
    }
    let probability = (MAX_ADJUSTED_COUNT - threshold) as f64 / MAX_ADJUSTED_COUNT as f64;
    1.0 / probability
}

/// The randomness a trace id carries (W3C random trace ids: the low 56 bits).
pub fn trace_id_randomness(id: &[u8; 16]) -> u64 {
    u64::from_be_bytes(id[8..16].try_into().expect("8 bytes")) & RANDOMNESS_MASK
}

/// A tracestate header that is not valid W3C, or whose `ot` member is not valid OTel
/// syntax or carries an unreadable `th`/`rv`: left as it is (and counted by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The OTel sampling values of one header.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OtValues {
    pub threshold: Option<u64>,
    pub randomness: Option<u64>,
}

/// Reads `th` and `rv` from the header `ts`.
pub fn read(ts: &str) -> Result<OtValues, Malformed> {
    if ts.is_empty() {
        return Ok(OtValues::default());
    }
    let members = tracestate::members(ts).ok_or(Malformed)?;
    match members.iter().find(|(k, _)| *k == "ot") {
        Some((_, ot)) => parse_ot(ot).map(|(v, _)| v),
        None => Ok(OtValues::default()),
    }
}

/// The header `ts` with `threshold` as its `th`, unless it already has a higher one (a
/// threshold is never lowered: that would claim a higher probability than the trace had).
/// Returns the new header (`None` when unchanged) and the threshold the span now carries.
/// The `ot` member goes first, as W3C asks of a modified member; `rv` and the other `ot`
/// fields and members are kept.
pub fn stamp(ts: &str, threshold: u64) -> Result<(Option<String>, u64), Malformed> {
    let members = if ts.is_empty() {
        Vec::new()
    } else {
        tracestate::members(ts).ok_or(Malformed)?
    };
    let (values, extra) = match members.iter().find(|(k, _)| *k == "ot") {
        Some((_, ot)) => parse_ot(ot)?,
        None => (OtValues::default(), Vec::new()),
    };
    if let Some(existing) = values.threshold {
        if existing >= threshold {
            return Ok((None, existing));
        }
    }
    let mut ot = String::new();
    if let Some(rv) = values.randomness {
        ot.push_str(&format!("rv:{rv:014x};"));
    }
    ot.push_str("th:");
    ot.push_str(&encode(threshold));
    for (k, v) in extra {
        ot.push_str(&format!(";{k}:{v}"));
    }
    let mut out = format!("ot={ot}");
    for (k, v) in members.iter().filter(|(k, _)| *k != "ot") {
        out.push_str(&format!(",{k}={v}"));
    }
    Ok((Some(out), threshold))
}

/// The `ot` fields other than `th` and `rv`, in order.
type Fields<'a> = Vec<(&'a str, &'a str)>;

/// An `ot` value: `key:value` pairs separated by `;`, keys `[a-z][a-z0-9]*`, values
/// `[a-zA-Z0-9._-]*`, at most 256 bytes; `th` is 1–14 hex digits, `rv` exactly 14. Returns
/// the sampling values and the other fields in order.
fn parse_ot(ot: &str) -> Result<(OtValues, Fields<'_>), Malformed> {
    if ot.len() > MAX_OT_LEN {
        return Err(Malformed);
    }
    let mut values = OtValues::default();
    let mut extra = Vec::new();
    for field in ot.split(';') {
        let (k, v) = field.split_once(':').ok_or(Malformed)?;
        let key_ok = k.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && k.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let value_ok = v
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if !key_ok || !value_ok {
            return Err(Malformed);
        }
        match k {
            "th" => values.threshold = Some(parse_hex(v, 1..=14).ok_or(Malformed)?),
            "rv" => values.randomness = Some(parse_hex(v, 14..=14).ok_or(Malformed)?),
            _ => extra.push((k, v)),
        }
    }
    Ok((values, extra))
}

/// Hex digits (either case) of a length in `lens`, as the 56-bit value they are the leading
/// digits of (trailing zeros are omitted in `th`).
fn parse_hex(v: &str, lens: std::ops::RangeInclusive<usize>) -> Option<u64> {
    if !lens.contains(&v.len()) || !v.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let n = u64::from_str_radix(v, 16).ok()?;
    Some(n << (4 * (14 - v.len())))
}

#[cfg(test)]
mod tests;
