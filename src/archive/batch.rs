//! How the writer's batches become traces: kept spans grouped by trace (runs handed over
//! as they are), the root's service by resource block, a kept trace's reasons.

use std::sync::Arc;

use crate::model::{Span, TraceId};
use crate::wire::AnyValueRef;

/// Calls `f` with each trace's spans, grouped as [`group`] does. Kept spans mostly arrive
/// in runs of one trace: when no trace has two runs, the runs are handed over as they are
/// (no copy, one hash per trace).
pub(super) fn for_each_trace(spans: Vec<Span>, mut f: impl FnMut(TraceId, &[Span])) {
    let mut runs: Vec<(TraceId, usize)> = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        let id = s.trace_id();
        if runs.last().is_none_or(|&(last, _)| last != id) {
            runs.push((id, i));
        }
    }
    let mut ids: foldhash::HashSet<TraceId> = Default::default();
    ids.reserve(runs.len());
    if !runs.iter().all(|(id, _)| ids.insert(*id)) {
        for (id, spans) in group(spans) {
            f(id, &spans);
        }
        return;
    }
    for (n, &(id, from)) in runs.iter().enumerate() {
        let to = runs.get(n + 1).map_or(spans.len(), |&(_, i)| i);
        f(id, &spans[from..to]);
    }
}

/// The `service.name` of resource blocks (as `Summary::of` reads it), by block id modulo
/// 16 (ids start at 1: 0 is none).
#[derive(Default)]
pub(super) struct Services([(u64, Option<Arc<str>>); 16]);

impl Services {
    pub(super) fn of(&mut self, span: &Span) -> Arc<str> {
        let block = span.resource();
        let slot = &mut self.0[(block.id % 16) as usize];
        match slot {
            (id, Some(name)) if *id == block.id => Arc::clone(name),
            _ => {
                let name: Arc<str> = match block.resource_attributes().get(b"service.name") {
                    Some(AnyValueRef::Str(s)) => s.into(),
                    Some(other) => other.to_display_string().into(),
                    None => "".into(),
                };
                *slot = (block.id, Some(Arc::clone(&name)));
                name
            }
        }
    }
}

/// Kept spans arrive flat, several traces mixed: grouped by trace, in arrival order.
pub(crate) fn group(spans: Vec<Span>) -> Vec<(TraceId, Vec<Span>)> {
    let mut out: Vec<(TraceId, Vec<Span>)> = Vec::new();
    let mut at: std::collections::HashMap<TraceId, usize> = Default::default();
    for s in spans {
        let id = s.trace_id();
        let i = *at.entry(id).or_insert_with(|| {
            out.push((id, Vec::new()));
            out.len() - 1
        });
        out[i].1.push(s);
    }
    out
}

/// The reasons a kept trace was kept: `casefile.policy` on its root span, as the decider
/// appends it.
pub(super) fn policy_of(spans: &[Span]) -> String {
    spans
        .iter()
        .filter(|s| s.is_root())
        .find_map(|s| s.attributes().get(b"casefile.policy"))
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{Gen, Shape};

    /// Runs handed over as they are, or regrouped when a trace has two runs: as `group`.
    #[test]
    fn traces_are_handed_over_as_group_makes_them() {
        let mut g = Gen::new(3);
        let ts = [g.trace(Shape::default(), 4), g.trace(Shape::default(), 3)];
        let d = |t| super::super::tests::decoded(t);
        let runs: Vec<Span> = d(&ts[0]).into_iter().chain(d(&ts[1])).collect();
        let mut mixed = runs.clone();
        mixed.swap(1, 5);
        for input in [runs, mixed] {
            let want: Vec<(TraceId, Vec<Box<[u8]>>)> = group(input.clone())
                .into_iter()
                .map(|(id, s)| (id, s.into_iter().map(|s| s.bytes).collect()))
                .collect();
            let mut got = Vec::new();
            for_each_trace(input, |id, s| {
                got.push((id, s.iter().map(|s| s.bytes.clone()).collect::<Vec<_>>()))
            });
            assert_eq!(got, want);
        }
    }
}
