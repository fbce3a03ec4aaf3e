//! The Collector's feature gates that change what `tail_sampling` does, taken from the
//! command line as the Collector takes them (`--feature-gates=id,-id`), so a Collector's
//! config file and its command line run unchanged:
//! - `processor.tailsamplingprocessor.usetracestate`: OTEP 235 thresholds on kept spans
//!   (the `use_tracestate` key),
//! - `processor.tailsamplingprocessor.recordpolicy`: the Collector's policy attributes
//!   (`record_policy_attributes: collector`).
//!
//! Like the Collector's registry, the gates are set once for the process (before the
//! config is first read) and hold for every reload. A gate turns its setting on; the
//! config's key can turn it on too. Gates casefile does not have are named in a warning
//! and ignored: a Collector command line carries gates of other components.

use std::sync::OnceLock;

pub const USE_TRACESTATE: &str = "processor.tailsamplingprocessor.usetracestate";
pub const RECORD_POLICY: &str = "processor.tailsamplingprocessor.recordpolicy";

/// The gates in force.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gates {
    pub use_tracestate: bool,
    pub record_policy: bool,
}

static GATES: OnceLock<Gates> = OnceLock::new();

/// The process's gates (all off until [`set`]).
pub fn current() -> Gates {
    GATES.get().copied().unwrap_or_default()
}

/// Parses `--feature-gates` values (each a comma-separated list; `id` or `+id` turns a
/// gate on, `-id` off, the last word wins) and returns the gates with a warning per id
/// casefile does not have.
pub fn parse<S: AsRef<str>>(values: &[S]) -> (Gates, Vec<String>) {
    let mut gates = Gates::default();
    let mut warnings = Vec::new();
    for id in values
        .iter()
        .flat_map(|v| v.as_ref().split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (on, name) = match id.as_bytes()[0] {
            b'-' => (false, &id[1..]),
            b'+' => (true, &id[1..]),
            _ => (true, id),
        };
        match name {
            USE_TRACESTATE => gates.use_tracestate = on,
            RECORD_POLICY => gates.record_policy = on,
            other => warnings.push(format!(
                "--feature-gates: {other:?} is not a gate casefile has (it has {USE_TRACESTATE} and {RECORD_POLICY}): ignored"
            )),
        }
    }
    (gates, warnings)
}

/// Sets the process's gates; the first call wins (returns false for a later one).
pub fn set(gates: Gates) -> bool {
    GATES.set(gates).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse_as_the_collector_writes_them() {
        let (g, w) = parse(&[format!("{USE_TRACESTATE},+{RECORD_POLICY}")]);
        assert_eq!(
            g,
            Gates {
                use_tracestate: true,
                record_policy: true
            }
        );
        assert!(w.is_empty());
        let (g, w) = parse(&[
            USE_TRACESTATE.to_owned(),
            format!("-{USE_TRACESTATE}, exporter.otlp.somegate ,"),
        ]);
        assert_eq!(g, Gates::default(), "the last word wins");
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("\"exporter.otlp.somegate\" is not a gate casefile has"));
        assert_eq!(parse::<&str>(&[]), (Gates::default(), vec![]));
    }
}
