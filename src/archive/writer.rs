//! The writer thread: the only one that writes the archive. It takes full blocks from the
//! bounded queue (filled and packed by the decider, [`super::builder`]), and the pending
//! block itself once it has waited [`super::builder::IDLE_FLUSH`]; compresses each (zstd, one checksummed
//! record) and appends it to the active segment. A segment reaching its size is sealed
//! (index written next to it) and retention runs. Blocking file I/O is fine here: nothing
//! upstream ever waits for this thread.
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

use super::builder::Filled;
use super::files;
use super::format;
use super::segment::{MemIndex, Sealed};
use super::{ActiveView, Inner};
use crate::storage::wal;
use crate::support::index::Key;

/// What the archive handle sends the writer.
pub(crate) enum Msg {
    /// A full block.
    Block(Filled),
    Flush(SyncSender<()>),
    Close(SyncSender<()>),
    /// Tests: stop at once, as a killed process would (pending block lost, segment
    /// unsealed).
    #[cfg(test)]
    Abort,
}

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
    /// The record being written (header, compressed block), reused.
    framed: Vec<u8>,
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
            framed: Vec::new(),
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
                Ok(Msg::Block(block)) => self.write_block(block),
                Ok(Msg::Flush(ack)) => {
                    self.write_pending(true);
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
            self.write_pending(false);
            if self.last_enforce.elapsed() >= ENFORCE_EVERY {
                self.enforce();
            }
        }
    }

    fn shut_down(&mut self) {
        self.write_pending(true);
        if let Err(e) = self.seal() {
            tracing::warn!(error = %e, "archive: cannot seal the segment at shutdown");
        }
    }

    /// Writes the block being filled if it has waited [`super::builder::IDLE_FLUSH`] (or at all, with
    /// `now`).
    fn write_pending(&mut self, now: bool) {
        let block = self.inner.builder.lock().take_idle(&self.inner, now);
        if let Some(block) = block {
            self.write_block(block);
        }
    }

    /// Writes a filled block to the active segment (opening one if needed).
    fn write_block(&mut self, block: Filled) {
        let res = self.append(&block.bytes, block.entries(), &block.keys, &block.ends);
        let traces = block.traces;
        if res.is_err() {
            super::spill::spill(&self.inner, &block);
        }
        self.inner.builder.lock().recycle(block);
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
        if active_old && self.inner.builder.lock().is_empty() {
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
