//! Bad input: errors name the JSON path, truncated, deeply nested and malformed input is
//! an error and never a panic, duplicate fields read as prost reads them.

use super::*;

#[test]
fn errors_name_the_path() {
    let spans = r#"{"spans":[{},{},{},{"traceId":"5b8efff798038103d269b633813fc60g"}]}"#;
    let doc = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{}},{spans}]}}]}}"#);
    assert_eq!(
        err(&doc),
        "resourceSpans[0].scopeSpans[1].spans[3].traceId: invalid hex"
    );
    let e = err(&spans_doc(r#"{"spanId":"abc"}"#));
    assert_eq!(
        e,
        "resourceSpans[0].scopeSpans[0].spans[0].spanId: invalid hex: odd length"
    );
    let e = err(&spans_doc(r#"{"links":[{"spanId":"x1"}]}"#));
    assert_eq!(
        e,
        "resourceSpans[0].scopeSpans[0].spans[0].links[0].spanId: invalid hex"
    );
    for top in ["[]", "\"x\"", "1", "null"] {
        assert!(
            err(top).starts_with("expected a JSON object at top level"),
            "{top}"
        );
    }
    for bad in [
        "",
        "   ",
        "{\"resourceSpans\":[}",
        "{} x",
        "{'a':1}",
        "{\"a\":tru}",
        "{\"a\":\"\u{1}\"}",
        "{\"a\":01}",
    ] {
        assert!(
            err(bad).starts_with("invalid JSON at line 1 column"),
            "{bad:?}: {}",
            err(bad)
        );
    }
    assert!(request_from_json(b"{\"a\":\"\xff\"}")
        .unwrap_err()
        .to_string()
        .contains("invalid UTF-8"));
    let e = err("{\n  \"resourceSpans\": [\n    {\"scopeSpans\": [}");
    assert!(e.starts_with("invalid JSON at line 3 column 21"), "{e}");
}

#[test]
fn truncated_json_is_an_error_not_a_panic() {
    let json = request_to_json(&full_request().encode_to_vec()).unwrap();
    for cut in 0..json.len() {
        if json.is_char_boundary(cut) {
            assert!(
                request_from_json(&json.as_bytes()[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 1000;
    let mut v = String::from(r#"{"intValue":1}"#);
    for _ in 0..depth {
        v = format!(r#"{{"arrayValue":{{"values":[{v}]}}}}"#);
    }
    let e = err(&spans_doc(&format!(
        r#"{{"attributes":[{{"key":"k","value":{v}}}]}}"#
    )));
    assert!(e.contains("nesting deeper than 64 levels"), "{e}");
    let e = err(&format!(
        r#"{{"x":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    ));
    assert!(e.contains("nesting deeper than 64 levels"), "{e}");
    // ... and the same for protobuf: an AnyValue nested 1000 levels deep.
    let mut any = Vec::new();
    put_key(&mut any, 3, VARINT);
    put_varint(&mut any, 1);
    for _ in 0..depth {
        let mut array = Vec::new();
        put_len(&mut array, 1, &any);
        any.clear();
        put_len(&mut any, 5, &array);
    }
    let r = req(
        Some(Resource {
            attributes: vec![kv("k", None)],
            ..Resource::default()
        }),
        None,
        vec![],
    );
    let mut proto = r.encode_to_vec();
    let mut attr = Vec::new();
    put_len(&mut attr, 2, &any);
    let mut resource = Vec::new();
    put_len(&mut resource, 1, &attr);
    let mut rs = Vec::new();
    put_len(&mut rs, 1, &resource);
    put_len(&mut proto, 1, &rs);
    let e = request_to_json(&proto).unwrap_err().to_string();
    assert!(e.contains("nesting deeper than 64 levels"), "{e}");
}

#[test]
fn malformed_protobuf_is_an_error() {
    let proto = full_request().encode_to_vec();
    for cut in 0..proto.len() {
        let _ = request_to_json(&proto[..cut]);
    }
    assert_eq!(
        request_to_json(&[0x0a, 0x05, 0x01])
            .unwrap_err()
            .to_string(),
        "invalid protobuf: truncated message"
    );
    let e = request_to_json(&[0x08, 0x01]).unwrap_err().to_string();
    assert_eq!(e, "invalid protobuf: field 1 has wire type 0, expected 2");
    // resourceSpans[0].schemaUrl with invalid UTF-8.
    let e = request_to_json(&[0x0a, 0x03, 0x1a, 0x01, 0xff])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "resourceSpans[0].schemaUrl: invalid protobuf: string is not valid UTF-8"
    );
    // Unknown fields are skipped; a repeated singular message merges.
    let mut rs = Vec::new();
    put_len(&mut rs, 1, &string_attrs_resource("a"));
    put_len(&mut rs, 1, &string_attrs_resource("b"));
    put_key(&mut rs, 99, VARINT);
    put_varint(&mut rs, 5);
    let mut proto = Vec::new();
    put_len(&mut proto, 1, &rs);
    let json = request_to_json(&proto).unwrap();
    assert_eq!(
        json,
        r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"stringValue":"a"}},{"key":"b","value":{"stringValue":"b"}}]}}]}"#
    );
}

#[test]
fn duplicate_fields_read_as_prost_reads_them() {
    let array_of = |i: u64| {
        let (mut int, mut any, mut array) = (Vec::new(), Vec::new(), Vec::new());
        put_key(&mut int, 3, VARINT);
        put_varint(&mut int, i);
        put_len(&mut array, 1, &int);
        put_len(&mut any, 5, &array);
        any
    };
    // A oneof switching back and forth: only the occurrences after the last switch merge.
    let any = [
        array_of(1),
        vec![0x0a, 0x01, b'x'],
        array_of(2),
        array_of(3),
    ]
    .concat();
    let mut attr = Vec::new();
    put_len(&mut attr, 1, b"k");
    put_len(&mut attr, 2, &any);
    let mut span = Vec::new();
    put_len(&mut span, 5, b"first");
    put_len(&mut span, 5, b"last");
    put_len(&mut span, 15, &[0x12, 0x01, b'm']);
    put_len(&mut span, 15, &[0x18, 0x02]);
    put_len(&mut span, 9, &attr);
    let (mut scope_spans, mut rs, mut proto) = (Vec::new(), Vec::new(), Vec::new());
    put_len(&mut scope_spans, 2, &span);
    put_len(&mut rs, 2, &scope_spans);
    put_len(&mut proto, 1, &rs);
    let via_prost = ExportTraceServiceRequest::decode(&proto[..])
        .unwrap()
        .encode_to_vec();
    let json = request_to_json(&proto).unwrap();
    assert_eq!(json, request_to_json(&via_prost).unwrap());
    assert!(
        json.contains(r#""name":"last""#) && json.contains(r#""status":{"message":"m","code":2}"#),
        "{json}"
    );
    assert!(
        json.contains(r#"{"arrayValue":{"values":[{"intValue":"2"},{"intValue":"3"}]}}"#),
        "{json}"
    );
}

fn string_attrs_resource(key: &str) -> Vec<u8> {
    let mut r = Vec::new();
    put_len(&mut r, 1, &crate::wire::string_key_value(key, key));
    r
}
