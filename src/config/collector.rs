//! A whole Collector config file, read as the Collector reads it: `service.pipelines.traces`
//! names the receivers, processors and exporters casefile uses; `batch` shapes export
//! requests; components carry `type/name` ids; extensions and `service.telemetry` are
//! accepted with a warning saying what casefile serves instead. What casefile cannot run
//! (another processor in the pipeline, a connector, a second traces pipeline, a receiver
//! other than OTLP) is a problem naming it. Runs on the YAML before the typed read, so the
//! rest of the config reads `processors.tail_sampling` and `receivers.otlp` as usual.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::build::Reader;

/// `service:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Service {
    extensions: Vec<String>,
    pipelines: BTreeMap<String, Pipeline>,
    telemetry: Option<Value>,
}

/// `service.pipelines.<signal>[/<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Pipeline {
    receivers: Vec<String>,
    processors: Vec<String>,
    exporters: Vec<String>,
}

/// `processors.batch`: the Collector's batch processor.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Batch {
    send_batch_size: Option<u64>,
    send_batch_max_size: Option<u64>,
    timeout: Option<Value>,
    metadata_keys: Option<Value>,
    metadata_cardinality_limit: Option<Value>,
}

/// What the rest of the build applies once the typed config is read.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// With a traces pipeline: the exporters it names (others are defined but unused).
    pub exporters: Option<Vec<String>>,
    /// `batch.send_batch_max_size` (else `send_batch_size`): at most this many spans a request.
    pub batch_max_spans: Option<usize>,
}

/// What casefile serves in place of a Collector extension.
fn instead_of(extension: &str) -> &'static str {
    match extension.split('/').next().unwrap_or_default() {
        "health_check" => "casefile serves /healthz and /readyz on support.api",
        "pprof" => "casefile has no profiling endpoint; its metrics are at /metrics on support.api",
        "zpages" => "casefile's state is at /metrics and the console on support.api",
        _ => "casefile runs no extensions",
    }
}

fn type_of(id: &str) -> &str {
    id.split('/').next().unwrap_or_default()
}

