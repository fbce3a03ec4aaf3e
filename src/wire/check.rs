//! Ingest checks: what casefile accepts, every receiver downstream can decode. Each span
//! (and each resource and scope block) is walked against the OTLP schema: every known
//! field has the wire type the schema gives it, every string is valid UTF-8, and no
//! message sits deeper than prost's recursion limit in an ExportTraceServiceRequest.
//! prost, upb (Python) and Go's protobuf all refuse a whole request for any of these, so
//! one careless client's span would otherwise make a downstream refuse a batch of other
//! clients' kept traces. Invalid UTF-8 can be repaired ([`repair`]); the rest is refused.
//!
//! The span walk shares [`field`] with the decoder's own walk of a span's top-level
//! fields, so a span is read once; only nested messages are walked here.

use std::fmt;

use super::{Field, Fields, WireError, I32, I64, LEN, VARINT};

/// prost's `RECURSION_LIMIT`: a message nested deeper than this many levels below the
/// request is refused by prost (and by upb, whose default limit is the same).
pub const MAX_DEPTH: u32 = 100;

/// Depth of a Span message in an ExportTraceServiceRequest (request → ResourceSpans →
/// ScopeSpans → Span); a Resource sits at 2, an InstrumentationScope at 3.
pub const SPAN_DEPTH: u32 = 3;
pub const RESOURCE_DEPTH: u32 = 2;
pub const SCOPE_DEPTH: u32 = 3;

/// The OTLP trace messages a span, resource or scope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    Resource,
    Scope,
    EntityRef,
}

/// What the schema says a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bytes,
    Varint,
    Fixed64,
    Fixed32,
    Message(Msg),
}

impl Kind {
    fn wire_type(self) -> u8 {
        match self {
            Kind::Str | Kind::Bytes | Kind::Message(_) => LEN,
            Kind::Varint => VARINT,
            Kind::Fixed64 => I64,
            Kind::Fixed32 => I32,
        }
    }
}

/// The kind and name of field `n` of `msg`, or `None` for a field the schema does not
/// know (skipped, as every protobuf reader skips it).
fn schema(msg: Msg, n: u32) -> Option<(Kind, &'static str)> {
    use Kind::*;
    Some(match (msg, n) {
        (Msg::Span, 1) => (Bytes, "trace_id"),
        (Msg::Span, 2) => (Bytes, "span_id"),
        (Msg::Span, 3) => (Str, "trace_state"),
        (Msg::Span, 4) => (Bytes, "parent_span_id"),
        (Msg::Span, 5) => (Str, "name"),
        (Msg::Span, 6) => (Varint, "kind"),
        (Msg::Span, 7) => (Fixed64, "start_time_unix_nano"),
        (Msg::Span, 8) => (Fixed64, "end_time_unix_nano"),
        (Msg::Span, 9) => (Message(Msg::KeyValue), "attributes"),
        (Msg::Span, 10) => (Varint, "dropped_attributes_count"),
        (Msg::Span, 11) => (Message(Msg::Event), "events"),
        (Msg::Span, 12) => (Varint, "dropped_events_count"),
        (Msg::Span, 13) => (Message(Msg::Link), "links"),
        (Msg::Span, 14) => (Varint, "dropped_links_count"),
        (Msg::Span, 15) => (Message(Msg::Status), "status"),
        (Msg::Span, 16) => (Fixed32, "flags"),
        (Msg::Event, 1) => (Fixed64, "time_unix_nano"),
        (Msg::Event, 2) => (Str, "name"),
        (Msg::Event, 3) => (Message(Msg::KeyValue), "attributes"),
        (Msg::Event, 4) => (Varint, "dropped_attributes_count"),
        (Msg::Link, 1) => (Bytes, "trace_id"),
        (Msg::Link, 2) => (Bytes, "span_id"),
        (Msg::Link, 3) => (Str, "trace_state"),
        (Msg::Link, 4) => (Message(Msg::KeyValue), "attributes"),
        (Msg::Link, 5) => (Varint, "dropped_attributes_count"),
        (Msg::Link, 6) => (Fixed32, "flags"),
        (Msg::Status, 2) => (Str, "message"),
        (Msg::Status, 3) => (Varint, "code"),
        (Msg::KeyValue, 1) => (Str, "key"),
        (Msg::KeyValue, 2) => (Message(Msg::AnyValue), "value"),
        (Msg::KeyValue, 3) => (Varint, "key_strindex"),
        (Msg::AnyValue, 1) => (Str, "string_value"),
        (Msg::AnyValue, 2) => (Varint, "bool_value"),
        (Msg::AnyValue, 3) => (Varint, "int_value"),
        (Msg::AnyValue, 4) => (Fixed64, "double_value"),
        (Msg::AnyValue, 5) => (Message(Msg::ArrayValue), "array_value"),
        (Msg::AnyValue, 6) => (Message(Msg::KeyValueList), "kvlist_value"),
        (Msg::AnyValue, 7) => (Bytes, "bytes_value"),
        (Msg::AnyValue, 8) => (Varint, "string_value_strindex"),
        (Msg::ArrayValue, 1) => (Message(Msg::AnyValue), "values"),
        (Msg::KeyValueList, 1) => (Message(Msg::KeyValue), "values"),
        (Msg::Resource, 1) => (Message(Msg::KeyValue), "attributes"),
        (Msg::Resource, 2) => (Varint, "dropped_attributes_count"),
        (Msg::Resource, 3) => (Message(Msg::EntityRef), "entity_refs"),
        (Msg::Scope, 1) => (Str, "name"),
        (Msg::Scope, 2) => (Str, "version"),
        (Msg::Scope, 3) => (Message(Msg::KeyValue), "attributes"),
        (Msg::Scope, 4) => (Varint, "dropped_attributes_count"),
        (Msg::EntityRef, 1) => (Str, "schema_url"),
        (Msg::EntityRef, 2) => (Str, "type"),
        (Msg::EntityRef, 3) => (Str, "id_keys"),
        (Msg::EntityRef, 4) => (Str, "description_keys"),
        _ => return None,
    })
}

