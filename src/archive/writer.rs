//! The writer thread: the only one that writes the archive. It takes batches from the
//! bounded queue, groups kept spans by trace, appends each trace's entry to the pending
//! block, and writes the block (zstd, one checksummed record) once it holds
//! [`super::Tuning::block_bytes`] or has waited a second. A segment reaching its size is
//! sealed (index written next to it) and retention runs. Blocking file I/O is fine here:
//! nothing upstream ever waits for this thread.
//!
//! A failed write drops the block's traces (counted by reason, logged at most once per
//! 10 s), truncates the segment back to its last complete record and closes it: it is
//! sealed before the next block goes to a new segment (retried with each later block
//! while sealing fails too).

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::batch::{for_each_trace, policy_of, Services};
use super::config::Traces;
use super::files;
use super::format::{self, Entry, DROPPED, ERROR, KEPT, KEYS_IN_SPANS, ROOT, SPANS};
use super::keys::ResourceKeys;
use super::pack;
use super::segment::{MemIndex, Sealed};
use super::{ActiveView, Inner};
use crate::model::{Span, StatusCode, TraceId};
use crate::storage::wal;
use crate::support::index::{Key, TraceKeys};

/// What `record_*`, `flush` and `close` send the writer.
pub(crate) enum Msg {
    /// Dropped traces, and the keys the index holds for them (by position).
    Dropped(Vec<(TraceId, Vec<Span>)>, TraceKeys),
    Kept(Vec<Span>),
    /// The index's keys of traces just kept, whose spans follow in a `Kept`.
    /// (id, span count).
    KeptKeys(Vec<(TraceId, u32)>, TraceKeys),
    Flush(SyncSender<()>),
    Close(SyncSender<()>),
    /// Tests: stop at once, as a killed process would (pending block lost, segment
    /// unsealed).
    #[cfg(test)]
    Abort,
}

/// Kept traces whose keys the writer holds while their spans are on their way (a few
/// decision rounds' worth; past this they are forgotten and the spans read instead).
const MAX_KEPT_KEYS: usize = 1 << 17;

/// A pending block older than this is written even if not full.
const IDLE_FLUSH: Duration = Duration::from_secs(1);
/// Retention is checked at least this often.
const ENFORCE_EVERY: Duration = Duration::from_secs(5);
/// At most one log line per this, with the count since the last.
const LOG_EVERY: Duration = Duration::from_secs(10);

struct Active {
    seq: u64,
    path: Arc<PathBuf>,
    file: File,
    len: u64,
    /// A write failed: nothing more is appended; sealed before the next block.
    broken: bool,
}

pub(crate) struct Writer {
    inner: Arc<Inner>,
    /// Entries of the pending block.
    pending: Vec<u8>,
    /// Its dictionary of resources and scopes.
    dict: pack::Dict,
    /// The keys of its entries, in order: entry `i`'s end at `pending_ends[i]`.
    pending_keys: Vec<Key>,
    pending_ends: Vec<u32>,
    /// `service.name` of the resource blocks met lately.
    services: Services,
    /// Reused for each trace: its packed spans, its keys.
    packed: Vec<u8>,
    keys: Vec<(u16, Key)>,
    /// The block being compressed (dictionary, entries), reused.
    block: Vec<u8>,
    /// The record being written (header, compressed block), reused.
    framed: Vec<u8>,
    /// Keys of the resource blocks met lately.
    resource_keys: ResourceKeys,
    /// The index's keys of kept traces whose spans are on their way.
    kept_keys: foldhash::HashMap<TraceId, (u32, Box<[Key]>)>,
    pending_traces: u64,
    pending_since: Option<Instant>,
    active: Option<Active>,
    next_seq: u64,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    last_enforce: Instant,
    log: (Option<Instant>, u64),
}

