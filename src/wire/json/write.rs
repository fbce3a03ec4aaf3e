//! Protobuf to OTLP/JSON (the file exporter's lines, API answers): walks the encoding with
//! the message schema and writes the OTLP/JSON conventions.

use super::*;
pub(super) fn message_to_json(m: &'static Msg, proto: &[u8]) -> Result<String, JsonError> {
    let mut w = Writer {
        out: String::with_capacity(proto.len() * 2),
        path: Vec::new(),
    };
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
            return Err(path_error(
                &self.path,
                format_args!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        // One pass validates the fields and notes, per schema field, how often it occurs (for a
        // oneof member: since the oneof last switched to it) and its last value.
        let mut slots = [(0usize, Field::Varint(0)); MAX_FIELDS];
        let mut winner = None;
        for field in Fields::new(buf) {
            let (n, v) =
                field.map_err(|e| path_error(&self.path, format_args!("invalid protobuf: {e}")))?;
            let Some((i, fd)) = m.by_number(n) else {
                continue;
            };
            let want = wire_type(fd.ty);
            if v.wire_type() != want {
                let e = WireError::Mismatch {
                    field: n,
                    got: v.wire_type(),
                    want,
                };
                return Err(path_error(
                    &self.path,
                    format_args!("invalid protobuf: {e}"),
                ));
            }
            if fd.oneof && winner.replace(i) != Some(i) {
                slots[i].0 = 0;
            }
            slots[i] = (slots[i].0 + 1, v);
        }
        let of = |n: u32| {
            Fields::new(buf)
                .flatten()
                .filter(move |(k, _)| *k == n)
                .map(|(_, v)| v)
        };
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
                let parts: Vec<&[u8]> = of(fd.number)
                    .filter_map(|v| if let Field::Len(b) = v { Some(b) } else { None })
                    .collect();
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
                Err(_) => {
                    return Err(path_error(
                        &self.path,
                        "invalid protobuf: string is not valid UTF-8",
                    ))
                }
            },
            (Ty::Hex, Field::Len(b)) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                o.push('"');
                o.extend(
                    b.iter()
                        .flat_map(|&x| [HEX[usize::from(x >> 4)], HEX[usize::from(x & 15)]])
                        .map(char::from),
                );
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
            _ => {
                return Err(path_error(
                    &self.path,
                    "invalid protobuf: wire type mismatch",
                ))
            }
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
