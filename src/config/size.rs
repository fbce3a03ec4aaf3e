//! Byte sizes in config files: a plain integer (bytes) or a number with a unit
//! (`512MiB`, `64MB`, `1GiB`, `100KiB`, `2048B`).

use std::fmt;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSize(pub u64);

/// Parses a size such as `512MiB`, `1.5GiB`, `64MB` or `1024`.
pub fn parse(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (write e.g. 512MiB or 1048576)"))?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "kib" | "ki" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" | "mi" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" | "gi" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in size {s:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    Ok((n * scale as f64) as u64)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 512MiB, 64MB or a number of bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
            write!(f, "{}GiB", b >> 30)
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", b >> 20)
        } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", b >> 10)
        } else {
            write!(f, "{b}B")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse("64MB").unwrap(), 64_000_000);
        assert_eq!(parse("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse("1024").unwrap(), 1024);
        assert!(parse("12 parsecs").is_err());
        assert!(parse("MiB").is_err());
        assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
    }
}
