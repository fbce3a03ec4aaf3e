//! Configuration: YAML laid out like the OpenTelemetry Collector's, read in two layers.
//! (stub: the config helper replaces this file)

pub mod duration;

use serde::Serialize;

/// One thing wrong with a config file: where (a dotted path, and the line when known) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted path such as `processors.tail_sampling.policies[2].latency.threshold_ms`.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { path: path.into(), message: message.into() }
    }
}
