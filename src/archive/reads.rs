//! The archive's read side: lookups by key over a time range, a trace's summary, spans
//! and keys by id (writing the block being filled first when it holds the trace).

use std::sync::atomic::Ordering::Relaxed;

use super::{read, Archive, Key, Summary};
use crate::model::{Span, TraceId};

impl Archive {
    /// Traces with `key` whose start is within `[start, end]` (Unix nanoseconds), newest
    /// first, at most `limit`.
    pub fn lookup(
        &self,
        key: &Key,
        start: Option<u64>,
        end: Option<u64>,
        limit: usize,
    ) -> Vec<Summary> {
        let inner = self.inner();
        inner.counters.lookups.fetch_add(1, Relaxed);
        metrics::counter!("casefile_archive_lookups_total").increment(1);
        let (lo, hi) = (start.unwrap_or(0), end.unwrap_or(u64::MAX));
        let (sealed, mut recs) = {
            let st = inner.state.read();
            let recs = st
                .active
                .as_ref()
                .map(|a| a.index.by_key(a.seq, &a.data, key))
                .unwrap_or_default();
            (st.sealed.clone(), recs)
        };
        for s in sealed.iter().rev() {
            // A trace starts no later than any of its records; one whose keyed records
            // all started after `end` is taken to start after it too (late spans carry
            // their trace's keys only if they have the attributes).
            if s.header.max_start < lo || s.header.min_start > hi {
                continue;
            }
            match s.by_key(key) {
                Ok(r) => recs.extend(r),
                Err(e) => tracing::debug!(seq = s.seq, error = %e, "archive: segment unreadable"),
            }
        }
        let mut first: std::collections::HashMap<TraceId, u64> = Default::default();
        for r in &recs {
            let e = first.entry(r.row.id).or_insert(u64::MAX);
            *e = (*e).min(r.row.start);
        }
        let mut candidates: Vec<(u64, TraceId)> = first
            .into_iter()
            .filter(|&(_, s)| s >= lo)
            .map(|(id, s)| (s, id))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = Vec::new();
        for (_, id) in candidates {
            if out.len() >= limit {
                break;
            }
            // Found on disk: not settled (a scan of the pending block per candidate).
            if let Some(s) = read::merge(id, &mut self.inner().recs_of(&id)) {
                if (lo..=hi).contains(&s.start_unix_nano) {
                    out.push(s);
                }
            }
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.start_unix_nano));
        out
    }

    /// Writes the block being filled now if it holds a record of `id`, so a read by id
    /// sees a trace dropped a moment ago (blocks wait up to a second otherwise). Blocks
    /// the caller until the writer has written it.
    pub fn settle(&self, id: &TraceId) {
        if self.inner().builder.lock().holds(id) {
            self.flush();
        }
    }

    /// The trace's summary, all its records merged.
    pub fn summary(&self, id: &TraceId) -> Option<Summary> {
        self.settle(id);
        read::merge(*id, &mut self.inner().recs_of(id))
    }

    /// Every archived span of the trace (None when the archive holds none of its spans).
    pub fn spans(&self, id: &TraceId) -> Option<Vec<Span>> {
        self.settle(id);
        let mut recs = self.inner().recs_of(id);
        recs.sort_by_key(|r| (r.seq, r.pos));
        self.inner().cache.spans(&recs)
    }

    /// The indexed attributes the trace has values for, with their keys.
    pub fn keys_of(&self, id: &TraceId) -> Vec<(String, Key)> {
        self.settle(id);
        let mut out: Vec<(String, Key)> = Vec::new();
        let inner = self.inner();
        let names = &inner.cfg.attributes;
        let rekey = |spans: &[Span]| -> Vec<(String, Key)> {
            let keys = inner.hasher.keys_of(names, spans, &mut Default::default());
            keys.into_iter()
                .map(|(i, k)| (names[i as usize].clone(), k))
                .collect()
        };
        for r in inner.recs_of(id) {
            for k in inner.cache.keys_of(&r, &rekey) {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        out
    }
}
