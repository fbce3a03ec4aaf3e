//! The schema of the OTLP trace signal messages that [`super::json`] transcodes: every field's
//! proto (snake_case) and JSON (lowerCamelCase) names, number and type. Checked against the
//! prost types of opentelemetry-proto 0.33 (`opentelemetry.proto.{collector.trace,trace,
//! resource,common}.v1`), including the Development-status `entity_refs`, `key_strindex` and
//! `string_value_strindex` fields.

use super::{I32, I64, LEN, VARINT};

#[derive(Clone, Copy)]
pub(crate) enum Ty {
    Str,
    /// bytes, base64 in JSON.
    Bytes,
    /// bytes, hex in JSON (trace and span ids).
    Hex,
    Bool,
    Int32,
    Enum(&'static [(&'static str, i32)]),
    Uint32,
    Int64,
    Fixed32,
    Fixed64,
    Double,
    Msg(&'static Msg),
}

pub(crate) struct FieldDef {
    pub(crate) proto: &'static str,
    pub(crate) json: &'static str,
    pub(crate) number: u32,
    pub(crate) ty: Ty,
    pub(crate) repeated: bool,
    /// Member of the message's (single) oneof: written even when default-valued.
    pub(crate) oneof: bool,
}

pub(crate) struct Msg {
    pub(crate) fields: &'static [FieldDef],
}

impl Msg {
    pub(crate) fn by_name(&self, key: &str) -> Option<(usize, &'static FieldDef)> {
        self.fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.json == key || f.proto == key)
    }
    pub(crate) fn by_number(&self, n: u32) -> Option<(usize, &'static FieldDef)> {
        self.fields.iter().enumerate().find(|(_, f)| f.number == n)
    }
}

const fn f(proto: &'static str, json: &'static str, number: u32, ty: Ty) -> FieldDef {
    FieldDef {
        proto,
        json,
        number,
        ty,
        repeated: false,
        oneof: false,
    }
}
const fn rep(proto: &'static str, json: &'static str, number: u32, ty: Ty) -> FieldDef {
    FieldDef {
        proto,
        json,
        number,
        ty,
        repeated: true,
        oneof: false,
    }
}
const fn one(proto: &'static str, json: &'static str, number: u32, ty: Ty) -> FieldDef {
    FieldDef {
        proto,
        json,
        number,
        ty,
        repeated: false,
        oneof: true,
    }
}

const SPAN_KIND: &[(&str, i32)] = &[
    ("SPAN_KIND_UNSPECIFIED", 0),
    ("SPAN_KIND_INTERNAL", 1),
    ("SPAN_KIND_SERVER", 2),
    ("SPAN_KIND_CLIENT", 3),
    ("SPAN_KIND_PRODUCER", 4),
    ("SPAN_KIND_CONSUMER", 5),
];
const STATUS_CODE: &[(&str, i32)] = &[
    ("STATUS_CODE_UNSET", 0),
    ("STATUS_CODE_OK", 1),
    ("STATUS_CODE_ERROR", 2),
];

