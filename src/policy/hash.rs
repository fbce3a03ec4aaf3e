//! The probabilistic policy's arithmetic, bit-exact with the Collector: FNV-1a 64 over salt and trace id, and the threshold `MaxUint64 × ratio` rounded as Go's `big.Float` does.

/// The salt the Collector uses when `hash_salt` is empty.
pub const DEFAULT_SALT: &str = "default-hash-seed";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a over `salt` followed by `id` (Go's `fnv.New64a` fed both in turn).
pub fn trace_hash(salt: &[u8], id: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in salt.iter().chain(id) {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The sampling threshold for `percentage` (a trace is sampled when its hash is `<=` it).
///
/// The Collector computes `big.Float(MaxUint64) * big.NewFloat(percentage / 100)` at the
/// precision of the first operand (64 bits, round half to even) and truncates the result to a
/// uint64 (saturating). The exact product of the 64-bit integer and the 53-bit mantissa fits
/// in a u128, so the same rounding is done here with integers.
pub fn threshold(percentage: f64) -> u64 {
    let ratio = percentage / 100.0;
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio.is_infinite() {
        return u64::MAX;
    }
    let (mantissa, exp) = decompose(ratio);
    let mut product = u128::from(u64::MAX) * u128::from(mantissa);
    let mut exp = exp;
    let bits = 128 - product.leading_zeros() as i32;
    if bits > 64 {
        let shift = (bits - 64) as u32;
        let rest = product & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        product >>= shift;
        if rest > half || (rest == half && product & 1 == 1) {
            product += 1;
        }
        exp += shift as i32;
    }
    to_u64_truncated(product, exp)
}

/// `x = mantissa × 2^exp` for a finite positive double.
fn decompose(x: f64) -> (u64, i32) {
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), biased - 1075)
    }
}

/// `value × 2^exp` truncated toward zero, saturating at `u64::MAX`.
fn to_u64_truncated(value: u128, exp: i32) -> u64 {
    let whole = if exp >= 0 {
        if exp >= 64 || value > (u128::from(u64::MAX) >> exp) {
            return u64::MAX;
        }
        value << exp
    } else if -exp >= 128 {
        0
    } else {
        value >> (-exp) as u32
    };
    u64::try_from(whole).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain reference FNV-1a, written from the published definition.
    fn reference_fnv1a(data: &[u8]) -> u64 {
        let mut hash: u64 = 14695981039346656037;
        for byte in data {
            hash ^= *byte as u64;
            hash = hash.wrapping_mul(1099511628211);
        }
        hash
    }

    #[test]
    fn fnv1a_matches_published_vectors() {
        assert_eq!(trace_hash(b"", b""), 0xcbf29ce484222325);
        assert_eq!(trace_hash(b"a", b""), 0xaf63dc4c8601ec8c);
        assert_eq!(
            trace_hash(b"foo", b"bar"),
            0x85944171f73967e8,
            "foobar, split across salt and id"
        );
    }

    #[test]
    fn salt_then_trace_id_is_one_stream() {
        let id: Vec<u8> = (1..=16).collect();
        let mut joined = DEFAULT_SALT.as_bytes().to_vec();
        joined.extend_from_slice(&id);
        assert_eq!(
            trace_hash(DEFAULT_SALT.as_bytes(), &id),
            reference_fnv1a(&joined)
        );
        // Computed independently (Python, FNV-1a 64 of b"default-hash-seed" + bytes 1..=16).
        assert_eq!(trace_hash(DEFAULT_SALT.as_bytes(), &id), HASH_OF_1_TO_16);
    }

    /// FNV-1a 64 of `default-hash-seed` followed by the bytes 1, 2, ..., 16.
    const HASH_OF_1_TO_16: u64 = 0xdbcf_64d5_420f_4cad;

    #[test]
    fn threshold_edges() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(-5.0), 0);
        assert_eq!(threshold(100.0), u64::MAX);
        assert_eq!(threshold(250.0), u64::MAX, "over 100% saturates");
        // MaxUint64 / 2 = 2^63 - 0.5 is exact at 64 bits; truncation gives 2^63 - 1.
        assert_eq!(threshold(50.0), (1u64 << 63) - 1);
        assert_eq!(threshold(25.0), (1u64 << 62) - 1);
    }

    #[test]
    fn threshold_matches_go_big_float_rounding() {
        // Computed independently with exact rationals: MaxUint64 × float64(p/100), rounded to
        // 64 significant bits half-to-even, truncated.
        for (pct, want) in THRESHOLD_VECTORS {
            assert_eq!(threshold(*pct), *want, "{pct}%");
        }
    }

    const THRESHOLD_VECTORS: &[(f64, u64)] = &[
        (0.0001, 18446744073709),
        (0.1, 18446744073709551),
        (1.0, 184467440737095519),
        (5.0, 922337203685477631),
        (10.0, 1844674407370955263),
        (12.345, 2277250555899444223),
        (33.3, 6142765776545279999),
        (99.9, 18428297329635844095),
    ];
}
