//! The one reader of instants that support users type: lookups' and complaints' `start`/`end`
//! (API, CLI, console) and the complaint records on disk. RFC 3339 with `Z`, a numeric
//! offset (`2026-12-04T14:15:00+01:00`) or no zone (taken as UTC), `T` or a space between
//! date and time, any fraction of a second; or Unix epoch seconds or milliseconds (told apart
//! by size: below 10^11 is seconds, i.e. before the year 5138), with an optional fraction.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a refused instant is told: every accepted form, by example.
pub const FORMS: &str =
    "use RFC 3339 (2026-12-04T14:15:00Z or 2026-12-04T14:15:00+01:00) or Unix epoch seconds or milliseconds";

/// Parses an instant (see the module header) to Unix nanoseconds.
pub fn parse_nanos(s: &str) -> Option<u64> {
    let t = parse(s)?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(d.as_nanos()).ok()
}

/// Parses an instant (see the module header).
pub fn parse(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return epoch(s);
    }
    let b = s.as_bytes();
    let n = b.len();
    // A `+` typed into a URL's query arrives as a space.
    if n >= 25 && matches!(b[n - 6], b'+' | b'-' | b' ') && b[n - 3] == b':' {
        let hh: u64 = s[n - 5..n - 3].parse().ok()?;
        let mm: u64 = s[n - 2..].parse().ok()?;
        if hh > 23 || mm > 59 {
            return None;
        }
        let local = humantime::parse_rfc3339_weak(&s[..n - 6]).ok()?;
        let off = Duration::from_secs(hh * 3600 + mm * 60);
        // local = utc + offset, so utc = local - offset for '+'.
        return if b[n - 6] != b'-' {
            local.checked_sub(off)
        } else {
            local.checked_add(off)
        };
    }
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix('z'))
        .unwrap_or(s);
    humantime::parse_rfc3339_weak(s).ok()
}

/// Epoch seconds or milliseconds, by size, with an optional fraction.
fn epoch(s: &str) -> Option<SystemTime> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || frac.contains('.') {
        return None;
    }
    let n: u64 = whole.parse().ok()?;
    let frac: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().ok()?
    };
    let secs = if n < 100_000_000_000 {
        n as f64 + frac
    } else {
        (n as f64 + frac) / 1000.0
    };
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_the_same_instant() {
        let base = parse_nanos("2026-12-04T13:15:00Z").unwrap();
        for s in [
            "2026-12-04T13:15:00Z",
            "2026-12-04T13:15:00z",
            "2026-12-04T13:15:00.000Z",
            "2026-12-04T13:15:00",
            "2026-12-04 13:15:00Z",
            "2026-12-04T14:15:00+01:00",
            "2026-12-04T14:15:00 01:00",
            "2026-12-04T08:45:00-04:30",
            "2026-12-04T13:15:00+00:00",
            "1796390100",
            "1796390100000",
            " 1796390100.0 ",
        ] {
            assert_eq!(parse_nanos(s), Some(base), "{s}");
        }
        assert_eq!(
            parse_nanos("2026-12-04T14:15:00.250+01:00"),
            Some(base + 250_000_000)
        );
        assert_eq!(parse_nanos("1796390100.5"), Some(base + 500_000_000));
        assert_eq!(parse_nanos("1796390100500"), Some(base + 500_000_000));
    }

    #[test]
    fn garbage_is_refused() {
        for s in [
            "",
            "yesterday",
            "2026-12-04T14:15:00+25:00",
            "2026-12-04T14:15:00+01:60",
            "2026-13-04T14:15:00Z",
            "1.2.3",
            ".5",
            "2026-12-04T14:15:00 +01:00",
        ] {
            assert_eq!(parse_nanos(s), None, "{s}");
        }
    }
}