pub(crate) static REQUEST: Msg = Msg {
    fields: &[rep(
        "resource_spans",
        "resourceSpans",
        1,
        Ty::Msg(&RESOURCE_SPANS),
    )],
};
static RESOURCE_SPANS: Msg = Msg {
    fields: &[
        f("resource", "resource", 1, Ty::Msg(&RESOURCE)),
        rep("scope_spans", "scopeSpans", 2, Ty::Msg(&SCOPE_SPANS)),
        f("schema_url", "schemaUrl", 3, Ty::Str),
    ],
};
static RESOURCE: Msg = Msg {
    fields: &[
        rep("attributes", "attributes", 1, Ty::Msg(&KEY_VALUE)),
        f(
            "dropped_attributes_count",
            "droppedAttributesCount",
            2,
            Ty::Uint32,
        ),
        rep("entity_refs", "entityRefs", 3, Ty::Msg(&ENTITY_REF)),
    ],
};
static ENTITY_REF: Msg = Msg {
    fields: &[
        f("schema_url", "schemaUrl", 1, Ty::Str),
        f("type", "type", 2, Ty::Str),
        rep("id_keys", "idKeys", 3, Ty::Str),
        rep("description_keys", "descriptionKeys", 4, Ty::Str),
    ],
};
static SCOPE_SPANS: Msg = Msg {
    fields: &[
        f("scope", "scope", 1, Ty::Msg(&SCOPE)),
        rep("spans", "spans", 2, Ty::Msg(&SPAN)),
        f("schema_url", "schemaUrl", 3, Ty::Str),
    ],
};
static SCOPE: Msg = Msg {
    fields: &[
        f("name", "name", 1, Ty::Str),
        f("version", "version", 2, Ty::Str),
        rep("attributes", "attributes", 3, Ty::Msg(&KEY_VALUE)),
        f(
            "dropped_attributes_count",
            "droppedAttributesCount",
            4,
            Ty::Uint32,
        ),
    ],
};
static SPAN: Msg = Msg {
    fields: &[
        f("trace_id", "traceId", 1, Ty::Hex),
        f("span_id", "spanId", 2, Ty::Hex),
        f("trace_state", "traceState", 3, Ty::Str),
        f("parent_span_id", "parentSpanId", 4, Ty::Hex),
        f("name", "name", 5, Ty::Str),
        f("kind", "kind", 6, Ty::Enum(SPAN_KIND)),
        f("start_time_unix_nano", "startTimeUnixNano", 7, Ty::Fixed64),
        f("end_time_unix_nano", "endTimeUnixNano", 8, Ty::Fixed64),
        rep("attributes", "attributes", 9, Ty::Msg(&KEY_VALUE)),
        f(
            "dropped_attributes_count",
            "droppedAttributesCount",
            10,
            Ty::Uint32,
        ),
        rep("events", "events", 11, Ty::Msg(&EVENT)),
        f("dropped_events_count", "droppedEventsCount", 12, Ty::Uint32),
        rep("links", "links", 13, Ty::Msg(&LINK)),
        f("dropped_links_count", "droppedLinksCount", 14, Ty::Uint32),
        f("status", "status", 15, Ty::Msg(&STATUS)),
        f("flags", "flags", 16, Ty::Fixed32),
    ],
};
static EVENT: Msg = Msg {
    fields: &[
        f("time_unix_nano", "timeUnixNano", 1, Ty::Fixed64),
        f("name", "name", 2, Ty::Str),
        rep("attributes", "attributes", 3, Ty::Msg(&KEY_VALUE)),
        f(
            "dropped_attributes_count",
            "droppedAttributesCount",
            4,
            Ty::Uint32,
        ),
    ],
};
static LINK: Msg = Msg {
    fields: &[
        f("trace_id", "traceId", 1, Ty::Hex),
        f("span_id", "spanId", 2, Ty::Hex),
        f("trace_state", "traceState", 3, Ty::Str),
        rep("attributes", "attributes", 4, Ty::Msg(&KEY_VALUE)),
        f(
            "dropped_attributes_count",
            "droppedAttributesCount",
            5,
            Ty::Uint32,
        ),
        f("flags", "flags", 6, Ty::Fixed32),
    ],
};
static STATUS: Msg = Msg {
    fields: &[
        f("message", "message", 2, Ty::Str),
        f("code", "code", 3, Ty::Enum(STATUS_CODE)),
    ],
};
static KEY_VALUE: Msg = Msg {
    fields: &[
        f("key", "key", 1, Ty::Str),
        f("value", "value", 2, Ty::Msg(&ANY_VALUE)),
        f("key_strindex", "keyStrindex", 3, Ty::Int32),
    ],
};
static ANY_VALUE: Msg = Msg {
    fields: &[
        one("string_value", "stringValue", 1, Ty::Str),
        one("bool_value", "boolValue", 2, Ty::Bool),
        one("int_value", "intValue", 3, Ty::Int64),
        one("double_value", "doubleValue", 4, Ty::Double),
        one("array_value", "arrayValue", 5, Ty::Msg(&ARRAY_VALUE)),
        one("kvlist_value", "kvlistValue", 6, Ty::Msg(&KEY_VALUE_LIST)),
        one("bytes_value", "bytesValue", 7, Ty::Bytes),
        one("string_value_strindex", "stringValueStrindex", 8, Ty::Int32),
    ],
};
static ARRAY_VALUE: Msg = Msg {
    fields: &[rep("values", "values", 1, Ty::Msg(&ANY_VALUE))],
};
static KEY_VALUE_LIST: Msg = Msg {
    fields: &[rep("values", "values", 1, Ty::Msg(&KEY_VALUE))],
};
pub(crate) static RESPONSE: Msg = Msg {
    fields: &[f(
        "partial_success",
        "partialSuccess",
        1,
        Ty::Msg(&PARTIAL_SUCCESS),
    )],
};
static PARTIAL_SUCCESS: Msg = Msg {
    fields: &[
        f("rejected_spans", "rejectedSpans", 1, Ty::Int64),
        f("error_message", "errorMessage", 2, Ty::Str),
    ],
};

pub(crate) fn wire_type(ty: Ty) -> u8 {
    match ty {
        Ty::Str | Ty::Bytes | Ty::Hex | Ty::Msg(_) => LEN,
        Ty::Bool | Ty::Int32 | Ty::Enum(_) | Ty::Uint32 | Ty::Int64 => VARINT,
        Ty::Fixed32 => I32,
        Ty::Fixed64 | Ty::Double => I64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_consistent() {
        let all = [
            &REQUEST,
            &RESOURCE_SPANS,
            &RESOURCE,
            &ENTITY_REF,
            &SCOPE_SPANS,
            &SCOPE,
            &SPAN,
            &EVENT,
            &LINK,
            &STATUS,
            &KEY_VALUE,
            &ANY_VALUE,
            &ARRAY_VALUE,
            &KEY_VALUE_LIST,
            &RESPONSE,
            &PARTIAL_SUCCESS,
        ];
        for m in all {
            for (i, fd) in m.fields.iter().enumerate() {
                let mut camel = String::new();
                let mut upper = false;
                for c in fd.proto.chars() {
                    match c {
                        '_' => upper = true,
                        c if upper => {
                            camel.push(c.to_ascii_uppercase());
                            upper = false;
                        }
                        c => camel.push(c),
                    }
                }
                assert_eq!(camel, fd.json);
                assert!(
                    m.fields[..i].iter().all(|g| g.number < fd.number),
                    "{} out of order",
                    fd.proto
                );
                assert!(!(fd.repeated && fd.oneof));
                assert!(
                    m.fields.len() <= 16,
                    "json.rs sizes its per-message slots for 16 fields"
                );
            }
        }
    }
}
