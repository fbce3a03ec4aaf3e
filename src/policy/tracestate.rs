//! W3C `tracestate` reading for the trace_state policy, as strict as OpenTelemetry Go's `ParseTraceState` (an invalid header matches nothing), without allocating.

/// W3C limit on list members.
const MAX_MEMBERS: usize = 32;

/// The value of `key` in the tracestate header `ts`, or `None` when the key is absent or the
/// header is invalid anywhere (bad key or value, duplicate key, more than 32 members).
pub fn get<'a>(ts: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    let mut count = 0;
    for (i, member) in ts.split(',').enumerate() {
        if member.is_empty() {
            continue;
        }
        let (k, v) = parse_member(member)?;
        count += 1;
        if count > MAX_MEMBERS {
            return None;
        }
        // Duplicate keys make the whole header invalid.
        if ts
            .split(',')
            .take(i)
            .filter(|m| !m.is_empty())
            .any(|m| parse_member(m).map(|(pk, _)| pk) == Some(k))
        {
            return None;
        }
        if k == key {
            found = Some(v);
        }
    }
    found
}

/// The members of the tracestate header `ts` in order (empty members skipped), or `None`
/// when it is invalid anywhere (the rules of [`get`]).
pub fn members(ts: &str) -> Option<Vec<(&str, &str)>> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for member in ts.split(',').filter(|m| !m.is_empty()) {
        let (k, v) = parse_member(member)?;
        if out.len() == MAX_MEMBERS || out.iter().any(|(pk, _)| *pk == k) {
            return None;
        }
        out.push((k, v));
    }
    Some(out)
}

/// `key=value` with optional whitespace before the key and after the value.
fn parse_member(member: &str) -> Option<(&str, &str)> {
    let (key, value) = member.split_once('=')?;
    let key = key.trim_start_matches([' ', '\t']);
    let value = value.trim_end_matches([' ', '\t']);
    (valid_key(key) && valid_value(value)).then_some((key, value))
}

fn valid_value(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b[b.len() - 1] != b' '
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

fn valid_key(key: &str) -> bool {
    match key.split_once('@') {
        None => valid_key_part(key, 256, true),
        Some((tenant, system)) => {
            valid_key_part(tenant, 241, true) && valid_key_part(system, 14, false)
        }
    }
}

/// A simple key, a tenant id (may start with a digit) or a system id (must start with a letter).
fn valid_key_part(part: &str, max: usize, digit_first: bool) -> bool {
    let b = part.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    let first_ok = first.is_ascii_lowercase() || (digit_first && first.is_ascii_digit());
    first_ok
        && b.len() <= max
        && b[1..].iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::get;

    #[test]
    fn reads_values_and_tolerates_whitespace_and_empty_members() {
        assert_eq!(
            get("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "congo"),
            Some("t61rcWkgMzE")
        );
        assert_eq!(get(" a=1 ,, b=2\t", "b"), Some("2"));
        assert_eq!(get("tenant@vendor=x", "tenant@vendor"), Some("x"));
        assert_eq!(get("a=1", "b"), None);
        assert_eq!(get("", "a"), None);
    }

    #[test]
    fn invalid_headers_match_nothing() {
        assert_eq!(get("a=1,a=2", "a"), None, "duplicate key");
        assert_eq!(get("A=1", "A"), None, "upper-case key");
        assert_eq!(get("a=1,b", "a"), None, "member without =");
        assert_eq!(get("a=x=y", "a"), None, "= in value");
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(get(&many.join(","), "k0"), None, "33 members");
        assert_eq!(get(&many[..32].join(","), "k0"), Some("v"));
    }
}
