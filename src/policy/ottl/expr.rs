//! The compiled form of a condition (checked at load, regexes built once) and the paths it
//! reads, each read straight from the span's encoded bytes when evaluated.

use std::cell::RefCell;

use regex::Regex;

use super::lexer::CmpOp;
use super::value::V;
use crate::model::Span;
use crate::wire::{self, AnyValueRef, Field as WireField, Fields};

/// A boolean expression.
#[derive(Debug)]
pub enum Cond {
    Or(Vec<Cond>),
    And(Vec<Cond>),
    Not(Box<Cond>),
    Cmp(Expr, CmpOp, Expr),
    /// A converter that returns a bool (`IsMatch`, `HasPrefix`, …) or a bool literal.
    Is(Expr),
    /// `attributes["k"] op literal` tests on one attribute, read once: any holds (`or` of
    /// them) or all hold (`and`). Fused at load from the common shapes
    /// (`a == "x" or a == "y"`, `a >= 500 and a <= 599`).
    Attr(AttrTest),
}

#[derive(Debug)]
pub struct AttrTest {
    /// One of the attribute maps (span, resource, scope, event).
    pub field: PathField,
    pub key: Box<str>,
    pub tests: Vec<(CmpOp, Lit)>,
    /// `or` of the tests; else `and`.
    pub any: bool,
}

/// A value.
#[derive(Debug)]
pub enum Expr {
    Lit(Lit),
    Path(Path),
    Call(Box<Call>),
}

#[derive(Debug)]
pub enum Lit {
    Nil,
    Str(Box<str>),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Box<[u8]>),
}

/// A converter call, arguments checked.
#[derive(Debug)]
pub enum Call {
    IsMatch(Expr, Regex),
    IsString(Expr),
    IsInt(Expr),
    IsDouble(Expr),
    IsBool(Expr),
    IsMap(Expr),
    Int(Expr),
    Double(Expr),
    String(Expr),
    Len(Expr),
    Concat(Vec<Expr>, Expr),
    HasPrefix(Expr, Expr),
    HasSuffix(Expr, Expr),
    ToLowerCase(Expr),
    ToUpperCase(Expr),
    Substring(Expr, Expr, Expr),
}

/// A path and the map keys after it (`attributes["a"]["b"]`).
#[derive(Debug)]
pub struct Path {
    pub field: PathField,
    pub keys: Box<[Box<str>]>,
    /// The memo slot of a path read more than once by its condition
    /// (`attributes["k"] >= 500 and attributes["k"] <= 599` walks the span once).
    pub slot: Option<u8>,
}

/// Memo slots per condition; paths repeated beyond them are read again.
pub const MEMO_SLOTS: usize = 4;

/// Values of repeated paths read during one evaluation of one condition on one span.
pub struct Memo<'a>(pub RefCell<[Option<V<'a>>; MEMO_SLOTS]>);

impl Memo<'_> {
    pub fn new() -> Self {
        Memo(RefCell::new([const { None }; MEMO_SLOTS]))
    }
}

/// What a path reads. `Event*` read the span event being evaluated; everything else the span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathField {
    Name,
    Kind,
    StatusCode,
    StatusMessage,
    Attributes,
    ResourceAttributes,
    ScopeName,
    ScopeVersion,
    ScopeAttributes,
    TraceId,
    SpanId,
    ParentSpanId,
    StartTime,
    EndTime,
    TraceState,
    EventName,
    EventAttributes,
    EventTime,
}

impl PathField {
    /// Reads only the resource or scope block (the same for every span of one block).
    pub fn origin_only(self) -> bool {
        matches!(
            self,
            PathField::ResourceAttributes
                | PathField::ScopeName
                | PathField::ScopeVersion
                | PathField::ScopeAttributes
        )
    }
}

/// What a condition is evaluated against: a span, and in `spanevent` one of its events
/// (the encoded `Span.Event` message; empty for span conditions).
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub span: &'a Span,
    pub event: &'a [u8],
    /// `None` for a condition with no repeated path (no slot to fill).
    pub memo: Option<&'a Memo<'a>>,
}

/// `Span.kind` (field 6), `Span.status` (15), event `time_unix_nano` (1) and `name` (2).
const SPAN_KIND: u32 = 6;
const SPAN_STATUS: u32 = 15;
const STATUS_MESSAGE: u32 = 2;
const EVENT_TIME: u32 = 1;
const EVENT_NAME: u32 = 2;
const EVENT_ATTRIBUTES: u32 = 3;
const SCOPE_NAME: u32 = 1;
const SCOPE_VERSION: u32 = 2;
const SCOPE_ATTRIBUTES: u32 = 3;

