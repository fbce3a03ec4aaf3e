//! A whole Collector config file (`collector.rs`): what runs, what is warned about with its
//! line, and what casefile cannot run, named.

use std::time::Duration;

use super::tests::{env, problems};
use super::*;
use crate::export::config::ExporterCfg;

/// The Collector config of a popular tail-sampling guide, pasted whole.
const COLLECTOR_FILE: &str = r#"
extensions:
  health_check:
  pprof:
receivers:
  otlp:
    protocols:
      grpc:
      http:
  jaeger/unused:
    protocols: { thrift_http: }
processors:
  memory_limiter: { check_interval: 1s, limit_mib: 512 }
  batch:
    send_batch_size: 512
    send_batch_max_size: 1024
    timeout: 5s
  attributes/unused: { actions: [] }
  tail_sampling:
    decision_wait: 10s
    policies:
      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
exporters:
  otlphttp:
    endpoint: http://tempo:4318
  debug:
    verbosity: detailed
service:
  extensions: [health_check, pprof]
  telemetry:
    logs: { level: info }
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, tail_sampling, batch]
      exporters: [otlphttp]
    metrics:
      receivers: [otlp]
      exporters: [otlphttp]
"#;

#[test]
fn a_whole_collector_config_file_runs() {
    let text = COLLECTOR_FILE.replace("  debug:\n    verbosity: detailed\n", "");
    let c = load_with_env(&text, "collector.yaml", &env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.exporters.len(), 1);
    assert_eq!(c.exporters[0].0, "otlphttp");
    let ExporterCfg::OtlpHttp(o) = &c.exporters[0].1 else {
        panic!("otlphttp")
    };
    assert_eq!(
        o.sending_queue.batch.limits().max_spans,
        1024,
        "batch shapes requests"
    );
    assert_eq!(c.memory_limiter.check_interval, Duration::from_secs(1));
    let warned: Vec<(&str, Option<usize>)> = c
        .warnings
        .iter()
        .map(|w| (w.problem.path.as_str(), w.line))
        .collect();
    for (path, line) in [
        ("extensions.health_check", Some(3)),
        ("extensions.pprof", Some(4)),
        ("receivers.jaeger/unused", Some(10)),
        ("processors.batch.timeout", Some(17)),
        ("processors.attributes/unused", Some(18)),
        ("service.telemetry", Some(28)),
        ("service.pipelines.metrics", Some(35)),
    ] {
        assert!(
            warned.contains(&(path, line)),
            "{path} at line {line:?}: {warned:?}"
        );
    }
    assert_eq!(c.warnings.len(), 7, "{warned:?}");
    let health = c
        .warnings
        .iter()
        .find(|w| w.problem.path == "extensions.health_check")
        .unwrap();
    assert!(health.problem.message.contains("/healthz"), "{health:?}");
}

#[test]
fn what_a_collector_file_asks_and_casefile_cannot_run_is_named() {
    // An exporter the pipeline names but that is not defined (debug is removed), a
    // processor casefile cannot run in the pipeline, a second traces pipeline, a jaeger
    // receiver in use.
    let text = COLLECTOR_FILE
        .replace(
            "exporters: [otlphttp]\n    metrics",
            "exporters: [otlphttp, kafka]\n    metrics",
        )
        .replace(
            "processors: [memory_limiter, tail_sampling, batch]",
            "processors: [memory_limiter, attributes/unused, tail_sampling, batch]",
        )
        .replace(
            "receivers: [otlp]\n      processors",
            "receivers: [otlp, jaeger/unused]\n      processors",
        )
        .replace(
            "    metrics:\n",
            "    traces/2:\n      receivers: [otlp]\n      exporters: [otlphttp]\n    metrics:\n",
        );
    let p = problems(&text);
    let got: Vec<(&str, &str)> = p
        .iter()
        .map(|l| (l.problem.path.as_str(), l.problem.message.as_str()))
        .collect();
    let has = |path: &str, words: &str| got.iter().any(|(p, m)| *p == path && m.contains(words));
    assert!(
        has(
            "service.pipelines.traces.exporters",
            "\"kafka\" is not defined"
        ),
        "{got:#?}"
    );
    assert!(
        has("processors.attributes/unused", "cannot run"),
        "{got:#?}"
    );
    assert!(
        has("service.pipelines.traces/2", "a second traces pipeline"),
        "{got:#?}"
    );
    assert!(has("receivers.jaeger/unused", "OTLP only"), "{got:#?}");
    // Without tail_sampling in the pipeline.
    let text = COLLECTOR_FILE.replace(
        "processors: [memory_limiter, tail_sampling, batch]",
        "processors: [memory_limiter, batch]",
    );
    let p = problems(&text);
    assert!(
        p.iter().any(|l| l
            .problem
            .message
            .contains("no tail_sampling in the traces pipeline")),
        "{p:#?}"
    );
}
