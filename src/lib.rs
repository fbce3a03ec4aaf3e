//! casefile: a tail-sampling trace processor.
//!
//! Data flow: `receiver` (OTLP/gRPC, OTLP/HTTP) → `wire::decode` (fast path) → `buffer`
//! (traces by id, deadlines, decision cache) → `policy` (the Collector's policies) →
//! `decider` (ticks, hands kept spans on) → `export` (OTLP/gRPC, OTLP/HTTP, file).
//! `config` reads the YAML, `daemon` wires the stages, `api` serves health and metrics,
//! `tls` puts receivers, API and exporters behind TLS; `storage` is the write-ahead log
//! between the receivers and the buffer when `storage.dir` is set; `reload` applies a new
//! config and rotated certificates to the running daemon; `memory` resolves the memory
//! budget and guards it (receivers refuse past the limit).
#![forbid(unsafe_code)]

pub mod api;
pub mod archive;
pub mod buffer;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod decider;
pub mod export;
pub mod fixture;
pub mod memory;
pub mod model;
pub mod policy;
pub mod receiver;
pub mod reload;
pub mod storage;
pub mod support;
pub mod telemetry;
pub mod tls;
pub mod wire;

pub use daemon::{run, Daemon, RunError};