/// The last varint field `number` of `msg` (0 when absent, as proto3 reads it).
fn varint_field(msg: &[u8], number: u32) -> u64 {
    let mut found = 0;
    for f in Fields::new(msg) {
        match f {
            Ok((n, WireField::Varint(v))) if n == number => found = v,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    found
}

fn fixed64_field(msg: &[u8], number: u32) -> u64 {
    let mut found = 0;
    for f in Fields::new(msg) {
        match f {
            Ok((n, WireField::I64(v))) if n == number => found = v,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    found
}

fn str_field(msg: &[u8], number: u32) -> V<'_> {
    V::Str(wire::string_field(msg, number).unwrap_or("").into())
}

/// An id field (8 zero bytes when absent, as pdata reads an empty span id).
fn id_field(msg: &[u8], number: u32, len: usize) -> V<'_> {
    match wire::bytes_field(msg, number) {
        Some(b) if b.len() == len => V::Bytes(b.into()),
        _ => V::Bytes(vec![0; len].into()),
    }
}

/// An attribute value as OTTL sees it (an empty value is nil).
pub fn any_value(v: AnyValueRef<'_>) -> V<'_> {
    match v {
        AnyValueRef::Empty => V::Nil,
        AnyValueRef::Str(s) => V::Str(s.into()),
        AnyValueRef::Bool(b) => V::Bool(b),
        AnyValueRef::Int(i) => V::Int(i),
        AnyValueRef::Double(d) => V::Double(d),
        AnyValueRef::Bytes(b) => V::Bytes(b.into()),
        AnyValueRef::Array(b) => V::Slice(b),
        // `KeyValueList.values` is field 1.
        AnyValueRef::KvList(b) => V::Map(b, 1),
    }
}

impl AttrTest {
    #[inline]
    pub fn eval(&self, cx: Ctx<'_>) -> bool {
        let span = cx.span;
        let (msg, number): (&[u8], u32) = match self.field {
            PathField::Attributes => (&span.bytes, 9),
            PathField::ResourceAttributes => (&span.resource().message, 1),
            PathField::ScopeAttributes => (&span.scope().message, SCOPE_ATTRIBUTES),
            _ => (cx.event, EVENT_ATTRIBUTES),
        };
        let v = wire::Attributes::new(msg, number).get(self.key.as_bytes());
        for (op, lit) in &self.tests {
            if compare_lit(v, *op, lit) == self.any {
                return self.any;
            }
        }
        !self.any
    }
}

/// `compare(any_value(v), op, lit.value())` (an absent attribute is nil) without making
/// either value: the fused tests' hot path. Literals are never maps nor lists.
#[inline]
pub fn compare_lit(v: Option<AnyValueRef<'_>>, op: CmpOp, lit: &Lit) -> bool {
    use AnyValueRef as A;
    let v = v.unwrap_or(A::Empty);
    let ord = match (v, lit) {
        (A::Empty, Lit::Nil) => Some(std::cmp::Ordering::Equal),
        (A::Str(x), Lit::Str(y)) => Some(x.cmp(&**y)),
        (A::Int(x), Lit::Int(y)) => Some(x.cmp(y)),
        (A::Int(x), Lit::Double(y)) => (x as f64).partial_cmp(y),
        (A::Double(x), Lit::Int(y)) => x.partial_cmp(&(*y as f64)),
        (A::Double(x), Lit::Double(y)) => x.partial_cmp(y),
        (A::Bytes(x), Lit::Bytes(y)) => Some(x.cmp(&**y)),
        (A::Bool(x), Lit::Bool(y)) => {
            return match op {
                CmpOp::Eq => x == *y,
                CmpOp::Ne => x != *y,
                _ => false,
            }
        }
        _ => None,
    };
    super::value::outcome(ord, op, matches!(v, A::Empty))
}

impl Path {
    pub fn read<'a>(&self, cx: Ctx<'a>) -> Result<V<'a>, String> {
        let span = cx.span;
        let bytes: &'a [u8] = &span.bytes;
        let (msg, number): (&'a [u8], u32) = match self.field {
            PathField::Name => return Ok(str_field(bytes, 5)),
            PathField::Kind => return Ok(V::Int(varint_field(bytes, SPAN_KIND) as i64)),
            // Read at ingest (unknown codes read as unset there).
            PathField::StatusCode => return Ok(V::Int(span.status as i64)),
            PathField::StatusMessage => {
                let status = wire::bytes_field(bytes, SPAN_STATUS).unwrap_or(&[]);
                return Ok(str_field(status, STATUS_MESSAGE));
            }
            PathField::ScopeName => return Ok(str_field(&span.scope().message, SCOPE_NAME)),
            PathField::ScopeVersion => return Ok(str_field(&span.scope().message, SCOPE_VERSION)),
            PathField::TraceId => return Ok(V::Bytes(span.trace_id().to_vec().into())),
            PathField::SpanId => return Ok(id_field(bytes, 2, 8)),
            PathField::ParentSpanId => return Ok(id_field(bytes, 4, 8)),
            PathField::StartTime => return Ok(V::Int(span.start_unix_nano as i64)),
            PathField::EndTime => return Ok(V::Int(span.end_unix_nano as i64)),
            PathField::TraceState => return Ok(str_field(bytes, 3)),
            PathField::EventName => return Ok(str_field(cx.event, EVENT_NAME)),
            PathField::EventTime => return Ok(V::Int(fixed64_field(cx.event, EVENT_TIME) as i64)),
            PathField::Attributes => (bytes, 9),
            PathField::ResourceAttributes => (&span.resource().message[..], 1),
            PathField::ScopeAttributes => (&span.scope().message[..], SCOPE_ATTRIBUTES),
            PathField::EventAttributes => (cx.event, EVENT_ATTRIBUTES),
        };
        let mut v = V::Map(msg, number);
        for key in self.keys.iter() {
            v = match v {
                V::Map(m, n) => wire::Attributes::new(m, n)
                    .get(key.as_bytes())
                    .map_or(V::Nil, any_value),
                V::Nil => V::Nil,
                other => {
                    return Err(format!(
                        "cannot index a {} with [{key:?}]: only maps have keys",
                        other.type_name()
                    ))
                }
            };
        }
        Ok(v)
    }
}
