//! Times as the CLI prints them: UTC (the API's RFC 3339 with `Z`), or with `--local` the
//! local time zone with its numeric offset. The local zone is `$TZ` (a zoneinfo name or
//! path, `:`-prefixed or not, or a POSIX rule such as `CET-1CEST,M3.5.0,M10.5.0/3`), else
//! `/etc/localtime`: a TZif file, its transitions and, past the last, its POSIX rule. No
//! zone found means UTC.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    static ZONE: OnceLock<Option<Zone>> = OnceLock::new();
    ZONE.get_or_init(|| Zone::local(std::env::var("TZ").ok().as_deref()))
        .as_ref()
        .map_or(0, |z| z.offset_at(unix))
}

/// A time zone: TZif transitions, then a POSIX rule.
#[derive(Debug, Default)]
struct Zone {
    /// (transition instant, offset from it on), ascending.
    transitions: Vec<(i64, i64)>,
    /// The offset before the first transition.
    initial: i64,
    rule: Option<Rule>,
}

impl Zone {
    fn local(tz: Option<&str>) -> Option<Zone> {
        let tz = tz.map(|t| t.strip_prefix(':').unwrap_or(t));
        match tz {
            None => Zone::tzif(&std::fs::read("/etc/localtime").ok()?),
            Some("") => Some(Zone::default()),
            Some(name) => {
                let path = if name.starts_with('/') {
                    std::path::PathBuf::from(name)
                } else {
                    std::path::Path::new("/usr/share/zoneinfo").join(name)
                };
                match std::fs::read(path) {
                    Ok(bytes) if !name.contains("..") => Zone::tzif(&bytes),
                    _ => Rule::parse(name).map(|r| Zone {
                        rule: Some(r),
                        ..Zone::default()
                    }),
                }
            }
        }
    }

    fn offset_at(&self, t: i64) -> i64 {
        match self.transitions.partition_point(|(at, _)| *at <= t) {
            0 if self.transitions.is_empty() => self.rule.as_ref().map_or(0, |r| r.offset_at(t)),
            0 => self.initial,
            n if n == self.transitions.len() => match &self.rule {
                Some(r) => r.offset_at(t),
                None => self.transitions[n - 1].1,
            },
            n => self.transitions[n - 1].1,
        }
    }

    /// Parses a TZif file (RFC 8536): the 64-bit block of version 2+, else the 32-bit one.
    fn tzif(b: &[u8]) -> Option<Zone> {
        let header = |b: &[u8]| -> Option<[usize; 6]> {
            if b.get(..4)? != b"TZif" {
                return None;
            }
            let mut c = [0usize; 6];
            for (i, n) in c.iter_mut().enumerate() {
                let at = 20 + 4 * i;
                *n = u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
            }
            Some(c)
        };
        let [isut, isstd, leap, time, types, chars] = header(b)?;
        let v1_len = 44 + time * 5 + types * 6 + chars + leap * 8 + isstd + isut;
        let (data, wide) = if *b.get(4)? >= b'2' {
            (b.get(v1_len..)?, true)
        } else {
            (b, false)
        };
        let [isut, isstd, leap, time, types, chars] = header(data)?;
        let w = if wide { 8 } else { 4 };
        let mut at = 44;
        let times = data.get(at..at + time * w)?;
        at += time * w;
        let idx = data.get(at..at + time)?;
        at += time;
        let infos = data.get(at..at + types * 6)?;
        at += types * 6 + chars + leap * (w + 4) + isstd + isut;
        let utoff = |i: usize| -> Option<i64> {
            let o = infos.get(i * 6..i * 6 + 4)?;
            Some(i64::from(i32::from_be_bytes(o.try_into().ok()?)))
        };
        let mut z = Zone {
            initial: utoff(0)?,
            ..Zone::default()
        };
        for (i, ix) in idx.iter().enumerate() {
            let raw = &times[i * w..(i + 1) * w];
            let t = if wide {
                i64::from_be_bytes(raw.try_into().ok()?)
            } else {
                i64::from(i32::from_be_bytes(raw.try_into().ok()?))
            };
            z.transitions.push((t, utoff(usize::from(*ix))?));
        }
        if wide {
            let footer = std::str::from_utf8(data.get(at..)?).ok()?;
            z.rule = footer.trim().lines().next().and_then(Rule::parse);
        }
        Some(z)
    }
}

/// A POSIX TZ rule: standard offset, and a daylight offset between two yearly instants.
#[derive(Debug, PartialEq)]
struct Rule {
    std: i64,
    dst: Option<(i64, When, When)>,
}

/// `Mm.w.d/time`: day `d` (0 = Sunday) of week `w` (5 = last) of month `m`, at `time`
/// seconds of local time.
#[derive(Debug, PartialEq)]
struct When {
    month: u32,
    week: u32,
    day: u32,
    time: i64,
}

impl Rule {
    fn parse(s: &str) -> Option<Rule> {
        let mut p = s;
        name(&mut p)?;
        let std = -hms(&mut p)?;
        if p.is_empty() {
            return Some(Rule { std, dst: None });
        }
        name(&mut p)?;
        let dst = if p.starts_with(',') || p.is_empty() {
            std + 3600
        } else {
            -hms(&mut p)?
        };
        let p = p.strip_prefix(',')?;
        let (start, end) = p.split_once(',')?;
        Some(Rule {
            std,
            dst: Some((dst, When::parse(start)?, When::parse(end)?)),
        })
    }

