//! Loader tests: the shipped examples load, defaults are the documented ones, and a bad
//! file reports every problem at once with its line and path.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

pub(super) fn env() -> HashMap<String, String> {
    HashMap::new()
}

pub(super) fn problems(text: &str) -> Vec<Located> {
    match load_with_env(text, "bad.yaml", &env()) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("config was accepted"),
    }
}

pub(super) const MINIMAL: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
processors:
  tail_sampling:
    policies:
      - { name: all, type: always_sample }
exporters:
  file: { path: /tmp/out.jsonl }
"#;

#[test]
fn shipped_configs_load() {
    let c = embedded_default();
    assert_eq!(
        c.receivers.grpc.as_ref().unwrap().endpoint,
        "127.0.0.1:4317"
    );
    assert_eq!(
        c.receivers.http.as_ref().unwrap().endpoint,
        "127.0.0.1:4318"
    );
    assert!(matches!(c.exporters[0].1, ExporterCfg::File(_)));
    assert_eq!(c.tail_sampling.policies.len(), 4);
    for f in ["config/sidecar.yaml", "config/gateway.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        let text = std::fs::read_to_string(&path).unwrap();
        load_with_env(&text, f, &env()).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = load_with_env(MINIMAL, "min.yaml", &env()).unwrap();
    let t = &c.tail_sampling;
    assert_eq!(t.decision_wait, Duration::from_secs(30));
    assert_eq!(t.num_traces, 50_000);
    assert_eq!(
        (t.sampled_cache_size, t.non_sampled_cache_size),
        (100_000, 500_000),
        "decision cache on by default"
    );
    assert_eq!(t.max_buffer_bytes, None, "derived from the memory budget");
    assert_eq!(t.decision_wait_after_root_received, None);
    assert_eq!(t.maximum_trace_size_bytes, None);
    let g = c.receivers.grpc.unwrap();
    assert_eq!(
        (g.endpoint.as_str(), g.max_recv_msg_size),
        ("127.0.0.1:4317", 16 << 20)
    );
    assert!(
        c.receivers.http.is_none(),
        "only the protocols named are on"
    );
    assert_eq!(c.support.api.endpoint.as_deref(), Some("127.0.0.1:8990"));
    assert_eq!(
        c.support.index.attributes,
        ["user.id", "enduser.id", "session.id"]
    );
    assert_eq!(
        (c.support.index.max_traces, c.support.index.max_bytes),
        (1_000_000, 256 << 20)
    );
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.logging.format, LogFormat::Text);
}

#[test]
fn the_index_is_bounded_by_bytes_and_says_so() {
    let text = MINIMAL.replace(
        "exporters:",
        "support:\n  index: { max_traces: 5000, max_bytes: 64MiB, retention: 2h }\nexporters:",
    );
    let c = load_with_env(&text, "i.yaml", &env()).unwrap();
    assert_eq!(c.support.index.max_bytes, 64 << 20);
    let summary = c.summary().join("\n");
    assert!(
        summary.contains(
            "index: user.id, enduser.id, session.id for 2h, at most 5000 traces and 64MiB"
        ),
        "{summary}"
    );
    let off = MINIMAL.replace(
        "exporters:",
        "support:\n  index: { attributes: [] }\nexporters:",
    );
    let c = load_with_env(&off, "o.yaml", &env()).unwrap();
    assert!(c.summary().contains(&"index: off".to_string()));
    let tiny = MINIMAL.replace(
        "exporters:",
        "support:\n  index: { max_bytes: 4KiB }\nexporters:",
    );
    let p = problems(&tiny);
    assert!(
        format!("{p:?}").contains("support.index.max_bytes"),
        "{p:?}"
    );
}

#[test]
fn environment_references_are_expanded_and_typed() {
    let text = MINIMAL.replace(
        "policies:",
        "num_traces: ${env:N}\n    decision_wait: ${env:WAIT:-2s}\n    policies:",
    );
    let e: HashMap<String, String> = [("N".to_string(), "1234".to_string())].into();
    let c = load_with_env(&text, "env.yaml", &e).unwrap();
    assert_eq!(c.tail_sampling.num_traces, 1234);
    assert_eq!(c.tail_sampling.decision_wait, Duration::from_secs(2));
}