/// Why a span (or block) cannot be sent on as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A string field holds invalid UTF-8 (repairable).
    Utf8 { field: String },
    /// A message nested past [`MAX_DEPTH`].
    TooDeep { field: String },
    /// A nested message is not well formed, or a field has the wrong wire type.
    Malformed { field: String, error: WireError },
}

impl Problem {
    /// The `reason` label of the refusal counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::Utf8 { .. } => "invalid_utf8",
            Problem::TooDeep { .. } => "too_deep",
            Problem::Malformed { .. } => "malformed",
        }
    }

    /// The same problem, one level further out: `outer` is the name of the field that
    /// holds the message the problem was found in.
    fn within(mut self, outer: &str) -> Problem {
        let (Problem::Utf8 { field }
        | Problem::TooDeep { field }
        | Problem::Malformed { field, .. }) = &mut self;
        if field.is_empty() {
            outer.clone_into(field);
        } else {
            field.insert(0, '.');
            field.insert_str(0, outer);
        }
        self
    }

    /// The same problem with `at` (`span`, `resource`, `scope`) in front of its path.
    pub fn at(self, at: &str) -> Problem {
        self.within(at)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Utf8 { field } => write!(f, "{field} is not valid UTF-8"),
            Problem::TooDeep { field } => write!(
                f,
                "{field} is nested deeper than {MAX_DEPTH} levels (the protobuf recursion limit)"
            ),
            Problem::Malformed { field, error } => write!(f, "{field} is malformed: {error}"),
        }
    }
}

fn utf8(b: &[u8], name: &str) -> Result<(), Problem> {
    match std::str::from_utf8(b) {
        Ok(_) => Ok(()),
        Err(_) => Err(Problem::Utf8 { field: name.into() }),
    }
}

/// Checks one field of a `msg` message sitting at `depth`: its wire type, and, for a
/// string or a nested message, its contents. The decoder calls it for each top-level
/// field of a span it does not read itself.
#[inline]
pub fn field(msg: Msg, depth: u32, n: u32, f: Field<'_>) -> Result<(), Problem> {
    let Some((kind, name)) = schema(msg, n) else {
        return Ok(());
    };
    if f.wire_type() != kind.wire_type() {
        return Err(Problem::Malformed {
            field: name.into(),
            error: WireError::Mismatch {
                field: n,
                got: f.wire_type(),
                want: kind.wire_type(),
            },
        });
    }
    match (kind, f) {
        (Kind::Str, Field::Len(b)) => utf8(b, name),
        (Kind::Message(inner), Field::Len(b)) => {
            message(inner, depth + 1, b).map_err(|p| p.within(name))
        }
        _ => Ok(()),
    }
}

