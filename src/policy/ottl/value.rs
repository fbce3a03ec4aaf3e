//! Runtime values and the Collector's comparison rules (LANGUAGE.md, "Comparison rules"):
//! int and float compare numerically, nil equals only nil, bools only (in)equal, mismatched
//! types are not equal (`!=` is true) and never ordered.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::lexer::CmpOp;

/// A value read from a span or computed by a converter. Borrowed from the span's bytes
/// unless a converter built it.
#[derive(Debug, Clone, PartialEq)]
pub enum V<'a> {
    Nil,
    Str(Cow<'a, str>),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Cow<'a, [u8]>),
    /// A map: the `KeyValue` entries of repeated field `.1` of message `.0` (a
    /// `KeyValueList`, or the attributes of a span, resource, scope or event).
    Map(&'a [u8], u32),
    /// An encoded `ArrayValue`.
    Slice(&'a [u8]),
}

impl V<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            V::Nil => "nil",
            V::Str(_) => "string",
            V::Int(_) => "int",
            V::Double(_) => "float",
            V::Bool(_) => "bool",
            V::Bytes(_) => "byte slice",
            V::Map(..) => "map",
            V::Slice(_) => "slice",
        }
    }

    /// The value as the Collector's `StringLikeGetter` renders it; `None` for nil.
    pub fn string_like(&self) -> Result<Option<Cow<'_, str>>, String> {
        Ok(Some(match self {
            V::Nil => return Ok(None),
            V::Str(s) => Cow::Borrowed(s.as_ref()),
            V::Int(i) => i.to_string().into(),
            V::Double(d) => go_float(*d).into(),
            V::Bool(b) => b.to_string().into(),
            V::Bytes(b) => hex::encode(b).into(),
            V::Map(..) | V::Slice(_) => {
                return Err(format!(
                    "casefile cannot render a {} as a string yet",
                    self.type_name()
                ))
            }
        }))
    }

    /// Number of entries of a map (every entry, duplicates included).
    pub fn map_len(msg: &[u8], number: u32) -> usize {
        crate::wire::Attributes::new(msg, number).count()
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent.
fn go_float(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        d.to_string()
    }
}

/// `a op b` under the Collector's rules.
#[inline]
pub fn compare(a: &V<'_>, op: CmpOp, b: &V<'_>) -> bool {
    let ord = match (a, b) {
        (V::Nil, V::Nil) => Some(Ordering::Equal),
        (V::Str(x), V::Str(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (V::Int(x), V::Int(y)) => Some(x.cmp(y)),
        (V::Int(x), V::Double(y)) => (*x as f64).partial_cmp(y),
        (V::Double(x), V::Int(y)) => x.partial_cmp(&(*y as f64)),
        (V::Double(x), V::Double(y)) => x.partial_cmp(y),
        (V::Bytes(x), V::Bytes(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (V::Bool(x), V::Bool(y)) => {
            // Bools are only equal or not.
            return match op {
                CmpOp::Eq => x == y,
                CmpOp::Ne => x != y,
                _ => false,
            };
        }
        // Same encoding: equal. (The Collector compares decoded values: equal maps with
        // entries in another order are unequal here.)
        (V::Map(x, n), V::Map(y, m)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => {
            return (op == CmpOp::Eq) == (x == y && n == m);
        }
        (V::Slice(x), V::Slice(y)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => {
            return (op == CmpOp::Eq) == (x == y);
        }
        _ => None,
    };
    outcome(ord, op, matches!(a, V::Nil))
}

/// What `op` answers for an ordering of two values (`None`: not comparable); `nil` is equal
/// to `nil` but not ordered. Shared by [`compare`] and the fused attribute tests.
#[inline]
pub fn outcome(ord: Option<Ordering>, op: CmpOp, left_is_nil: bool) -> bool {
    match (ord, op) {
        (Some(o), CmpOp::Eq) => o == Ordering::Equal,
        (Some(o), CmpOp::Ne) => o != Ordering::Equal,
        (None, CmpOp::Ne) => true,
        (None, _) => false,
        (Some(_), _) if left_is_nil => false,
        (Some(o), CmpOp::Lt) => o == Ordering::Less,
        (Some(o), CmpOp::Le) => o != Ordering::Greater,
        (Some(o), CmpOp::Gt) => o == Ordering::Greater,
        (Some(o), CmpOp::Ge) => o != Ordering::Less,
    }
}
