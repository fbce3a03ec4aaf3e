//! What the fuzz targets check, as plain functions: each target in `fuzz_targets/` hands
//! libFuzzer's input to one of these, and a failed check is a panic, i.e. a crash that
//! libFuzzer saves under `fuzz/artifacts/<target>/`. Run them with `scripts/fuzz.sh`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use casefile::config::{self, ConfigError};
use casefile::fixture::{Gen, Shape};
use casefile::model::Span;
use casefile::policy::Policies;
use casefile::wire::decode::decode_request;
use casefile::wire::differential::{check_against_prost, check_exportable};
use casefile::wire::json::{request_from_json_with_unknown, request_to_json};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// `wire_protobuf`: the ingest fast path never panics on any bytes; whenever prost's
/// full decode accepts them, the fast path reads the same spans (see
/// [`check_against_prost`]); and whatever the fast path accepts, prost decodes once
/// casefile exports it (see [`check_exportable`]).
pub fn protobuf(data: &[u8]) {
    let _ = decode_request(data);
    if let Err(e) = check_against_prost(data) {
        panic!("the fast path disagrees with prost: {e}");
    }
    if let Err(e) = check_exportable(data) {
        panic!("casefile accepts what it cannot export: {e}");
    }
}

/// `wire_json`: the OTLP/JSON reader never panics, and what it accepts
/// - renders back to JSON, which reads back to the same request (prost compares the two
///   protobuf encodings) and renders to the same JSON again;
/// - is protobuf that prost and the fast path both accept, and agree on.
pub fn json(data: &[u8]) {
    let Ok((proto, _unknown)) = request_from_json_with_unknown(data) else {
        return;
    };
    let text = request_to_json(&proto)
        .unwrap_or_else(|e| panic!("accepted JSON does not render back: {e}"));
    let (again, unknown) = request_from_json_with_unknown(text.as_bytes())
        .unwrap_or_else(|e| panic!("rendered JSON does not read back: {e}\n{text}"));
    assert!(
        unknown.is_empty(),
        "rendered JSON has unknown fields {unknown:?}"
    );
    let first = ExportTraceServiceRequest::decode(&proto[..])
        .unwrap_or_else(|e| panic!("prost refuses the protobuf read from JSON: {e}"));
    let second = ExportTraceServiceRequest::decode(&again[..])
        .unwrap_or_else(|e| panic!("prost refuses the protobuf read from rendered JSON: {e}"));
    // Compared encoded, so a NaN equals itself.
    assert_eq!(
        first.encode_to_vec(),
        second.encode_to_vec(),
        "JSON -> protobuf -> JSON -> protobuf changed the request\n{text}"
    );
    let text_again = request_to_json(&again).expect("renders");
    assert_eq!(text, text_again, "rendering is not stable");
    if let Err(e) = check_against_prost(&proto) {
        panic!("the fast path disagrees with prost on protobuf read from JSON: {e}");
    }
    if let Err(e) = check_exportable(&proto) {
        panic!("casefile accepts JSON it cannot export: {e}");
    }
}

/// `config`: the loader never panics on any text; a refusal carries at least one problem;
/// an accepted config has durations that fit a deadline, summarizes, builds its policies,
/// and they decide a trace.
pub fn config(text: &str) {
    match config::load_with_env(text, "fuzz.yaml", env()) {
        Ok(cfg) => {
            let _ = cfg.summary();
            let ts = &cfg.tail_sampling;
            let (support, now) = (&cfg.support, std::time::Instant::now());
            let durations = [
                ts.decision_wait,
                cfg.shutdown_grace,
                support.index.retention,
                support.complaints.watch_for,
                support.complaints.rescue_window,
            ];
            for d in durations
                .into_iter()
                .chain(ts.decision_wait_after_root_received)
            {
                assert!(now.checked_add(d).is_some(), "{d:?} overflows a deadline");
            }
            let policies = Policies::build(&ts.policies, ts.sample_on_first_match)
                .unwrap_or_else(|p| panic!("an accepted config does not build: {p:?}"));
            let _ = policies.describe();
            let spans = trace();
            let _ = policies.evaluate(&spans[0].trace_id(), spans, Instant::now().into());
        }
        Err(e) => {
            let message = e.to_string();
            match e {
                ConfigError::Invalid { problems, .. } => {
                    assert!(!problems.is_empty(), "refused without a problem: {message}")
                }
                ConfigError::Read { .. } => panic!("load_with_env read a file: {message}"),
            }
        }
    }
}

/// A fixed environment, so `${env:…}` references expand the same on every run.
fn env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        [
            ("N", "250"),
            ("HOST", "tempo"),
            ("OUT", "./out.jsonl"),
            ("CASEFILE_API_TOKEN", "t0ken"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    })
}

/// One decoded trace with an error, a slow root and a premium user, for the policies.
fn trace() -> &'static [Span] {
    static TRACE: OnceLock<Vec<Span>> = OnceLock::new();
    TRACE.get_or_init(|| {
        let shape = Shape {
            error: true,
            slow: true,
            premium: true,
        };
        let t = Gen::new(3).trace(shape, 6);
        let req = casefile::fixture::request_for(&[t]).encode_to_vec();
        decode_request(&req).expect("fixture decodes").spans
    })
}

#[cfg(test)]
mod seeds;
