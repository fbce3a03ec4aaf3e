//! Trace summaries: what support sees of an indexed trace once it is decided (or of a
//! pending one, summarised from the buffer on demand). Built by the buffer at decision
//! time, held by the index's store, served by the support API.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use foldhash::HashMap;
use serde::Serialize;

use crate::model::{Span, StatusCode, TraceId};
use crate::wire::AnyValueRef;

/// Where a trace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Pending,
    Sampled,
    Dropped,
    Rescued,
}

/// What support sees of a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    #[serde(serialize_with = "hex_id")]
    pub trace_id: TraceId,
    /// Earliest span start, Unix nanoseconds (RFC 3339 in JSON).
    #[serde(rename = "start", serialize_with = "rfc3339_ser")]
    pub start_unix_nano: u64,
    pub duration_ms: f64,
    pub root_service: Arc<str>,
    pub root_name: Arc<str>,
    pub error: bool,
    pub span_count: u32,
    pub decision: Decision,
    pub reasons: Vec<Arc<str>>,
}

fn hex_id<S: serde::Serializer>(id: &TraceId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(id))
}

fn rfc3339_ser<S: serde::Serializer>(t: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// RFC 3339 (UTC, milliseconds) of a Unix-nanosecond time.
pub fn rfc3339(unix_nano: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(unix_nano)).to_string()
}

impl Summary {
    /// Summarises the spans casefile holds of a trace.
    pub fn of(
        trace_id: TraceId,
        spans: &[Span],
        decision: Decision,
        reasons: Vec<Arc<str>>,
    ) -> Summary {
        let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(start);
        let root = spans
            .iter()
            .find(|s| s.is_root())
            .or_else(|| spans.iter().min_by_key(|s| s.start_unix_nano));
        let root_service = root.map_or_else(|| intern(""), service_of);
        Summary {
            trace_id,
            start_unix_nano: start,
            duration_ms: end.saturating_sub(start) as f64 / 1e6,
            root_service,
            root_name: intern(root.map(|r| r.name()).unwrap_or("")),
            error: spans.iter().any(|s| s.status == StatusCode::Error),
            span_count: spans.len().min(u32::MAX as usize) as u32,
            decision,
            reasons,
        }
    }
}

/// The `service.name` of a span's resource, interned. Remembered per resource block (a
/// request's few blocks serve every trace decided from it), so most decisions neither walk
/// the resource's attributes nor hash the name.
fn service_of(span: &Span) -> Arc<str> {
    /// (resource block id, its service name), by id modulo 16.
    type Blocks = [Option<(u64, Arc<str>)>; 16];
    thread_local! {
        static BLOCKS: std::cell::RefCell<Blocks> = Default::default();
    }
    let block = span.resource();
    BLOCKS.with_borrow_mut(|blocks| {
        let slot = &mut blocks[(block.id % 16) as usize];
        if let Some((id, name)) = slot {
            if *id == block.id {
                return Arc::clone(name);
            }
        }
        let name = match block.resource_attributes().get(b"service.name") {
            Some(AnyValueRef::Str(s)) => intern(s),
            Some(other) => intern(&other.to_display_string()),
            None => intern(""),
        };
        *slot = Some((block.id, Arc::clone(&name)));
        name
    })
}

/// Service and operation names repeat across millions of summaries: each distinct one is
/// held once per thread that decides (no lock on the decision path). Bounded: past 65 536
/// names a thread's table starts over (old summaries keep theirs).
fn intern(s: &str) -> Arc<str> {
    thread_local! {
        static NAMES: std::cell::RefCell<HashMap<Box<str>, Arc<str>>> = Default::default();
    }
    NAMES.with_borrow_mut(|names| {
        if let Some(a) = names.get(s) {
            return Arc::clone(a);
        }
        if names.len() >= 1 << 16 {
            names.clear();
        }
        let a: Arc<str> = Arc::from(s);
        names.insert(s.into(), Arc::clone(&a));
        a
    })
}

impl Summary {
    /// Heap bytes a stored summary holds: its box and its list of reasons. The names are
    /// interned (shared by every summary with the same service or operation) and the
    /// reasons point at the policies' names, so neither is counted per summary.
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Summary>() + self.reasons.capacity() * std::mem::size_of::<Arc<str>>()
    }
}
