//! Type checker and compiler: resolves paths for the `span` or `spanevent` context, checks
//! converters (known name, arity, argument types where known at load, literal patterns),
//! compiles regexes once, and collects every problem of a condition with its offset.

use regex::Regex;

use super::expr::{AttrTest, Call, Cond, Expr, Lit, Path, PathField, MEMO_SLOTS};
use super::lexer::CmpOp;
use super::lexer::SyntaxError;
use super::parser::{BoolAst, Key, Value, ValueKind};

/// Which list a condition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Span,
    SpanEvent,
}

/// The converters casefile runs.
pub const CONVERTERS: [&str; 18] = [
    "IsMatch",
    "IsString",
    "IsInt",
    "IsDouble",
    "IsBool",
    "IsMap",
    "Int",
    "Double",
    "String",
    "Len",
    "Concat",
    "HasPrefix",
    "HasSuffix",
    "ToLowerCase",
    "ToUpperCase",
    "Substring",
    "TraceID",
    "SpanID",
];

/// A value's type as far as it is known at load (`Any` for attribute values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
    Float,
    Bool,
    Bytes,
    Map,
    Nil,
    Any,
    /// After an error (already reported): fits anywhere, so one mistake is reported once.
    Error,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Int => "an int",
            Ty::Float => "a float",
            Ty::Bool => "a bool",
            Ty::Bytes => "a byte slice",
            Ty::Map => "a map",
            Ty::Nil => "nil",
            Ty::Any | Ty::Error => "any value",
        }
    }
}

/// Compiles one parsed condition (and whether it reads a path more than once: memo slots),
/// or returns every problem found in it.
pub fn compile(ast: &BoolAst, cx: Context) -> Result<(Cond, bool), Vec<SyntaxError>> {
    let mut c = Checker {
        cx,
        errors: Vec::new(),
    };
    let cond = c.cond(ast);
    if c.errors.is_empty() {
        let mut cond = fuse(cond);
        let memo = assign_memo_slots(&mut cond);
        Ok((cond, memo))
    } else {
        Err(c.errors)
    }
}

struct Checker {
    cx: Context,
    errors: Vec<SyntaxError>,
}

/// A placeholder after an error (never evaluated: the condition is refused).
fn dummy() -> (Expr, Ty) {
    (Expr::Lit(Lit::Nil), Ty::Error)
}

impl Checker {
    fn error(&mut self, at: usize, message: impl Into<String>) {
        self.errors.push(SyntaxError::new(at, message));
    }

    fn cond(&mut self, ast: &BoolAst) -> Cond {
        match ast {
            BoolAst::Or(ts) => Cond::Or(ts.iter().map(|t| self.cond(t)).collect()),
            BoolAst::And(ts) => Cond::And(ts.iter().map(|t| self.cond(t)).collect()),
            BoolAst::Not(t) => Cond::Not(Box::new(self.cond(t))),
            BoolAst::Cmp(a, op, b) => {
                let (a, _) = self.value(a);
                let (b, _) = self.value(b);
                Cond::Cmp(a, *op, b)
            }
            BoolAst::Value(v) => {
                let (e, ty) = self.value(v);
                if !matches!(ty, Ty::Bool | Ty::Error) {
                    let what = match &v.kind {
                        ValueKind::Path { .. } => "a path".to_owned(),
                        ValueKind::Call { name, .. } => {
                            format!("{name}(…), which returns {},", ty.name())
                        }
                        _ => ty.name().to_owned(),
                    };
                    self.error(
                        v.at,
                        format!("{what} is not a condition: compare it (==, !=, <, <=, >, >=) or use a converter that returns a bool"),
                    );
                }
                Cond::Is(e)
            }
        }
    }

    fn value(&mut self, v: &Value) -> (Expr, Ty) {
        match &v.kind {
            ValueKind::Str(s) => (Expr::Lit(Lit::Str(s.as_str().into())), Ty::Str),
            ValueKind::Int(i) => (Expr::Lit(Lit::Int(*i)), Ty::Int),
            ValueKind::Float(x) => (Expr::Lit(Lit::Double(*x)), Ty::Float),
            ValueKind::Bytes(b) => (Expr::Lit(Lit::Bytes(b.as_slice().into())), Ty::Bytes),
            ValueKind::Bool(b) => (Expr::Lit(Lit::Bool(*b)), Ty::Bool),
            ValueKind::Nil => (Expr::Lit(Lit::Nil), Ty::Nil),
            ValueKind::Enum(name) => match enum_value(name) {
                Some(i) => (Expr::Lit(Lit::Int(i)), Ty::Int),
                None => {
                    self.error(v.at, format!("unknown enum {name}; known: SPAN_KIND_UNSPECIFIED, SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER, STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR"));
                    dummy()
                }
            },
            ValueKind::Path { names, keys } => self.path(v.at, names, keys),
            ValueKind::Call { name, args } => self.call(v.at, name, args),
            ValueKind::List(_) => {
                self.error(
                    v.at,
                    "a list is only allowed as the first argument of Concat",
                );
                dummy()
            }
        }
    }

