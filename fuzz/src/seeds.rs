//! Writes the seed corpora in `fuzz/seeds/<target>/` from the crate's fixtures and the
//! shipped configs. By hand, after a change to the fixtures or the formats:
//! `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds`
//! (then check that every file stays a few KB).

use std::path::{Path, PathBuf};

use casefile::fixture::{self, kv, kv_int, Gen, Shape};
use casefile::wire::json::request_to_json;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use prost::Message;

fn dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn any(v: Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

/// A span using every field: events, links, every kind of attribute value, nested values.
fn full_request() -> ExportTraceServiceRequest {
    let mut t = Gen::new(11).trace(Shape::ERROR, 2);
    let nested = KeyValue {
        key: "nested".into(),
        value: Some(any(Value::KvlistValue(KeyValueList {
            values: vec![
                kv("s", "é😀\"\\\n"),
                KeyValue {
                    key: "arr".into(),
                    value: Some(any(Value::ArrayValue(ArrayValue {
                        values: vec![
                            any(Value::BoolValue(true)),
                            any(Value::DoubleValue(-0.0)),
                            any(Value::DoubleValue(f64::INFINITY)),
                            any(Value::DoubleValue(1e-300)),
                            any(Value::BytesValue(vec![0, 1, 0xfe, 0xff])),
                            AnyValue { value: None },
                        ],
                    }))),
                    key_strindex: 0,
                },
            ],
        }))),
        key_strindex: 0,
    };
    let span = &mut t.spans[1].1;
    span.attributes.push(nested);
    span.attributes.push(kv_int("neg", i64::MIN));
    span.trace_state = "vendor=abc,casefile=1".into();
    span.dropped_attributes_count = 3;
    span.events.push(Event {
        time_unix_nano: span.start_time_unix_nano + 5,
        name: "exception".into(),
        attributes: vec![kv("exception.type", "Timeout")],
        dropped_attributes_count: 1,
    });
    span.links.push(Link {
        trace_id: vec![7; 16],
        span_id: vec![8; 8],
        trace_state: "k=v".into(),
        attributes: vec![kv("link", "yes")],
        dropped_attributes_count: 0,
        flags: 0x301,
    });
    span.dropped_events_count = 2;
    span.dropped_links_count = 1;
    fixture::request_for(&[t])
}

/// A request whose spans have bad ids (refused one by one) next to a good one.
fn invalid_ids_request() -> ExportTraceServiceRequest {
    let mut t = Gen::new(1).trace(Shape::default(), 4);
    t.spans[1].1.trace_id = vec![0; 16];
    t.spans[2].1.span_id = vec![1, 2, 3];
    t.spans[3].1.parent_span_id = vec![9; 3];
    fixture::request_for(&[t])
}

/// Each poison of the ingest checks (invalid UTF-8 in each place, nesting past the limit,
/// the limit itself) in a small trace: the checks' edges, where a fuzzer starts mutating.
fn poisons() -> Vec<(String, Vec<u8>)> {
    use casefile::fixture::poison::{poisoned_request, Poison};
    let t = Gen::new(9).trace(Shape::ERROR, 2);
    let mut out: Vec<(String, Vec<u8>)> = Poison::ALL
        .iter()
        .enumerate()
        .map(|(i, &p)| (format!("poison-{i}.bin"), poisoned_request(&t, p)))
        .collect();
    for levels in [47, 48] {
        let req = poisoned_request(&t, Poison::DeepArray(levels));
        out.push((format!("deep-array-{levels}.bin"), req));
    }
    out
}

fn requests() -> Vec<(&'static str, Vec<u8>)> {
    let mut g = Gen::new(5);
    let one = fixture::request_for(&[g.trace(Shape::ERROR, 5)]);
    let shapes = [
        Shape::default(),
        Shape {
            slow: true,
            ..Shape::default()
        },
        Shape {
            premium: true,
            ..Shape::default()
        },
    ];
    let three: Vec<_> = shapes.iter().map(|&s| g.trace(s, 2)).collect();
    let three = fixture::request_for(&three);
    vec![
        ("empty.bin", Vec::new()),
        ("one-trace.bin", one.encode_to_vec()),
        ("three-traces.bin", three.encode_to_vec()),
        ("every-field.bin", full_request().encode_to_vec()),
        ("invalid-ids.bin", invalid_ids_request().encode_to_vec()),
        ("unusual-encoding.bin", unusual_encoding()),
    ]
}

/// A small request written as no SDK writes it, but as protobuf allows: span fields out
/// of order, a field repeated (the last wins), the status and the resource each split in
/// two occurrences (protobuf merges them), non-minimal varints and an unknown field.
fn unusual_encoding() -> Vec<u8> {
    use casefile::wire::{put_key, put_len, put_varint, I32, I64, VARINT};
    let mut status_a = Vec::new();
    put_len(&mut status_a, 2, b"boom");
    let mut status_b = Vec::new();
    put_key(&mut status_b, 3, VARINT);
    status_b.extend_from_slice(&[0x82, 0x00]); // 2, in two bytes
    let mut span = Vec::new();
    put_key(&mut span, 8, I64);
    span.extend_from_slice(&2_000u64.to_le_bytes());
    put_len(&mut span, 15, &status_a);
    put_len(&mut span, 2, &[2; 8]);
    put_len(&mut span, 1, &[9; 16]);
    put_len(&mut span, 1, &[1; 16]);
    put_key(&mut span, 7, I64);
    span.extend_from_slice(&1_000u64.to_le_bytes());
    put_len(&mut span, 15, &status_b);
    put_key(&mut span, 16, I32);
    span.extend_from_slice(&0x101u32.to_le_bytes());
    put_key(&mut span, 99, VARINT);
    put_varint(&mut span, 12345);
    put_len(&mut span, 5, b"GET /");
    let mut scope_spans = Vec::new();
    put_len(&mut scope_spans, 2, &span);
    put_len(&mut scope_spans, 3, b"https://s/1");
    let resource_a = kv("service.name", "a").encode_to_vec();
    let resource_b = kv("host.name", "b").encode_to_vec();
    let mut res_a = Vec::new();
    put_len(&mut res_a, 1, &resource_a);
    let mut res_b = Vec::new();
    put_len(&mut res_b, 1, &resource_b);
    let mut rs = Vec::new();
    put_len(&mut rs, 1, &res_a);
    put_len(&mut rs, 2, &scope_spans);
    put_len(&mut rs, 1, &res_b);
    let mut req = Vec::new();
    put_len(&mut req, 1, &rs);
    req
}

const EVERY_POLICY: &str = r#"receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:4317, max_recv_msg_size_mib: 16 }
      http: { endpoint: "127.0.0.1:${env:N}", max_request_body_size: 20971520 }
processors:
  tail_sampling:
    decision_wait: 1m30s
    decision_wait_after_root_received: 300ms
    num_traces: ${env:N}
    max_buffer_bytes: 512MiB
    decision_cache: { sampled_cache_size: 100000, non_sampled_cache_size: 500000 }
    sample_on_first_match: false
    drop_pending_traces_on_shutdown: false
    maximum_trace_size_bytes: 64MB
    num_shards: 16
    policies:
      - { name: all, type: always_sample }
      - { name: slow, type: latency, latency: { threshold_ms: 500, upper_threshold_ms: 900 } }
      - { name: errors, type: status_code, status_code: { status_codes: [ERROR, UNSET] } }
      - { name: re, type: string_attribute, string_attribute: { key: user.tier, values: ["^prem.*", x], enabled_regex_matching: true, invert_match: true } }
      - { name: num, type: numeric_attribute, numeric_attribute: { key: http.status_code, min_value: 500, max_value: 599 } }
      - { name: flag, type: boolean_attribute, boolean_attribute: { key: drop_me, value: true } }
      - { name: p, type: probabilistic, probabilistic: { sampling_percentage: 12.5, hash_salt: s } }
      - { name: r, type: rate_limiting, rate_limiting: { spans_per_second: 10, burst_capacity: 30 } }
      - { name: b, type: bytes_limiting, bytes_limiting: { bytes_per_second: 1024 } }
      - { name: c, type: span_count, span_count: { min_spans: 2, max_spans: 30 } }
      - { name: ts, type: trace_state, trace_state: { key: vendor, values: [abc] } }
      - { name: tf, type: trace_flags }
      - name: and
        type: and
        and:
          and_sub_policy:
            - { name: e, type: status_code, status_code: { status_codes: [ERROR] } }
            - { name: g, type: string_attribute, string_attribute: { key: tier, values: [gold] } }
      - { name: not, type: not, not: { not_sub_policy: { name: e, type: status_code, status_code: { status_codes: [OK] } } } }
      - { name: drop, type: drop, drop: { drop_sub_policy: [ { name: d, type: boolean_attribute, boolean_attribute: { key: drop_me, value: true } } ] } }
      - name: budget
        type: composite
        composite:
          max_total_spans_per_second: 10
          policy_order: [errors, rest]
          composite_sub_policy:
            - { name: rest, type: always_sample }
            - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
          rate_allocation:
            - { policy: errors, percent: 50 }
            - { policy: rest, percent: 30 }
exporters:
  otlp/tempo:
    endpoint: tempo:4317
    tls: { insecure: true }
    compression: gzip
    headers: { x-tenant: a }
    timeout: 5s
    retry_on_failure: { initial_interval: 5s, max_interval: 30s, max_elapsed_time: 300s }
    sending_queue: { num_consumers: 4, queue_size: 1000 }
  otlphttp/jaeger: { endpoint: "http://${HOST}:4318" }
  file: { path: "${env:OUT}" }
support:
  api: { endpoint: 127.0.0.1:8990, auth_token: "${env:CASEFILE_API_TOKEN}", max_requests_per_second: 100 }
  trace_url: "http://jaeger:16686/trace/{trace_id}"
  index:
    attributes: [user.id, enduser.id, session.id]
    retention: 24h
    max_traces: 1000000
    hash_values: true
    hash_key: $$ecret
  complaints: { watch_for: 1h, rescue_window: 10m, rescue_max_bytes: 256MiB, store: ./data/complaints.db }
logging: { level: info, format: json }
shutdown_timeout: 30s
"#;

const BAD: &str = r#"processors:
  tail_sampling:
    decision_wait: 10 parsecs
    num_traces: ${env:MISSING}
    policies:
      - { name: a, type: latency, latency: { treshold_ms: 5 } }
      - { name: a, type: probabilistic, probabilistic: { sampling_percentage: 150 } }
      - { name: c, type: ottl_condition }
      - { name: d, type: string_attribute, string_attribute: { key: k, values: ["(unclosed"], enabled_regex_matching: true } }
exporters:
  kafka: { brokers: [x] }
support: &s { api: *s }
"#;

fn configs() -> Vec<(&'static str, String)> {
    let shipped = |name: &str| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config")
            .join(name);
        std::fs::read_to_string(p).unwrap()
    };
    vec![
        ("casefile.yaml", shipped("casefile.yaml")),
        ("sidecar.yaml", shipped("sidecar.yaml")),
        ("gateway.yaml", shipped("gateway.yaml")),
        ("every-key.yaml", EVERY_POLICY.to_owned()),
        ("bad.yaml", BAD.to_owned()),
    ]
}

