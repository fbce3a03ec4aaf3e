//! OTTL condition lexer: turns one condition into tokens, each with its byte offset so that
//! every later error can name a line and column within the condition.

use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name: path segment, converter, enum, or one of `and or not true false nil`.
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    /// `0x…` byte literal.
    Bytes(Vec<u8>),
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    Dot,
    Cmp(CmpOp),
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "{s:?}"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::Int(i) => write!(f, "{i}"),
            Tok::Float(x) => write!(f, "{x}"),
            Tok::Bytes(_) => f.write_str("byte literal"),
            Tok::LParen => f.write_str("\"(\""),
            Tok::RParen => f.write_str("\")\""),
            Tok::LBrack => f.write_str("\"[\""),
            Tok::RBrack => f.write_str("\"]\""),
            Tok::Comma => f.write_str("\",\""),
            Tok::Dot => f.write_str("\".\""),
            Tok::Cmp(op) => write!(f, "\"{op}\""),
            Tok::End => f.write_str("end of condition"),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub at: usize,
}

/// A lexing, parsing or checking error at a byte offset of the condition.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub at: usize,
    pub message: String,
}

impl SyntaxError {
    pub fn new(at: usize, message: impl Into<String>) -> Self {
        SyntaxError {
            at,
            message: message.into(),
        }
    }

    /// `line L, column C: message`, both 1-based, the column counted in characters.
    pub fn render(&self, source: &str) -> String {
        let (line, column) = line_column(source, self.at);
        format!("line {line}, column {column}: {}", self.message)
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
pub fn line_column(source: &str, at: usize) -> (usize, usize) {
    let before = &source[..at.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Splits `src` into tokens, ending with [`Tok::End`].
pub fn lex(src: &str) -> Result<Vec<Token>, SyntaxError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let at = i;
        let single = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b'[' => Some(Tok::LBrack),
            b']' => Some(Tok::RBrack),
            b',' => Some(Tok::Comma),
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => Some(Tok::Dot),
            _ => None,
        };
        if let Some(tok) = single {
            out.push(Token { tok, at });
            i += 1;
            continue;
        }
        let tok = match c {
            b'=' | b'!' | b'<' | b'>' => {
                let eq = b.get(i + 1) == Some(&b'=');
                let op = match (c, eq) {
                    (b'=', true) => CmpOp::Eq,
                    (b'!', true) => CmpOp::Ne,
                    (b'<', false) => CmpOp::Lt,
                    (b'<', true) => CmpOp::Le,
                    (b'>', false) => CmpOp::Gt,
                    (b'>', true) => CmpOp::Ge,
                    (b'=', false) => {
                        return Err(SyntaxError::new(
                            at,
                            "\"=\" is assignment; compare with \"==\"",
                        ))
                    }
                    _ => {
                        return Err(SyntaxError::new(
                            at,
                            "\"!\" is not an operator; use \"not\" or \"!=\"",
                        ))
                    }
                };
                i += 1 + usize::from(eq);
                Tok::Cmp(op)
            }
            b'"' => {
                let (s, end) = string(src, i)?;
                i = end;
                Tok::Str(s)
            }
            b'0' if matches!(b.get(i + 1), Some(b'x' | b'X')) => {
                let start = i + 2;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_alphanumeric() {
                    end += 1;
                }
                let digits = &src[start..end];
                let bytes = hex::decode(digits).map_err(|_| {
                    SyntaxError::new(at, format!("invalid byte literal 0x{digits}: expected an even number of hex digits"))
                })?;
                i = end;
                Tok::Bytes(bytes)
            }
            b'0'..=b'9' | b'.' => number(src, &mut i, false)?,
            b'-' | b'+'
                if b.get(i + 1)
                    .is_some_and(|d| d.is_ascii_digit() || *d == b'.') =>
            {
                i += 1;
                number(src, &mut i, c == b'-')?
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                Tok::Ident(src[at..i].to_owned())
            }
            _ => {
                let ch = src[at..].chars().next().unwrap_or('?');
                let hint = if ch == '\'' {
                    " (strings are double-quoted)"
                } else {
                    ""
                };
                return Err(SyntaxError::new(
                    at,
                    format!("unexpected character {ch:?}{hint}"),
                ));
            }
        };
        out.push(Token { tok, at });
    }
    out.push(Token {
        tok: Tok::End,
        at: b.len(),
    });
    Ok(out)
}

/// A double-quoted string starting at `start`; returns its value and the offset after it.
fn string(src: &str, start: usize) -> Result<(String, usize), SyntaxError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((j, ch)) = chars.next() {
        match ch {
            '"' => return Ok((out, start + 1 + j + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, c @ ('"' | '\\'))) => out.push(c),
                // Kept as written, as Go's parser keeps `\.` for regexes.
                Some((_, c)) => {
                    out.push('\\');
                    out.push(c);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(SyntaxError::new(start, "unterminated string"))
}

fn number(src: &str, i: &mut usize, negative: bool) -> Result<Tok, SyntaxError> {
    let b = src.as_bytes();
    let start = *i;
    let mut float = false;
    while *i < b.len() {
        match b[*i] {
            b'0'..=b'9' => {}
            b'.' | b'e' | b'E' => float = true,
            b'+' | b'-' if matches!(b[*i - 1], b'e' | b'E') => {}
            _ => break,
        }
        *i += 1;
    }
    let text = &src[start..*i];
    let sign = if negative { "-" } else { "" };
    let bad = || SyntaxError::new(start, format!("invalid number {sign}{text}"));
    if float {
        let v: f64 = text.parse().map_err(|_| bad())?;
        Ok(Tok::Float(if negative { -v } else { v }))
    } else {
        format!("{sign}{text}")
            .parse()
            .map(Tok::Int)
            .map_err(|_| bad())
    }
}