    fn path(&mut self, at: usize, names: &[(String, usize)], keys: &[Key]) -> (Expr, Ty) {
        let words: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
        let full = words.join(".");
        let Some(field) = resolve(&words, self.cx) else {
            let ctx = match self.cx {
                Context::Span => "span",
                Context::SpanEvent => "spanevent",
            };
            self.error(
                at,
                format!(
                    "unknown path {full} in a {ctx} condition; {}",
                    known_paths(self.cx)
                ),
            );
            return dummy();
        };
        let mut out = Vec::with_capacity(keys.len());
        let is_map = matches!(
            field,
            PathField::Attributes
                | PathField::ResourceAttributes
                | PathField::ScopeAttributes
                | PathField::EventAttributes
        );
        for k in keys {
            match k {
                Key::Str(s) if is_map => out.push(s.as_str().into()),
                Key::Str(_) => {
                    self.error(at, format!("{full} is not a map: it takes no [\"key\"]"));
                    return dummy();
                }
                Key::Int(_, kat) => {
                    self.error(*kat, "casefile does not support slice indexes ([0]) yet; index maps with [\"key\"]");
                    return dummy();
                }
            }
        }
        let ty = match field {
            _ if is_map => {
                if keys.is_empty() {
                    Ty::Map
                } else {
                    Ty::Any
                }
            }
            PathField::Name
            | PathField::StatusMessage
            | PathField::ScopeName
            | PathField::ScopeVersion
            | PathField::TraceState
            | PathField::EventName => Ty::Str,
            PathField::TraceId | PathField::SpanId | PathField::ParentSpanId => Ty::Bytes,
            _ => Ty::Int,
        };
        (
            Expr::Path(Path {
                field,
                keys: out.into(),
                slot: None,
            }),
            ty,
        )
    }

    /// An argument that must be of type `want` when its type is known at load.
    fn arg(&mut self, func: &str, v: &Value, want: Ty) -> Expr {
        let (e, ty) = self.value(v);
        if ty != want && !matches!(ty, Ty::Any | Ty::Error) {
            self.error(
                v.at,
                format!("{func} expects {} here, got {}", want.name(), ty.name()),
            );
        }
        e
    }

