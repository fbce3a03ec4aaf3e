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
    let t = s
        .strip_suffix("==")
        .or_else(|| s.strip_suffix('='))
        .unwrap_or(s);
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

mod read;
mod write;

use read::message_from_json;
use write::message_to_json;

#[cfg(test)]
mod tests;