#[test]
fn every_problem_is_reported_at_once_with_line_and_path() {
    let text = r#"receivers:
  otlp:
    protocols:
      grpc: { endpoint: "nonsense" }
processors:
  tail_sampling:
    decision_wait: 10 parsecs
    policies:
      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
      - name: slow
        type: latency
        latency: { treshold_ms: 500 }
exporters:
  otlp: { endpoint: "tempo:4317", compresion: gzip }
  kafka: { brokers: [a] }
support:
  api: { endpoint: 127.0.0.1:8990 }
frobnicate: true
"#;
    let ps = problems(text);
    let find = |path: &str| {
        ps.iter()
            .find(|l| l.problem.path == path)
            .unwrap_or_else(|| panic!("no problem at {path}; got {ps:#?}"))
    };
    let grpc = find("receivers.otlp.protocols.grpc.endpoint");
    assert_eq!(grpc.line, Some(4));
    // The tail_sampling block fails as a whole on its first bad field; its policies are not
    // read then. Each other section still reports.
    let wait = find("processors.tail_sampling.decision_wait");
    assert_eq!(wait.line, Some(7));
    assert!(
        wait.problem.message.contains("parsecs"),
        "{}",
        wait.problem.message
    );
    let otlp = find("exporters.otlp.compresion");
    assert!(otlp.problem.message.contains("compresion"));
    assert_eq!(otlp.line, Some(14), "the line of the unknown key");
    let kafka = find("exporters.kafka");
    assert!(kafka.problem.message.contains("unknown exporter type"));
    assert_eq!(kafka.line, Some(15));
    let top = find("frobnicate");
    assert_eq!(top.line, Some(18));
    assert_eq!(ps.len(), 5, "{ps:#?}");

    let rendered = ConfigError::Invalid {
        file: "bad.yaml".into(),
        problems: ps,
    }
    .to_string();
    assert!(rendered.starts_with("bad.yaml: 5 problems"), "{rendered}");
    assert!(
        rendered.contains("\n  bad.yaml:4: receivers.otlp.protocols.grpc.endpoint: "),
        "{rendered}"
    );
}

#[test]
fn each_policy_is_read_on_its_own() {
    let text = MINIMAL.replace(
        "      - { name: all, type: always_sample }",
        "      - { name: a, type: latency, latency: { treshold_ms: 1 } }\n      - { name: b, type: status_code, status_code: { status_codes: [ERROR] }, extra: 1 }",
    );
    let ps = problems(&text);
    let paths: Vec<_> = ps.iter().map(|l| l.problem.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "processors.tail_sampling.policies[0].latency.treshold_ms",
            "processors.tail_sampling.policies[1].extra"
        ],
        "{ps:#?}"
    );
    assert_eq!(ps[0].line, Some(9));
    assert_eq!(ps[1].line, Some(10));
}

#[test]
fn policy_semantics_are_checked_with_the_rest() {
    let text = MINIMAL
        .replace(
            "{ name: all, type: always_sample }",
            "{ name: p, type: latency, latency: { threshold_ms: 500, upper_threshold_ms: 100 } }",
        )
        .replace("grpc:", "grpc:\n      http: { max_request_body_size: 0 }");
    let ps = problems(&text);
    assert!(
        ps.iter().any(|l| l
            .problem
            .path
            .starts_with("processors.tail_sampling.policies[0]")),
        "{ps:#?}"
    );
    assert!(
        ps.iter()
            .any(|l| l.problem.path == "receivers.otlp.protocols.http.max_request_body_size"),
        "{ps:#?}"
    );
}

#[test]
fn ottl_condition_problems_name_the_file_line_and_the_column_in_the_condition() {
    let text = MINIMAL.replace(
        "      - { name: all, type: always_sample }",
        "      - name: o\n        type: ottl_condition\n        ottl_condition:\n          span:\n            - 'attributes[\"x\"] == 1'\n            - 'name == \"a\" or Nope(name)'",
    );
    let ps = problems(&text);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(
        ps[0].problem.path,
        "processors.tail_sampling.policies[0].ottl_condition.span[1]"
    );
    assert_eq!(ps[0].line, Some(14), "{ps:#?}");
    assert!(
        ps[0]
            .problem
            .message
            .starts_with("line 1, column 16: unknown function Nope;"),
        "{ps:#?}"
    );
}

