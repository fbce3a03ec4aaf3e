//! `casefile what-if`: captured traces through a config's policies, offline. Reads what the
//! `file` exporter writes (OTLP/JSON, one request per line), single OTLP/JSON documents or
//! binary `ExportTraceServiceRequest` files, and an archive directory (`--archive`: the
//! traces archived with their spans, kept and dropped with `traces: all`, over `--since`),
//! groups the spans by trace, and decides each
//! trace with the policies exactly as the daemon does — in the order the traces started,
//! with the capture's own clock, so `rate_limiting` and `bytes_limiting` see the rate the
//! traces had. With `--against` a second config decides the same traces and the traces
//! whose decision changes are listed: an SRE sees what a policy change would keep before
//! it ships.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config;
use crate::model::{Span, TraceId};
use crate::policy::{otep235, Policies};
use crate::support::index::{Decision, Summary};
use crate::wire::decode::decode_request;
use crate::wire::json::request_from_json;

#[derive(Debug, clap::Args)]
pub struct WhatIfArgs {
    /// The config whose policies decide: a casefile config, or a Collector config with a
    /// `tail_sampling` processor (only its policies are read).
    #[arg(short, long)]
    config: PathBuf,
    /// A second config: both decide, and the traces whose decision differs are listed.
    #[arg(long)]
    against: Option<PathBuf>,
    /// Print every trace with its decision and reasons.
    #[arg(long)]
    traces: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// An archive directory (`support.archive.dir`), read offline: its traces archived
    /// with their spans (kept and dropped ones with `traces: all`) are replayed.
    #[arg(long)]
    archive: Option<PathBuf>,
    /// With --archive: only traces that started within this long before now (24h, 90m).
    #[arg(long, requires = "archive")]
    since: Option<String>,
    /// Captured traces: OTLP/JSON lines (the file exporter's output), an OTLP/JSON
    /// document, or a binary ExportTraceServiceRequest.
    #[arg(required_unless_present = "archive")]
    inputs: Vec<PathBuf>,
}

/// Every span read, by trace, in the order traces were first seen.
#[derive(Default)]
pub struct Capture {
    order: Vec<TraceId>,
    traces: HashMap<TraceId, Vec<Span>>,
    pub spans: usize,
    /// Archived traces skipped because only their summary is on disk (kept traces of an
    /// archive with `traces: dropped`).
    pub without_spans: usize,
}

impl Capture {
    /// Reads the traces of the archive in `dir` that started at or after `since` (Unix
    /// nanoseconds), with their spans; never writes to `dir`.
    pub fn read_archive(&mut self, dir: &Path, since: Option<u64>) -> Result<(), Vec<String>> {
        super::archive::check_dir(dir).map_err(|e| vec![e])?;
        let traces =
            crate::archive::offline::traces(dir, since).map_err(|e| vec![e.to_string()])?;
        for (summary, mut spans) in traces {
            if spans.is_empty() {
                self.without_spans += 1;
                continue;
            }
            // Kept traces were archived as exported: without what the decision wrote
            // (`casefile.policy`, the ticket, `tailsampling.*`), as they were received.
            if summary.decision != crate::support::index::Decision::Dropped {
                crate::buffer::stamp::unstamp(&mut spans);
            }
            self.add(spans);
        }
        Ok(())
    }

    fn add(&mut self, spans: Vec<Span>) {
        self.spans += spans.len();
        for s in spans {
            let id = s.trace_id();
            self.traces
                .entry(id)
                .or_insert_with(|| {
                    self.order.push(id);
                    Vec::new()
                })
                .push(s);
        }
    }