    fn offset_at(&self, t: i64) -> i64 {
        let Some((dst, start, end)) = &self.dst else {
            return self.std;
        };
        let year = civil(t.div_euclid(86_400)).0;
        // The start is given in standard time, the end in daylight time.
        let on = start.at(year) - self.std;
        let off = end.at(year) - dst;
        let in_dst = if on < off {
            on <= t && t < off
        } else {
            !(off <= t && t < on)
        };
        if in_dst {
            *dst
        } else {
            self.std
        }
    }
}

impl When {
    fn parse(s: &str) -> Option<When> {
        let (date, time) = match s.split_once('/') {
            Some((d, t)) => (d, {
                let mut t = t;
                hms(&mut t)?
            }),
            None => (s, 7200),
        };
        let mut parts = date.strip_prefix('M')?.split('.');
        let mut next = || parts.next()?.parse::<u32>().ok();
        let (month, week, day) = (next()?, next()?, next()?);
        ((1..=12).contains(&month) && (1..=5).contains(&week) && day <= 6).then_some(When {
            month,
            week,
            day,
            time,
        })
    }

    /// Seconds since the epoch of this instant in `year`, as local wall time.
    fn at(&self, year: i64) -> i64 {
        let first = days(year, self.month, 1);
        let weekday = (first + 4).rem_euclid(7); // 1970-01-01 was a Thursday
        let mut day =
            1 + (i64::from(self.day) - weekday).rem_euclid(7) + 7 * (i64::from(self.week) - 1);
        let (ny, nm) = if self.month == 12 {
            (year + 1, 1)
        } else {
            (year, self.month + 1)
        };
        let len = days(ny, nm, 1) - first;
        while day > len {
            day -= 7;
        }
        (first + day - 1) * 86_400 + self.time
    }
}

/// A zone abbreviation: letters, or `<...>`.
fn name(p: &mut &str) -> Option<()> {
    let n = if let Some(rest) = p.strip_prefix('<') {
        rest.find('>')? + 2
    } else {
        p.find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(p.len())
    };
    (n >= 3).then(|| *p = &p[n..])
}

/// `[+-]hh[:mm[:ss]]` in seconds.
fn hms(p: &mut &str) -> Option<i64> {
    let (sign, rest) = match p.as_bytes().first()? {
        b'-' => (-1, &p[1..]),
        b'+' => (1, &p[1..]),
        _ => (1, *p),
    };
    let end = rest
        .find(|c: char| !c.is_ascii_digit() && c != ':')
        .unwrap_or(rest.len());
    let mut secs = 0;
    let mut unit = 3600;
    for part in rest[..end].split(':') {
        if unit == 0 {
            return None;
        }
        secs += part.parse::<i64>().ok()? * unit;
        unit /= 60;
    }
    *p = &rest[end..];
    Some(sign * secs)
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of days since 1970-01-01.
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        (crate::support::time::parse_nanos(s).unwrap() / 1_000_000_000) as i64
    }

    #[test]
    fn civil_dates_round_trip() {
        for z in [-800_000, -1, 0, 59, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil(z);
            assert_eq!(days(y, m, d), z);
        }
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(days(2026, 12, 5), 20_792);
    }

    #[test]
    fn posix_rules_in_both_hemispheres() {
        let paris = Rule::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(paris.offset_at(at("2026-01-15T12:00:00Z")), 3600);
        assert_eq!(paris.offset_at(at("2026-07-15T12:00:00Z")), 7200);
        // 2026-03-29 01:00 UTC: 02:00 CET becomes 03:00 CEST.
        assert_eq!(paris.offset_at(at("2026-03-29T00:59:59Z")), 3600);
        assert_eq!(paris.offset_at(at("2026-03-29T01:00:00Z")), 7200);
        // 2026-10-25 01:00 UTC: 03:00 CEST becomes 02:00 CET.
        assert_eq!(paris.offset_at(at("2026-10-25T00:59:59Z")), 7200);
        assert_eq!(paris.offset_at(at("2026-10-25T01:00:00Z")), 3600);
        let ny = Rule::parse("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(ny.offset_at(at("2026-12-05T08:00:00Z")), -5 * 3600);
        assert_eq!(ny.offset_at(at("2026-06-05T08:00:00Z")), -4 * 3600);
        let sydney = Rule::parse("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(sydney.offset_at(at("2026-12-05T08:00:00Z")), 11 * 3600);
        assert_eq!(sydney.offset_at(at("2026-06-05T08:00:00Z")), 10 * 3600);
        let india = Rule::parse("<+0530>-5:30").unwrap();
        assert_eq!((india.std, india.dst), (19_800, None));
        assert!(Rule::parse("nonsense").is_none());
    }

    #[test]
    fn zoneinfo_files_when_the_system_has_them() {
        let Some(z) = Zone::local(Some("Europe/Paris")) else {
            return; // no tzdata installed
        };
        if z.transitions.is_empty() && z.rule.is_none() {
            return;
        }
        assert_eq!(z.offset_at(at("2026-01-15T12:00:00Z")), 3600);
        assert_eq!(z.offset_at(at("2026-07-15T12:00:00Z")), 7200);
        assert_eq!(z.offset_at(at("2040-07-15T12:00:00Z")), 7200);
        assert_eq!(z.offset_at(at("1980-07-15T12:00:00Z")), 7200);
    }

    #[test]
    fn local_times_carry_their_offset() {
        let z = Zone {
            rule: Rule::parse("<+0530>-5:30"),
            ..Zone::default()
        };
        assert_eq!(z.offset_at(0), 19_800);
        assert_eq!(offset_text(19_800), "+05:30");
        assert_eq!(offset_text(-5 * 3600), "-05:00");
    }
}