#[test]
fn missing_sections_and_bad_yaml_are_explained() {
    let ps = problems("receivers: {}\n");
    let paths: Vec<_> = ps.iter().map(|l| l.problem.path.as_str()).collect();
    assert!(paths.contains(&"receivers.otlp.protocols"), "{paths:?}");
    assert!(paths.contains(&"processors.tail_sampling"), "{paths:?}");
    assert!(paths.contains(&"exporters"), "{paths:?}");

    let ps = problems("receivers:\n  otlp: [1, 2\n");
    assert_eq!(ps.len(), 1);
    assert!(ps[0].problem.message.starts_with("invalid YAML"));
    assert!(ps[0].line.is_some());
}

#[test]
fn unset_variables_are_problems() {
    // Inside a flow mapping `{ }` a reference must be quoted, as in the Collector.
    let text = MINIMAL.replace("/tmp/out.jsonl", "\"${env:CASEFILE_TEST_SURELY_UNSET}\"");
    let ps = problems(&text);
    assert_eq!(ps[0].problem.path, "exporters.file.path");
    assert!(ps[0]
        .problem
        .message
        .contains("CASEFILE_TEST_SURELY_UNSET is not set"));
}

#[test]
fn secrets_never_show_in_debug_output() {
    let text = MINIMAL.replace("exporters:", "support:\n  api: { auth_token: tok_SECRET }\n  index: { hash_values: true, hash_key: key_SECRET }\n  archive: { dir: /tmp/a }\nexporters:");
    let c = load_with_env(&text, "s.yaml", &env()).unwrap();
    assert_eq!(c.support.api.auth_token.as_deref(), Some("tok_SECRET"));
    assert!(c.support.archive.as_ref().unwrap().hash_key.is_some());
    let shown = format!("{c:?} {:?}", c.summary());
    assert!(!shown.contains("SECRET"), "{shown}");
    // Nor as the archive's key bytes ("key_SECRET" = 107, 101, 121, ...).
    assert!(!shown.contains("107, 101, 121"), "{shown}");
    assert!(shown.contains("<set>"));
}

#[test]
fn the_api_token_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "tok_FROM_FILE\n").unwrap();
    let with =
        |api: &str| MINIMAL.replace("exporters:", &format!("support:\n  api: {api}\nexporters:"));
    let c = load_with_env(
        &with(&format!("{{ auth_token_file: {} }}", file.display())),
        "t.yaml",
        &env(),
    )
    .unwrap();
    assert_eq!(c.support.api.auth_token.as_deref(), Some("tok_FROM_FILE"));
    assert_eq!(
        c.support.api.auth_token_file.as_deref(),
        Some(file.as_path())
    );
    assert!(!format!("{c:?}").contains("FROM_FILE"));

    let both = format!("{{ auth_token: x, auth_token_file: {} }}", file.display());
    let missing = format!("{{ auth_token_file: {}/none }}", dir.path().display());
    std::fs::write(dir.path().join("empty"), " \n").unwrap();
    let empty = format!("{{ auth_token_file: {}/empty }}", dir.path().display());
    for (api, want) in [
        (both, "not both"),
        (missing, "cannot read"),
        (empty, "is empty"),
    ] {
        let e = load_with_env(&with(&api), "t.yaml", &env()).unwrap_err();
        assert!(e.to_string().contains(want), "{api}: {e}");
        assert!(e.to_string().contains("support.api.auth_token_file"), "{e}");
    }
}

#[test]
fn at_most_64_index_attributes() {
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("a{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let with = |n: usize| {
        let index = format!(
            "support:\n  index: {{ attributes: [{}] }}\nexporters:",
            list(n)
        );
        load_with_env(&MINIMAL.replace("exporters:", &index), "i.yaml", &env())
    };
    assert!(with(64).is_ok());
    let e = with(65).unwrap_err().to_string();
    assert!(e.contains("support.index.attributes: at most 64"), "{e}");
    // A key digests `name ‖ 0 ‖ value`: no name may hold a NUL.
    let nul = "support:\n  index: { attributes: [\"user.id\", \"a\\0b\"] }\nexporters:";
    let e = load_with_env(&MINIMAL.replace("exporters:", nul), "i.yaml", &env())
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds a NUL"), "{e}");
}

