//! Figures of the fault tests for RELIABILITY.md: spans sent, acknowledged, refused, and of
//! the acknowledged spans of kept traces how many reached the downstream (and how often).
//! Each row goes to stderr and, when `CASEFILE_RELIABILITY_OUT` names a file, is appended
//! to it as a JSON line (`scripts/reliability.sh` makes the table from them).

use std::collections::HashMap;
use std::io::Write;

use casefile::fixture::Trace;

use super::Downstream;

#[derive(Debug, Default, serde::Serialize)]
pub struct Row {
    pub test: String,
    /// Spans the clients sent.
    pub sent: usize,
    /// Spans acknowledged (success answers).
    pub accepted: usize,
    /// Spans refused with a throttling code (never acknowledged, so the client keeps them).
    pub refused: usize,
    /// Acknowledged spans of the traces the policies keep.
    pub kept_accepted: usize,
    /// Of those, how many distinct ones the downstream received.
    pub delivered: usize,
    /// Copies received beyond the first (allowed after a crash).
    pub duplicates: usize,
}

impl Row {
    /// Fills `delivered` and `duplicates` from what `down` received of `kept`.
    pub fn count(self, down: &Downstream, kept: &[Trace]) -> Row {
        let got: HashMap<String, Vec<Vec<u8>>> = down
            .spans_by_trace()
            .into_iter()
            .map(|(t, spans)| (t, spans.into_iter().map(|s| s.span_id).collect()))
            .collect();
        self.count_span_ids(&got, kept)
    }

    /// Same, from the span ids a downstream received, by trace id (hex).
    pub fn count_span_ids(mut self, got: &HashMap<String, Vec<Vec<u8>>>, kept: &[Trace]) -> Row {
        self.kept_accepted = kept.iter().map(|t| t.spans.len()).sum();
        for t in kept {
            let mut seen: HashMap<&[u8], usize> = HashMap::new();
            for s in got.get(&hex::encode(t.trace_id)).into_iter().flatten() {
                *seen.entry(s.as_slice()).or_default() += 1;
            }
            self.delivered += seen.len();
            self.duplicates += seen.values().map(|n| n - 1).sum::<usize>();
        }
        self
    }

    /// Writes the row out and checks the guarantee: nothing acknowledged of a kept trace
    /// is missing downstream.
    pub fn report(self) {
        let line = serde_json::to_string(&self).unwrap();
        eprintln!("reliability: {line}");
        if let Some(path) = std::env::var_os("CASEFILE_RELIABILITY_OUT") {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            writeln!(f, "{line}").unwrap();
        }
        assert_eq!(
            self.delivered, self.kept_accepted,
            "{}: acknowledged spans of kept traces lost",
            self.test
        );
    }
}
