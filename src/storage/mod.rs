//! Durability (`storage.dir`): the write-ahead log between the receivers and the trace
//! buffer. A receiver appends the accepted spans of a request here before it answers
//! success; at start, what the log holds is replayed into the buffer before any receiver
//! listens, so traces pending at a crash are decided and kept traces whose export had not
//! finished are exported again (duplicates after a crash are possible, never losses).
//!
//! The log is also what persists the export queue: a segment is deleted only once
//! (a) every trace with a span in it has been decided — a trace's deadline is at most
//! `decision_wait` after its first span, so `last append + decision_wait + a margin`
//! bounds it — and (b) every batch the decider handed to the exporters up to that moment
//! has been delivered or given up on by every exporter (the exporters report the oldest
//! batch not finished, see [`Storage::checkpoint`]). Late spans of kept traces and rescued
//! traces are handed on from spans that are in that segment or a later one, so the same
//! rule covers them; rescue exports of dropped traces are not covered (the rescue buffer
//! itself is in memory).
//!
//! Decisions and deliveries are logged too ([`records`]): each batch of decisions is
//! appended after the spans it decides and before the kept spans reach the exporters, so a
//! replay decides those traces as they were decided, not by the policies again; and the
//! spans of every batch all exporters have finished with are listed at the next
//! checkpoint, so a replay does not export them again.

mod records;
#[cfg(test)]
mod tests;
pub(crate) mod wal;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::buffer::Buffer;
use crate::config::{Fsync, StorageCfg};
use crate::wire::decode::decode_request;
use records::Meta;
use wal::{frame, list_segments, read_segment, Active};
pub use wal::{Damage, WalError};

/// Added to `decision_wait` before a segment's traces count as decided: covers the
/// decider's tick, the time between an append and its ingest, and a slow tick.
pub const MARGIN: Duration = Duration::from_secs(2);

/// What replaying the log at start found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub segments: usize,
    pub records: usize,
    pub spans: usize,
    /// Segments that ended in a torn or corrupt record.
    pub damaged: usize,
    /// Decisions read back: traces that will be decided as they were before the restart.
    pub decisions: usize,
    /// Spans not replayed because they had been delivered before the restart.
    pub delivered: usize,
}

/// A segment no longer appended to, waiting for its watermark.
#[derive(Debug)]
struct Closed {
    seq: u64,
    path: PathBuf,
    bytes: u64,
    /// When every trace with a span in it has been decided.
    due: Instant,
    /// The first batch sequence number handed on after `due`: once every batch before it
    /// is finished, the segment can go.
    needs: Option<u64>,
}

struct State {
    /// None after a failed append or rotation until the next append opens a new segment,
    /// so nothing is ever appended after a torn record.
    active: Option<Active>,
    next_seq: u64,
    closed: VecDeque<Closed>,
    /// The previous checkpoint's time: every trace due by then is in a batch numbered
    /// below the current checkpoint's `next_batch`.
    prev_check: Option<Instant>,
    /// Batches handed to the exporters and not yet finished: their number and the keys
    /// of their spans ([`records::SpanKey`], concatenated).
    inflight: VecDeque<(u64, Vec<u8>)>,
}

/// The write-ahead log. Shared by `Arc`; one lock, held for one `write()` (plus an fsync
/// with `fsync: always`) and never across an `.await`.
pub struct Storage {
    dir: PathBuf,
    segment_size: u64,
    sync: bool,
    /// `decision_wait` + [`MARGIN`].
    horizon: Duration,
    state: Mutex<State>,
}

