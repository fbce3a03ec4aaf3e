//! OTLP/JSON <-> protobuf for the trace signal, driven by a static schema table.
//!
//! JSON -> protobuf is a streaming, schema-directed parser (no intermediate JSON tree): it
//! accepts lowerCamelCase and snake_case field names, hex trace/span ids in any case, enums
//! as numbers or names, 64-bit integers as numbers or strings, and ignores (but reports)
//! unknown fields. Numbers are read from their exact text (doubles are correctly rounded).
//! Protobuf -> JSON writes what the Collector's file exporter writes: lowerCamelCase names,
//! lowercase hex ids, enums as integers, 64-bit integers as strings, defaults omitted.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::json_schema::{wire_type, FieldDef, Msg, Ty, REQUEST, RESPONSE};
use super::{put_key, put_len, put_varint, Field, Fields, WireError, I32, I64, VARINT};

/// Why a JSON body is not a valid OTLP/JSON ExportTraceServiceRequest (or why protobuf
/// bytes could not be rendered as JSON). The message names the JSON path.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

/// Deepest message nesting accepted in either direction (the request itself is level 1; each
/// level of `arrayValue` nesting adds two), below prost's default recursion limit of 100.
const MAX_DEPTH: usize = 64;

/// Most fields a schema message has (Span has 16).
const MAX_FIELDS: usize = 16;

// --- public API ---

/// OTLP/JSON ExportTraceServiceRequest -> protobuf encoding of the same request.
pub fn request_from_json(json: &[u8]) -> Result<Vec<u8>, JsonError> {
    request_from_json_with_unknown(json).map(|(proto, _)| proto)
}

/// Like [`request_from_json`], also returning the JSON paths of the unknown fields that
/// were ignored (e.g. `resourceSpans[0].scopeSpans[0].spans[1].fooBar`), for logging.
pub fn request_from_json_with_unknown(json: &[u8]) -> Result<(Vec<u8>, Vec<String>), JsonError> {
    message_from_json(&REQUEST, json)
}

/// Protobuf ExportTraceServiceRequest -> OTLP/JSON, one line, no trailing newline.
pub fn request_to_json(proto: &[u8]) -> Result<String, JsonError> {
    message_to_json(&REQUEST, proto)
}

/// OTLP/JSON ExportTraceServiceResponse: `{}` when nothing was rejected and there is no
/// message, else `{"partialSuccess":{"rejectedSpans":"N","errorMessage":"..."}}`.
pub fn response_to_json(rejected_spans: i64, error_message: &str) -> String {
    let mut partial = Vec::new();
    if rejected_spans != 0 {
        put_key(&mut partial, 1, VARINT);
        put_varint(&mut partial, rejected_spans as u64);
    }
    if !error_message.is_empty() {
        put_len(&mut partial, 2, error_message.as_bytes());
    }
    let mut response = Vec::new();
    if !partial.is_empty() {
        put_len(&mut response, 1, &partial);
    }
    message_to_json(&RESPONSE, &response).unwrap_or_else(|_| "{}".to_owned())
}

// --- paths ---

enum Seg {
    Name(&'static str),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Name(n) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(n);
            }
            Seg::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

fn path_error(path: &[Seg], msg: impl std::fmt::Display) -> JsonError {
    if path.is_empty() {
        JsonError(msg.to_string())
    } else {
        JsonError(format!("{}: {msg}", path_string(path)))
    }
}

// --- JSON -> protobuf ---

fn message_from_json(m: &'static Msg, json: &[u8]) -> Result<(Vec<u8>, Vec<String>), JsonError> {
    let s = std::str::from_utf8(json).map_err(|e| {
        let (line, col) = line_col(json, e.valid_up_to());
        JsonError(format!("invalid JSON at line {line} column {col}: invalid UTF-8"))
    })?;
    let mut p = Parser { s, b: json, pos: 0, path: Vec::new(), unknown: Vec::new() };
    let mut out = Vec::with_capacity(json.len() / 2);
    match p.token()? {
        Tok::Obj => p.message(m, &mut out, 1)?,
        other => return Err(JsonError(format!("expected a JSON object at top level, found {}", other.kind()))),
    }
    p.ws();
    if p.pos < json.len() {
        return Err(p.syntax("trailing characters after the JSON value"));
    }
    Ok((out, p.unknown))
}

fn line_col(b: &[u8], pos: usize) -> (usize, usize) {
    let before = &b[..pos.min(b.len())];
    let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
    let col = 1 + before.iter().rev().take_while(|&&c| c != b'\n').count();
    (line, col)
}

/// A JSON token; objects and arrays are only peeked (their opening byte is not consumed).
enum Tok<'a> {
    Null,
    Bool(bool),
    Num(&'a str),
    Str(Cow<'a, str>),
    Obj,
    Arr,
}

impl Tok<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Tok::Null => "null",
            Tok::Bool(_) => "boolean",
            Tok::Num(_) => "number",
            Tok::Str(_) => "string",
            Tok::Obj => "object",
            Tok::Arr => "array",
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    path: Vec<Seg>,
    unknown: Vec<String>,
}

impl<'a> Parser<'a> {
    fn syntax(&self, msg: &str) -> JsonError {
        let (line, col) = line_col(self.b, self.pos);
        JsonError(format!("invalid JSON at line {line} column {col}: {msg}"))
    }

    fn err(&self, msg: impl std::fmt::Display) -> JsonError {
        path_error(&self.path, msg)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Result<Tok<'a>, JsonError> {
        self.ws();
        match self.b.get(self.pos) {
            None => Err(self.syntax("EOF while parsing a value")),
            Some(b'{') => Ok(Tok::Obj),
            Some(b'[') => Ok(Tok::Arr),
            Some(b'"') => Ok(Tok::Str(self.string()?)),
            Some(b't') => self.literal("true", Tok::Bool(true)),
            Some(b'f') => self.literal("false", Tok::Bool(false)),
            Some(b'n') => self.literal("null", Tok::Null),
            Some(b'-' | b'0'..=b'9') => match number_len(&self.b[self.pos..]) {
                Some(n) => {
                    let t = &self.s[self.pos..self.pos + n];
                    self.pos += n;
                    Ok(Tok::Num(t))
                }
                None => Err(self.syntax("invalid number")),
            },
            Some(_) => Err(self.syntax("expected a value")),
        }
    }