    /// Reads one input file; problems are returned as `file:line: what` lines.
    pub fn read(&mut self, path: &Path) -> Result<(), Vec<String>> {
        let bytes = std::fs::read(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
        let text_start = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if text_start != Some(&b'{') {
            return match decode_request(&bytes) {
                Ok(d) => {
                    self.add(d.spans);
                    Ok(())
                }
                Err(e) => Err(vec![format!(
                    "{}: neither OTLP/JSON nor a protobuf ExportTraceServiceRequest: {e}",
                    path.display()
                )]),
            };
        }
        // One document (possibly pretty-printed), or one request per line.
        if let Ok(proto) = request_from_json(&bytes) {
            return self
                .add_proto(&proto)
                .map_err(|e| vec![format!("{}: {e}", path.display())]);
        }
        let mut problems = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let result = request_from_json(line)
                .map_err(|e| e.to_string())
                .and_then(|proto| self.add_proto(&proto));
            if let Err(e) = result {
                problems.push(format!("{}:{}: {e}", path.display(), i + 1));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn add_proto(&mut self, proto: &[u8]) -> Result<(), String> {
        let d = decode_request(proto).map_err(|e| e.to_string())?;
        self.add(d.spans);
        Ok(())
    }

    /// Traces in the order they started (earliest span start), for a faithful clock.
    fn by_start(&self) -> Vec<(TraceId, &[Span])> {
        let mut v: Vec<(u64, TraceId, &[Span])> = self
            .order
            .iter()
            .map(|id| {
                let spans = self.traces[id].as_slice();
                let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
                (start, *id, spans)
            })
            .collect();
        v.sort_by_key(|(start, _, _)| *start);
        v.into_iter().map(|(_, id, s)| (id, s)).collect()
    }
}

/// Per trace, in the order decided: its id, whether it was kept, and why.
pub type Verdicts = Vec<(TraceId, bool, Vec<Arc<str>>)>;

/// One trace and how a policy set decided it.
#[derive(Debug, Serialize)]
pub struct Decided {
    #[serde(flatten)]
    pub summary: Summary,
    /// The decision of the `--against` policies, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<Vec<Arc<str>>>,
}

/// What a policy set did with the capture.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub config: String,
    pub traces: usize,
    pub spans: usize,
    pub kept_traces: usize,
    pub kept_spans: usize,
    pub kept_bytes: usize,
    /// Traces each policy sampled (a trace kept by several counts under each).
    pub by_policy: Vec<(String, usize)>,
    /// The traffic the kept traces stand for: the sum of their adjusted counts (OTEP 235:
    /// 1 / the probability each was kept with, a head sampler's `ot=th` included).
    pub estimated_traces: f64,
    /// The same for spans: each kept trace's spans times its adjusted count.
    pub estimated_spans: f64,
}

/// Decides every trace of `capture` with `policies`. Returns the outcome and, per trace,
/// whether it was kept and why.
pub fn decide(capture: &Capture, policies: &Policies, source: &str) -> (Outcome, Verdicts) {
    let mut out = Outcome {
        config: source.to_owned(),
        traces: capture.traces.len(),
        spans: capture.spans,
        by_policy: policies.names().into_iter().map(|n| (n, 0)).collect(),
        ..Outcome::default()
    };
    let traces = capture.by_start();
    let first = traces
        .first()
        .map(|(_, s)| s.iter().map(|s| s.start_unix_nano).min().unwrap_or(0))
        .unwrap_or(0);
    let base = tokio::time::Instant::now();
    let mut each = Vec::with_capacity(traces.len());
    for (id, spans) in traces {
        let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
        let now = base + Duration::from_nanos(start.saturating_sub(first));
        let v = policies.evaluate(&id, spans, now);
        if v.sampled {
            let count = adjusted_count(spans, v.threshold, policies.output().use_tracestate);
            out.estimated_traces += count;
            out.estimated_spans += count * spans.len() as f64;
            out.kept_traces += 1;
            out.kept_spans += spans.len();
            out.kept_bytes += spans.iter().map(|s| s.bytes.len()).sum::<usize>();
            for p in &v.policies {
                if let Some(slot) = out.by_policy.iter_mut().find(|(n, _)| **n == **p) {
                    slot.1 += 1;
                }
            }
        }
        each.push((id, v.sampled, v.policies));
    }
    (out, each)
}

/// How many traces a trace kept with `threshold` stands for, with the head sampling its
/// root (else first span) records in `ot=th`. Consistent decisions (`use_tracestate`) keep
/// the stricter of the two thresholds; the Collector's hash decides independently of the
/// head's randomness, so there the probabilities multiply.
fn adjusted_count(spans: &[Span], threshold: u64, consistent: bool) -> f64 {
    let root = spans.iter().find(|s| s.is_root()).or(spans.first());
    let head = root
        .and_then(|s| otep235::read(s.trace_state()).ok()?.threshold)
        .unwrap_or(0);
    if consistent {
        otep235::adjusted_count(head.max(threshold))
    } else {
        otep235::adjusted_count(head) * otep235::adjusted_count(threshold)
    }
}

/// The policies of `path`: a whole casefile config, or any YAML with a
/// `processors.tail_sampling` block (a Collector config: `tail_sampling/NAME` too), of which
/// only the policies and `sample_on_first_match` are read.
fn policies_of(path: &Path) -> Result<(Policies, String), Vec<String>> {
    let built = match config::load_file(path) {
        Ok(cfg) => Policies::for_config(&cfg.tail_sampling),
        Err(e) => {
            let (cfgs, first_match) =
                tail_sampling_only(path).ok_or_else(|| vec![e.to_string()])?;
            Policies::build(&cfgs, first_match)
        }
    };
    let source = path.display().to_string();
    let policies = built.map_err(|ps| {
        ps.into_iter()
            .map(|p| {
                format!(
                    "{source}: processors.tail_sampling.{}: {}",
                    p.path, p.message
                )
            })
            .collect::<Vec<_>>()
    })?;
    Ok((policies, source))
}

fn tail_sampling_only(path: &Path) -> Option<(Vec<crate::policy::PolicyCfg>, bool)> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).ok()?;
    let processors = doc.get("processors")?.as_mapping()?;
    let ts = processors.iter().find_map(|(k, v)| {
        let k = k.as_str()?;
        (k == "tail_sampling" || k.starts_with("tail_sampling/")).then_some(v)
    })?;
    let policies = serde_yaml_ng::from_value(ts.get("policies")?.clone()).ok()?;
    let first_match = ts
        .get("sample_on_first_match")
        .and_then(serde_yaml_ng::Value::as_bool)
        .unwrap_or(false);
    Some((policies, first_match))
}

