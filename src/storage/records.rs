//! The write-ahead log's records about spans, beside the span records themselves.
//!
//! - **Decisions.** The buffer hands each batch of decisions here (see
//!   `buffer::DecisionLog`) before the kept spans can reach the exporters; the record lands
//!   in the log after every span of the traces it names, so it is truncated no sooner than
//!   they are. On replay they become the buffer's presets.
//! - **Deliveries.** Once every exporter has finished with a batch, the ids of its spans
//!   are appended; a replay skips those spans instead of exporting them a second time.
//!   Only a crash between a delivery and the next checkpoint (one decider tick) leaves
//!   duplicates.
//!
//! A span record is an encoded `ExportTraceServiceRequest`, whose first byte is a protobuf
//! tag and never 0. These records start with `0x00` and a kind byte. Decisions (kind 1),
//! per trace: the 16-byte id, a flags byte (bit 0: kept), a little-endian u16 length and
//! the reasons joined by commas. Deliveries (kind 2): 24 bytes per span, trace id then
//! span id.

use std::sync::Arc;

use crate::buffer::{Decided, DecisionLog};

use super::Storage;

const MARK: u8 = 0;
const VERSION: u8 = 1;
const DELIVERED: u8 = 2;

/// A delivered span: trace id, then span id.
pub type SpanKey = [u8; 24];
/// Reasons are policy names; a longer list is cut (the decision itself is kept).
const MAX_REASONS: usize = u16::MAX as usize;

/// Whether a record of the log is one of these (rather than spans).
pub fn is_meta(payload: &[u8]) -> bool {
    payload.first() == Some(&MARK)
}

/// What a record of this module holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Meta {
    Decisions(Vec<Decided>),
    Delivered(Vec<SpanKey>),
}

/// `None` when the record is not one this version reads (or is damaged).
pub fn decode_meta(payload: &[u8]) -> Option<Meta> {
    match payload {
        [MARK, VERSION, ..] => decode(payload).map(Meta::Decisions),
        [MARK, DELIVERED, rest @ ..] if rest.len() % 24 == 0 => Some(Meta::Delivered(
            rest.chunks_exact(24)
                .map(|c| c.try_into().expect("24 bytes"))
                .collect(),
        )),
        _ => None,
    }
}

pub fn encode_delivered(keys: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + keys.len());
    out.extend_from_slice(&[MARK, DELIVERED]);
    out.extend_from_slice(keys);
    out
}

/// The key of a span in a delivery record (`None` without a span id).
pub fn span_key(s: &crate::model::Span) -> Option<SpanKey> {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&s.trace_id());
    k[16..].copy_from_slice(&s.span_id()?);
    Some(k)
}

pub fn encode(decided: &[Decided]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + decided.len() * 24);
    out.extend_from_slice(&[MARK, VERSION]);
    for d in decided {
        out.extend_from_slice(&d.id);
        out.push(d.sampled as u8);
        let reasons = d.reasons.iter().map(|r| &**r).collect::<Vec<_>>().join(",");
        let mut end = reasons.len().min(MAX_REASONS);
        while !reasons.is_char_boundary(end) {
            end -= 1;
        }
        out.extend_from_slice(&(end as u16).to_le_bytes());
        out.extend_from_slice(&reasons.as_bytes()[..end]);
    }
    out
}

/// The decisions of a record; `None` when it is not a decision record this version reads.
pub fn decode(payload: &[u8]) -> Option<Vec<Decided>> {
    let mut rest = payload.strip_prefix(&[MARK, VERSION])?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (head, tail) = rest.split_at_checked(19)?;
        let id: [u8; 16] = head[..16].try_into().ok()?;
        let len = u16::from_le_bytes([head[17], head[18]]) as usize;
        let (reasons, tail) = tail.split_at_checked(len)?;
        let reasons = std::str::from_utf8(reasons).ok()?;
        out.push(Decided {
            id,
            sampled: head[16] & 1 == 1,
            reasons: reasons
                .split(',')
                .filter(|r| !r.is_empty())
                .map(Arc::from)
                .collect(),
        });
        rest = tail;
    }
    Some(out)
}

impl DecisionLog for Storage {
    fn record(&self, decided: &[Decided]) {
        // A failed append is logged and counted by `append`; the decision stands, and a
        // replay would decide these traces by the policies again. Not flushed even with
        // `fsync: always`: the spans are durable, and a decision lost to a power loss is
        // only made again.
        if self.append_with(&encode(decided), false).is_ok() {
            metrics::counter!("casefile_wal_decisions_total").increment(decided.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decisions_round_trip(
            ds in proptest::collection::vec(
                (any::<[u8; 16]>(), any::<bool>(), proptest::collection::vec("[a-z_.-]{1,12}", 0..4)),
                0..20,
            )
        ) {
            let ds: Vec<Decided> = ds
                .into_iter()
                .map(|(id, sampled, reasons)| Decided {
                    id,
                    sampled,
                    reasons: reasons.iter().map(|r| Arc::from(r.as_str())).collect(),
                })
                .collect();
            let bytes = encode(&ds);
            prop_assert!(is_meta(&bytes));
            prop_assert_eq!(decode_meta(&bytes), Some(Meta::Decisions(ds)));
        }

        #[test]
        fn truncated_records_are_refused_not_misread(
            n in 1usize..5, cut in 1usize..40,
        ) {
            let ds: Vec<Decided> = (0..n as u8)
                .map(|i| Decided { id: [i; 16], sampled: true, reasons: vec![Arc::from("errors")] })
                .collect();
            let bytes = encode(&ds);
            let cut = cut.min(bytes.len() - 2);
            let short = &bytes[..bytes.len() - cut];
            let entry = 16 + 1 + 2 + "errors".len();
            if !(short.len() - 2).is_multiple_of(entry) {
                prop_assert_eq!(decode(short), None);
            }
        }
    }

    #[test]
    fn a_span_record_is_not_one_of_these() {
        // An ExportTraceServiceRequest starts with field 1's tag.
        assert!(!is_meta(&[0x0a, 0x00]));
        assert_eq!(decode_meta(&[0x0a, 0x00]), None);
        assert_eq!(decode_meta(&[MARK, 9]), None);
    }

    #[test]
    fn delivery_records_round_trip_and_refuse_a_partial_key() {
        let keys: Vec<u8> = (0..48).collect();
        let bytes = encode_delivered(&keys);
        let want: Vec<SpanKey> = vec![
            keys[..24].try_into().unwrap(),
            keys[24..].try_into().unwrap(),
        ];
        assert_eq!(decode_meta(&bytes), Some(Meta::Delivered(want)));
        assert_eq!(decode_meta(&bytes[..bytes.len() - 1]), None);
    }
}