    fn literal(&mut self, word: &str, tok: Tok<'a>) -> Result<Tok<'a>, JsonError> {
        if self.b[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(tok)
        } else {
            Err(self.syntax("expected a value"))
        }
    }

    /// Reads a string starting at its opening quote.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        loop {
            let run = self.pos;
            while let Some(&c) = self.b.get(self.pos) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            match self.b.get(self.pos) {
                None => return Err(self.syntax("EOF while parsing a string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(&self.s[start..self.pos - 1]),
                        Some(mut o) => {
                            o.push_str(&self.s[run..self.pos - 1]);
                            Cow::Owned(o)
                        }
                    });
                }
                Some(b'\\') => {
                    let o = owned.get_or_insert_with(String::new);
                    o.push_str(&self.s[run..self.pos]);
                    self.pos += 1;
                    let c = self.escape()?;
                    if let Some(o) = owned.as_mut() {
                        o.push(c);
                    }
                }
                Some(_) => return Err(self.syntax("control character in string")),
            }
        }
    }

    fn escape(&mut self) -> Result<char, JsonError> {
        let e = self.b.get(self.pos).copied();
        self.pos += 1;
        Ok(match e {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let hi = self.hex4()?;
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    if !self.b[self.pos..].starts_with(b"\\u") {
                        return Err(self.syntax("unpaired surrogate in string"));
                    }
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(self.syntax("unpaired surrogate in string"));
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(cp).ok_or_else(|| self.syntax("unpaired surrogate in string"))?
            }
            None => return Err(self.syntax("EOF while parsing a string")),
            Some(_) => return Err(self.syntax("invalid escape in string")),
        })
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self.b.get(self.pos..self.pos + 4).and_then(|h| std::str::from_utf8(h).ok());
        match h.filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit())) {
            Some(h) => {
                self.pos += 4;
                u32::from_str_radix(h, 16).map_err(|_| self.syntax("invalid \\u escape"))
            }
            None => Err(self.syntax("invalid \\u escape")),
        }
    }

    /// Walks an object (at its `{`), calling `each` positioned at every member's value.
    fn object(
        &mut self,
        mut each: impl FnMut(&mut Self, Cow<'a, str>) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.pos += 1;
        self.ws();
        if self.b.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.b.get(self.pos) != Some(&b'"') {
                return Err(self.syntax("expected a string key"));
            }
            let key = self.string()?;
            self.ws();
            if self.b.get(self.pos) != Some(&b':') {
                return Err(self.syntax("expected `:`"));
            }
            self.pos += 1;
            each(self, key)?;
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err(self.syntax("EOF while parsing an object")),
                Some(_) => return Err(self.syntax("expected `,` or `}`")),
            }
        }
    }

    /// Walks an array (at its `[`), calling `each` with the index of every element.
    fn array(&mut self, mut each: impl FnMut(&mut Self, usize) -> Result<(), JsonError>) -> Result<(), JsonError> {
        self.pos += 1;
        self.ws();
        if self.b.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(());
        }
        for i in 0.. {
            each(self, i)?;
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => break,
                None => return Err(self.syntax("EOF while parsing an array")),
                Some(_) => return Err(self.syntax("expected `,` or `]`")),
            }
        }
        self.pos += 1;
        Ok(())
    }

    fn skip(&mut self, depth: usize) -> Result<(), JsonError> {
        let tok = self.token()?;
        if matches!(tok, Tok::Obj | Tok::Arr) && depth > MAX_DEPTH {
            return Err(self.err(format_args!("nesting deeper than {MAX_DEPTH} levels")));
        }
        match tok {
            Tok::Obj => self.object(|p, _| p.skip(depth + 1)),
            Tok::Arr => self.array(|p, _| p.skip(depth + 1)),
            _ => Ok(()),
        }
    }

    /// Encodes the object at `{` as message `m`, appending its fields to `out`.
    fn message(&mut self, m: &'static Msg, out: &mut Vec<u8>, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format_args!("nesting deeper than {MAX_DEPTH} levels")));
        }
        let mut seen = 0u64;
        let mut oneof_set = false;
        self.object(|p, key| {
            let Some((i, fd)) = m.by_name(&key) else {
                let mut path = path_string(&p.path);
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key);
                p.unknown.push(path);
                return p.skip(depth + 1);
            };
            p.path.push(Seg::Name(fd.json));
            if seen & (1 << i) != 0 {
                return Err(p.err("duplicate field"));
            }
            seen |= 1 << i;
            let set = p.field(fd, out, depth)?;
            if set && fd.oneof {
                if oneof_set {
                    return Err(p.err("more than one value of a oneof is set"));
                }
                oneof_set = true;
            }
            p.path.pop();
            Ok(())
        })
    }

    /// Encodes one member's value; returns whether it was present (not `null`).
    fn field(&mut self, fd: &'static FieldDef, out: &mut Vec<u8>, depth: usize) -> Result<bool, JsonError> {
        let tok = self.token()?;
        match tok {
            Tok::Null => Ok(false),
            Tok::Arr if fd.repeated => {
                self.array(|p, i| {
                    p.path.push(Seg::Index(i));
                    let tok = p.token()?;
                    if let Tok::Null = tok {
                        return Err(p.err("null is not allowed in an array"));
                    }
                    p.single(fd, tok, out, depth, true)?;
                    p.path.pop();
                    Ok(())
                })?;
                Ok(true)
            }
            _ if fd.repeated => Err(self.err(format_args!("expected an array, found {}", tok.kind()))),
            _ => self.single(fd, tok, out, depth, fd.oneof).map(|()| true),
        }
    }

    fn single(
        &mut self,
        fd: &'static FieldDef,
        tok: Tok<'a>,
        out: &mut Vec<u8>,
        depth: usize,
        always: bool,
    ) -> Result<(), JsonError> {
        let n = fd.number;
        let mismatch = |p: &Self, want: &str| p.err(format_args!("expected {want}, found {}", tok.kind()));
        match fd.ty {
            Ty::Msg(m) => {
                let Tok::Obj = tok else {
                    return Err(mismatch(self, "an object"));
                };
                let mut child = Vec::new();
                self.message(m, &mut child, depth + 1)?;
                put_len(out, n, &child);
            }
            Ty::Str | Ty::Bytes | Ty::Hex => {
                let Tok::Str(s) = &tok else {
                    return Err(mismatch(self, "a string"));
                };
                let bytes: Cow<'_, [u8]> = match fd.ty {
                    Ty::Hex => Cow::Owned(hex::decode(s.as_bytes()).map_err(|e| match e {
                        hex::FromHexError::OddLength => self.err("invalid hex: odd length"),
                        _ => self.err("invalid hex"),
                    })?),
                    Ty::Bytes => Cow::Owned(base64_decode(s).ok_or_else(|| self.err("invalid base64"))?),
                    _ => Cow::Borrowed(s.as_bytes()),
                };
                if always || !bytes.is_empty() {
                    put_len(out, n, &bytes);
                }
            }
            Ty::Bool => {
                let Tok::Bool(v) = tok else {
                    return Err(mismatch(self, "true or false"));
                };
                if always || v {
                    put_key(out, n, VARINT);
                    put_varint(out, u64::from(v));
                }
            }
            Ty::Double => {
                let v = match &tok {
                    Tok::Num(t) => t.parse::<f64>().ok().filter(|v| v.is_finite()),
                    Tok::Str(s) => match &**s {
                        "NaN" => Some(f64::NAN),
                        "Infinity" => Some(f64::INFINITY),
                        "-Infinity" => Some(f64::NEG_INFINITY),
                        t if number_len(t.as_bytes()) == Some(t.len()) => {
                            t.parse::<f64>().ok().filter(|v| v.is_finite())
                        }
                        _ => return Err(self.err("invalid number")),
                    },
                    _ => return Err(mismatch(self, "a number")),
                };
                let v = v.ok_or_else(|| self.err("number out of range"))?;
                if always || v != 0.0 {
                    put_key(out, n, I64);
                    out.extend_from_slice(&v.to_bits().to_le_bytes());
                }
            }
            Ty::Int32 | Ty::Enum(_) | Ty::Uint32 | Ty::Int64 | Ty::Fixed32 | Ty::Fixed64 => {
                let (lo, hi) = match fd.ty {
                    Ty::Int32 | Ty::Enum(_) => (i128::from(i32::MIN), i128::from(i32::MAX)),
                    Ty::Uint32 | Ty::Fixed32 => (0, i128::from(u32::MAX)),
                    Ty::Int64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
                    _ => (0, i128::from(u64::MAX)),
                };
                let text = match &tok {
                    Tok::Num(t) => *t,
                    Tok::Str(s) => {
                        if let (Ty::Enum(names), false) = (fd.ty, number_len(s.as_bytes()) == Some(s.len())) {
                            let found = names.iter().find(|(name, _)| *name == &**s);
                            let (_, v) = found.ok_or_else(|| {
                                let shown: String = s.chars().take(64).collect();
                                self.err(format_args!("unknown enum value {shown:?}"))
                            })?;
                            write_int(out, n, fd.ty, i128::from(*v), always);
                            return Ok(());
                        }
                        if number_len(s.as_bytes()) != Some(s.len()) {
                            return Err(self.err("invalid integer"));
                        }
                        s
                    }
                    _ => return Err(mismatch(self, "an integer")),
                };
                let v = int_from_text(text).map_err(|e| self.err(e))?;
                if v < lo || v > hi {
                    return Err(self.err("integer out of range"));
                }
                write_int(out, n, fd.ty, v, always);
            }
        }
        Ok(())
    }
}

