//! OTTL condition parser: recursive descent over the lexer's tokens into an untyped syntax
//! tree (`or` binds looser than `and`, `and` looser than `not`, as in the Collector's grammar).

use super::lexer::{CmpOp, SyntaxError, Tok, Token};

/// A boolean expression.
#[derive(Debug, Clone, PartialEq)]
pub enum BoolAst {
    Or(Vec<BoolAst>),
    And(Vec<BoolAst>),
    Not(Box<BoolAst>),
    Cmp(Value, CmpOp, Value),
    /// A value used as a condition: must be `true`/`false` or a boolean converter.
    Value(Value),
}

/// A value with the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub at: usize,
    pub kind: ValueKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    Str(String),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Bool(bool),
    Nil,
    /// An upper-case name: `SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`.
    Enum(String),
    /// `a.b.c["k"]["j"]`: dotted names (with their offsets), then map keys.
    Path {
        names: Vec<(String, usize)>,
        keys: Vec<Key>,
    },
    /// `Name(args…)`.
    Call {
        name: String,
        args: Vec<Value>,
    },
    /// `[a, b]`, only meaningful as a converter argument.
    List(Vec<Value>),
}

/// An index into a path: `["k"]` (an integer index `[0]` is parsed and refused later).
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Str(String),
    Int(i64, usize),
}

/// Parses one condition.
pub fn parse(tokens: &[Token]) -> Result<BoolAst, SyntaxError> {
    let mut p = Parser { tokens, pos: 0 };
    let ast = p.or()?;
    match p.peek() {
        Tok::End => Ok(ast),
        other => Err(p.error(format!("unexpected {other} after the condition"))),
    }
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    fn at(&self) -> usize {
        self.tokens[self.pos].at
    }

    fn bump(&mut self) -> Tok {
        let t = self.tokens[self.pos].tok.clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn error(&self, message: String) -> SyntaxError {
        SyntaxError::new(self.at(), message)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == word)
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), SyntaxError> {
        if *self.peek() == want {
            self.bump();
            Ok(())
        } else {
            Err(self.error(format!("expected {what}, found {}", self.peek())))
        }
    }

    fn or(&mut self) -> Result<BoolAst, SyntaxError> {
        let mut terms = vec![self.and()?];
        while self.keyword("or") {
            self.bump();
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one")
        } else {
            BoolAst::Or(terms)
        })
    }

    fn and(&mut self) -> Result<BoolAst, SyntaxError> {
        let mut terms = vec![self.term()?];
        while self.keyword("and") {
            self.bump();
            terms.push(self.term()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one")
        } else {
            BoolAst::And(terms)
        })
    }

    fn term(&mut self) -> Result<BoolAst, SyntaxError> {
        if self.keyword("not") {
            self.bump();
            return Ok(BoolAst::Not(Box::new(self.term()?)));
        }
        if *self.peek() == Tok::LParen {
            self.bump();
            let inner = self.or()?;
            self.expect(Tok::RParen, "\")\"")?;
            return Ok(inner);
        }
        let left = self.value()?;
        if let Tok::Cmp(op) = *self.peek() {
            self.bump();
            let right = self.value()?;
            return Ok(BoolAst::Cmp(left, op, right));
        }
        Ok(BoolAst::Value(left))
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        let at = self.at();
        let kind = match self.bump() {
            Tok::Str(s) => ValueKind::Str(s),
            Tok::Int(i) => ValueKind::Int(i),
            Tok::Float(x) => ValueKind::Float(x),
            Tok::Bytes(b) => ValueKind::Bytes(b),
            Tok::LBrack => {
                let items = self.list(Tok::RBrack, "\"]\"")?;
                ValueKind::List(items)
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => ValueKind::Bool(true),
                "false" => ValueKind::Bool(false),
                "nil" => ValueKind::Nil,
                "and" | "or" | "not" => {
                    return Err(SyntaxError::new(
                        at,
                        format!("expected a value, found {name:?}"),
                    ))
                }
                _ if *self.peek() == Tok::LParen => {
                    self.bump();
                    let args = self.list(Tok::RParen, "\")\"")?;
                    ValueKind::Call { name, args }
                }
                _ if is_enum(&name) => ValueKind::Enum(name),
                _ => self.path(name, at)?,
            },
            other => {
                self.pos = self.pos.saturating_sub(usize::from(other != Tok::End));
                return Err(SyntaxError::new(
                    at,
                    format!("expected a value, found {other}"),
                ));
            }
        };
        Ok(Value { at, kind })
    }

    /// Comma-separated values up to `close` (already past the opening bracket).
    fn list(&mut self, close: Tok, what: &str) -> Result<Vec<Value>, SyntaxError> {
        let mut items = Vec::new();
        if *self.peek() == close {
            self.bump();
            return Ok(items);
        }
        loop {
            items.push(self.value()?);
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                t if *t == close => {
                    self.bump();
                    return Ok(items);
                }
                other => return Err(self.error(format!("expected \",\" or {what}, found {other}"))),
            }
        }
    }

    fn path(&mut self, first: String, at: usize) -> Result<ValueKind, SyntaxError> {
        let mut names = vec![(first, at)];
        while *self.peek() == Tok::Dot {
            self.bump();
            let at = self.at();
            match self.bump() {
                Tok::Ident(n) => names.push((n, at)),
                other => {
                    return Err(SyntaxError::new(
                        at,
                        format!("expected a name after \".\", found {other}"),
                    ))
                }
            }
        }
        let mut keys = Vec::new();
        while *self.peek() == Tok::LBrack {
            self.bump();
            let at = self.at();
            match self.bump() {
                Tok::Str(k) => keys.push(Key::Str(k)),
                Tok::Int(i) => keys.push(Key::Int(i, at)),
                other => {
                    return Err(SyntaxError::new(
                        at,
                        format!("expected a string key, found {other}"),
                    ))
                }
            }
            self.expect(Tok::RBrack, "\"]\"")?;
        }
        Ok(ValueKind::Path { names, keys })
    }
}

/// OTTL enums are upper-case names with underscores (`SPAN_KIND_SERVER`).
fn is_enum(name: &str) -> bool {
    name.len() > 1
        && name
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}