/// Checks an encoded `msg` message that sits at `depth` below the request.
pub fn message(msg: Msg, depth: u32, b: &[u8]) -> Result<(), Problem> {
    if depth > MAX_DEPTH {
        return Err(Problem::TooDeep {
            field: String::new(),
        });
    }
    // The layout every SDK writes for a string attribute, checked without the walk. A
    // problem found in the message itself (not in a field) has an empty path until
    // `within` names the field that holds the message.
    if msg == Msg::KeyValue && depth < MAX_DEPTH {
        if let Some((key, value)) = super::key_value_fast(b) {
            utf8(key, "key")?;
            return match string_value_fast(value) {
                Some(s) => utf8(s, "value.string_value"),
                None => message(Msg::AnyValue, depth + 1, value).map_err(|p| p.within("value")),
            };
        }
    }
    let mut fields = Fields::new(b);
    for f in &mut fields {
        let (n, f) = f.map_err(|error| Problem::Malformed {
            field: String::new(),
            error,
        })?;
        if depth >= MAX_DEPTH && schema(msg, n).is_none() {
            // prost checks its limit before skipping an unknown field too.
            return Err(Problem::TooDeep {
                field: format!("field {n}"),
            });
        }
        field(msg, depth, n, f)?;
    }
    groups_fit(&fields, depth)
}

/// prost counts a skipped group, and each level of groups inside it, against its
/// recursion limit: a group in a message at `depth` is refused at the limit, and so is a
/// field read `g` groups deep when `depth + g` reaches it.
pub fn groups_fit(fields: &Fields<'_>, depth: u32) -> Result<(), Problem> {
    if fields.skipped_group && (depth >= MAX_DEPTH || depth + fields.group_levels >= MAX_DEPTH) {
        return Err(Problem::TooDeep {
            field: "a group".into(),
        });
    }
    Ok(())
}

/// An `AnyValue` holding only a short string: its bytes.
#[inline(always)]
fn string_value_fast(v: &[u8]) -> Option<&[u8]> {
    match v {
        [0x0a, len, rest @ ..] if *len < 0x80 && rest.len() == *len as usize => Some(rest),
        _ => None,
    }
}

/// Checks a whole span's bytes (the decoder checks spans field by field instead).
pub fn span(b: &[u8]) -> Result<(), Problem> {
    message(Msg::Span, SPAN_DEPTH, b).map_err(|p| p.at("span"))
}

/// `msg`'s bytes with every invalid UTF-8 sequence in its string fields (at any depth)
/// replaced by U+FFFD, as `String::from_utf8_lossy` does; every other field is copied as
/// it was. Lengths of the enclosing messages are written anew. Malformed input is copied
/// as it is from the first bad byte on (the check after the repair refuses it).
pub fn repair(msg: Msg, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 16);
    let mut fields = Fields::new(b);
    loop {
        let start = fields.pos;
        if start >= b.len() {
            break;
        }
        let (n, wire_type) = match fields.key() {
            Ok(k) => k,
            Err(_) => {
                out.extend_from_slice(&b[start..]);
                break;
            }
        };
        let value = if wire_type == super::SGROUP {
            fields.skip_group(n).map(|()| None)
        } else {
            fields.value(wire_type).map(Some)
        };
        let value = match value {
            Ok(v) => v,
            Err(_) => {
                out.extend_from_slice(&b[start..]);
                break;
            }
        };
        match (schema(msg, n), value) {
            (Some((Kind::Str, _)), Some(Field::Len(s))) if std::str::from_utf8(s).is_err() => {
                super::put_len(&mut out, n, String::from_utf8_lossy(s).as_bytes());
            }
            (Some((Kind::Message(inner), _)), Some(Field::Len(m))) => {
                super::put_len(&mut out, n, &repair(inner, m));
            }
            _ => out.extend_from_slice(&b[start..fields.pos]),
        }
    }
    out
}

#[cfg(test)]
mod tests;