fn write_int(out: &mut Vec<u8>, n: u32, ty: Ty, v: i128, always: bool) {
    if v == 0 && !always {
        return;
    }
    match ty {
        Ty::Fixed32 => {
            put_key(out, n, I32);
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        Ty::Fixed64 => {
            put_key(out, n, I64);
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        // int32/enum/int64 are sign-extended to 64 bits; u32/u64 are in range already.
        _ => {
            put_key(out, n, VARINT);
            put_varint(out, v as i64 as u64);
        }
    }
}

/// Length of the JSON number at the start of `b`, if one is there.
fn number_len(b: &[u8]) -> Option<usize> {
    let digits = |i: usize| b[i.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let d = digits(i + 1);
        if d == 0 {
            return None;
        }
        i += 1 + d;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let d = digits(i);
        if d == 0 {
            return None;
        }
        i += d;
    }
    Some(i)
}

/// The exact integer value of a JSON number's text (`1e3`, `2.0` are integers; `1.5` is not).
fn int_from_text(t: &str) -> Result<i128, &'static str> {
    const RANGE: &str = "integer out of range";
    if let Ok(v) = t.parse::<i128>() {
        return Ok(v);
    }
    let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i64>().map_err(|_| RANGE)?.clamp(-100_000, 100_000)),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let trimmed = digits.trim_end_matches('0');
    let mut exp = exp - frac.len() as i64 + (digits.len() - trimmed.len()) as i64;
    let trimmed = trimmed.trim_start_matches('0');
    if trimmed.is_empty() {
        return Ok(0);
    }
    if exp < 0 {
        return Err("not an integer");
    }
    if trimmed.len() as i64 + exp > 39 {
        return Err(RANGE);
    }
    let mut v: i128 = trimmed.parse().map_err(|_| RANGE)?;
    while exp > 0 {
        v = v.checked_mul(10).ok_or(RANGE)?;
        exp -= 1;
    }
    Ok(if neg { -v } else { v })
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(b: &[u8], out: &mut String) {
    for chunk in b.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let v = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

/// Standard or URL-safe base64, padding optional.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let t = s.strip_suffix("==").or_else(|| s.strip_suffix('=')).unwrap_or(s);
    if t.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in t.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// --- protobuf -> JSON ---

fn message_to_json(m: &'static Msg, proto: &[u8]) -> Result<String, JsonError> {
    let mut w = Writer { out: String::with_capacity(proto.len() * 2), path: Vec::new() };
    w.message(m, proto, 1)?;
    Ok(w.out)
}

struct Writer {
    out: String,
    path: Vec<Seg>,
}

impl Writer {
    fn key(&mut self, first: &mut bool, name: &str) {
        if !std::mem::take(first) {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
    }

    fn message(&mut self, m: &'static Msg, buf: &[u8], depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(path_error(&self.path, format_args!("nesting deeper than {MAX_DEPTH} levels")));
        }
        // One pass validates the fields and notes, per schema field, how often it occurs (for a
        // oneof member: since the oneof last switched to it) and its last value.
        let mut slots = [(0usize, Field::Varint(0)); MAX_FIELDS];
        let mut winner = None;
        for field in Fields::new(buf) {
            let (n, v) = field.map_err(|e| path_error(&self.path, format_args!("invalid protobuf: {e}")))?;
            let Some((i, fd)) = m.by_number(n) else { continue };
            let want = wire_type(fd.ty);
            if v.wire_type() != want {
                let e = WireError::Mismatch { field: n, got: v.wire_type(), want };
                return Err(path_error(&self.path, format_args!("invalid protobuf: {e}")));
            }
            if fd.oneof && winner.replace(i) != Some(i) {
                slots[i].0 = 0;
            }
            slots[i] = (slots[i].0 + 1, v);
        }
        let of = |n: u32| Fields::new(buf).flatten().filter(move |(k, _)| *k == n).map(|(_, v)| v);
        self.out.push('{');
        let mut first = true;
        for (i, fd) in m.fields.iter().enumerate() {
            let (count, last) = slots[i];
            if count == 0 || (fd.oneof && winner != Some(i)) {
                continue;
            }
            self.path.push(Seg::Name(fd.json));
            if fd.repeated {
                self.key(&mut first, fd.json);
                self.out.push('[');
                for (j, v) in of(fd.number).enumerate() {
                    if j > 0 {
                        self.out.push(',');
                    }
                    self.path.push(Seg::Index(j));
                    self.value(fd.ty, v, depth)?;
                    self.path.pop();
                }
                self.out.push(']');
            } else if let (Ty::Msg(_), true) = (fd.ty, count > 1) {
                // Repeated occurrences of a singular message merge, i.e. concatenate.
                let parts: Vec<&[u8]> =
                    of(fd.number).filter_map(|v| if let Field::Len(b) = v { Some(b) } else { None }).collect();
                let merged = parts[parts.len() - count..].concat();
                self.key(&mut first, fd.json);
                self.value(fd.ty, Field::Len(&merged), depth)?;
            } else {
                let default = matches!(last, Field::Varint(0) | Field::I64(0) | Field::I32(0))
                    || matches!(last, Field::Len(b) if b.is_empty());
                if fd.oneof || !default || matches!(fd.ty, Ty::Msg(_)) {
                    self.key(&mut first, fd.json);
                    self.value(fd.ty, last, depth)?;
                }
            }
            self.path.pop();
        }
        self.out.push('}');
        Ok(())
    }

    fn value(&mut self, ty: Ty, v: Field<'_>, depth: usize) -> Result<(), JsonError> {
        let o = &mut self.out;
        match (ty, v) {
            (Ty::Msg(m), Field::Len(b)) => return self.message(m, b, depth + 1),
            (Ty::Str, Field::Len(b)) => match std::str::from_utf8(b) {
                Ok(s) => push_json_str(o, s),
                Err(_) => return Err(path_error(&self.path, "invalid protobuf: string is not valid UTF-8")),
            },
            (Ty::Hex, Field::Len(b)) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                o.push('"');
                o.extend(b.iter().flat_map(|&x| [HEX[usize::from(x >> 4)], HEX[usize::from(x & 15)]]).map(char::from));
                o.push('"');
            }
            (Ty::Bytes, Field::Len(b)) => {
                o.push('"');
                base64_encode(b, o);
                o.push('"');
            }
            (Ty::Bool, Field::Varint(x)) => o.push_str(if x != 0 { "true" } else { "false" }),
            (Ty::Int32 | Ty::Enum(_), Field::Varint(x)) => _ = write!(o, "{}", x as i32),
            (Ty::Uint32, Field::Varint(x)) => _ = write!(o, "{}", x as u32),
            (Ty::Int64, Field::Varint(x)) => _ = write!(o, "\"{}\"", x as i64),
            (Ty::Fixed64, Field::I64(x)) => _ = write!(o, "\"{x}\""),
            (Ty::Fixed32, Field::I32(x)) => _ = write!(o, "{x}"),
            (Ty::Double, Field::I64(x)) => {
                let d = f64::from_bits(x);
                match d {
                    _ if d.is_nan() => o.push_str("\"NaN\""),
                    f64::INFINITY => o.push_str("\"Infinity\""),
                    f64::NEG_INFINITY => o.push_str("\"-Infinity\""),
                    // Debug prints the shortest text that reads back exactly, as JSON.
                    _ => _ = write!(o, "{d:?}"),
                }
            }
            _ => return Err(path_error(&self.path, "invalid protobuf: wire type mismatch")),
        }
        Ok(())
    }
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(esc);
        }
        run = i + c.len_utf8();
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value::Value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    fn kv(key: &str, v: Option<Value>) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: v }), key_strindex: 0 }
    }

    fn req(
        resource: Option<Resource>,
        scope: Option<InstrumentationScope>,
        spans: Vec<Span>,
    ) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource,
                scope_spans: vec![ScopeSpans { scope, spans, schema_url: "https://s/1".into() }],
                schema_url: String::new(),
            }],
        }
    }

    fn full_request() -> ExportTraceServiceRequest {
        let nested = Value::KvlistValue(KeyValueList {
            values: vec![
                kv(
                    "inner",
                    Some(Value::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue { value: Some(Value::IntValue(-7)) },
                            AnyValue { value: None },
                            AnyValue { value: Some(Value::ArrayValue(ArrayValue::default())) },
                        ],
                    })),
                ),
                KeyValue { key: "no value".into(), value: None, key_strindex: 3 },
            ],
        });
        let resource = Resource {
            attributes: vec![
                kv("s", Some(Value::StringValue("svc \"q\" \\ \n\u{1}é😀".into()))),
                kv("b", Some(Value::BoolValue(true))),
                kv("i", Some(Value::IntValue(i64::MIN))),
                kv("d", Some(Value::DoubleValue(0.1 + 0.2))),
                kv("d2", Some(Value::DoubleValue(f64::MAX))),
                kv("d3", Some(Value::DoubleValue(5e-324))),
                kv("inf", Some(Value::DoubleValue(f64::NEG_INFINITY))),
                kv("bytes", Some(Value::BytesValue(vec![0, 1, 2, 250, 251, 252, 253]))),
                kv(
                    "arr",
                    Some(Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(nested.clone()) }] })),
                ),
                kv("kv", Some(nested)),
                kv("zero int", Some(Value::IntValue(0))),
                kv("false", Some(Value::BoolValue(false))),
                kv("empty str", Some(Value::StringValue(String::new()))),
                kv("zero double", Some(Value::DoubleValue(0.0))),
                kv("empty bytes", Some(Value::BytesValue(vec![]))),
                kv("strindex", Some(Value::StringValueStrindex(0))),
                kv("empty", None),
            ],
            dropped_attributes_count: 3,
            entity_refs: vec![EntityRef {
                schema_url: "u".into(),
                r#type: "service".into(),
                id_keys: vec!["service.name".into(), String::new()],
                description_keys: vec!["d".into()],
            }],
        };
        let scope = InstrumentationScope {
            name: "lib".into(),
            version: "1.2".into(),
            attributes: vec![kv("scope.attr", Some(Value::StringValue("x".into())))],
            dropped_attributes_count: 1,
        };
        let span = Span {
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            trace_state: "k=v".into(),
            parent_span_id: vec![0xab; 8],
            flags: 0x301,
            name: "GET /".into(),
            kind: 3,
            start_time_unix_nano: u64::MAX,
            end_time_unix_nano: 1_544_712_661_000_000_001,
            attributes: vec![kv("http.status_code", Some(Value::IntValue(500)))],
            dropped_attributes_count: 4,
            events: vec![
                Event {
                    time_unix_nano: 5,
                    name: "exception".into(),
                    attributes: vec![kv("e", Some(Value::DoubleValue(-1.5)))],
                    dropped_attributes_count: 2,
                },
                Event::default(),
            ],
            dropped_events_count: 6,
            links: vec![Link {
                trace_id: vec![0xff; 16],
                span_id: vec![0xee; 8],
                trace_state: "a=b".into(),
                attributes: vec![kv("l", Some(Value::BoolValue(true)))],
                dropped_attributes_count: 7,
                flags: 1,
            }],
            dropped_links_count: 8,
            status: Some(Status { message: "boom".into(), code: 2 }),
        };
        let bare = Span { kind: 42, status: Some(Status::default()), ..Span::default() };
        req(Some(resource), Some(scope), vec![span, bare])
    }

    fn round_trip(r: &ExportTraceServiceRequest) -> ExportTraceServiceRequest {
        let json = request_to_json(&r.encode_to_vec()).unwrap();
        assert!(!json.contains('\n'), "{json}");
        let (proto, unknown) = request_from_json_with_unknown(json.as_bytes()).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        ExportTraceServiceRequest::decode(&proto[..]).unwrap()
    }

    fn decode(json: &str) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(&request_from_json(json.as_bytes()).unwrap()[..]).unwrap()
    }

    fn err(json: &str) -> String {
        request_from_json(json.as_bytes()).unwrap_err().to_string()
    }

    fn spans_doc(span: &str) -> String {
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#)
    }

    #[test]
    fn round_trips_prost_requests() {
        let with_empty_resource = req(Some(Resource::default()), None, vec![Span::default()]);
        for r in [full_request(), ExportTraceServiceRequest::default(), with_empty_resource] {
            assert_eq!(round_trip(&r), r);
        }
    }

    #[test]
    fn writes_otlp_json_conventions() {
        let json = request_to_json(&full_request().encode_to_vec()).unwrap();
        for want in [
            r#""traceId":"0102030405060708090a0b0c0d0e0f10""#,
            r#""parentSpanId":"abababababababab""#,
            r#""kind":3,"startTimeUnixNano":"18446744073709551615""#,
            r#""flags":769"#,
            r#"{"key":"i","value":{"intValue":"-9223372036854775808"}}"#,
            r#"{"key":"zero int","value":{"intValue":"0"}}"#,
            r#"{"key":"false","value":{"boolValue":false}}"#,
            r#"{"key":"empty str","value":{"stringValue":""}}"#,
            r#"{"key":"inf","value":{"doubleValue":"-Infinity"}}"#,
            r#"{"key":"bytes","value":{"bytesValue":"AAEC+vv8/Q=="}}"#,
            r#"{"key":"empty","value":{}}"#,
            r#""status":{"message":"boom","code":2}"#,
            r#""status":{}"#,
            r#""svc \"q\" \\ \n\u0001é😀""#,
        ] {
            assert!(json.contains(want), "{want} not in {json}");
        }
        assert!(json.starts_with(r#"{"resourceSpans":[{"resource":{"attributes":["#));
        assert!(!json.contains("droppedEventsCount\":0"));
    }

    const SPEC_EXAMPLE: &str = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{
          "scope": {"name": "my.library", "version": "1.0.0",
                    "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
          "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "spanId": "EEE19B7EC3C1B174",
            "parentSpanId": "EEE19B7EC3C1B173",
            "name": "I'm a server span",
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": 1544712661000000000,
            "kind": 2,
            "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}},
                           {"key": "n", "value": {"intValue": "42"}}]
          }]
        }]
      }]
    }"#;

    const SNAKE_EXAMPLE: &str = r#"{
      "resource_spans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"string_value": "my.service"}}]},
        "scope_spans": [{
          "scope": {"name": "my.library", "version": "1.0.0",
                    "attributes": [{"key": "my.scope.attribute", "value": {"string_value": "some scope attribute"}}]},
          "spans": [{
            "trace_id": "5b8efff798038103d269b633813fc60c",
            "span_id": "eee19b7ec3c1b174",
            "parent_span_id": "eee19b7ec3c1b173",
            "name": "I'm a server span",
            "start_time_unix_nano": 1544712660000000000,
            "end_time_unix_nano": "1544712661000000000",
            "kind": "SPAN_KIND_SERVER",
            "attributes": [{"key": "my.span.attr", "value": {"string_value": "some value"}},
                           {"key": "n", "value": {"int_value": 42}}]
          }]
        }]
      }]
    }"#;

    #[test]
    fn decodes_the_spec_example() {
        let r = decode(SPEC_EXAMPLE);
        let rs = &r.resource_spans[0];
        assert_eq!(
            rs.resource.as_ref().unwrap().attributes,
            vec![kv("service.name", Some(Value::StringValue("my.service".into())))]
        );
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!((scope.name.as_str(), scope.version.as_str()), ("my.library", "1.0.0"));
        let span = &rs.scope_spans[0].spans[0];
        assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(span.span_id, hex::decode("eee19b7ec3c1b174").unwrap());
        assert_eq!(span.parent_span_id, hex::decode("eee19b7ec3c1b173").unwrap());
        assert_eq!(span.name, "I'm a server span");
        assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (1544712660000000000, 1544712661000000000));
        assert_eq!(span.kind, 2);
        assert_eq!(span.attributes[1], kv("n", Some(Value::IntValue(42))));
    }

    #[test]
    fn snake_case_names_decode_like_camel_case() {
        let (_, unknown) = request_from_json_with_unknown(SNAKE_EXAMPLE.as_bytes()).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(decode(SNAKE_EXAMPLE), decode(SPEC_EXAMPLE));
    }

    #[test]
    fn enums_by_name_number_or_numeric_string() {
        let r = decode(&spans_doc(r#"{"kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR"}},{"kind":"4"}"#));
        let spans = &r.resource_spans[0].scope_spans[0].spans;
        assert_eq!((spans[0].kind, spans[0].status.as_ref().unwrap().code), (2, 2));
        assert_eq!(spans[1].kind, 4);
        let e = err(&spans_doc(r#"{"kind":1},{"kind":"SPAN_KIND_BOGUS"}"#));
        assert_eq!(e, r#"resourceSpans[0].scopeSpans[0].spans[1].kind: unknown enum value "SPAN_KIND_BOGUS""#);
        assert!(err(&spans_doc(r#"{"kind":2147483648}"#)).contains("out of range"));
    }

    #[test]
    fn nulls_are_absent_and_unknown_fields_are_reported() {
        let doc = r#"{"extra":1,"resourceSpans":[{"resource":null,"scopeSpans":[{"scope":null,"spans":[
            {"name":"a","attributes":null,"events":null,"status":null,"fooBar":{"x":[1,{"y":null}]},"kind":null}]}]}]}"#;
        let (proto, unknown) = request_from_json_with_unknown(doc.as_bytes()).unwrap();
        assert_eq!(unknown, vec!["extra".to_owned(), "resourceSpans[0].scopeSpans[0].spans[0].fooBar".to_owned()]);
        let r = ExportTraceServiceRequest::decode(&proto[..]).unwrap();
        let mut want = req(None, None, vec![Span { name: "a".into(), ..Span::default() }]);
        want.resource_spans[0].scope_spans[0].schema_url.clear();
        assert_eq!(r, want);
    }

    #[test]
    fn oneof_members_are_written_even_when_default() {
        let attrs = r#"[{"key":"i","value":{"intValue":"0"}},{"key":"s","value":{"stringValue":""}},
            {"key":"b","value":{"boolValue":false}},{"key":"d","value":{"doubleValue":0}},{"key":"n","value":{}},
            {"key":"x","value":{"stringValue":null,"intValue":3}}]"#;
        let r = decode(&spans_doc(&format!(r#"{{"attributes":{attrs}}}"#)));
        let values: Vec<_> = r.resource_spans[0].scope_spans[0].spans[0]
            .attributes
            .iter()
            .map(|a| a.value.clone().unwrap().value)
            .collect();
        assert_eq!(
            values,
            vec![
                Some(Value::IntValue(0)),
                Some(Value::StringValue(String::new())),
                Some(Value::BoolValue(false)),
                Some(Value::DoubleValue(0.0)),
                None,
                Some(Value::IntValue(3))
            ]
        );
        let e = err(&spans_doc(r#"{"attributes":[{"key":"k","value":{"intValue":1,"boolValue":true}}]}"#));
        assert!(
            e.starts_with("resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.boolValue: more than one"),
            "{e}"
        );
    }

    #[test]
    fn numbers_and_bytes_forms() {
        let value = |v: &str| {
            let r = decode(&spans_doc(&format!(r#"{{"attributes":[{{"key":"k","value":{v}}}]}}"#)));
            r.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.clone().unwrap().value.unwrap()
        };
        assert_eq!(value(r#"{"intValue":1e3}"#), Value::IntValue(1000));
        assert_eq!(value(r#"{"intValue":"-2.50e1"}"#), Value::IntValue(-25));
        assert_eq!(value(r#"{"intValue":"-9223372036854775808"}"#), Value::IntValue(i64::MIN));
        assert_eq!(value(r#"{"doubleValue":"1.5"}"#), Value::DoubleValue(1.5));
        assert_eq!(value(r#"{"doubleValue":2}"#), Value::DoubleValue(2.0));
        assert_eq!(value(r#"{"doubleValue":0.30000000000000004}"#), Value::DoubleValue(0.1 + 0.2));
        assert_eq!(value(r#"{"doubleValue":"Infinity"}"#), Value::DoubleValue(f64::INFINITY));
        assert!(matches!(value(r#"{"doubleValue":"NaN"}"#), Value::DoubleValue(d) if d.is_nan()));
        assert_eq!(value(r#"{"bytesValue":"AAEC+vv8/Q=="}"#), Value::BytesValue(vec![0, 1, 2, 250, 251, 252, 253]));
        assert_eq!(value(r#"{"bytesValue":"AAEC-vv8_Q"}"#), Value::BytesValue(vec![0, 1, 2, 250, 251, 252, 253]));
        assert_eq!(value(r#"{"stringValue":"\ud83d\ude00\u00e9\n\/"}"#), Value::StringValue("😀é\n/".into()));
        let span = |s: &str| decode(&spans_doc(s)).resource_spans[0].scope_spans[0].spans[0].clone();
        assert_eq!(span(r#"{"startTimeUnixNano":"18446744073709551615","flags":"4294967295"}"#).flags, u32::MAX);
        assert_eq!(span(r#"{"traceId":"","droppedLinksCount":"7"}"#).dropped_links_count, 7);
        for (bad, why) in [
            (r#"{"attributes":[{"key":"k","value":{"intValue":"9223372036854775808"}}]}"#, "out of range"),
            (r#"{"attributes":[{"key":"k","value":{"intValue":1.5}}]}"#, "not an integer"),
            (r#"{"attributes":[{"key":"k","value":{"doubleValue":1e400}}]}"#, "out of range"),
            (r#"{"attributes":[{"key":"k","value":{"doubleValue":"inf"}}]}"#, "invalid number"),
            (r#"{"attributes":[{"key":"k","value":{"bytesValue":"a*=="}}]}"#, "invalid base64"),
            (r#"{"droppedAttributesCount":-1}"#, "out of range"),
            (r#"{"startTimeUnixNano":"abc"}"#, "spans[0].startTimeUnixNano: invalid integer"),
            (r#"{"startTimeUnixNano":true}"#, "expected an integer, found boolean"),
            (r#"{"name":1}"#, "spans[0].name: expected a string, found number"),
            (r#"{"status":[]}"#, "spans[0].status: expected an object, found array"),
            (r#"{"events":{}}"#, "spans[0].events: expected an array, found object"),
            (r#"{"events":[null]}"#, "spans[0].events[0]: null is not allowed"),
            (r#"{"traceId":"aa","trace_id":"bb"}"#, "spans[0].traceId: duplicate field"),
        ] {
            let e = err(&spans_doc(bad));
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_path() {
        let spans = r#"{"spans":[{},{},{},{"traceId":"5b8efff798038103d269b633813fc60g"}]}"#;
        let doc = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{}},{spans}]}}]}}"#);
        assert_eq!(err(&doc), "resourceSpans[0].scopeSpans[1].spans[3].traceId: invalid hex");
        let e = err(&spans_doc(r#"{"spanId":"abc"}"#));
        assert_eq!(e, "resourceSpans[0].scopeSpans[0].spans[0].spanId: invalid hex: odd length");
        let e = err(&spans_doc(r#"{"links":[{"spanId":"x1"}]}"#));
        assert_eq!(e, "resourceSpans[0].scopeSpans[0].spans[0].links[0].spanId: invalid hex");
        for top in ["[]", "\"x\"", "1", "null"] {
            assert!(err(top).starts_with("expected a JSON object at top level"), "{top}");
        }
        for bad in
            ["", "   ", "{\"resourceSpans\":[}", "{} x", "{'a':1}", "{\"a\":tru}", "{\"a\":\"\u{1}\"}", "{\"a\":01}"]
        {
            assert!(err(bad).starts_with("invalid JSON at line 1 column"), "{bad:?}: {}", err(bad));
        }
        assert!(request_from_json(b"{\"a\":\"\xff\"}").unwrap_err().to_string().contains("invalid UTF-8"));
        let e = err("{\n  \"resourceSpans\": [\n    {\"scopeSpans\": [}");
        assert!(e.starts_with("invalid JSON at line 3 column 21"), "{e}");
    }

    #[test]
    fn truncated_json_is_an_error_not_a_panic() {
        let json = request_to_json(&full_request().encode_to_vec()).unwrap();
        for cut in 0..json.len() {
            if json.is_char_boundary(cut) {
                assert!(request_from_json(&json.as_bytes()[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let depth = 1000;
        let mut v = String::from(r#"{"intValue":1}"#);
        for _ in 0..depth {
            v = format!(r#"{{"arrayValue":{{"values":[{v}]}}}}"#);
        }
        let e = err(&spans_doc(&format!(r#"{{"attributes":[{{"key":"k","value":{v}}}]}}"#)));
        assert!(e.contains("nesting deeper than 64 levels"), "{e}");
        let e = err(&format!(r#"{{"x":{}{}}}"#, "[".repeat(depth), "]".repeat(depth)));
        assert!(e.contains("nesting deeper than 64 levels"), "{e}");
        // ... and the same for protobuf: an AnyValue nested 1000 levels deep.
        let mut any = Vec::new();
        put_key(&mut any, 3, VARINT);
        put_varint(&mut any, 1);
        for _ in 0..depth {
            let mut array = Vec::new();
            put_len(&mut array, 1, &any);
            any.clear();
            put_len(&mut any, 5, &array);
        }
        let r = req(Some(Resource { attributes: vec![kv("k", None)], ..Resource::default() }), None, vec![]);
        let mut proto = r.encode_to_vec();
        let mut attr = Vec::new();
        put_len(&mut attr, 2, &any);
        let mut resource = Vec::new();
        put_len(&mut resource, 1, &attr);
        let mut rs = Vec::new();
        put_len(&mut rs, 1, &resource);
        put_len(&mut proto, 1, &rs);
        let e = request_to_json(&proto).unwrap_err().to_string();
        assert!(e.contains("nesting deeper than 64 levels"), "{e}");
    }

    #[test]
    fn malformed_protobuf_is_an_error() {
        let proto = full_request().encode_to_vec();
        for cut in 0..proto.len() {
            let _ = request_to_json(&proto[..cut]);
        }
        assert_eq!(
            request_to_json(&[0x0a, 0x05, 0x01]).unwrap_err().to_string(),
            "invalid protobuf: truncated message"
        );
        let e = request_to_json(&[0x08, 0x01]).unwrap_err().to_string();
        assert_eq!(e, "invalid protobuf: field 1 has wire type 0, expected 2");
        // resourceSpans[0].schemaUrl with invalid UTF-8.
        let e = request_to_json(&[0x0a, 0x03, 0x1a, 0x01, 0xff]).unwrap_err().to_string();
        assert_eq!(e, "resourceSpans[0].schemaUrl: invalid protobuf: string is not valid UTF-8");
        // Unknown fields are skipped; a repeated singular message merges.
        let mut rs = Vec::new();
        put_len(&mut rs, 1, &string_attrs_resource("a"));
        put_len(&mut rs, 1, &string_attrs_resource("b"));
        put_key(&mut rs, 99, VARINT);
        put_varint(&mut rs, 5);
        let mut proto = Vec::new();
        put_len(&mut proto, 1, &rs);
        let json = request_to_json(&proto).unwrap();
        assert_eq!(
            json,
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"stringValue":"a"}},{"key":"b","value":{"stringValue":"b"}}]}}]}"#
        );
    }

    #[test]
    fn duplicate_fields_read_as_prost_reads_them() {
        let array_of = |i: u64| {
            let (mut int, mut any, mut array) = (Vec::new(), Vec::new(), Vec::new());
            put_key(&mut int, 3, VARINT);
            put_varint(&mut int, i);
            put_len(&mut array, 1, &int);
            put_len(&mut any, 5, &array);
            any
        };
        // A oneof switching back and forth: only the occurrences after the last switch merge.
        let any = [array_of(1), vec![0x0a, 0x01, b'x'], array_of(2), array_of(3)].concat();
        let mut attr = Vec::new();
        put_len(&mut attr, 1, b"k");
        put_len(&mut attr, 2, &any);
        let mut span = Vec::new();
        put_len(&mut span, 5, b"first");
        put_len(&mut span, 5, b"last");
        put_len(&mut span, 15, &[0x12, 0x01, b'm']);
        put_len(&mut span, 15, &[0x18, 0x02]);
        put_len(&mut span, 9, &attr);
        let (mut scope_spans, mut rs, mut proto) = (Vec::new(), Vec::new(), Vec::new());
        put_len(&mut scope_spans, 2, &span);
        put_len(&mut rs, 2, &scope_spans);
        put_len(&mut proto, 1, &rs);
        let via_prost = ExportTraceServiceRequest::decode(&proto[..]).unwrap().encode_to_vec();
        let json = request_to_json(&proto).unwrap();
        assert_eq!(json, request_to_json(&via_prost).unwrap());
        assert!(json.contains(r#""name":"last""#) && json.contains(r#""status":{"message":"m","code":2}"#), "{json}");
        assert!(json.contains(r#"{"arrayValue":{"values":[{"intValue":"2"},{"intValue":"3"}]}}"#), "{json}");
    }

    fn string_attrs_resource(key: &str) -> Vec<u8> {
        let mut r = Vec::new();
        put_len(&mut r, 1, &crate::wire::string_key_value(key, key));
        r
    }

    #[test]
    fn response_json() {
        assert_eq!(response_to_json(0, ""), "{}");
        assert_eq!(
            response_to_json(3, "bad \"ids\""),
            r#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"bad \"ids\""}}"#
        );
        assert_eq!(response_to_json(-1, ""), r#"{"partialSuccess":{"rejectedSpans":"-1"}}"#);
        assert_eq!(response_to_json(0, "warn"), r#"{"partialSuccess":{"errorMessage":"warn"}}"#);
    }

    fn any_value() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            Just(None),
            any::<String>().prop_map(|s| Some(Value::StringValue(s))),
            any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
            any::<i64>().prop_map(|i| Some(Value::IntValue(i))),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |d| !d.is_nan())
                .prop_map(|d| Some(Value::DoubleValue(d))),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| Some(Value::BytesValue(b))),
        ]
        .prop_map(|value| AnyValue { value });
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|values| AnyValue { value: Some(Value::ArrayValue(ArrayValue { values })) }),
                prop::collection::vec((any::<String>(), inner), 0..3).prop_map(|kvs| {
                    let values =
                        kvs.into_iter().map(|(key, v)| KeyValue { key, value: Some(v), key_strindex: 0 }).collect();
                    AnyValue { value: Some(Value::KvlistValue(KeyValueList { values })) }
                }),
            ]
        })
    }

    fn attrs() -> impl Strategy<Value = Vec<KeyValue>> {
        prop::collection::vec(
            (any::<String>(), prop::option::of(any_value())).prop_map(|(key, value)| KeyValue {
                key,
                value,
                key_strindex: 0,
            }),
            0..3,
        )
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..=max)
    }

    fn span() -> impl Strategy<Value = Span> {
        let ids = (bytes(16), bytes(8), bytes(8), any::<String>(), any::<u32>());
        let times = (any::<String>(), any::<i32>(), any::<u64>(), any::<u64>(), any::<[u32; 3]>());
        let event = (any::<u64>(), any::<String>(), attrs(), any::<u32>()).prop_map(|(t, name, attributes, d)| Event {
            time_unix_nano: t,
            name,
            attributes,
            dropped_attributes_count: d,
        });
        let link = (bytes(16), bytes(8), any::<String>(), attrs(), any::<u32>(), any::<u32>()).prop_map(
            |(trace_id, span_id, trace_state, attributes, d, flags)| Link {
                trace_id,
                span_id,
                trace_state,
                attributes,
                dropped_attributes_count: d,
                flags,
            },
        );
        let status =
            prop::option::of((any::<String>(), any::<i32>()).prop_map(|(message, code)| Status { message, code }));
        let rest = (attrs(), prop::collection::vec(event, 0..2), prop::collection::vec(link, 0..2), status);
        (ids, times, rest).prop_map(
            |((trace_id, span_id, parent_span_id, trace_state, flags), (name, kind, start, end, dropped), rest)| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes: rest.0,
                dropped_attributes_count: dropped[0],
                events: rest.1,
                dropped_events_count: dropped[1],
                links: rest.2,
                dropped_links_count: dropped[2],
                status: rest.3,
            },
        )
    }

    fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let resource = prop::option::of((attrs(), any::<u32>()).prop_map(|(attributes, d)| Resource {
            attributes,
            dropped_attributes_count: d,
            entity_refs: vec![],
        }));
        let scope =
            prop::option::of((any::<String>(), any::<String>(), attrs()).prop_map(|(name, version, attributes)| {
                InstrumentationScope { name, version, attributes, dropped_attributes_count: 0 }
            }));
        let scope_spans = (scope, prop::collection::vec(span(), 0..3), any::<String>())
            .prop_map(|(scope, spans, schema_url)| ScopeSpans { scope, spans, schema_url });
        let resource_spans = (resource, prop::collection::vec(scope_spans, 0..3), any::<String>())
            .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans { resource, scope_spans, schema_url });
        prop::collection::vec(resource_spans, 0..3)
            .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
    }

    proptest! {
        #[test]
        fn random_requests_round_trip(r in request()) {
            prop_assert_eq!(round_trip(&r), r);
        }
    }
}
