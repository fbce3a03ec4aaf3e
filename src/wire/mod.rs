//! Protobuf wire-format primitives: the fast path reads only the fields casefile needs
//! straight from encoded bytes and writes kept spans back out without re-encoding them.
//! `decode` turns an ExportTraceServiceRequest into [`crate::model::Span`]s, `encode`
//! builds requests from kept spans, `json` maps OTLP/JSON to and from protobuf bytes.

pub mod check;
pub mod compression;
pub mod decode;
#[doc(hidden)]
pub mod differential;
pub mod encode;
pub mod json;
pub mod json_schema;

use thiserror::Error;

/// Why bytes are not a valid protobuf message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated message")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    VarintOverflow,
    #[error("unsupported wire type {0}")]
    WireType(u8),
    #[error("invalid field number 0")]
    FieldZero,
    #[error("field {field} has wire type {got}, expected {want}")]
    Mismatch { field: u32, got: u8, want: u8 },
    #[error("field {0} is not valid UTF-8")]
    Utf8(u32),
    #[error("nesting deeper than 64 levels")]
    TooDeep,
}

pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const I32: u8 = 5;
/// Start and end of a group (deprecated proto2 encoding; no OTLP field is one).
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;

/// Reads a varint at `*pos`, advancing it. Tags and most lengths are one byte: that case
/// is a single compare.
#[inline(always)]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    match buf.get(*pos) {
        Some(&b) if b < 0x80 => {
            *pos += 1;
            Ok(u64::from(b))
        }
        _ => read_varint_slow(buf, pos),
    }
}

#[inline(never)]
fn read_varint_slow(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or(WireError::Truncated)?;
        *pos += 1;
        // The tenth byte holds the 64th bit only: more would overflow (prost refuses it).
        if i == 9 && b > 1 {
            return Err(WireError::VarintOverflow);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError::VarintOverflow)
}

/// One field of a message: its number and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    Varint(u64),
    I64(u64),
    Len(&'a [u8]),
    I32(u32),
}

impl Field<'_> {
    pub fn wire_type(&self) -> u8 {
        match self {
            Field::Varint(_) => VARINT,
            Field::I64(_) => I64,
            Field::Len(_) => LEN,
            Field::I32(_) => I32,
        }
    }
}

