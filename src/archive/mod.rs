//! The archive: every decided trace kept on local disk for days, beside the in-memory
//! index and rescue ring (fed by the decider, never in front of it), so a ticket filed
//! tomorrow still finds its trace by key or id and can rescue it.
//!
//! `record_*` pack decided traces into the block being filled on the caller's thread (the
//! decider's, while the spans are in its cache: [`builder`]) and hand full blocks to a
//! bounded queue, returning at once (a full queue drops the block, counted `busy`); one
//! writer thread ([`writer`]) compresses them into append-only segments of zstd blocks
//! ([`format`]) and seals each full segment with its index ([`segment`]). The dropped
//! traces of a block that cannot be written go to the rescue ring ([`spill`]). Readers
//! search the sealed indexes with positioned reads and the active
//! segment's index in memory, and merge a trace's records ([`read`]). The handle's write
//! side is in [`record`], its read side in [`reads`]. `open` reads only the
//! index headers, and re-indexes a data file whose index is missing or damaged (the
//! segment of a killed process: read up to its last complete record). Retention deletes
//! whole segments, oldest first. [`offline`] reads an archive without the daemon.
//!
//! Figures (`tests_bench`, the load tool's traces of 10 spans, `traces: all`, 2 shared
//! cores): 32.0 bytes on disk per span at zstd level -1 with a 2^12-entry hash table (25.2
//! data, 6.8 index), 31.8 at level 1 for a third more compression time, 31.6 at level 3 for
//! twice that; packing costs the decider about 0.2 µs a span and the writer thread
//! (compression, index) another 0.2 µs (the keys come from the index, computed at
//! ingest). Opening reads one 128-byte header per segment: 60 segments, 1 M traces in a
//! few milliseconds.

mod batch;
mod builder;
mod config;
mod files;
mod format;
mod keys;
pub mod offline;
mod pack;
mod read;
mod reads;
mod record;
mod records;
mod recover;
mod segment;
mod spill;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bench;
#[cfg(test)]
mod tests_disk;
#[cfg(test)]
mod tests_tiers;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use thiserror::Error;

use crate::model::TraceId;
pub use crate::support::index::Key;
use crate::support::index::Summary;
use builder::Builder;
pub use config::{ArchiveCfg, Traces, ESTIMATED_BYTES_PER_SPAN};
use keys::Hasher;
use read::BlockCache;
use segment::{MemIndex, Rec, Sealed};
use writer::{Msg, Writer};

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("archive directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("archive {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The clock retention is measured against (injected by tests).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Knobs tests and benchmarks turn; the daemon uses [`Tuning::default`].
#[derive(Clone)]
pub struct Tuning {
    pub clock: Clock,
    /// Overrides [`ArchiveCfg::segment_bytes`] (tests: many small segments).
    pub segment_bytes: Option<u64>,
    /// A block is written once it holds this much, uncompressed.
    pub block_bytes: usize,
    /// zstd level of the blocks.
    pub level: i32,
    /// Batches the queue holds before `record_*` drops (`busy`).
    pub queue: usize,
    /// Injected write failures: 0 none, 1 ENOSPC, 2 another I/O error (tests: 3, a panic
    /// while filling a block).
    pub faults: Arc<AtomicU8>,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            clock: Arc::new(SystemTime::now),
            segment_bytes: None,
            block_bytes: 1 << 20,
            level: writer::LEVEL,
            queue: 256,
            faults: Arc::default(),
        }
    }
}

/// Counters and sizes, for the support API, the CLI and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Bytes on disk (data and index files).
    pub bytes: u64,
    pub segments: u64,
    /// Trace records (a trace with late spans or a rescue has several).
    pub traces: u64,
    /// Earliest span start held, Unix nanoseconds.
    pub oldest_trace_start: Option<u64>,
    /// Latest start of a trace record held (a record of late spans starts at its first
    /// span), Unix nanoseconds: from the segments' headers, nothing read.
    pub newest_trace_start: Option<u64>,
    /// Blocks written.
    pub writes: u64,
    pub write_errors: u64,
    pub dropped_busy: u64,
    pub dropped_disk_full: u64,
    pub dropped_write_error: u64,
    pub lookups: u64,
    pub evicted_retention: u64,
    pub evicted_bytes: u64,
    /// Torn, corrupt or zero-filled records skipped when re-indexing a data file.
    pub corrupt_records: u64,
    /// Dropped traces of blocks that could not be written, put in the rescue ring instead.
    pub spilled_to_ring: u64,
}

