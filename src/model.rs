//! The span model shared by every stage: a span is kept as its encoded protobuf bytes plus
//! the few fields the decision and the index need, read once from the wire at ingest.
//! Resource and scope messages are encoded once per batch and shared by all their spans.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::wire::{self, AnyValueRef};

/// 16-byte W3C trace id, as on the wire.
pub type TraceId = [u8; 16];
/// 8-byte span id, as on the wire.
pub type SpanId = [u8; 8];

/// OTLP `Status.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_i32(v: i32) -> StatusCode {
        match v {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }
}

static NEXT_SHARED_ID: AtomicU64 = AtomicU64::new(1);

/// An encoded `Resource` or `InstrumentationScope` message with the `schema_url` of the
/// `ResourceSpans`/`ScopeSpans` that carried it. Shared (by `Arc`) by every span of a batch,
/// so a thousand spans from one SDK export pay for their resource once.
#[derive(Debug)]
pub struct Shared {
    /// Unique per decoded block: the exporter groups spans by it without comparing bytes.
    pub id: u64,
    /// The encoded message (Resource or InstrumentationScope), without tag and length.
    pub message: Bytes,
    /// The `schema_url` string of the enclosing ResourceSpans / ScopeSpans (may be empty).
    pub schema_url: Bytes,
}

impl Shared {
    pub fn new(message: Bytes, schema_url: Bytes) -> Arc<Shared> {
        Arc::new(Shared {
            id: NEXT_SHARED_ID.fetch_add(1, Ordering::Relaxed),
            message,
            schema_url,
        })
    }

    /// Attributes of a Resource message (field 1) or of an InstrumentationScope (field 3).
    pub fn resource_attributes(&self) -> wire::Attributes<'_> {
        wire::Attributes::new(&self.message, 1)
    }

    /// Bytes this block costs in memory, counted once per batch.
    pub fn size(&self) -> usize {
        self.message.len() + self.schema_url.len() + std::mem::size_of::<Shared>()
    }
}

/// Where a span came from: the resource and the scope of its `ScopeSpans`, one `Arc` per
/// block so a span pays for one pointer, not two.
#[derive(Debug)]
pub struct Origin {
    pub resource: Arc<Shared>,
    pub scope: Arc<Shared>,
}

impl Origin {
    pub fn new(resource: Arc<Shared>, scope: Arc<Shared>) -> Arc<Origin> {
        Arc::new(Origin { resource, scope })
    }
}

/// One span: its encoded bytes and the fields read from them at ingest. Kept small (48
/// bytes on x86_64) because a buffer holds millions: the ids are read back from the
/// bytes when needed. The bytes always begin with the trace id field (`0a 10` and the 16
/// id bytes): the decoder guarantees it, so [`Span::trace_id`] is a copy, not a walk.
#[derive(Debug, Clone)]
pub struct Span {
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// `Span.flags` (W3C trace flags in the low byte).
    pub flags: u32,
    pub status: StatusCode,
    /// No `parent_span_id`.
    pub root: bool,
    pub origin: Arc<Origin>,
    /// The encoded `Span` message, without tag and length, starting with the trace id.
    /// Attributes added by casefile (`casefile.policy`, ticket ids) are appended here as
    /// extra field-9 entries.
    pub bytes: Box<[u8]>,
}

/// The trace id field as the decoder puts it first in every span's bytes.
pub const TRACE_ID_PREFIX: [u8; 2] = [0x0a, 0x10];

impl Span {
    /// `Span.trace_id` (field 1): the first 18 bytes are its key, length and value.
    pub fn trace_id(&self) -> TraceId {
        match self.bytes.get(..18) {
            Some(b) if b[..2] == TRACE_ID_PREFIX => b[2..].try_into().expect("16 bytes"),
            // Not reached for decoded spans; a walk keeps hand-built ones correct.
            _ => wire::bytes_field(&self.bytes, 1)
                .and_then(|b| b.try_into().ok())
                .unwrap_or_default(),
        }
    }

    /// The resource block this span belongs to.
    pub fn resource(&self) -> &Arc<Shared> {
        &self.origin.resource
    }

    /// The instrumentation scope block this span belongs to.
    pub fn scope(&self) -> &Arc<Shared> {
        &self.origin.scope
    }

    pub fn is_root(&self) -> bool {
        self.root
    }

    /// `Span.span_id` (field 2), read from the bytes.
    pub fn span_id(&self) -> Option<SpanId> {
        wire::bytes_field(&self.bytes, 2).and_then(|b| b.try_into().ok())
    }

    /// `Span.parent_span_id` (field 4), read from the bytes; `None` for a root span.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        wire::bytes_field(&self.bytes, 4).and_then(|b| b.try_into().ok())
    }

    /// Span attributes (field 9), read from the bytes on demand.
    pub fn attributes(&self) -> wire::Attributes<'_> {
        wire::Attributes::new(&self.bytes, 9)
    }

    /// Looks `key` up on the span, then on its resource, as the Collector's attribute
    /// policies do (resource first there; the order only matters for duplicate keys).
    pub fn attribute(&self, key: &str) -> Option<AnyValueRef<'_>> {
        self.resource()
            .resource_attributes()
            .get(key.as_bytes())
            .or_else(|| self.attributes().get(key.as_bytes()))
    }

    /// `Span.trace_state` (field 3), the W3C tracestate header value.
    pub fn trace_state(&self) -> &str {
        wire::string_field(&self.bytes, 3).unwrap_or("")
    }

    /// `Span.name` (field 5).
    pub fn name(&self) -> &str {
        wire::string_field(&self.bytes, 5).unwrap_or("")
    }

    /// Memory this span holds on its own (its bytes plus the struct).
    pub fn size(&self) -> usize {
        self.bytes.len() + std::mem::size_of::<Span>()
    }
}
