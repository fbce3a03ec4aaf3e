//! Times as the CLI prints them: UTC (the API's RFC 3339 with `Z`), or with `--local` the
//! local time zone with its numeric offset. The local zone is the system's as `jiff` reads
//! it: `$TZ` (a zoneinfo name or path, or a POSIX rule such as `CET-1CEST,M3.5.0,M10.5.0/3`),
//! else `/etc/localtime`. No zone found means UTC.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// `t` (RFC 3339, as the API writes it) in UTC, or in the local zone with its offset.
/// Anything unparsable is shown as given.
pub fn show(t: &str, local: bool) -> String {
    if !local {
        return t.to_owned();
    }
    match crate::support::time::parse_nanos(t) {
        Some(ns) => local_rfc3339(ns),
        None => t.to_owned(),
    }
}

/// Unix nanoseconds as RFC 3339 with milliseconds, UTC (`Z`) or local (`+01:00`).
pub fn format(unix_nano: u64, local: bool) -> String {
    if local {
        local_rfc3339(unix_nano)
    } else {
        crate::support::index::rfc3339(unix_nano)
    }
}

/// What `format` shows, for headers: `UTC` or `local, UTC+01:00`.
pub fn label(local: bool) -> String {
    if local {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        format!("local time, UTC{}", offset_text(local_offset(now)))
    } else {
        "UTC".to_owned()
    }
}

fn local_rfc3339(unix_nano: u64) -> String {
    let secs = (unix_nano / 1_000_000_000) as i64;
    let off = local_offset(secs);
    let shifted = if off >= 0 {
        unix_nano.saturating_add(off as u64 * 1_000_000_000)
    } else {
        unix_nano.saturating_sub(off.unsigned_abs() * 1_000_000_000)
    };
    let utc =
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(shifted)).to_string();
    format!("{}{}", utc.trim_end_matches('Z'), offset_text(off))
}

fn offset_text(off: i64) -> String {
    let sign = if off < 0 { '-' } else { '+' };
    let a = off.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
}

/// Seconds east of UTC of the local zone at `unix` seconds.
pub fn local_offset(unix: i64) -> i64 {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    let zone = ZONE.get_or_init(|| TimeZone::try_system().unwrap_or(TimeZone::UTC));
    offset_in(zone, unix)
}

fn offset_in(zone: &TimeZone, unix: i64) -> i64 {
    Timestamp::from_second(unix)
        .map(|t| i64::from(zone.to_offset(t).seconds()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        (crate::support::time::parse_nanos(s).unwrap() / 1_000_000_000) as i64
    }

    #[test]
    fn posix_rules_in_both_hemispheres() {
        let paris = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(offset_in(&paris, at("2026-01-15T12:00:00Z")), 3600);
        assert_eq!(offset_in(&paris, at("2026-07-15T12:00:00Z")), 7200);
        let sydney = TimeZone::posix("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(offset_in(&sydney, at("2026-01-15T12:00:00Z")), 11 * 3600);
        assert_eq!(offset_in(&sydney, at("2026-07-15T12:00:00Z")), 10 * 3600);
        let india = TimeZone::posix("<+0530>-5:30").unwrap();
        assert_eq!(
            offset_in(&india, at("2026-07-15T12:00:00Z")),
            5 * 3600 + 1800
        );
    }

    #[test]
    fn offsets_are_written_as_rfc3339_wants() {
        assert_eq!(offset_text(3600), "+01:00");
        assert_eq!(offset_text(-(4 * 3600 + 1800)), "-04:30");
        assert_eq!(offset_text(0), "+00:00");
    }
}
