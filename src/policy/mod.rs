//! Sampling policies (stub: the policy helper replaces this file, keeping these signatures).

use serde::Deserialize;

use crate::config::Problem;

/// One entry of `processors.tail_sampling.policies`, with the Collector's field names.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyCfg {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Semantic checks; paths are relative to `processors.tail_sampling` (e.g. `policies[2].latency`).
pub fn validate(_policies: &[PolicyCfg]) -> Vec<Problem> {
    Vec::new()
}
