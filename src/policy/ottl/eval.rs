//! Evaluates a compiled condition against one span (or span event) with the Collector's
//! converter semantics; an evaluation error (a converter given the wrong type) is returned
//! for the policy's `error_mode` to handle.

use std::borrow::Cow;

use super::expr::{Call, Cond, Ctx, Expr, Lit};
use super::value::{compare, V};

/// Why a condition could not be evaluated.
pub type EvalError = String;

impl Cond {
    pub fn eval<'a>(&'a self, cx: Ctx<'a>) -> Result<bool, EvalError> {
        match self {
            Cond::Or(terms) => {
                for t in terms {
                    if t.eval(cx)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Cond::And(terms) => {
                for t in terms {
                    if !t.eval(cx)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Cond::Not(inner) => Ok(!inner.eval(cx)?),
            Cond::Cmp(a, op, b) => Ok(compare(&a.eval(cx)?, *op, &b.eval(cx)?)),
            Cond::Attr(t) => Ok(t.eval(cx)),
            Cond::Is(e) => match e.eval(cx)? {
                V::Bool(b) => Ok(b),
                other => Err(format!("expected a bool, got a {}", other.type_name())),
            },
        }
    }
}

impl Lit {
    #[inline]
    pub fn value(&self) -> V<'_> {
        match self {
            Lit::Nil => V::Nil,
            Lit::Str(s) => V::Str(Cow::Borrowed(s)),
            Lit::Int(i) => V::Int(*i),
            Lit::Double(d) => V::Double(*d),
            Lit::Bool(b) => V::Bool(*b),
            Lit::Bytes(b) => V::Bytes(Cow::Borrowed(b)),
        }
    }
}

impl Expr {
    pub fn eval<'a>(&'a self, cx: Ctx<'a>) -> Result<V<'a>, EvalError> {
        match self {
            Expr::Lit(l) => Ok(l.value()),
            Expr::Path(p) => match (p.slot, cx.memo) {
                (Some(i), Some(memo)) => {
                    let i = usize::from(i);
                    if let Some(v) = &memo.0.borrow()[i] {
                        return Ok(v.clone());
                    }
                    let v = p.read(cx)?;
                    memo.0.borrow_mut()[i] = Some(v.clone());
                    Ok(v)
                }
                _ => p.read(cx),
            },
            Expr::Call(c) => c.eval(cx),
        }
    }
}

/// A `StringGetter` argument: a string, or an error naming what it was.
fn string_arg<'a>(e: &'a Expr, cx: Ctx<'a>, func: &str) -> Result<Cow<'a, str>, EvalError> {
    match e.eval(cx)? {
        V::Str(s) => Ok(s),
        other => Err(format!(
            "{func}: expected a string but got a {}",
            other.type_name()
        )),
    }
}

fn int_arg<'a>(e: &'a Expr, cx: Ctx<'a>, func: &str) -> Result<i64, EvalError> {
    match e.eval(cx)? {
        V::Int(i) => Ok(i),
        other => Err(format!(
            "{func}: expected an int but got a {}",
            other.type_name()
        )),
    }
}

impl Call {
    fn eval<'a>(&'a self, cx: Ctx<'a>) -> Result<V<'a>, EvalError> {
        Ok(match self {
            Call::IsMatch(target, re) => {
                let v = target.eval(cx)?;
                V::Bool(match v.string_like()? {
                    Some(s) => re.is_match(&s),
                    None => false,
                })
            }
            Call::IsString(e) => V::Bool(matches!(e.eval(cx)?, V::Str(_))),
            Call::IsInt(e) => V::Bool(matches!(e.eval(cx)?, V::Int(_))),
            Call::IsDouble(e) => V::Bool(matches!(e.eval(cx)?, V::Double(_))),
            Call::IsBool(e) => V::Bool(matches!(e.eval(cx)?, V::Bool(_))),
            Call::IsMap(e) => V::Bool(matches!(e.eval(cx)?, V::Map(..))),
            Call::Int(e) => match e.eval(cx)? {
                V::Nil => V::Nil,
                V::Int(i) => V::Int(i),
                V::Double(d) => V::Int(d as i64),
                V::Bool(b) => V::Int(i64::from(b)),
                V::Str(s) => s.parse::<i64>().map_or(V::Nil, V::Int),
                other => return Err(format!("Int: unsupported type {}", other.type_name())),
            },
            Call::Double(e) => match e.eval(cx)? {
                V::Nil => V::Nil,
                V::Int(i) => V::Double(i as f64),
                V::Double(d) => V::Double(d),
                V::Bool(b) => V::Double(if b { 1.0 } else { 0.0 }),
                V::Str(s) => s.parse::<f64>().map_or(V::Nil, V::Double),
                other => return Err(format!("Double: unsupported type {}", other.type_name())),
            },
            Call::String(e) => {
                let v = e.eval(cx)?;
                match v.string_like()? {
                    Some(s) => V::Str(Cow::Owned(s.into_owned())),
                    None => V::Nil,
                }
            }
            Call::Len(e) => V::Int(match e.eval(cx)? {
                V::Str(s) => s.len() as i64,
                V::Map(m, n) => V::map_len(m, n) as i64,
                V::Slice(s) => crate::wire::Fields::new(s).count() as i64,
                other => return Err(format!("Len: unsupported type {}", other.type_name())),
            }),
            Call::Concat(items, delimiter) => {
                let delimiter = string_arg(delimiter, cx, "Concat")?;
                let mut out = String::new();
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&delimiter);
                    }
                    let v = item.eval(cx)?;
                    match v.string_like()? {
                        Some(s) => out.push_str(&s),
                        // Go's fmt.Sprint of a nil *string.
                        None => out.push_str("<nil>"),
                    }
                }
                V::Str(out.into())
            }
            Call::HasPrefix(t, p) => {
                let t = string_arg(t, cx, "HasPrefix")?;
                V::Bool(t.starts_with(string_arg(p, cx, "HasPrefix")?.as_ref()))
            }
            Call::HasSuffix(t, p) => {
                let t = string_arg(t, cx, "HasSuffix")?;
                V::Bool(t.ends_with(string_arg(p, cx, "HasSuffix")?.as_ref()))
            }
            Call::ToLowerCase(t) => V::Str(string_arg(t, cx, "ToLowerCase")?.to_lowercase().into()),
            Call::ToUpperCase(t) => V::Str(string_arg(t, cx, "ToUpperCase")?.to_uppercase().into()),
            Call::Substring(t, start, length) => {
                let t = string_arg(t, cx, "Substring")?;
                let (start, length) = (
                    int_arg(start, cx, "Substring")?,
                    int_arg(length, cx, "Substring")?,
                );
                if start < 0 {
                    return Err(format!(
                        "Substring: invalid start {start}: must be 0 or more"
                    ));
                }
                if length <= 0 {
                    return Err(format!(
                        "Substring: invalid length {length}: must be more than 0"
                    ));
                }
                let end = start.saturating_add(length);
                let sub = usize::try_from(end)
                    .ok()
                    .filter(|&e| e <= t.len())
                    .and_then(|e| t.get(start as usize..e))
                    .ok_or_else(|| {
                        format!(
                            "Substring: invalid range [{start}, {end}) of a {}-byte string",
                            t.len()
                        )
                    })?;
                V::Str(sub.to_owned().into())
            }
        })
    }
}
