//! Memory: the budget and its guard, beside the data flow. `host` reads the cgroup limit,
//! the host's memory and this process's resident set; `budget` turns them and
//! `processors.memory_limiter` into the limit, the soft level and the buffer's byte bound;
//! `guard` samples resident memory in the background and tells the receivers to refuse
//! (and the buffer to decide early) when it is past those levels.

pub mod budget;
pub mod guard;
pub mod host;

use std::path::PathBuf;

use thiserror::Error;

pub use budget::Budget;
pub use guard::{Level, MemoryGuard};
pub use host::{Host, Rss};

#[derive(Debug, Error)]
pub enum MemoryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds {text:?}, not a number of bytes or \"max\"")]
    Garbage { path: PathBuf, text: String },
}

#[cfg(test)]
mod tests;