/// Iterates the top-level fields of one encoded message. Yields an error (once) and stops
/// on malformed input; never panics.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
    /// Whether a group was skipped, and the deepest group nesting at which a field (or a
    /// nested group) was read inside one (1 = directly inside a top-level group): prost
    /// counts group levels against its recursion limit (see `check`).
    pub(crate) skipped_group: bool,
    pub(crate) group_levels: u32,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            pos: 0,
            failed: false,
            skipped_group: false,
            group_levels: 0,
        }
    }

    /// The next field, or `None` for a group, which is skipped: protobuf readers skip
    /// unknown fields of every wire type, and prost does.
    #[inline(always)]
    fn next_field(&mut self) -> Result<Option<(u32, Field<'a>)>, WireError> {
        let (number, wire_type) = self.key()?;
        if wire_type == SGROUP {
            self.skip_group(number)?;
            return Ok(None);
        }
        Ok(Some((number, self.value(wire_type)?)))
    }

    #[inline(always)]
    fn key(&mut self) -> Result<(u32, u8), WireError> {
        let key = read_varint(self.buf, &mut self.pos)?;
        // A key is a uint32 (field numbers up to 2^29 - 1), as prost and protoc read it.
        let key = u32::try_from(key).map_err(|_| WireError::VarintOverflow)?;
        let number = key >> 3;
        if number == 0 {
            return Err(WireError::FieldZero);
        }
        Ok((number, (key & 7) as u8))
    }

    #[inline(always)]
    fn value(&mut self, wire_type: u8) -> Result<Field<'a>, WireError> {
        Ok(match wire_type {
            VARINT => Field::Varint(read_varint(self.buf, &mut self.pos)?),
            I64 => {
                let b = self.take(8)?;
                Field::I64(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            LEN => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
                Field::Len(self.take(len)?)
            }
            I32 => {
                let b = self.take(4)?;
                Field::I32(u32::from_le_bytes(b.try_into().expect("4 bytes")))
            }
            other => return Err(WireError::WireType(other)),
        })
    }

    /// Skips a group whose start key was just read, through the end key of the same
    /// number, nested groups included (without recursion: any depth is safe).
    #[cold]
    fn skip_group(&mut self, number: u32) -> Result<(), WireError> {
        self.skipped_group = true;
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            match self.key()? {
                (n, EGROUP) if n == innermost => _ = open.pop(),
                (n, wire_type) => {
                    self.group_levels = self.group_levels.max(open.len() as u32);
                    if wire_type == SGROUP {
                        open.push(n);
                    } else {
                        self.value(wire_type)?;
                    }
                }
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Field<'a>), WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed && self.pos < self.buf.len() {
            match self.next_field() {
                Ok(Some(field)) => return Some(Ok(field)),
                Ok(None) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// The last occurrence of bytes field `number` in `msg` (proto3: last one wins).
pub fn bytes_field(msg: &[u8], number: u32) -> Option<&[u8]> {
    let mut found = None;
    for f in Fields::new(msg) {
        match f {
            Ok((n, Field::Len(b))) if n == number => found = Some(b),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    found
}

/// The last occurrence of string field `number` in `msg`, if valid UTF-8.
pub fn string_field(msg: &[u8], number: u32) -> Option<&str> {
    bytes_field(msg, number).and_then(|b| std::str::from_utf8(b).ok())
}

/// A borrowed `AnyValue`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnyValueRef<'a> {
    Empty,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// Encoded `ArrayValue`.
    Array(&'a [u8]),
    /// Encoded `KeyValueList`.
    KvList(&'a [u8]),
    Bytes(&'a [u8]),
}

impl<'a> AnyValueRef<'a> {
    /// Parses an encoded `AnyValue` message. Malformed values read as `Empty`.
    pub fn parse(msg: &'a [u8]) -> AnyValueRef<'a> {
        let mut v = AnyValueRef::Empty;
        for f in Fields::new(msg) {
            v = match f {
                Ok((1, Field::Len(b))) => match std::str::from_utf8(b) {
                    Ok(s) => AnyValueRef::Str(s),
                    Err(_) => AnyValueRef::Empty,
                },
                Ok((2, Field::Varint(x))) => AnyValueRef::Bool(x != 0),
                Ok((3, Field::Varint(x))) => AnyValueRef::Int(x as i64),
                Ok((4, Field::I64(x))) => AnyValueRef::Double(f64::from_bits(x)),
                Ok((5, Field::Len(b))) => AnyValueRef::Array(b),
                Ok((6, Field::Len(b))) => AnyValueRef::KvList(b),
                Ok((7, Field::Len(b))) => AnyValueRef::Bytes(b),
                Ok(_) => continue,
                Err(_) => return AnyValueRef::Empty,
            };
        }
        v
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            AnyValueRef::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AnyValueRef::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AnyValueRef::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as the Collector's `pcommon.Value.AsString` renders scalars.
    pub fn to_display_string(&self) -> String {
        match self {
            AnyValueRef::Empty => String::new(),
            AnyValueRef::Str(s) => (*s).to_owned(),
            AnyValueRef::Bool(b) => b.to_string(),
            AnyValueRef::Int(i) => i.to_string(),
            AnyValueRef::Double(d) => d.to_string(),
            AnyValueRef::Bytes(b) => hex::encode(b),
            AnyValueRef::Array(_) | AnyValueRef::KvList(_) => String::new(),
        }
    }
}

/// Iterates the `KeyValue` entries of repeated field `number` of a message, as
/// `(key bytes, value)`. Malformed entries end the iteration.
pub struct Attributes<'a> {
    fields: Fields<'a>,
    number: u32,
}

impl<'a> Attributes<'a> {
    pub fn new(msg: &'a [u8], number: u32) -> Self {
        Attributes {
            fields: Fields::new(msg),
            number,
        }
    }
}

impl<'a> Attributes<'a> {
    /// The next entry as (key, encoded `AnyValue`), without reading the value.
    pub fn next_raw(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        loop {
            match self.fields.next()? {
                Ok((n, Field::Len(kv))) if n == self.number => {
                    if let Some(kv) = key_value_fast(kv) {
                        return Some(kv);
                    }
                    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
                    for f in Fields::new(kv) {
                        match f {
                            Ok((1, Field::Len(k))) => key = k,
                            Ok((2, Field::Len(v))) => value = v,
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    return Some((key, value));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The value of the first entry with `key`; other values are not read.
    pub fn get(mut self, key: &[u8]) -> Option<AnyValueRef<'a>> {
        while let Some((k, v)) = self.next_raw() {
            if k == key {
                return Some(AnyValueRef::parse(v));
            }
        }
        None
    }
}

/// A `KeyValue` laid out as every SDK writes it (key, then value, each shorter than 128
/// bytes, nothing else): split without the general field walk. `None` for anything else,
/// which the general walk then reads.
#[inline(always)]
fn key_value_fast(kv: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&[0x0a, kl], rest) = kv.split_first_chunk::<2>()? else {
        return None;
    };
    if kl >= 0x80 || rest.len() < kl as usize {
        return None;
    }
    let (key, rest) = rest.split_at(kl as usize);
    let (&[0x12, vl], value) = rest.split_first_chunk::<2>()? else {
        return None;
    };
    (vl < 0x80 && value.len() == vl as usize).then_some((key, value))
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (&'a [u8], AnyValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_raw().map(|(k, v)| (k, AnyValueRef::parse(v)))
    }
}

// --- writing ---

/// Appends a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes a varint of `v` takes.
#[inline]
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends a field key.
#[inline]
pub fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

/// Appends a length-delimited field.
#[inline]
pub fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes a `KeyValue` with a string value (as appended to kept root spans).
pub fn string_key_value(key: &str, value: &str) -> Vec<u8> {
    let mut any = Vec::with_capacity(value.len() + 2);
    put_len(&mut any, 1, value.as_bytes());
    let mut kv = Vec::with_capacity(key.len() + any.len() + 4);
    put_len(&mut kv, 1, key.as_bytes());
    put_len(&mut kv, 2, &any);
    kv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_len() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos).unwrap(), v);
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn what_prost_refuses_at_the_key_and_varint_level_is_refused() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        // An 11th-bit-set tenth byte (overflows 64 bits), then a field number above
        // 2^29 - 1 (a key past u32), then the largest valid field number (skipped).
        let overflow = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        let big_field = [0x80, 0x80, 0x80, 0x80, 0x20, 0x00];
        let mut max_field = Vec::new();
        put_key(&mut max_field, (1 << 29) - 1, VARINT);
        put_varint(&mut max_field, 7);
        for (bytes, ok) in [
            (&overflow[..], false),
            (&big_field[..], false),
            (&max_field[..], true),
        ] {
            let fast: Result<Vec<_>, _> = Fields::new(bytes).collect();
            let prost = ExportTraceServiceRequest::decode(bytes);
            assert_eq!(fast.is_ok(), ok, "{bytes:02x?}: {fast:?}");
            assert_eq!(prost.is_ok(), ok, "{bytes:02x?}: {prost:?}");
        }
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        put_len(&mut out, 5, b"hello");
        for cut in 0..out.len() {
            let r: Result<Vec<_>, _> = Fields::new(&out[..cut]).collect();
            assert!(cut == 0 || r.is_err(), "cut at {cut}");
        }
    }

    /// The general walk of a `KeyValue`, which the fast split must always agree with.
    fn key_value_walk(kv: &[u8]) -> (&[u8], &[u8]) {
        let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
        for f in Fields::new(kv) {
            match f {
                Ok((1, Field::Len(k))) => key = k,
                Ok((2, Field::Len(v))) => value = v,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (key, value)
    }

    #[test]
    fn key_value_fast_split_takes_only_the_plain_layout() {
        let plain = string_key_value("user.id", "usr_1");
        assert_eq!(
            key_value_fast(&plain),
            Some((&b"user.id"[..], &plain[11..]))
        );
        // Value first, a key only, an extra field, long keys: left to the general walk.
        let mut swapped = Vec::new();
        put_len(&mut swapped, 2, &plain[11..]);
        put_len(&mut swapped, 1, b"k");
        let mut key_only = Vec::new();
        put_len(&mut key_only, 1, b"k");
        let mut extra = plain.clone();
        put_len(&mut extra, 3, b"x");
        let long = string_key_value(&"k".repeat(200), "v");
        for kv in [&swapped, &key_only, &extra, &long] {
            assert_eq!(key_value_fast(kv), None);
        }
    }

    proptest::proptest! {
        #[test]
        fn key_value_fast_split_agrees_with_the_walk(kv in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            if let Some(fast) = key_value_fast(&kv) {
                proptest::prop_assert_eq!(fast, key_value_walk(&kv));
            }
        }

        #[test]
        fn key_value_fast_split_agrees_on_encoded_pairs(k in ".{0,140}", v in ".{0,140}") {
            let kv = string_key_value(&k, &v);
            let walk = key_value_walk(&kv);
            if let Some(fast) = key_value_fast(&kv) {
                proptest::prop_assert_eq!(fast, walk);
            }
            let mut span = Vec::new();
            put_len(&mut span, 9, &kv);
            let (key, value) = Attributes::new(&span, 9).next_raw().unwrap();
            proptest::prop_assert_eq!((key, value), walk);
        }
    }

    /// Found by fuzzing (`tests/fuzz-regressions/wire_protobuf/unknown-group.bin`): prost
    /// skips a group in an unknown field, the fast path refused the request.
    #[test]
    fn groups_are_skipped_like_unknown_fields() {
        // Group 14 holding group 2 and a varint, then field 1.
        let msg = [0x73, 0x13, 0x08, 0x05, 0x14, 0x74, 0x08, 0x01];
        let fields: Vec<_> = Fields::new(&msg).collect();
        assert_eq!(fields, vec![Ok((1, Field::Varint(1)))]);
        assert_eq!(Fields::new(&[0x73, 0x74]).count(), 0);
        // An end without a start, an end of another group, a group never ended.
        for bad in [&[0x74][..], &[0x73, 0x1c], &[0x73, 0x08, 0x01]] {
            assert!(Fields::new(bad).any(|f| f.is_err()), "{bad:02x?}");
        }
    }

    #[test]
    fn attributes_are_read_from_appended_entries() {
        let mut span = Vec::new();
        put_len(&mut span, 5, b"GET /");
        span.extend_from_slice(&{
            let mut f = Vec::new();
            put_len(&mut f, 9, &string_key_value("user.id", "u1"));
            f
        });
        let attrs: Vec<_> = Attributes::new(&span, 9).collect();
        assert_eq!(attrs, vec![(&b"user.id"[..], AnyValueRef::Str("u1"))]);
        assert_eq!(string_field(&span, 5), Some("GET /"));
    }
}
