//! OTLP/JSON to protobuf: a streaming parser that writes the protobuf encoding as it reads,
//! driven by the message schema (`json_schema`), with paths in every error.

use super::*;
pub(super) fn message_from_json(
    m: &'static Msg,
    json: &[u8],
) -> Result<(Vec<u8>, Vec<String>), JsonError> {
    let s = std::str::from_utf8(json).map_err(|e| {
        let (line, col) = line_col(json, e.valid_up_to());
        JsonError(format!(
            "invalid JSON at line {line} column {col}: invalid UTF-8"
        ))
    })?;
    let mut p = Parser {
        s,
        b: json,
        pos: 0,
        path: Vec::new(),
        unknown: Vec::new(),
    };
    let mut out = Vec::with_capacity(json.len() / 2);
    match p.token()? {
        Tok::Obj => p.message(m, &mut out, 1)?,
        other => {
            return Err(JsonError(format!(
                "expected a JSON object at top level, found {}",
                other.kind()
            )))
        }
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
        let h = self
            .b
            .get(self.pos..self.pos + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
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
    fn array(
        &mut self,
        mut each: impl FnMut(&mut Self, usize) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
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
    fn message(
        &mut self,
        m: &'static Msg,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), JsonError> {
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
    fn field(
        &mut self,
        fd: &'static FieldDef,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<bool, JsonError> {
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
            _ if fd.repeated => {
                Err(self.err(format_args!("expected an array, found {}", tok.kind())))
            }
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
        let mismatch =
            |p: &Self, want: &str| p.err(format_args!("expected {want}, found {}", tok.kind()));
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
                    Ty::Bytes => {
                        Cow::Owned(base64_decode(s).ok_or_else(|| self.err("invalid base64"))?)
                    }
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
                        if let (Ty::Enum(names), false) =
                            (fd.ty, number_len(s.as_bytes()) == Some(s.len()))
                        {
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
    let digits = |i: usize| {
        b[i.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
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
        Some(i) => (
            &t[..i],
            t[i + 1..]
                .parse::<i64>()
                .map_err(|_| RANGE)?
                .clamp(-100_000, 100_000),
        ),
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