    fn call(&mut self, at: usize, name: &str, args: &[Value]) -> (Expr, Ty) {
        let arity = match name {
            "IsMatch" | "HasPrefix" | "HasSuffix" | "Concat" => 2,
            "Substring" => 3,
            _ if CONVERTERS.contains(&name) => 1,
            _ => {
                let hint = if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                    " (editors such as set or delete_key change data and cannot be used in a condition)"
                } else {
                    ""
                };
                self.error(
                    at,
                    format!(
                        "unknown function {name}{hint}; casefile supports the converters {}",
                        CONVERTERS.join(", ")
                    ),
                );
                return dummy();
            }
        };
        if args.len() != arity {
            self.error(
                at,
                format!(
                    "{name} takes {arity} argument{}, got {}",
                    if arity == 1 { "" } else { "s" },
                    args.len()
                ),
            );
            return dummy();
        }
        let a = |c: &mut Self, i: usize| c.value(&args[i]).0;
        let call = match name {
            "IsMatch" => {
                let target = a(self, 0);
                let ValueKind::Str(pattern) = &args[1].kind else {
                    self.error(args[1].at, "IsMatch takes its pattern as a string literal");
                    return dummy();
                };
                match Regex::new(pattern) {
                    Ok(re) => Call::IsMatch(target, re),
                    Err(e) => {
                        let first = e.to_string().lines().last().unwrap_or_default().to_owned();
                        self.error(args[1].at, format!("invalid regex {pattern:?}: {first}"));
                        return dummy();
                    }
                }
            }
            "IsString" => Call::IsString(a(self, 0)),
            "IsInt" => Call::IsInt(a(self, 0)),
            "IsDouble" => Call::IsDouble(a(self, 0)),
            "IsBool" => Call::IsBool(a(self, 0)),
            "IsMap" => Call::IsMap(a(self, 0)),
            "Int" => Call::Int(a(self, 0)),
            "Double" => Call::Double(a(self, 0)),
            "String" => Call::String(a(self, 0)),
            "Len" => Call::Len(a(self, 0)),
            "Concat" => {
                let ValueKind::List(items) = &args[0].kind else {
                    self.error(
                        args[0].at,
                        "Concat takes a list of values first: Concat([a, b], \"-\")",
                    );
                    return dummy();
                };
                let items = items.iter().map(|v| self.value(v).0).collect();
                let delimiter = self.arg(name, &args[1], Ty::Str);
                Call::Concat(items, delimiter)
            }
            "HasPrefix" | "HasSuffix" => {
                let target = self.arg(name, &args[0], Ty::Str);
                let affix = self.arg(name, &args[1], Ty::Str);
                if name == "HasPrefix" {
                    Call::HasPrefix(target, affix)
                } else {
                    Call::HasSuffix(target, affix)
                }
            }
            "ToLowerCase" => Call::ToLowerCase(self.arg(name, &args[0], Ty::Str)),
            "ToUpperCase" => Call::ToUpperCase(self.arg(name, &args[0], Ty::Str)),
            "Substring" => Call::Substring(
                self.arg(name, &args[0], Ty::Str),
                self.arg(name, &args[1], Ty::Int),
                self.arg(name, &args[2], Ty::Int),
            ),
            "TraceID" | "SpanID" => {
                let want = if name == "TraceID" { 16 } else { 8 };
                return match &args[0].kind {
                    ValueKind::Bytes(b) if b.len() == want => {
                        (Expr::Lit(Lit::Bytes(b.as_slice().into())), Ty::Bytes)
                    }
                    ValueKind::Bytes(b) => {
                        self.error(
                            args[0].at,
                            format!("{name} needs {want} bytes, got {}", b.len()),
                        );
                        dummy()
                    }
                    _ => {
                        self.error(
                            args[0].at,
                            format!(
                                "{name} takes a byte literal such as 0x{}",
                                "00".repeat(want)
                            ),
                        );
                        dummy()
                    }
                };
            }
            _ => unreachable!("every converter is listed"),
        };
        let ty = match name {
            "IsMatch" | "IsString" | "IsInt" | "IsDouble" | "IsBool" | "IsMap" | "HasPrefix"
            | "HasSuffix" => Ty::Bool,
            // Int/Double/String give nil when the value cannot be converted.
            "Int" | "Double" | "String" => Ty::Any,
            "Len" => Ty::Int,
            _ => Ty::Str,
        };
        (Expr::Call(Box::new(call)), ty)
    }
}

/// The value of an OTTL enum.
fn enum_value(name: &str) -> Option<i64> {
    Some(match name {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        _ => return None,
    })
}

/// The field a dotted path names in context `cx`.
fn resolve(words: &[&str], cx: Context) -> Option<PathField> {
    use PathField as F;
    let common = match words {
        ["resource", "attributes"] => Some(F::ResourceAttributes),
        ["instrumentation_scope", "name"] => Some(F::ScopeName),
        ["instrumentation_scope", "version"] => Some(F::ScopeVersion),
        ["instrumentation_scope", "attributes"] => Some(F::ScopeAttributes),
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    let span_field = |rest: &[&str]| -> Option<PathField> {
        Some(match rest {
            ["name"] => F::Name,
            ["kind"] => F::Kind,
            ["status", "code"] => F::StatusCode,
            ["status", "message"] => F::StatusMessage,
            ["attributes"] => F::Attributes,
            ["trace_id"] => F::TraceId,
            ["span_id"] => F::SpanId,
            ["parent_span_id"] => F::ParentSpanId,
            ["start_time_unix_nano"] => F::StartTime,
            ["end_time_unix_nano"] => F::EndTime,
            ["trace_state"] => F::TraceState,
            _ => return None,
        })
    };
    match (cx, words) {
        (_, ["span", rest @ ..]) => span_field(rest),
        (Context::Span, rest) => span_field(rest),
        (Context::SpanEvent, ["spanevent", rest @ ..] | rest) => match rest {
            ["name"] => Some(F::EventName),
            ["attributes"] => Some(F::EventAttributes),
            ["time_unix_nano"] => Some(F::EventTime),
            _ => None,
        },
    }
}

fn known_paths(cx: Context) -> &'static str {
    match cx {
        Context::Span => "known: name, kind, status.code, status.message, attributes[\"k\"], resource.attributes[\"k\"], instrumentation_scope.name, instrumentation_scope.version, instrumentation_scope.attributes[\"k\"], trace_id, span_id, parent_span_id, start_time_unix_nano, end_time_unix_nano, trace_state (also with a span. prefix)",
        Context::SpanEvent => "known: name, attributes[\"k\"], time_unix_nano (the event's), span.<any span path> (the enclosing span's), resource.attributes[\"k\"], instrumentation_scope.name, instrumentation_scope.version",
    }
}