impl ArchiveStats {
    /// Widens the oldest and newest starts to a segment's.
    fn saw_starts(&mut self, min: u64, max: u64) {
        self.oldest_trace_start = Some(self.oldest_trace_start.map_or(min, |o| o.min(min)));
        self.newest_trace_start = Some(self.newest_trace_start.map_or(max, |n| n.max(max)));
    }
}

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    write_errors: AtomicU64,
    dropped_busy: AtomicU64,
    dropped_disk_full: AtomicU64,
    dropped_write_error: AtomicU64,
    lookups: AtomicU64,
    evicted_retention: AtomicU64,
    evicted_bytes: AtomicU64,
    corrupt: AtomicU64,
    spilled: AtomicU64,
}

/// The segment being written, as readers see it.
pub(crate) struct ActiveView {
    seq: u64,
    data: Arc<PathBuf>,
    index: MemIndex,
}

#[derive(Default)]
struct State {
    /// Oldest first.
    sealed: Vec<Arc<Sealed>>,
    active: Option<ActiveView>,
}

/// What the handle and the writer thread share.
pub(crate) struct Inner {
    cfg: ArchiveCfg,
    tuning: Tuning,
    hasher: Hasher,
    state: RwLock<State>,
    counters: Counters,
    /// Held by the writer while it handles a message; tests hold it to pause the writer.
    gate: Mutex<()>,
    retention_ms: AtomicU64,
    max_bytes: AtomicU64,
    clock: Clock,
    cache: BlockCache,
    /// `<dir>/lock`, held until the archive is closed (its writer stopped) or dropped.
    lock: Mutex<Option<std::fs::File>>,
    /// The block being filled, by the decider's thread.
    builder: Mutex<Builder>,
    /// Set when filling a block or the writer panicked: archiving is off, the daemon runs
    /// on (the rescue ring takes dropped traces again).
    off: std::sync::atomic::AtomicBool,
    /// The rescue ring, fed with the dropped traces the archive cannot write ([`spill`]).
    spill: std::sync::OnceLock<Arc<crate::support::rescue::RescueBuffer>>,
}

impl Inner {
    fn segment_bytes(&self) -> u64 {
        self.tuning.segment_bytes.unwrap_or_else(|| {
            let mut c = self.cfg.clone();
            c.max_bytes = self.max_bytes.load(Relaxed);
            c.segment_bytes()
        })
    }

    fn fault(&self) -> std::io::Result<()> {
        match self.tuning.faults.load(Relaxed) {
            0 | 3 => Ok(()),
            1 => Err(std::io::ErrorKind::StorageFull.into()),
            _ => Err(std::io::Error::other("injected write failure")),
        }
    }

    fn sizes(&self) -> ArchiveStats {
        let st = self.state.read();
        let mut s = ArchiveStats::default();
        for seg in &st.sealed {
            s.bytes += seg.bytes();
            s.segments += 1;
            s.traces += u64::from(seg.header.rows);
            if seg.header.rows > 0 {
                s.saw_starts(seg.header.min_start, seg.header.max_start);
            }
        }
        if let Some(a) = &st.active {
            s.bytes += a.index.data_len;
            s.segments += 1;
            s.traces += a.index.rows.len() as u64;
            if !a.index.is_empty() {
                s.saw_starts(a.index.min_start, a.index.max_start);
            }
        }
        s
    }

    /// Every record of a trace, from every segment.
    fn recs_of(&self, id: &TraceId) -> Vec<Rec> {
        let (sealed, mut recs) = {
            let st = self.state.read();
            let recs = st
                .active
                .as_ref()
                .map(|a| a.index.by_id(a.seq, &a.data, id))
                .unwrap_or_default();
            (st.sealed.clone(), recs)
        };
        for s in &sealed {
            match s.by_id(id) {
                Ok(r) => recs.extend(r),
                Err(e) => tracing::debug!(seq = s.seq, error = %e, "archive: segment unreadable"),
            }
        }
        recs
    }
}

/// The archive handle: cheap to clone, shared by the decider, the API and the complaints.
#[derive(Clone)]
pub struct Archive {
    handle: Arc<Handle>,
}