/// Reads and removes the Collector-only sections of `root`, renames the chosen
/// `type/name` components to the names casefile reads, and checks the traces pipeline.
pub(super) fn normalize(r: &mut Reader, root: &mut Mapping) -> Applied {
    let mut applied = Applied::default();
    for ext in take(root, "extensions")
        .as_ref()
        .and_then(Value::as_mapping)
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(Value::as_str)
    {
        r.warning(
            format!("extensions.{ext}"),
            format!("accepted and not run: {}", instead_of(ext)),
        );
    }
    if take(root, "connectors").is_some() {
        r.problem(
            "connectors",
            "casefile has one traces pipeline and no connectors: remove this Collector section",
        );
    }
    let service: Option<Service> = take(root, "service").and_then(|v| r.read(v, "service"));
    let pipeline = service.as_ref().and_then(|s| traces_pipeline(r, s));
    if let Some(s) = &service {
        if s.telemetry.is_some() {
            r.warning(
                "service.telemetry",
                "accepted and not used: casefile's own metrics are at /metrics on support.api, its logs follow logging:",
            );
        }
        // Each extension listed here is warned about where it is defined (`extensions:`).
        let _ = &s.extensions;
    }
    applied.batch_max_spans = processors(r, root, pipeline.as_ref().map(|(_, p)| *p));
    receivers(r, root, pipeline.as_ref().map(|(_, p)| *p));
    if let Some((name, p)) = &pipeline {
        let path = format!("service.pipelines.{name}.exporters");
        let defined = root
            .get("exporters")
            .and_then(Value::as_mapping)
            .map(|m| {
                m.keys()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for e in &p.exporters {
            if !defined.contains(e) {
                r.problem(&path, format!("{e:?} is not defined under exporters"));
            }
        }
        for d in &defined {
            if !p.exporters.contains(d) {
                r.warning(
                    format!("exporters.{d}"),
                    format!("not in service.pipelines.{name}: not used"),
                );
            }
        }
        applied.exporters = Some(p.exporters.clone());
    }
    applied
}

fn take(root: &mut Mapping, key: &str) -> Option<Value> {
    root.remove(key).filter(|v| !v.is_null())
}

/// The one traces pipeline, by name; other signals are warned about, a second traces
/// pipeline is a problem.
fn traces_pipeline<'a>(r: &mut Reader, s: &'a Service) -> Option<(String, &'a Pipeline)> {
    let mut found: Option<(String, &Pipeline)> = None;
    for (name, p) in &s.pipelines {
        match type_of(name) {
            "traces" => {
                if let Some((first, _)) = &found {
                    r.problem(
                        format!("service.pipelines.{name}"),
                        format!("a second traces pipeline (after {first}): casefile runs one; run the other in a Collector"),
                    );
                } else {
                    found = Some((name.clone(), p));
                }
            }
            "metrics" | "logs" | "profiles" => r.warning(
                format!("service.pipelines.{name}"),
                "ignored: casefile samples traces only (run this pipeline in a Collector)",
            ),
            other => r.problem(
                format!("service.pipelines.{name}"),
                format!("unknown signal {other:?}: expected traces (metrics and logs are ignored)"),
            ),
        }
    }
    if found.is_none() && !s.pipelines.is_empty() {
        r.problem(
            "service.pipelines",
            "no traces pipeline: casefile samples traces (add service.pipelines.traces)",
        );
    }
    found
}

/// Checks `processors`, keeps the ones casefile runs under the names it reads, and returns
/// the batch processor's span bound.
fn processors(r: &mut Reader, root: &mut Mapping, pipeline: Option<&Pipeline>) -> Option<usize> {
    let Some(Value::Mapping(procs)) = root.get_mut("processors") else {
        if let Some(p) = pipeline {
            for id in &p.processors {
                r.problem(
                    "service.pipelines.traces.processors",
                    format!("{id:?} is not defined under processors"),
                );
            }
        }
        return None;
    };
    let ids: Vec<String> = procs
        .keys()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if let Some(p) = pipeline {
        for id in &p.processors {
            if !ids.contains(id) {
                r.problem(
                    "service.pipelines.traces.processors",
                    format!("{id:?} is not defined under processors"),
                );
            }
        }
        if !p.processors.iter().any(|id| type_of(id) == "tail_sampling") {
            r.problem(
                "service.pipelines.traces.processors",
                "no tail_sampling in the traces pipeline: casefile is a tail sampler (add it)",
            );
        }
    }
    let used = |id: &str| pipeline.is_none_or(|p| p.processors.iter().any(|x| x == id));
    let mut batch_spans = None;
    let mut chosen: BTreeMap<&str, String> = BTreeMap::new();
    for id in &ids {
        let kind = type_of(id);
        match kind {
            "tail_sampling" | "memory_limiter" if used(id) => {
                if let Some(first) = chosen.insert(if kind == "tail_sampling" { "tail_sampling" } else { "memory_limiter" }, id.clone()) {
                    r.problem(
                        format!("processors.{id}"),
                        format!("a second {kind} (after {first}): name the one to run in service.pipelines.traces.processors"),
                    );
                }
            }
            "batch" if used(id) => {
                let value = procs.get(id.as_str()).cloned().unwrap_or(Value::Null);
                let b: Batch = if value.is_null() {
                    Batch::default()
                } else {
                    r.read(value, &format!("processors.{id}")).unwrap_or_default()
                };
                let _ = (&b.metadata_keys, &b.metadata_cardinality_limit);
                if b.timeout.is_some() {
                    r.warning(
                        format!("processors.{id}.timeout"),
                        "not used: casefile sends kept spans at each decision tick",
                    );
                }
                batch_spans = b
                    .send_batch_max_size
                    .filter(|&n| n > 0)
                    .or(b.send_batch_size.filter(|&n| n > 0))
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            }
            "tail_sampling" | "memory_limiter" | "batch" => r.warning(
                format!("processors.{id}"),
                "defined but not in service.pipelines.traces: not used",
            ),
            _ if used(id) => r.problem(
                format!("processors.{id}"),
                format!("{kind} is a Collector processor casefile cannot run (casefile runs tail_sampling, memory_limiter and batch): run it in a Collector in front of casefile"),
            ),
            _ => r.warning(
                format!("processors.{id}"),
                "defined but not in service.pipelines.traces: not used",
            ),
        }
    }
    // Keep only what casefile reads, under its plain names.
    let mut kept = Mapping::new();
    for (name, id) in chosen {
        if let Some(v) = procs.get(id.as_str()).cloned() {
            kept.insert(Value::from(name), v);
        }
    }
    *procs = kept;
    batch_spans
}

/// `receivers`: one OTLP receiver (any `otlp/name`); others are problems when used.
fn receivers(r: &mut Reader, root: &mut Mapping, pipeline: Option<&Pipeline>) {
    let Some(Value::Mapping(recv)) = root.get_mut("receivers") else {
        return;
    };
    let ids: Vec<String> = recv
        .keys()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if let Some(p) = pipeline {
        for id in &p.receivers {
            if !ids.contains(id) {
                r.problem(
                    "service.pipelines.traces.receivers",
                    format!("{id:?} is not defined under receivers"),
                );
            }
        }
    }
    let used = |id: &str| pipeline.is_none_or(|p| p.receivers.iter().any(|x| x == id));
    let mut otlp: Option<String> = None;
    for id in &ids {
        match type_of(id) {
            "otlp" if used(id) => {
                if let Some(first) = otlp.replace(id.clone()) {
                    r.problem(
                        format!("receivers.{id}"),
                        format!("a second OTLP receiver (after {first}): casefile listens with one (set its grpc and http endpoints)"),
                    );
                }
            }
            kind if used(id) => r.problem(
                format!("receivers.{id}"),
                format!("{kind}: casefile receives OTLP only (gRPC and HTTP); convert in a Collector in front of casefile"),
            ),
            _ => r.warning(
                format!("receivers.{id}"),
                "defined but not in service.pipelines.traces: not used",
            ),
        }
    }
    if let Some(id) = otlp.filter(|id| id != "otlp") {
        if let Some(v) = recv.remove(id.as_str()) {
            recv.insert(Value::from("otlp"), v);
        }
    }
    // Receivers the pipeline does not use are dropped from what casefile reads.
    recv.retain(|k, _| k.as_str() == Some("otlp"));
}