impl Storage {
    /// Opens the log in `cfg.dir` (created if missing). The segments already there are
    /// left for [`Storage::restore`]; appends go to a new segment after them.
    pub fn open(cfg: &StorageCfg, decision_wait: Duration) -> Result<Storage, WalError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|source| WalError::CreateDir {
            dir: cfg.dir.clone(),
            source,
        })?;
        let now = Instant::now();
        let horizon = decision_wait + MARGIN;
        let closed: VecDeque<Closed> = list_segments(&cfg.dir)?
            .into_iter()
            .map(|(seq, path)| Closed {
                seq,
                bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                path,
                due: now + horizon,
                needs: None,
            })
            .collect();
        let next_seq = closed.back().map_or(1, |c| c.seq + 1);
        let active = Active::create(&cfg.dir, next_seq)?;
        let storage = Storage {
            dir: cfg.dir.clone(),
            segment_size: cfg.segment_size,
            sync: cfg.fsync == Fsync::Always,
            horizon,
            state: Mutex::new(State {
                active: Some(active),
                next_seq: next_seq + 1,
                closed,
                prev_check: None,
                inflight: VecDeque::new(),
            }),
        };
        storage.report();
        Ok(storage)
    }

    /// Replays every segment that was there at [`Storage::open`] into `buffer`: first the
    /// decisions (a trace decided before the crash is decided the same way again), then
    /// the spans, which get a fresh decision window. A torn or corrupt record ends its
    /// segment's replay with a warning; it never fails the start.
    pub fn restore(&self, buffer: &Buffer) -> Restored {
        let segments: Vec<(u64, PathBuf)> = {
            let st = self.state.lock();
            st.closed.iter().map(|c| (c.seq, c.path.clone())).collect()
        };
        let mut r = Restored::default();
        let mut presets = std::collections::HashMap::new();
        let mut delivered = std::collections::HashSet::new();
        for (_, path) in &segments {
            // Damage is reported by the second pass.
            let _ = read_segment(path, |payload| match records::decode_meta(payload) {
                Some(Meta::Decisions(ds)) => {
                    for d in ds {
                        crate::buffer::merge_decision(&mut presets, d);
                    }
                }
                Some(Meta::Delivered(keys)) => delivered.extend(keys),
                None => {}
            });
        }
        buffer.set_presets(presets);
        let mut skipped = 0;
        for (_, path) in &segments {
            r.segments += 1;
            let mut spans = 0;
            let mut records = 0;
            let result = read_segment(path, |payload| {
                records += 1;
                if records::is_meta(payload) {
                    if records::decode_meta(payload).is_none() {
                        metrics::counter!("casefile_wal_corrupt_records_total").increment(1);
                        tracing::warn!(file = %path.display(), "unreadable decision or delivery record in the write-ahead log skipped");
                    }
                    return;
                }
                match decode_request(payload) {
                    Ok(mut d) => {
                        spans += d.spans.len();
                        if !delivered.is_empty() {
                            let before = d.spans.len();
                            d.spans.retain(|s| {
                                records::span_key(s).is_none_or(|k| !delivered.contains(&k))
                            });
                            skipped += before - d.spans.len();
                        }
                        buffer.ingest(d.spans, Instant::now());
                    }
                    // The checksum matched, so this was written so: count it, go on.
                    Err(e) => {
                        metrics::counter!("casefile_wal_corrupt_records_total").increment(1);
                        tracing::warn!(file = %path.display(), error = %e, "undecodable record in the write-ahead log skipped");
                    }
                }
            });
            match result {
                Ok(None) => {}
                Ok(Some(Damage { offset, reason })) => {
                    r.damaged += 1;
                    metrics::counter!("casefile_wal_corrupt_records_total").increment(1);
                    tracing::warn!(file = %path.display(), offset, reason, "write-ahead log segment damaged; the rest of it is skipped");
                }
                Err(e) => {
                    r.damaged += 1;
                    metrics::counter!("casefile_wal_corrupt_records_total").increment(1);
                    tracing::warn!(error = %e, "write-ahead log segment unreadable; skipped");
                }
            }
            r.records += records;
            r.spans += spans;
        }
        r.decisions = buffer.settle_presets();
        r.delivered = skipped;
        metrics::counter!("casefile_wal_replayed_spans_total")
            .increment((r.spans - skipped) as u64);
        metrics::counter!("casefile_wal_skipped_delivered_spans_total").increment(skipped as u64);
        // The replayed traces were just given new deadlines: their segments wait as long.
        let due = Instant::now() + self.horizon;
        for c in self.state.lock().closed.iter_mut() {
            c.due = c.due.max(due);
        }
        r
    }

    /// Appends the accepted spans of one request (an encoded ExportTraceServiceRequest).
    /// When this returns `Ok`, a killed process loses nothing of it (and, with
    /// `fsync: always`, neither does a power loss).
    pub fn append(&self, payload: &[u8]) -> Result<(), WalError> {
        self.append_with(payload, self.sync)
    }

    /// As [`Storage::append`]; `sync` false skips the flush of `fsync: always` (decision
    /// records: losing one to a power loss only means that trace is decided again).
    fn append_with(&self, payload: &[u8], sync: bool) -> Result<(), WalError> {
        let framed = frame(payload)?;
        let mut st = self.state.lock();
        let result = self.append_locked(&mut st, &framed, sync);
        drop(st);
        match &result {
            Ok(()) => metrics::counter!("casefile_wal_appends_total").increment(1),
            Err(e) => {
                metrics::counter!("casefile_wal_append_errors_total").increment(1);
                tracing::error!(error = %e, "write-ahead log append failed; the request is refused as retryable");
            }
        }
        result
    }

    fn append_locked(&self, st: &mut State, framed: &[u8], sync: bool) -> Result<(), WalError> {
        if st.active.is_none() {
            let seq = st.next_seq;
            st.next_seq += 1;
            st.active = Some(Active::create(&self.dir, seq)?);
        }
        let active = st.active.as_mut().expect("just opened");
        if let Err(e) = active.append(framed, sync) {
            // What was written may end in a torn record: close the segment there.
            self.close_active(st);
            return Err(e);
        }
        if active.len >= self.segment_size {
            self.close_active(st);
            let seq = st.next_seq;
            st.next_seq += 1;
            // A failure here is retried by the next append.
            match Active::create(&self.dir, seq) {
                Ok(a) => st.active = Some(a),
                Err(e) => tracing::warn!(error = %e, "cannot start a new write-ahead log segment"),
            }
        }
        Ok(())
    }

    fn close_active(&self, st: &mut State) {
        if let Some(a) = st.active.take() {
            if self.sync {
                a.sync();
            }
            st.closed.push_back(Closed {
                seq: a.seq,
                path: a.path,
                bytes: a.len,
                due: Instant::now() + self.horizon,
                needs: None,
            });
        }
    }

    /// Called by the decider for each batch it hands to the exporters: once they have all
    /// finished with it, its spans are listed as delivered at the next checkpoint.
    pub fn handed(&self, seq: u64, spans: &[crate::model::Span]) {
        let keys: Vec<u8> = spans
            .iter()
            .filter_map(records::span_key)
            .flatten()
            .collect();
        self.state.lock().inflight.push_back((seq, keys));
    }

    /// Called by the decider after each tick's decisions were handed to the exporters:
    /// every trace due by `now` is in a batch numbered below `next_batch`, and
    /// `oldest_unfinished` is the first batch some exporter has not finished with.
    /// Deletes the closed segments whose watermark has passed; returns how many.
    pub fn checkpoint(
        &self,
        now: Instant,
        next_batch: u64,
        oldest_unfinished: Option<u64>,
    ) -> usize {
        let mut gone = Vec::new();
        {
            let mut st = self.state.lock();
            // Decisions of the previous tick whose spans reached the outbox a moment after
            // that tick took it are in this tick's batches: use the previous tick's time.
            if let Some(prev) = st.prev_check {
                for c in st.closed.iter_mut().filter(|c| c.needs.is_none()) {
                    if c.due <= prev {
                        c.needs = Some(next_batch);
                    }
                }
            }
            st.prev_check = Some(now);
            self.log_delivered(&mut st, oldest_unfinished.unwrap_or(next_batch));
            while let Some(front) = st.closed.front() {
                let done = front
                    .needs
                    .is_some_and(|n| oldest_unfinished.is_none_or(|o| o >= n));
                if !done {
                    break;
                }
                gone.extend(st.closed.pop_front());
            }
        }
        for c in &gone {
            match std::fs::remove_file(&c.path) {
                Ok(()) => {
                    tracing::debug!(file = %c.path.display(), "write-ahead log segment truncated")
                }
                Err(e) => {
                    tracing::warn!(file = %c.path.display(), error = %e, "cannot delete a write-ahead log segment")
                }
            }
        }
        if !gone.is_empty() {
            metrics::counter!("casefile_wal_truncated_segments_total").increment(gone.len() as u64);
        }
        self.report();
        gone.len()
    }

    /// Appends the spans of the batches numbered below `done` (finished by every exporter:
    /// delivered, or given up on after the retries, which a restart would not retry either).
    fn log_delivered(&self, st: &mut State, done: u64) {
        let mut keys = Vec::new();
        while st.inflight.front().is_some_and(|(seq, _)| *seq < done) {
            keys.extend(st.inflight.pop_front().expect("checked").1);
        }
        if keys.is_empty() {
            return;
        }
        let n = keys.len() / 24;
        let result = frame(&records::encode_delivered(&keys))
            .and_then(|framed| self.append_locked(st, &framed, false));
        match result {
            Ok(()) => metrics::counter!("casefile_wal_delivered_spans_total").increment(n as u64),
            // Not fatal: those spans would only be exported again after a crash.
            Err(e) => tracing::warn!(error = %e, spans = n, "cannot log delivered spans"),
        }
    }

    /// Deletes every segment, the active one included (after a clean shutdown that decided
    /// and delivered everything; nothing may be appended afterwards).
    pub fn clear(&self) {
        let mut st = self.state.lock();
        self.close_active(&mut st);
        let n = st.closed.len();
        for c in st.closed.drain(..) {
            if let Err(e) = std::fs::remove_file(&c.path) {
                tracing::warn!(file = %c.path.display(), error = %e, "cannot delete a write-ahead log segment");
            }
        }
        drop(st);
        metrics::counter!("casefile_wal_truncated_segments_total").increment(n as u64);
        self.report();
        tracing::info!(
            segments = n,
            "everything delivered: write-ahead log cleared"
        );
    }

    /// Segments on disk (closed ones and the active one) and their bytes.
    pub fn usage(&self) -> (usize, u64) {
        let st = self.state.lock();
        let active = st.active.as_ref().map_or(0, |a| a.len);
        let closed: u64 = st.closed.iter().map(|c| c.bytes).sum();
        (
            st.closed.len() + st.active.is_some() as usize,
            closed + active,
        )
    }

    fn report(&self) {
        let (segments, bytes) = self.usage();
        metrics::gauge!("casefile_wal_segments").set(segments as f64);
        metrics::gauge!("casefile_wal_bytes").set(bytes as f64);
    }
}