struct Handle {
    inner: Arc<Inner>,
    tx: SyncSender<Msg>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Archive {
    /// Opens (creating) the archive in `cfg.dir` and starts its writer thread.
    pub fn open(cfg: ArchiveCfg) -> Result<Archive, ArchiveError> {
        Archive::open_with(cfg, Tuning::default())
    }

    /// [`Archive::open`] with retention measured against `clock`.
    pub fn open_with_clock(cfg: ArchiveCfg, clock: Clock) -> Result<Archive, ArchiveError> {
        Archive::open_with(
            cfg,
            Tuning {
                clock,
                ..Tuning::default()
            },
        )
    }

    /// [`Archive::open`] with tests' and benchmarks' knobs.
    pub fn open_with(cfg: ArchiveCfg, tuning: Tuning) -> Result<Archive, ArchiveError> {
        let dir = cfg.dir.clone();
        let dir_err = |source| ArchiveError::Dir {
            dir: dir.clone(),
            source,
        };
        files::create_dir(&cfg.dir).map_err(dir_err)?;
        let lock = files::lock(&cfg.dir).map_err(dir_err)?;
        let hasher = match &cfg.hash_key {
            Some(k) => Hasher::hmac(k),
            None => Hasher::Seeded(
                keys::load_seed(&cfg.dir, true)
                    .map_err(dir_err)?
                    .expect("created"),
            ),
        };
        let counters = Counters::default();
        let (sealed, next_seq) =
            recover::recover(&cfg.dir, &counters, &hasher, &cfg.attributes).map_err(dir_err)?;
        let inner = Arc::new(Inner {
            retention_ms: AtomicU64::new(cfg.retention.as_millis() as u64),
            max_bytes: AtomicU64::new(cfg.max_bytes),
            clock: Arc::clone(&tuning.clock),
            hasher,
            state: RwLock::new(State {
                sealed,
                active: None,
            }),
            counters,
            gate: Mutex::new(()),
            cache: BlockCache::default(),
            lock: Mutex::new(Some(lock)),
            builder: Mutex::default(),
            off: Default::default(),
            spill: Default::default(),
            tuning,
            cfg,
        });
        let (tx, rx) = sync_channel(inner.tuning.queue);
        let mut w = Writer::new(Arc::clone(&inner), next_seq);
        w.enforce();
        let shared = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("casefile-archive".into())
            .spawn(move || {
                // A bug here must cost the archive, never the daemon: later records are
                // then dropped (the queue is closed) and the rescue ring takes them.
                let run = std::panic::AssertUnwindSafe(|| w.run(rx));
                if std::panic::catch_unwind(run).is_err() {
                    shared.off.store(true, Relaxed);
                    tracing::error!("archive: the writer stopped after a panic; archiving is off");
                }
            })
            .map_err(dir_err)?;
        Ok(Archive {
            handle: Arc::new(Handle {
                inner,
                tx,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn inner(&self) -> &Inner {
        &self.handle.inner
    }

    /// How the archive hashes values into keys (the index hashes the same way once
    /// [`crate::support::Hooks::with_archive`] hands it over).
    pub fn key_hash(&self) -> crate::support::index::KeyHash {
        self.inner().hasher.clone()
    }

    /// The on-disk key of a lookup of `attribute` = `value`.
    pub fn key(&self, attribute: &str, value: &str) -> Key {
        self.inner()
            .hasher
            .key(attribute.as_bytes(), value.as_bytes())
    }

    /// Live reload of the bounds (enforced by the writer within a few seconds).
    pub fn set_bounds(&self, retention: Duration, max_bytes: u64) {
        let inner = self.inner();
        inner
            .retention_ms
            .store(retention.as_millis() as u64, Relaxed);
        inner.max_bytes.store(max_bytes, Relaxed);
    }

    pub fn stats(&self) -> ArchiveStats {
        let inner = self.inner();
        let c = &inner.counters;
        ArchiveStats {
            writes: c.writes.load(Relaxed),
            write_errors: c.write_errors.load(Relaxed),
            dropped_busy: c.dropped_busy.load(Relaxed),
            dropped_disk_full: c.dropped_disk_full.load(Relaxed),
            dropped_write_error: c.dropped_write_error.load(Relaxed),
            lookups: c.lookups.load(Relaxed),
            evicted_retention: c.evicted_retention.load(Relaxed),
            evicted_bytes: c.evicted_bytes.load(Relaxed),
            corrupt_records: c.corrupt.load(Relaxed),
            spilled_to_ring: c.spilled.load(Relaxed),
            ..inner.sizes()
        }
    }

    /// Blocks until everything handed in so far is written and searchable, and retention
    /// has run (tests, shutdown).
    pub fn flush(&self) {
        let (ack, done) = sync_channel(1);
        if self.handle.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Flushes, seals the active segment and stops the writer. Later records are ignored.
    pub fn close(&self) {
        let (ack, done) = sync_channel(1);
        if self.handle.tx.send(Msg::Close(ack)).is_ok() {
            let _ = done.recv();
        }
        if let Some(t) = self.handle.thread.lock().take() {
            let _ = t.join();
        }
        // Nothing writes any more: another archive may open the directory.
        self.inner().lock.lock().take();
    }

    /// Tests: stops the writer as a kill would (pending block lost, segment unsealed).
    #[cfg(test)]
    fn abort(&self) {
        let _ = self.handle.tx.send(Msg::Abort);
        if let Some(t) = self.handle.thread.lock().take() {
            let _ = t.join();
        }
        self.inner().lock.lock().take();
    }

    /// Tests: holds the writer still while the guard lives.
    #[cfg(test)]
    fn pause(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.inner().gate.lock()
    }
}