/// Gives each path read more than once in `cond` a memo slot (the same for equal paths);
/// true when it gave any.
fn assign_memo_slots(cond: &mut Cond) -> bool {
    type PathKey = (PathField, Box<[Box<str>]>);
    let mut seen: Vec<(PathKey, usize)> = Vec::new();
    cond.visit_paths(&mut |p| {
        let key = (p.field, p.keys.clone());
        match seen.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => seen.push((key, 1)),
        }
    });
    let repeated: Vec<_> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .take(MEMO_SLOTS)
        .collect();
    cond.visit_paths(&mut |p| {
        p.slot = repeated
            .iter()
            .position(|(f, k)| *f == p.field && *k == p.keys)
            .map(|i| i as u8);
    });
    !repeated.is_empty()
}

impl Cond {
    fn visit_paths(&mut self, f: &mut impl FnMut(&mut Path)) {
        match self {
            Cond::Or(ts) | Cond::And(ts) => ts.iter_mut().for_each(|t| t.visit_paths(f)),
            Cond::Not(t) => t.visit_paths(f),
            Cond::Cmp(a, _, b) => {
                a.visit_paths(f);
                b.visit_paths(f);
            }
            Cond::Is(e) => e.visit_paths(f),
            Cond::Attr(_) => {}
        }
    }
}

impl Expr {
    fn visit_paths(&mut self, f: &mut impl FnMut(&mut Path)) {
        match self {
            Expr::Lit(_) => {}
            Expr::Path(p) => f(p),
            Expr::Call(c) => match c.as_mut() {
                Call::IsMatch(e, _)
                | Call::IsString(e)
                | Call::IsInt(e)
                | Call::IsDouble(e)
                | Call::IsBool(e)
                | Call::IsMap(e)
                | Call::Int(e)
                | Call::Double(e)
                | Call::String(e)
                | Call::Len(e)
                | Call::ToLowerCase(e)
                | Call::ToUpperCase(e) => e.visit_paths(f),
                Call::Concat(items, d) => {
                    items.iter_mut().for_each(|e| e.visit_paths(f));
                    d.visit_paths(f);
                }
                Call::HasPrefix(a, b) | Call::HasSuffix(a, b) => {
                    a.visit_paths(f);
                    b.visit_paths(f);
                }
                Call::Substring(a, b, c) => {
                    a.visit_paths(f);
                    b.visit_paths(f);
                    c.visit_paths(f);
                }
            },
        }
    }
}

/// Rewrites `attributes["k"] op literal` comparisons into [`AttrTest`]s and merges adjacent
/// ones on the same attribute under one `or` / `and`, keeping their order (reading one
/// attribute cannot fail, so the result and the errors are those of the original).
fn fuse(cond: Cond) -> Cond {
    match cond {
        Cond::Cmp(Expr::Path(p), op, Expr::Lit(l)) if is_attr(&p) => attr(p, op, l),
        Cond::Cmp(Expr::Lit(l), op, Expr::Path(p)) if is_attr(&p) => attr(p, flip(op), l),
        Cond::Not(t) => Cond::Not(Box::new(fuse(*t))),
        Cond::Or(ts) => merge(ts, true),
        Cond::And(ts) => merge(ts, false),
        other => other,
    }
}

fn is_attr(p: &Path) -> bool {
    p.keys.len() == 1
        && matches!(
            p.field,
            PathField::Attributes
                | PathField::ResourceAttributes
                | PathField::ScopeAttributes
                | PathField::EventAttributes
        )
}

fn attr(p: Path, op: CmpOp, l: Lit) -> Cond {
    Cond::Attr(AttrTest {
        field: p.field,
        key: p.keys.into_vec().pop().expect("one key"),
        tests: vec![(op, l)],
        any: true,
    })
}

/// `lit op path` as `path op' lit`.
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        same => same,
    }
}

fn merge(terms: Vec<Cond>, any: bool) -> Cond {
    let mut out: Vec<Cond> = Vec::with_capacity(terms.len());
    for t in terms.into_iter().map(fuse) {
        if let (Some(Cond::Attr(prev)), Cond::Attr(next)) = (out.last_mut(), &t) {
            let fits = |a: &AttrTest| a.tests.len() == 1 || a.any == any;
            if prev.field == next.field && prev.key == next.key && fits(prev) && fits(next) {
                let Cond::Attr(next) = t else { unreachable!() };
                prev.any = any;
                prev.tests.extend(next.tests);
                continue;
            }
        }
        out.push(t);
    }
    if out.len() == 1 {
        out.pop().expect("one")
    } else if any {
        Cond::Or(out)
    } else {
        Cond::And(out)
    }
}
