//! Command line: `casefile run`, `casefile check`, `casefile --version`, the support
//! client `casefile lookup` / `casefile complain` / `casefile show` (in `client` and
//! `show`, over http or https with `https`), the offline archive reader `casefile archive
//! stats|export` (in `archive`) and the offline policy replay `casefile what-if` (in
//! `whatif`, over captures or an archive).

mod archive;
mod client;
mod https;
mod show;
mod whatif;
mod zone;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};

#[derive(Debug, Parser)]
#[command(
    name = "casefile",
    version,
    about = "A tail-sampling trace processor: OTLP in, the traces that matter out, and the trace behind every complaint."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (with the embedded default config when --config is not given).
    Run {
        #[arg(short, long, env = "CASEFILE_CONFIG")]
        config: Option<PathBuf>,
        /// The Collector's feature gates, as its command line takes them:
        /// `--feature-gates=processor.tailsamplingprocessor.usetracestate,processor.tailsamplingprocessor.recordpolicy`
        /// (others are named in a warning and ignored).
        #[arg(long = "feature-gates", value_name = "IDS")]
        feature_gates: Vec<String>,
    },
    /// Validate a config file and print the effective settings and policies.
    Check {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// As for `run`: the Collector's feature gates the config will run with.
        #[arg(long = "feature-gates", value_name = "IDS")]
        feature_gates: Vec<String>,
    },
    /// Look traces up by a business key, in memory and in the archive:
    /// `casefile lookup user.id=usr_1 --since 1h --errors`.
    Lookup(client::LookupArgs),
    /// File a complaint: `casefile complain --ticket cs_441 --user usr_1 --label checkout`.
    Complain(client::ComplainArgs),
    /// Print a trace's case file as a tree, from the support API:
    /// `casefile show 4bf92f3577b34da6a3ce929d0e0e4736`.
    Show(show::ShowArgs),
    /// Read an archive directory offline, without the daemon (forensics; never writes):
    /// `casefile archive stats --dir data/archive`,
    /// `casefile archive export --dir data/archive --trace ID > trace.json`.
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),
    /// Replay captured traces through a config's policies offline (and compare two):
    /// `casefile what-if --config new.yaml --against casefile.yaml data/kept-traces.jsonl`,
    /// or the archived traffic: `casefile what-if --config new.yaml --archive data/archive --since 24h`.
    WhatIf(whatif::WhatIfArgs),
}

fn load(path: Option<&PathBuf>) -> Result<Config, config::ConfigError> {
    match path {
        Some(p) => config::load_file(p),
        None => Ok(config::embedded_default()),
    }
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            config,
            feature_gates,
        } => check(config.as_ref(), &gates(&feature_gates)),
        Command::Run {
            config,
            feature_gates,
        } => run(config.as_ref(), &gates(&feature_gates)),
        Command::Lookup(a) => client::lookup(a),
        Command::Complain(a) => client::complain(a),
        Command::Show(a) => show::show(a),
        Command::Archive(c) => archive::archive(c),
        Command::WhatIf(a) => whatif::what_if(a),
    }
}

/// Sets the process's feature gates (before any config is read) and returns the warnings
/// about gates casefile does not have.
fn gates(values: &[String]) -> Vec<String> {
    let (gates, warnings) = config::gates::parse(values);
    config::gates::set(gates);
    warnings
}

fn check(path: Option<&PathBuf>, gate_warnings: &[String]) -> ExitCode {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let policies = match crate::policy::Policies::for_config(&cfg.tail_sampling) {
        Ok(p) => p,
        Err(problems) => {
            for p in problems {
                eprintln!(
                    "{}: processors.tail_sampling.{}: {}",
                    cfg.source, p.path, p.message
                );
            }
            return ExitCode::from(2);
        }
    };
    println!("{}: OK", cfg.source);
    for w in gate_warnings {
        println!("  warning: {w}");
    }
    for w in &cfg.warnings {
        let line = w.line.map(|l| format!(":{l}")).unwrap_or_default();
        println!(
            "  warning: {}{line}: {}: {}",
            cfg.source, w.problem.path, w.problem.message
        );
    }
    for line in cfg.summary() {
        println!("  {line}");
    }
    println!(
        "policies, as casefile runs them (defaults filled in, Collector values clamped; a trace is kept when any samples it; drop and inverted matches win):"
    );
    for line in policies.describe() {
        println!("  {line}");
    }
    ExitCode::SUCCESS
}

fn run(path: Option<&PathBuf>, gate_warnings: &[String]) -> ExitCode {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init_logging(
        &cfg.logging.level,
        cfg.logging.format == config::LogFormat::Json,
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %cfg.source, "starting casefile {}", env!("CARGO_PKG_VERSION"));
    for w in gate_warnings {
        tracing::warn!("{w}");
    }
    let reload_from = path.cloned();
    match rt.block_on(async {
        // Both installed before start-up: an early SIGHUP or SIGTERM is handled, not fatal.
        let stop = shutdown_signal();
        let reload = crate::reload::Source::new(reload_from);
        crate::run(cfg, Some(reload), stop).await
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "casefile failed");
            eprintln!("casefile: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, before
/// the daemon starts, so a signal that arrives during start-up is not lost (nor fatal).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