/// zstd level of the blocks: level 3 saves 0.2 B a span (under 1 %) on the load tool's
/// traces for twice the compression time (see the module header of `archive`); level -1
/// with a 4 KiB-entry hash table ([`compressor`]) costs 0.1 B a span more than level 1
/// for a quarter less compression time.
pub(crate) const LEVEL: i32 = -1;

/// Hash table size (log2) of the fast levels (< 1): small enough to stay in the L1 cache.
const FAST_HASH_LOG: u32 = 12;

/// A compression context for `level`, reused for every block.
fn compressor(level: i32) -> Option<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level).ok()?;
    if level < 1 {
        c.set_parameter(zstd::zstd_safe::CParameter::HashLog(FAST_HASH_LOG))
            .ok()?;
    }
    Some(c)
}

impl Writer {
    pub(crate) fn new(inner: Arc<Inner>, next_seq: u64) -> Writer {
        Writer {
            compressor: compressor(inner.tuning.level),
            inner,
            pending: Vec::new(),
            dict: pack::Dict::default(),
            pending_keys: Vec::new(),
            pending_ends: Vec::new(),
            packed: Vec::new(),
            services: Services::default(),
            keys: Vec::new(),
            block: Vec::new(),
            framed: Vec::new(),
            resource_keys: ResourceKeys::default(),
            kept_keys: Default::default(),
            pending_traces: 0,
            pending_since: None,
            active: None,
            next_seq,
            last_enforce: Instant::now(),
            log: (None, 0),
        }
    }

    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let msg = rx.recv_timeout(Duration::from_millis(250));
            let inner = Arc::clone(&self.inner);
            let _gate = inner.gate.lock();
            match msg {
                Ok(Msg::Dropped(traces, known)) => {
                    for (i, (id, spans)) in traces.iter().enumerate() {
                        self.add(*id, spans, DROPPED, known.of(i));
                    }
                }
                Ok(Msg::KeptKeys(ids, known)) => {
                    if self.kept_keys.len() > MAX_KEPT_KEYS {
                        // Spans that never came (a failed export path): forget them.
                        self.kept_keys.clear();
                    }
                    for (i, (id, n)) in ids.into_iter().enumerate() {
                        if let Some(keys) = known.of(i) {
                            self.kept_keys.insert(id, (n, keys.into()));
                        }
                    }
                }
                Ok(Msg::Kept(spans)) => {
                    let mut kept_keys = std::mem::take(&mut self.kept_keys);
                    for_each_trace(spans, |id, spans| {
                        let known = kept_keys.remove(&id);
                        let known = known.filter(|(n, _)| *n as usize == spans.len());
                        self.add(id, spans, KEPT, known.as_ref().map(|(_, k)| &k[..]));
                    });
                    self.kept_keys = kept_keys;
                }
                Ok(Msg::Flush(ack)) => {
                    self.write_block();
                    self.enforce();
                    let _ = ack.send(());
                }
                Ok(Msg::Close(ack)) => {
                    self.shut_down();
                    let _ = ack.send(());
                    return;
                }
                #[cfg(test)]
                Ok(Msg::Abort) => return,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.shut_down();
                    return;
                }
            }
            if self
                .pending_since
                .is_some_and(|t| t.elapsed() >= IDLE_FLUSH)
            {
                self.write_block();
            }
            if self.last_enforce.elapsed() >= ENFORCE_EVERY {
                self.enforce();
            }
        }
    }

    fn shut_down(&mut self) {
        self.write_block();
        if let Err(e) = self.seal() {
            tracing::warn!(error = %e, "archive: cannot seal the segment at shutdown");
        }
    }

    /// Appends one trace's entry to the pending block. `known`: the trace's keys as the
    /// index computed them at ingest (the same digests), else they are read from the spans.
    fn add(&mut self, id: TraceId, spans: &[Span], decision: u8, known: Option<&[Key]>) {
        if spans.is_empty() {
            return;
        }
        let inner = &*self.inner;
        let reasons = if decision == KEPT {
            policy_of(spans)
        } else {
            String::new()
        };
        // What `Summary::of` finds, in one pass.
        let (mut start, mut end, mut error, mut root) = (u64::MAX, 0, false, None);
        let mut earliest = &spans[0];
        for span in spans {
            if span.start_unix_nano < start {
                start = span.start_unix_nano;
                earliest = span;
            }
            end = end.max(span.end_unix_nano);
            error |= span.status == StatusCode::Error;
            if root.is_none() && span.is_root() {
                root = Some(span);
            }
        }
        let keep = decision == DROPPED || inner.cfg.traces == Traces::All;
        let mut flags = if keep { SPANS | KEYS_IN_SPANS } else { 0 };
        if root.is_some() {
            flags |= ROOT;
        }
        if error {
            flags |= ERROR;
        }
        let root = root.unwrap_or(earliest);
        let service = self.services.of(root);
        let mut packed = std::mem::take(&mut self.packed);
        packed.clear();
        if keep {
            pack::pack(&id, start, spans, &mut self.dict, &mut packed);
        }
        let mut keys = std::mem::take(&mut self.keys);
        // Summary-only entries name each key's attribute: read from the spans then.
        let known = known.filter(|_| keep);
        if known.is_none() {
            inner.hasher.keys_into(
                &inner.cfg.attributes,
                spans,
                &mut self.resource_keys,
                &mut keys,
            );
        } else {
            keys.clear();
        }
        let entry = Entry {
            id,
            decision,
            flags,
            start,
            end,
            span_count: spans.len().min(u32::MAX as usize) as u32,
            service: &service,
            name: root.name(),
            reasons: &reasons,
            keys: if keep {
                Vec::new()
            } else {
                keys.iter()
                    .map(|(i, k)| (inner.cfg.attributes[*i as usize].as_str(), *k))
                    .collect()
            },
            spans: &packed,
        };
        entry.write(&mut self.pending);
        drop(entry);
        self.packed = packed;
        match known {
            Some(known) => self.pending_keys.extend_from_slice(known),
            None => self.pending_keys.extend(keys.iter().map(|(_, k)| *k)),
        }
        self.pending_ends.push(self.pending_keys.len() as u32);
        self.keys = keys;
        self.pending_traces += 1;
        self.pending_since.get_or_insert_with(Instant::now);
        if self.pending.len() >= inner.tuning.block_bytes {
            self.write_block();
        }
    }

    /// Writes the pending block to the active segment (opening one if needed).
    fn write_block(&mut self) {
        self.pending_since = None;
        if self.pending.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.pending);
        let mut block = std::mem::take(&mut self.block);
        self.dict.block_into(&entries, &mut block);
        let keys = std::mem::take(&mut self.pending_keys);
        let ends = std::mem::take(&mut self.pending_ends);
        let traces = std::mem::take(&mut self.pending_traces);
        let res = self.append(&block, &entries, &keys, &ends);
        self.block = block;
        // The buffers are kept for the next block.
        let (mut entries, mut keys, mut ends) = (entries, keys, ends);
        entries.clear();
        keys.clear();
        ends.clear();
        self.pending = entries;
        self.pending_keys = keys;
        self.pending_ends = ends;
        if let Err(e) = res {
            let c = &self.inner.counters;
            c.write_errors.fetch_add(1, Relaxed);
            metrics::counter!("casefile_archive_write_errors_total").increment(1);
            let reason = if e.kind() == io::ErrorKind::StorageFull {
                c.dropped_disk_full.fetch_add(traces, Relaxed);
                "disk_full"
            } else {
                c.dropped_write_error.fetch_add(traces, Relaxed);
                "write_error"
            };
            metrics::counter!("casefile_archive_dropped_traces_total", "reason" => reason)
                .increment(traces);
            self.log.1 += 1;
            if self.log.0.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                tracing::warn!(error = %e, failures = self.log.1, reason,
                    "archive: write failed, traces dropped");
                self.log = (Some(Instant::now()), 0);
            }
        }
        self.publish();
    }

    /// Appends `block` (its dictionary, then `entries`).
    fn append(
        &mut self,
        block: &[u8],
        entries: &[u8],
        keys: &[Key],
        ends: &[u32],
    ) -> io::Result<()> {
        if self.active.as_ref().is_some_and(|a| a.broken) {
            self.seal()?;
        }
        // The record (the write-ahead log's framing) is built in a buffer reused for every
        // block: the payload compressed in place after the header.
        let mut framed = std::mem::take(&mut self.framed);
        let res = self.frame(block, &mut framed);
        let res = res.and_then(|n| self.append_framed(&framed[..n], entries, keys, ends));
        self.framed = framed;
        res
    }

    /// Compresses `block` into `framed` after a record header; returns the record's length.
    fn frame(&mut self, block: &[u8], framed: &mut Vec<u8>) -> io::Result<usize> {
        let bound = zstd::zstd_safe::compress_bound(block.len());
        if framed.len() < wal::HEADER + bound {
            framed.resize(wal::HEADER + bound, 0);
        }
        let n = match &mut self.compressor {
            Some(c) => c.compress_to_buffer(block, &mut framed[wal::HEADER..])?,
            None => {
                let z = zstd::bulk::compress(block, self.inner.tuning.level)?;
                framed[wal::HEADER..wal::HEADER + z.len()].copy_from_slice(&z);
                z.len()
            }
        };
        if n == 0 || n > wal::MAX_RECORD {
            return Err(io::Error::other(format!("record too large: {n} bytes")));
        }
        let crc = crc32fast::hash(&framed[wal::HEADER..wal::HEADER + n]);
        framed[..4].copy_from_slice(&(n as u32).to_le_bytes());
        framed[4..8].copy_from_slice(&crc.to_le_bytes());
        Ok(wal::HEADER + n)
    }

    /// Appends a framed block record.
    fn append_framed(
        &mut self,
        framed: &[u8],
        entries: &[u8],
        keys: &[Key],
        ends: &[u32],
    ) -> io::Result<()> {
        let payload = &framed[wal::HEADER..];
        let entries = format::entries(entries).ok_or_else(|| io::Error::other("bad block"))?;
        let fault = self.inner.fault();
        let a = self.open_active()?;
        let at = a.len;
        let res = fault.and_then(|()| a.file.write_all(framed));
        if let Err(e) = res {
            let _ = a.file.set_len(at);
            a.broken = true;
            return Err(e);
        }
        a.len += framed.len() as u64;
        let (len, seq) = (a.len, a.seq);
        {
            let mut st = self.inner.state.write();
            if let Some(v) = st.active.as_mut().filter(|v| v.seq == seq) {
                v.index.written = unix_nanos((self.inner.clock)());
                v.index.add_block(
                    at + wal::HEADER as u64,
                    payload.len() as u32,
                    &entries,
                    keys,
                    ends,
                );
            }
        }
        self.inner.counters.writes.fetch_add(1, Relaxed);
        metrics::counter!("casefile_archive_writes_total").increment(1);
        if len >= self.inner.segment_bytes() {
            if let Err(e) = self.seal() {
                tracing::warn!(error = %e, "archive: cannot seal a segment; retried");
            }
            self.enforce();
        }
        Ok(())
    }

    fn open_active(&mut self) -> io::Result<&mut Active> {
        if self.active.is_none() {
            self.inner.fault()?;
            let seq = self.next_seq;
            let path = Arc::new(files::data_path(&self.inner.cfg.dir, seq));
            let file = files::create_append(&path)?;
            self.next_seq += 1;
            self.inner.state.write().active = Some(ActiveView {
                seq,
                data: Arc::clone(&path),
                index: MemIndex::default(),
            });
            self.active = Some(Active {
                seq,
                path,
                file,
                len: 0,
                broken: false,
            });
        }
        Ok(self.active.as_mut().expect("opened above"))
    }

    /// Seals the active segment: its index is written next to it and it joins the sealed
    /// ones. An empty segment is removed instead.
    fn seal(&mut self) -> io::Result<()> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let dir = &self.inner.cfg.dir;
        let empty = {
            let st = self.inner.state.read();
            st.active.as_ref().is_none_or(|v| v.index.is_empty())
        };
        if empty {
            let _ = std::fs::remove_file(&*a.path);
        } else {
            // Only this thread changes the active index: a read lock keeps it still while
            // lookups go on.
            let st = self.inner.state.read();
            let v = st.active.as_ref().expect("not empty");
            let truncated = a
                .file
                .set_len(v.index.data_len)
                .and_then(|()| a.file.sync_data());
            self.inner.fault().and(truncated)?;
            v.index.write(&files::index_path(dir, a.seq))?;
        }
        let seq = a.seq;
        self.active = None;
        let sealed = (!empty).then(|| Sealed::open(dir, seq));
        let mut st = self.inner.state.write();
        st.active = None;
        match sealed {
            Some(Some(s)) => st.sealed.push(Arc::new(s)),
            Some(None) => tracing::error!(seq, "archive: a segment just sealed does not open"),
            None => {}
        }
        Ok(())
    }

    /// Deletes whole segments, oldest first: those last written longer ago than the
    /// retention (by the archive's clock, so a client's skewed clock cannot age or keep
    /// them), then while the total exceeds `max_bytes`.
    pub(crate) fn enforce(&mut self) {
        self.last_enforce = Instant::now();
        let now = (self.inner.clock)();
        let retention = Duration::from_millis(self.inner.retention_ms.load(Relaxed));
        let cutoff = now
            .checked_sub(retention)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
        let active_old = {
            let st = self.inner.state.read();
            st.active
                .as_ref()
                .is_some_and(|v| !v.index.is_empty() && v.index.written < cutoff)
        };
        if active_old && self.pending.is_empty() {
            if let Err(e) = self.seal() {
                tracing::warn!(error = %e, "archive: cannot seal an expired segment");
            }
        }
        let max_bytes = self.inner.max_bytes.load(Relaxed);
        let mut gone = Vec::new();
        {
            let mut st = self.inner.state.write();
            let active = self.active.as_ref().map_or(0, |a| a.len);
            let mut total: u64 = st.sealed.iter().map(|s| s.bytes()).sum::<u64>() + active;
            while let Some(first) = st.sealed.first() {
                let reason = if first.header.written_or_newest() < cutoff {
                    0
                } else if total > max_bytes {
                    1
                } else {
                    break;
                };
                total -= first.bytes();
                gone.push((st.sealed.remove(0), reason));
            }
        }
        for (s, reason) in gone {
            let rows = u64::from(s.header.rows);
            let c = &self.inner.counters;
            let (counter, label) = if reason == 0 {
                (&c.evicted_retention, "retention")
            } else {
                (&c.evicted_bytes, "bytes")
            };
            counter.fetch_add(rows, Relaxed);
            metrics::counter!("casefile_archive_evictions_total", "reason" => label)
                .increment(rows);
            // Data first: an index without its data is removed at the next open, data
            // without its index would be re-indexed.
            let _ = std::fs::remove_file(&*s.data);
            let _ = std::fs::remove_file(&s.index);
        }
        self.publish();
    }

    fn publish(&self) {
        let s = self.inner.sizes();
        metrics::gauge!("casefile_archive_bytes").set(s.bytes as f64);
        metrics::gauge!("casefile_archive_segments").set(s.segments as f64);
        metrics::gauge!("casefile_archive_traces").set(s.traces as f64);
        let age = s.oldest_trace_start.map_or(0.0, |t| {
            let now = (self.inner.clock)()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            now.saturating_sub(t) as f64 / 1e9
        });
        metrics::gauge!("casefile_archive_oldest_trace_age_seconds").set(age);
    }
}

/// Unix nanoseconds of `t` (0 before 1970).
fn unix_nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}