pub fn what_if(a: WhatIfArgs) -> ExitCode {
    let mut problems = Vec::new();
    let main = policies_of(&a.config).map_err(|p| problems.extend(p)).ok();
    let against = a
        .against
        .as_deref()
        .and_then(|p| policies_of(p).map_err(|p| problems.extend(p)).ok());
    let mut capture = Capture::default();
    if let Some(dir) = &a.archive {
        let since = match a.since.as_deref().map(since_nanos).transpose() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        if let Err(p) = capture.read_archive(dir, since) {
            problems.extend(p);
        }
    }
    for input in &a.inputs {
        if let Err(p) = capture.read(input) {
            problems.extend(p);
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        return ExitCode::from(2);
    }
    let (policies, source) = main.expect("no problems, so loaded");
    let (outcome, decided) = decide(&capture, &policies, &source);
    let (other, other_decided) = match &against {
        Some((p, s)) => {
            let (o, d) = decide(&capture, p, s);
            (Some(o), Some(d))
        }
        None => (None, None),
    };
    let rows: Vec<Decided> = decided
        .iter()
        .enumerate()
        .map(|(i, (id, sampled, reasons))| Decided {
            summary: Summary::of(
                *id,
                &capture.traces[id],
                if *sampled {
                    Decision::Sampled
                } else {
                    Decision::Dropped
                },
                reasons.clone(),
            ),
            against: other_decided.as_ref().map(|d| {
                let (_, kept, reasons) = &d[i];
                if *kept {
                    reasons.clone()
                } else {
                    Vec::new()
                }
            }),
        })
        .collect();
    let changed: Vec<&Decided> = rows
        .iter()
        .filter(|r| {
            r.against.as_ref().is_some_and(|reasons| {
                (r.summary.decision == Decision::Sampled) == reasons.is_empty()
            })
        })
        .collect();
    if a.json {
        let v = serde_json::json!({
            "archived_without_spans": capture.without_spans,
            "outcome": outcome,
            "against": other,
            "changed": changed,
            "traces": if a.traces { serde_json::to_value(&rows).unwrap_or_default() } else { serde_json::Value::Null },
        });
        println!("{v}");
        return ExitCode::SUCCESS;
    }
    if capture.without_spans > 0 {
        println!(
            "{} archived trace(s) without spans not replayed (kept traces of an archive with `traces: dropped`)",
            capture.without_spans
        );
    }
    print_outcome(&outcome);
    if let Some(o) = &other {
        print_outcome(o);
        println!(
            "{} trace(s) decided differently (kept by {} only: {}, by {} only: {})",
            changed.len(),
            outcome.config,
            changed
                .iter()
                .filter(|r| r.summary.decision == Decision::Sampled)
                .count(),
            o.config,
            changed
                .iter()
                .filter(|r| r.summary.decision != Decision::Sampled)
                .count(),
        );
        for r in &changed {
            print_row(r);
        }
    }
    if a.traces {
        println!("every trace ({}):", rows.len());
        for r in &rows {
            print_row(r);
        }
    }
    ExitCode::SUCCESS
}

/// `--since` (a Go-style duration) as the Unix-nanosecond instant that long before now.
fn since_nanos(d: &str) -> Result<u64, String> {
    let d = config::duration::parse(d).map_err(|e| format!("--since: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    Ok(now.saturating_sub(d).as_nanos() as u64)
}

fn pct(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn print_outcome(o: &Outcome) {
    println!(
        "{}: keeps {} of {} traces ({:.1} %), {} of {} spans ({:.1} %), {} bytes",
        o.config,
        o.kept_traces,
        o.traces,
        pct(o.kept_traces, o.traces),
        o.kept_spans,
        o.spans,
        pct(o.kept_spans, o.spans),
        o.kept_bytes
    );
    println!(
        "  estimated from the kept traces' adjusted counts: {:.0} traces, {:.0} spans (captured: {}, {})",
        o.estimated_traces, o.estimated_spans, o.traces, o.spans
    );
    for (name, n) in &o.by_policy {
        println!("  {name:<24} {n:>8} trace(s)");
    }
}

fn print_row(r: &Decided) {
    let s = &r.summary;
    let reasons = |rs: &[Arc<str>]| {
        if rs.is_empty() {
            "-".to_owned()
        } else {
            rs.iter().map(|r| &**r).collect::<Vec<_>>().join(",")
        }
    };
    let mut line = format!(
        "  {}  {:<7}  {:<20}  {:>4} spans  {:>9.1} ms  {:<5}  {} ({})",
        hex::encode(s.trace_id),
        if s.decision == Decision::Sampled {
            "kept"
        } else {
            "dropped"
        },
        reasons(&s.reasons),
        s.span_count,
        s.duration_ms,
        if s.error { "error" } else { "" },
        s.root_name,
        s.root_service,
    );
    if let Some(other) = &r.against {
        line.push_str(&format!(
            "  | against: {}",
            if other.is_empty() {
                "dropped".to_owned()
            } else {
                format!("kept {}", reasons(other))
            }
        ));
    }
    println!("{line}");
}

#[cfg(test)]
mod tests;
