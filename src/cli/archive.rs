//! `casefile archive stats|export`: an archive directory read without the daemon, for
//! forensics. Nothing in the directory is written (the reads are `archive::offline`'s:
//! read-only, the segment a daemon is writing scanned in memory), so a copy taken off a
//! host, or the live directory of a running daemon, can be examined as it is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::archive::{offline, ArchiveStats};
use crate::model::TraceId;

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Sizes of an archive: segments, bytes, traces, oldest and newest trace start.
    Stats(StatsArgs),
    /// One trace's archived spans as OTLP/JSON (an ExportTraceServiceRequest) on stdout.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The archive directory (`support.archive.dir`).
    #[arg(long)]
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Print times in the local time zone instead of UTC.
    #[arg(long)]
    local: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The archive directory (`support.archive.dir`).
    #[arg(long)]
    dir: PathBuf,
    /// The trace id (32 hex digits).
    #[arg(long)]
    trace: String,
}

pub fn archive(c: ArchiveCommand) -> ExitCode {
    match c {
        ArchiveCommand::Stats(a) => stats(&a),
        ArchiveCommand::Export(a) => export(&a),
    }
}

/// Refuses what is not an archive directory before the engine reads it.
pub(super) fn check_dir(dir: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(dir).map_err(|e| format!("archive directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "archive directory {}: not a directory",
            dir.display()
        ));
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("archive directory {}: {e}", dir.display()))?;
    let archive_file = |name: &str| {
        name == "seed"
            || (name.starts_with("seg-") && (name.ends_with(".data") || name.ends_with(".index")))
    };
    let found = entries
        .filter_map(Result::ok)
        .any(|e| archive_file(&e.file_name().to_string_lossy()));
    if !found {
        return Err(format!(
            "archive directory {}: holds no archive (no seg-*.data segment, no seed): is it support.archive.dir?",
            dir.display()
        ));
    }
    Ok(())
}

/// Parses a trace id as the API does: 32 hex digits, not all zero.
pub(super) fn parse_id(s: &str) -> Result<TraceId, String> {
    let bad = || format!("invalid trace id {s:?}: expected 32 hex digits");
    let bytes = hex::decode(s.trim()).map_err(|_| bad())?;
    let id: TraceId = bytes.try_into().map_err(|_| bad())?;
    if id == [0; 16] {
        return Err(bad());
    }
    Ok(id)
}

fn stats(a: &StatsArgs) -> ExitCode {
    if let Err(e) = check_dir(&a.dir) {
        eprintln!("casefile: {e}");
        return ExitCode::FAILURE;
    }
    let s = match offline::stats(&a.dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("casefile: {e}");
            return ExitCode::FAILURE;
        }
    };
    let newest = s.newest_trace_start;
    if a.json {
        println!("{}", stats_json(&a.dir, &s, newest));
        return ExitCode::SUCCESS;
    }
    let when = |t: Option<u64>| match t {
        Some(t) => super::zone::format(t, a.local),
        None => "-".to_owned(),
    };
    println!("archive {}", a.dir.display());
    if s.segments == 0 {
        println!("  empty: nothing archived yet");
    }
    println!("  segments:        {}", s.segments);
    println!("  bytes:           {} ({})", s.bytes, human_bytes(s.bytes));
    println!(
        "  trace records:   {} (a trace with late spans or a rescue has several)",
        s.traces
    );
    println!(
        "  oldest start:    {} ({})",
        when(s.oldest_trace_start),
        super::zone::label(a.local)
    );
    println!("  newest start:    {}", when(newest));
    if let (Some(o), Some(n)) = (s.oldest_trace_start, newest) {
        println!(
            "  span of time:    {}",
            humantime::format_duration(std::time::Duration::from_secs(
                (n.saturating_sub(o)) / 1_000_000_000
            ))
        );
    }
    if s.traces > 0 {
        println!("  bytes per trace: {:.0}", s.bytes as f64 / s.traces as f64);
    }
    println!(
        "  damaged records: {} (torn or corrupt tails, skipped)",
        s.corrupt_records
    );
    ExitCode::SUCCESS
}

fn stats_json(dir: &Path, s: &ArchiveStats, newest: Option<u64>) -> serde_json::Value {
    let t = |t: Option<u64>| t.map(crate::support::index::rfc3339);
    json!({
        "dir": dir.display().to_string(),
        "segments": s.segments,
        "bytes": s.bytes,
        "traces": s.traces,
        "oldest_trace_start": t(s.oldest_trace_start),
        "newest_trace_start": t(newest),
        "corrupt_records": s.corrupt_records,
    })
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn export(a: &ExportArgs) -> ExitCode {
    let id = match parse_id(&a.trace) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("casefile: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = check_dir(&a.dir) {
        eprintln!("casefile: {e}");
        return ExitCode::FAILURE;
    }
    match offline::export(&a.dir, &id) {
        Ok(Some(proto)) => match crate::wire::json::request_to_json(&proto) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "casefile: trace {}: cannot render as OTLP/JSON: {e}",
                    a.trace
                );
                ExitCode::FAILURE
            }
        },
        Ok(None) => {
            let summary_only = offline::summary(&a.dir, &id).ok().flatten().is_some();
            if summary_only {
                eprintln!(
                    "casefile: trace {} is archived without its spans (kept, with `traces: dropped`: its spans went downstream)",
                    a.trace
                );
            } else {
                eprintln!(
                    "casefile: trace {} is not in the archive {}",
                    a.trace,
                    a.dir.display()
                );
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("casefile: {e}");
            ExitCode::FAILURE
        }
    }
}