const SNAKE_CASE_JSON: &str = r#"{
  "resource_spans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"string_value": "my.service"}}]},
    "scope_spans": [{
      "scope": {"name": "my.library", "version": "1.0.0"},
      "spans": [{
        "trace_id": "5B8EFFF798038103D269B633813FC60C",
        "span_id": "eee19b7ec3c1b174",
        "parent_span_id": "eee19b7ec3c1b173",
        "name": "I'm a server span",
        "start_time_unix_nano": 1544712660000000000,
        "end_time_unix_nano": "1544712661000000000",
        "kind": "SPAN_KIND_SERVER",
        "status": {"code": "STATUS_CODE_ERROR", "message": "\u00e9\ud83d\ude00"},
        "attributes": [{"key": "n", "value": {"int_value": 4.2e1}},
                       {"key": "d", "value": {"doubleValue": "NaN"}},
                       {"key": "e", "value": {"doubleValue": 1e-400}},
                       {"key": "b", "value": {"bytesValue": "AAEC-_8"}}],
        "unknownField": [1, {"x": null}]
      }]
    }]
  }],
  "extra": true
}"#;

#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_seeds() {
    let json_dir = dir("wire_json");
    for (name, bytes) in requests() {
        std::fs::write(dir("wire_protobuf").join(name), &bytes).unwrap();
        let json = request_to_json(&bytes).unwrap();
        let name = name.replace(".bin", ".json");
        std::fs::write(json_dir.join(name), json).unwrap();
    }
    for (name, bytes) in poisons() {
        std::fs::write(dir("wire_protobuf").join(&name), &bytes).unwrap();
        // Invalid UTF-8 has no JSON form; nesting has, up to the JSON reader's own limit.
        if let Ok(json) = request_to_json(&bytes) {
            let name = name.replace(".bin", ".json");
            std::fs::write(json_dir.join(name), json).unwrap();
        }
    }
    std::fs::write(json_dir.join("snake-case.json"), SNAKE_CASE_JSON).unwrap();
    for (name, text) in configs() {
        std::fs::write(dir("config").join(name), text).unwrap();
    }
}

/// The committed seeds, and the inputs that once failed, pass every check (so a fuzz run
/// starts from a clean corpus).
#[test]
fn seeds_and_regressions_pass_the_checks() {
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz-regressions");
    for (target, check) in [
        ("wire_protobuf", crate::protobuf as fn(&[u8])),
        ("wire_json", crate::json),
        ("config", |b: &[u8]| {
            crate::config(&String::from_utf8_lossy(b))
        }),
    ] {
        let dirs = [dir(target), regressions.join(target)];
        for entry in dirs
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
        {
            let path = entry.unwrap().path();
            eprintln!("{}", path.display());
            check(&std::fs::read(&path).unwrap());
        }
    }
}