/// Inputs fuzzing once failed on (`scripts/fuzz.sh config`; each is added to
/// `tests/fuzz-regressions/config/`): each loads, or is refused with its problems.
#[test]
fn fuzz_regressions_load_or_report_problems() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz-regressions/config");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        match load_with_env(&text, "fuzz.yaml", &env()) {
            Ok(c) => assert!(std::time::Instant::now()
                .checked_add(c.tail_sampling.decision_wait)
                .is_some()),
            Err(ConfigError::Invalid { problems, .. }) => {
                assert!(!problems.is_empty(), "{}", path.display())
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}

#[test]
fn storage_dir_turns_on_the_log_and_places_the_complaint_store() {
    let c = load_with_env(MINIMAL, "m.yaml", &env()).unwrap();
    assert!(c.storage.is_none(), "in memory unless storage.dir is set");
    assert_eq!(c.support.complaints.store, None);

    let text = format!("{MINIMAL}storage: {{ dir: /var/lib/casefile }}\n");
    let c = load_with_env(&text, "m.yaml", &env()).unwrap();
    let s = c.storage.unwrap();
    assert_eq!(s.dir, std::path::Path::new("/var/lib/casefile"));
    assert_eq!((s.segment_size, s.fsync), (64 << 20, Fsync::Never));
    assert_eq!(
        c.support.complaints.store.as_deref(),
        Some("/var/lib/casefile/complaints.db")
    );

    let text = format!("{MINIMAL}storage: {{ dir: /d, fsync: always, segment_size: 8MiB }}\nsupport: {{ complaints: {{ store: /e/c.db }} }}\n");
    let c = load_with_env(&text, "m.yaml", &env()).unwrap();
    assert_eq!(c.storage.as_ref().unwrap().fsync, Fsync::Always);
    assert_eq!(c.storage.unwrap().segment_size, 8 << 20);
    assert_eq!(c.support.complaints.store.as_deref(), Some("/e/c.db"));

    let text = format!("{MINIMAL}storage: {{ dir: /d, fsync: sometimes, segment_size: 10 }}\n");
    let Err(ConfigError::Invalid { problems, .. }) = load_with_env(&text, "m.yaml", &env()) else {
        panic!("bad storage settings must be refused");
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.problem.path.as_str()).collect();
    assert_eq!(paths, ["storage.fsync", "storage.segment_size"]);
}

#[test]
fn span_checks_are_configured_checked_and_summarized() {
    use crate::wire::decode::{Checks, InvalidUtf8};
    let c = load_with_env(MINIMAL, "m.yaml", &env()).unwrap();
    assert_eq!(c.receivers.checks, Checks::default());
    assert_eq!(c.receivers.checks.invalid_utf8, InvalidUtf8::Repair);
    assert_eq!(c.receivers.checks.max_span_bytes, 1 << 20);
    let set = MINIMAL.replace(
        "    protocols:",
        "    invalid_utf8: reject\n    max_span_bytes: 64KiB\n    protocols:",
    );
    let c = load_with_env(&set, "s.yaml", &env()).unwrap();
    assert_eq!(c.receivers.checks.invalid_utf8, InvalidUtf8::Reject);
    assert_eq!(c.receivers.checks.max_span_bytes, 64 << 10);
    let summary = c.summary().join("\n");
    assert!(
        summary.contains("span checks: invalid UTF-8 refused; spans over 64KiB or nested deeper than 100 levels refused"),
        "{summary}"
    );
    let bad = MINIMAL.replace(
        "    protocols:",
        "    invalid_utf8: drop\n    max_span_bytes: 100\n    protocols:",
    );
    let p = problems(&bad);
    let paths: Vec<&str> = p.iter().map(|l| l.problem.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "receivers.otlp.invalid_utf8",
            "receivers.otlp.max_span_bytes"
        ],
        "{p:?}"
    );
    assert!(format!("{p:?}").contains("use repair"), "{p:?}");
}

