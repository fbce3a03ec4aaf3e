//! What the buffer writes on the traces it keeps, as their spans leave for the outbox:
//! `casefile.policy` (and a complaint's ticket) on the root, the OTEP 235 threshold in
//! each span's tracestate and `casefile.adjusted_count` on the root (`use_tracestate`,
//! `adjusted_count_attribute`), and the Collector's `tailsampling.*` attributes on the
//! spans' instrumentation scope (`record_policy_attributes: collector`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::model::{Origin, Shared, Span};
use crate::policy::otep235;
use crate::policy::{Output, RecordPolicy, Verdict};
use crate::support::marks::Mark;
use crate::wire::encode::{append_key_values, remove_key_values, replace_len_field, Value};

/// The span attributes [`kept`] writes (on the root).
const ON_ROOT: [&str; 4] = [
    "casefile.policy",
    "casefile.ticket_id",
    "casefile.complaint_label",
    "casefile.adjusted_count",
];
/// The scope attributes [`kept`] and [`late`] write.
const ON_SCOPE: [&str; 3] = [
    "tailsampling.policy",
    "tailsampling.composite_policy",
    "tailsampling.cached_decision",
];

/// Spans whose tracestate could not be read when a threshold was due (left unchanged):
/// the Collector's `count_spans_with_unparseable_tracestate`.
const UNPARSEABLE: &str =
    "casefile_processor_tail_sampling_count_spans_with_unparseable_tracestate_total";

/// Writes everything due on the spans of a trace just kept. `reasons` are the policies
/// (and a complaint's reason) for `casefile.policy`.
pub(super) fn kept(
    spans: &mut [Span],
    verdict: &Verdict,
    reasons: &[Arc<str>],
    mark: Option<&Mark>,
    output: &Output,
) {
    if output.use_tracestate && verdict.threshold > 0 {
        for span in spans.iter_mut() {
            threshold_on(span, verdict.threshold);
        }
    }
    let Some(root) = spans
        .iter()
        .position(Span::is_root)
        .or((!spans.is_empty()).then_some(0))
    else {
        return;
    };
    let names = reasons.iter().map(|p| &**p).collect::<Vec<_>>().join(",");
    let mut attrs = vec![("casefile.policy", Value::Str(&names))];
    if let Some(m) = mark {
        attrs.extend(m.attributes().into_iter().map(|(k, v)| (k, Value::Str(v))));
    }
    if output.adjusted_count_attribute {
        // The root's own threshold (a head sampler's may be higher than ours), else ours.
        let t = otep235::read(spans[root].trace_state())
            .ok()
            .and_then(|v| v.threshold)
            .unwrap_or(verdict.threshold);
        attrs.push((
            "casefile.adjusted_count",
            Value::Double(otep235::adjusted_count(t)),
        ));
    }
    spans[root].bytes = append_key_values(&spans[root].bytes, 9, &attrs);
    if output.record == RecordPolicy::Collector {
        let mut scope = Vec::new();
        if let Some(p) = &verdict.recorded {
            scope.push(("tailsampling.policy", Value::Str(p)));
        }
        if let Some(c) = &verdict.composite {
            scope.push(("tailsampling.composite_policy", Value::Str(c)));
        }
        scope_attributes(spans, &scope);
    }
}

/// A late span of a kept trace, sent on by the decision cache: the trace's threshold, and
/// `tailsampling.cached_decision` as the Collector writes it on such spans.
pub(super) fn late(span: &mut Span, threshold: u64, output: &Output) {
    if output.use_tracestate && threshold > 0 {
        threshold_on(span, threshold);
    }
    if output.record == RecordPolicy::Collector {
        scope_attributes(
            std::slice::from_mut(span),
            &[("tailsampling.cached_decision", Value::Bool(true))],
        );
    }
}

/// `t` in the span's tracestate unless a higher threshold is there; an unreadable header
/// is left as it is and counted.
fn threshold_on(span: &mut Span, t: u64) {
    match otep235::stamp(span.trace_state(), t) {
        Ok((Some(header), _)) => {
            if let Some(b) = replace_len_field(&span.bytes, 3, header.as_bytes()) {
                span.bytes = b;
            }
        }
        Ok((None, _)) => {}
        Err(otep235::Malformed) => {
            metrics::counter!(UNPARSEABLE).increment(1);
            tracing::debug!(
                trace_id = %hex::encode(span.trace_id()),
                tracestate = span.trace_state(),
                "tracestate not valid W3C/OTel: left without a sampling threshold"
            );
        }
    }
}

/// Takes back the attributes [`kept`] and [`late`] wrote (span and scope), so kept spans
/// read as received: what-if over an archive replays them through other policies. A
/// threshold written in the tracestate stays (a head sampler's cannot be told from it).
pub fn unstamp(spans: &mut [Span]) {
    let mut made: HashMap<u64, Option<Arc<Shared>>> = HashMap::new();
    for span in spans {
        if let Some(b) = remove_key_values(&span.bytes, 9, &ON_ROOT) {
            span.bytes = b;
        }
        let scope = span.scope();
        let clean = made.entry(scope.id).or_insert_with(|| {
            let message = remove_key_values(&scope.message, 3, &ON_SCOPE)?;
            Some(Shared::new(Bytes::from(message), scope.schema_url.clone()))
        });
        if let Some(clean) = clean {
            span.origin = Origin::new(Arc::clone(span.resource()), Arc::clone(clean));
        }
    }
}

/// Gives the spans instrumentation scopes with `attrs` appended: one new scope block per
/// scope block the spans had (spans of other traces keep the original).
fn scope_attributes(spans: &mut [Span], attrs: &[(&str, Value<'_>)]) {
    if attrs.is_empty() {
        return;
    }
    let mut made: HashMap<u64, Arc<Origin>> = HashMap::new();
    for span in spans {
        let scope = span.scope();
        let origin = made.entry(scope.id).or_insert_with(|| {
            let message = append_key_values(&scope.message, 3, attrs);
            let scope = Shared::new(Bytes::from(message), scope.schema_url.clone());
            Origin::new(Arc::clone(span.resource()), scope)
        });
        span.origin = Arc::clone(origin);
    }
}

#[cfg(test)]
mod tests;
