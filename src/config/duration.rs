//! Durations written as the Collector writes them: Go's `time.ParseDuration` syntax
//! (`300ms`, `10s`, `1m30s`, `1h`), plus plain integers meaning seconds.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GoDuration(pub Duration);

/// The longest duration Go, and so the Collector, can hold: `i64::MAX` nanoseconds (about
/// 292 years). A longer one is refused as Go refuses it, before it can overflow a deadline.
pub const MAX: Duration = Duration::from_nanos(i64::MAX as u64);

/// `d` (None: past even `Duration`'s range) if it is at most [`MAX`].
fn at_most_max(d: Option<Duration>, written: &str) -> Result<Duration, String> {
    d.filter(|d| *d <= MAX)
        .ok_or_else(|| format!("duration {written:?} is too long (at most 2562047h, as in Go)"))
}

impl GoDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Parses Go duration syntax: a sequence of decimal numbers with units ns, us, µs, ms, s, m, h.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?} (use ms, s, m or h)"))?;
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            u => {
                return Err(format!(
                    "unknown unit {u:?} in duration {s:?} (use ms, s, m or h)"
                ))
            }
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    at_most_max(Duration::try_from_secs_f64(total).ok(), s)
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 10s, 1m30s or 1h")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GoDuration, E> {
                parse(v).map(GoDuration).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<GoDuration, E> {
                at_most_max(Some(Duration::from_secs(v)), &v.to_string())
                    .map(GoDuration)
                    .map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<GoDuration, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
                self.visit_u64(v)
            }
        }
        d.deserialize_any(V)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax() {
        assert_eq!(parse("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse("10").is_err());
        assert!(parse("10x").is_err());
        assert!(parse("").is_err());
    }

    /// Found by fuzzing (`tests/fuzz-regressions/config/huge-duration.yaml`): a duration
    /// past `Duration`'s range panicked the loader; one past Go's could overflow a deadline.
    #[test]
    fn durations_longer_than_go_allows_are_errors() {
        assert_eq!(
            parse("2562047h").unwrap(),
            Duration::from_secs(2562047 * 3600)
        );
        let long = format!("{}s", "9".repeat(400));
        for s in ["2562048h", "30666666666666666666666666666666s", &long] {
            assert!(parse(s).unwrap_err().contains("too long"), "{s}");
        }
        let plain: Result<GoDuration, _> = serde_yaml_ng::from_str("18446744073709551615");
        assert!(plain.unwrap_err().to_string().contains("too long"));
    }
}