#[test]
fn export_batch_sizes_default_to_3mib_and_are_checked() {
    use crate::export::config::RequestLimits;
    let limits = |exporter: &str| {
        let text = MINIMAL.replace("  file: { path: /tmp/out.jsonl }", exporter);
        let c = load_with_env(&text, "b.yaml", &env()).unwrap_or_else(|e| panic!("{e}"));
        match &c.exporters[0].1 {
            ExporterCfg::Otlp(o) | ExporterCfg::OtlpHttp(o) => o.sending_queue.batch.limits(),
            ExporterCfg::File(_) => panic!("not an otlp exporter"),
        }
    };
    let otlp = |batch: &str| {
        format!("  otlp: {{ endpoint: \"tempo:4317\", sending_queue: {{ batch: {batch} }} }}")
    };
    let default = RequestLimits {
        max_bytes: 3 << 20,
        max_spans: 4096,
    };
    assert_eq!(limits("  otlp: { endpoint: \"tempo:4317\" }"), default);
    assert_eq!(limits(&otlp("{}")), default);
    assert_eq!(
        limits(&otlp(
            "{ max_size: 1048576, min_size: 1000, flush_timeout: 200ms }"
        )),
        RequestLimits {
            max_bytes: 1 << 20,
            ..default
        }
    );
    assert_eq!(
        limits(&otlp("{ sizer: bytes, max_size: 2MiB }")).max_bytes,
        2 << 20
    );
    assert_eq!(
        limits(&otlp("{ sizer: items, max_size: 512 }")),
        RequestLimits {
            max_spans: 512,
            ..default
        },
        "the byte bound holds whatever the sizer"
    );
    assert_eq!(limits(&otlp("{ sizer: items }")), default);

    let bad = MINIMAL.replace(
        "  file: { path: /tmp/out.jsonl }",
        "  otlp: { endpoint: \"tempo:4317\", sending_queue: { batch: { sizer: requests } } }\n  otlp/b: { endpoint: \"b:4317\", sending_queue: { batch: { max_size: 0, sizer: items } } }\n  otlphttp: { endpoint: \"http://c:4318\", sending_queue: { batch: { max_size: 1000 } } }\n  otlp/d: { endpoint: \"d:4317\", sending_queue: { batch: { max_bytes: 1 } } }",
    );
    let ps = problems(&bad);
    let at = |path: &str| {
        ps.iter()
            .find(|l| l.problem.path == path)
            .unwrap_or_else(|| panic!("no problem at {path}; got {ps:#?}"))
            .problem
            .message
            .clone()
    };
    assert!(at("exporters.otlp.sending_queue.batch.sizer").contains("\"requests\""));
    assert!(at("exporters.otlp/b.sending_queue.batch.max_size").contains("more than 0"));
    assert!(at("exporters.otlphttp.sending_queue.batch.max_size").contains("at least 64KiB"));
    assert!(at("exporters.otlp/d.sending_queue.batch.max_bytes").contains("max_bytes"));
    assert_eq!(ps.len(), 4, "{ps:#?}");
}

#[test]
fn the_archive_is_configured_checked_and_summarized() {
    use crate::archive::Traces;
    let c = load_with_env(MINIMAL, "m.yaml", &env()).unwrap();
    assert!(c.support.archive.is_none(), "no dir, no archive");
    assert!(c.summary().iter().any(|l| l.starts_with("archive: off")));
    let on = MINIMAL.replace(
        "exporters:",
        "support:\n  archive: { dir: ./data/archive, max_bytes: 1GiB }\nexporters:",
    );
    let c = load_with_env(&on, "a.yaml", &env()).unwrap();
    let a = c.support.archive.as_ref().unwrap();
    assert_eq!(a.retention, Duration::from_secs(72 * 3600));
    assert_eq!(a.max_bytes, 1 << 30);
    assert_eq!(a.traces, Traces::All);
    assert_eq!(a.attributes, ["user.id", "enduser.id", "session.id"]);
    assert!(a.hash_key.is_none());
    let summary = c.summary().join("\n");
    assert!(
        summary.contains("archive: ./data/archive for 72h, at most 1GiB (segments of"),
        "{summary}"
    );
    assert!(
        summary.contains("spans of every decided trace"),
        "{summary}"
    );
    let bad = MINIMAL.replace(
        "exporters:",
        "support:\n  archive: { dir: /tmp/a, retention: 0s, max_bytes: 1MiB, traces: some }\nexporters:",
    );
    let p = problems(&bad);
    let paths: Vec<&str> = p.iter().map(|l| l.problem.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "support.archive.traces",
            "support.archive.retention",
            "support.archive.max_bytes"
        ],
        "{p:?}"
    );
}
