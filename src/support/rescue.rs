//! Rescue buffer: dropped traces stay, compressed, in a bounded in-memory ring for
//! `rescue_window` (and at most `max_bytes`, oldest out first), so a complaint that
//! arrives after the decision can still bring a trace back and export it.
//!
//! Dropped traces are most of the traffic, so inserting is kept cheap: each trace's spans
//! are appended to an open staging block as records `resource index, scope index, length,
//! span bytes`, the resource and scope messages going once per block into the block's
//! dictionary (deduplicated by content); a map records where each trace lies. A full
//! staging block (256 KiB by default), or one older than a second, is sealed: compressed
//! with LZ4 as a whole, one compression per block, and pushed on a ring of sealed blocks.
//! Blocks leave the ring when their newest trace is older than the window, or oldest first
//! when the held bytes exceed the bound. `take` decompresses the block (the last one
//! decompressed is cached), reads the trace's records and rebuilds its spans, with their
//! resource and scope, through `encode_request` and `decode_request`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use lz4_flex::block::{
    compress_into_with_table, decompress, get_maximum_output_size, CompressTable,
};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::model::{Origin, Shared, Span, StatusCode, TraceId};
use crate::wire::decode::decode_request;
use crate::wire::encode::encode_request;
use crate::wire::{put_varint, varint_len};

/// Size at which the staging block is sealed, by default.
pub const DEFAULT_BLOCK_SIZE: usize = 256 << 10;
/// Age of its first trace at which the staging block is sealed even if not full, so memory
/// stays compressed when traffic is light.
pub const SEAL_AFTER: Duration = Duration::from_secs(1);
/// Bytes of bookkeeping counted per held trace chunk: its id in the block's list and its
/// entry in the location map.
const ENTRY_OVERHEAD: usize = 48;

/// Counts for tests and the support API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RescueStats {
    pub held_traces: usize,
    pub held_bytes: usize,
    /// Sealed (compressed) blocks in the ring, not counting the staging block.
    pub sealed_blocks: usize,
    /// Uncompressed bytes of the sealed blocks (for the compression ratio).
    pub sealed_raw_bytes: usize,
    /// Compressed bytes of the sealed blocks.
    pub sealed_compressed_bytes: usize,
    pub rescued: u64,
    /// Traces evicted because their block left the window.
    pub evicted_window: u64,
    /// Traces evicted (or refused, when larger than half the bound) for the byte bound.
    pub evicted_bytes: u64,
}

impl RescueStats {
    pub fn evicted(&self) -> u64 {
        self.evicted_window + self.evicted_bytes
    }
}

/// Where one chunk of a trace lies: block sequence number, byte range in the block.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seq: u64,
    offset: u32,
    len: u32,
}

struct Block {
    seq: u64,
    /// Time of the newest trace in the block: the block stays for the window after it.
    newest: Instant,
    /// Trace ids with a chunk in this block (to unmap them on eviction).
    ids: Vec<TraceId>,
    /// LZ4 block of `raw_len` bytes.
    data: Box<[u8]>,
    raw_len: usize,
    /// Resource and scope messages the records refer to.
    dict: Box<[Arc<Shared>]>,
    dict_bytes: usize,
}

impl Block {
    fn cost(&self) -> usize {
        self.data.len() + self.dict_bytes + self.ids.len() * ENTRY_OVERHEAD
    }
}

struct Staging {
    seq: u64,
    first: Option<Instant>,
    newest: Option<Instant>,
    ids: Vec<TraceId>,
    /// Records: per span, varint resource index, varint scope index, varint length, bytes.
    buf: Vec<u8>,
    dict: Dict,
}

#[derive(Clone, Copy)]
enum Reason {
    Window,
    Bytes,
}

struct State {
    limits: Limits,
    /// First (oldest) chunk of every held trace.
    map: HashMap<TraceId, Loc>,
    /// Later chunks of traces inserted more than once (late spans), oldest first. Rare.
    extra: HashMap<TraceId, VecDeque<Loc>>,
    blocks: VecDeque<Block>,
    staging: Staging,
    /// Sum of `Block::cost` over `blocks`.
    sealed_bytes: usize,
    sealed_raw_bytes: usize,
    sealed_compressed_bytes: usize,
    /// The most recently decompressed block.
    cache: Option<(u64, Vec<u8>)>,
    /// Compression output and hash table, reused from block to block.
    scratch: Vec<u8>,
    table: CompressTable,
    rescued: u64,
    evicted_window: u64,
    evicted_bytes: u64,
}

/// How long and how much the ring holds; a reload may change them (under the state lock).
#[derive(Clone, Copy)]
struct Limits {
    window: Duration,
    max_bytes: usize,
    /// The block size asked for at creation (before the cap by `max_bytes`).
    wanted_block_size: usize,
    block_size: usize,
    seal_after: Duration,
}

impl Limits {
    fn new(window: Duration, max_bytes: usize, wanted_block_size: usize) -> Limits {
        Limits {
            window,
            max_bytes,
            wanted_block_size,
            block_size: wanted_block_size.min(max_bytes / 4).max(1),
            seal_after: SEAL_AFTER.min(window),
        }
    }
}

/// The ring of dropped traces. All methods take `&self`; one mutex guards the state.
pub struct RescueBuffer {
    enabled: bool,
    state: Mutex<State>,
}

impl RescueBuffer {
    /// A buffer holding dropped traces for `window`, at most `max_bytes`. A zero window or
    /// a zero bound disables it.
    pub fn new(window: Duration, max_bytes: usize) -> RescueBuffer {
        RescueBuffer::with_block_size(window, max_bytes, DEFAULT_BLOCK_SIZE)
    }

    /// As [`RescueBuffer::new`] with a given staging block size. The block size is capped
    /// at a quarter of `max_bytes`, so the ring always holds several blocks.
    pub fn with_block_size(window: Duration, max_bytes: usize, block_size: usize) -> RescueBuffer {
        let enabled = !window.is_zero() && max_bytes > 0;
        RescueBuffer {
            enabled,
            state: Mutex::new(State {
                limits: Limits::new(window, max_bytes, block_size),
                map: HashMap::new(),
                extra: HashMap::new(),
                blocks: VecDeque::new(),
                staging: Staging {
                    seq: 0,
                    first: None,
                    newest: None,
                    ids: Vec::new(),
                    buf: Vec::new(),
                    dict: Dict::default(),
                },
                sealed_bytes: 0,
                sealed_raw_bytes: 0,
                sealed_compressed_bytes: 0,
                cache: None,
                scratch: Vec::new(),
                table: CompressTable::default(),
                rescued: 0,
                evicted_window: 0,
                evicted_bytes: 0,
            }),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn window(&self) -> Duration {
        self.state.lock().limits.window
    }

    /// Changes the window and the byte bound of an enabled buffer (a disabled one stays
    /// off: zero values are ignored). Traces past the new bounds leave at the next insert
    /// or expiry.
    pub fn set_limits(&self, window: Duration, max_bytes: usize) {
        if !self.enabled || window.is_zero() || max_bytes == 0 {
            return;
        }
        let mut st = self.state.lock();
        st.limits = Limits::new(window, max_bytes, st.limits.wanted_block_size);
    }

    /// Keeps one dropped trace. Inserting a trace id already held adds the spans to it.
    pub fn insert(&self, trace_id: TraceId, spans: &[Span], now: Instant) {
        self.insert_many(std::iter::once((trace_id, spans)), now);
    }

    /// Keeps a batch of dropped traces, taking the lock once.
    pub fn insert_many<'a>(
        &self,
        traces: impl IntoIterator<Item = (TraceId, &'a [Span])>,
        now: Instant,
    ) {
        if !self.enabled {
            return;
        }
        let mut traces = traces.into_iter().filter(|(_, spans)| !spans.is_empty());
        let Some(first) = traces.next() else {
            return;
        };
        let mut st = self.state.lock();
        let mut evicted = [0u64; 2];
        self.seal_if_older(&mut st, now);
        for (id, spans) in std::iter::once(first).chain(traces) {
            let len: usize = spans
                .iter()
                .map(|s| s.bytes.len() + 4 + varint_len(s.bytes.len() as u64))
                .sum();
            // A trace that alone would take most of the bound is not kept.
            if len > st.limits.max_bytes / 2 || len > (u32::MAX / 2) as usize {
                st.evicted_bytes += 1;
                evicted[1] += 1;
                continue;
            }
            if st.staging.buf.len() + len > u32::MAX as usize {
                seal(&mut st);
            }
            let s = &mut st.staging;
            let offset = s.buf.len();
            s.buf.reserve(len);
            for span in spans {
                let r = s.dict.index(span.resource(), 0);
                let c = s.dict.index(span.scope(), 1);
                put_varint(&mut s.buf, u64::from(r));
                put_varint(&mut s.buf, u64::from(c));
                put_varint(&mut s.buf, span.bytes.len() as u64);
                s.buf.extend_from_slice(&span.bytes);
            }
            let loc = Loc {
                seq: s.seq,
                offset: offset as u32,
                len: (s.buf.len() - offset) as u32,
            };
            if s.first.is_none() {
                s.first = Some(now);
            }
            s.newest = Some(now);
            s.ids.push(id);
            match st.map.entry(id) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(loc);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    st.extra.entry(id).or_default().push_back(loc);
                }
            }
            // Offsets fit in u32: a block is sealed before it would pass u32::MAX.
            if st.staging.buf.len() >= st.limits.block_size {
                seal(&mut st);
                evicted[1] += self.evict_bytes(&mut st) as u64;
            }
        }
        evicted[0] += self.evict_window(&mut st, now) as u64;
        evicted[1] += self.evict_bytes(&mut st) as u64;
        let (bytes, traces) = (self.held_bytes_of(&st), st.map.len());
        drop(st);
        publish(bytes, traces, evicted);
    }

    /// Whether the trace is held (and can be taken).
    pub fn contains(&self, trace_id: &TraceId) -> bool {
        self.enabled && self.state.lock().map.contains_key(trace_id)
    }

    /// Takes a held trace out: its spans, with their resource and scope. A trace can be
    /// taken once; `None` when it is not held (never dropped, evicted or already taken).
    pub fn take(&self, trace_id: &TraceId) -> Option<Vec<Span>> {
        self.read(trace_id, true)
    }

    /// A held trace's spans, left held (for the support API's case file).
    pub fn peek(&self, trace_id: &TraceId) -> Option<Vec<Span>> {
        self.read(trace_id, false)
    }

    fn read(&self, trace_id: &TraceId, take: bool) -> Option<Vec<Span>> {
        if !self.enabled {
            return None;
        }
        let mut st = self.state.lock();
        let locs = if take {
            let first = st.map.remove(trace_id)?;
            let mut locs = vec![first];
            if let Some(more) = st.extra.remove(trace_id) {
                locs.extend(more);
            }
            locs
        } else {
            let mut locs = vec![*st.map.get(trace_id)?];
            locs.extend(st.extra.get(trace_id).into_iter().flatten().copied());
            locs
        };
        let mut records: Vec<Record> = Vec::new();
        for loc in &locs {
            let range = loc.offset as usize..(loc.offset + loc.len) as usize;
            if loc.seq == st.staging.seq {
                let s = &st.staging;
                read_records(&s.buf[range], &s.dict.items, &mut records);
                continue;
            }
            let Some(front) = st.blocks.front() else {
                continue;
            };
            let Some(idx) = loc.seq.checked_sub(front.seq) else {
                continue;
            };
            let cached = matches!(&st.cache, Some((seq, _)) if *seq == loc.seq);
            let Some(block) = st.blocks.get(idx as usize) else {
                continue;
            };
            debug_assert_eq!(block.seq, loc.seq);
            if !cached {
                match decompress(&block.data, block.raw_len) {
                    Ok(raw) => st.cache = Some((loc.seq, raw)),
                    Err(e) => {
                        tracing::error!(error = %e, "rescue: corrupt block");
                        continue;
                    }
                }
            }
            if let (Some((_, raw)), Some(block)) = (&st.cache, st.blocks.get(idx as usize)) {
                read_records(&raw[range], &block.dict, &mut records);
            }
        }
        if take {
            st.rescued += 1;
            let (bytes, traces) = (self.held_bytes_of(&st), st.map.len());
            drop(st);
            metrics::counter!("casefile_rescue_rescued_traces_total").increment(1);
            publish(bytes, traces, [0, 0]);
        } else {
            drop(st);
        }
        // Rebuilt through the wire so every field read at ingest is read again.
        let shells: Vec<Span> = records
            .into_iter()
            .map(|(resource, scope, bytes)| Span {
                start_unix_nano: 0,
                end_unix_nano: 0,
                flags: 0,
                status: StatusCode::Unset,
                root: false,
                origin: Origin::new(resource, scope),
                bytes,
            })
            .collect();
        match decode_request(&encode_request(&shells)) {
            Ok(d) => Some(d.spans),
            Err(e) => {
                tracing::error!(error = %e, "rescue: cannot decode a rescued trace");
                None
            }
        }
    }

    /// Evicts blocks whose newest trace is older than the window, seals a staging block
    /// older than a second and enforces the byte bound. Returns the traces evicted.
    pub fn expire(&self, now: Instant) -> usize {
        if !self.enabled {
            return 0;
        }
        let mut st = self.state.lock();
        self.seal_if_older(&mut st, now);
        let w = self.evict_window(&mut st, now);
        let b = self.evict_bytes(&mut st);
        // Release the decompressed copy; a burst of takes has had its use of it.
        st.cache = None;
        let (bytes, traces) = (self.held_bytes_of(&st), st.map.len());
        drop(st);
        publish(bytes, traces, [w as u64, b as u64]);
        w + b
    }

    /// Bytes held: compressed sealed blocks, the staging block and per-trace bookkeeping.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes_of(&self.state.lock())
    }

    /// Traces held (that `take` would find).
    pub fn held_traces(&self) -> usize {
        self.state.lock().map.len()
    }

    pub fn stats(&self) -> RescueStats {
        let st = self.state.lock();
        RescueStats {
            held_traces: st.map.len(),
            held_bytes: self.held_bytes_of(&st),
            sealed_blocks: st.blocks.len(),
            sealed_raw_bytes: st.sealed_raw_bytes,
            sealed_compressed_bytes: st.sealed_compressed_bytes,
            rescued: st.rescued,
            evicted_window: st.evicted_window,
            evicted_bytes: st.evicted_bytes,
        }
    }

    fn held_bytes_of(&self, st: &State) -> usize {
        let s = &st.staging;
        st.sealed_bytes + s.buf.len() + s.dict.bytes + s.ids.len() * ENTRY_OVERHEAD
    }

    fn seal_if_older(&self, st: &mut State, now: Instant) {
        if let Some(first) = st.staging.first {
            if now.saturating_duration_since(first) >= st.limits.seal_after {
                seal(st);
            }
        }
    }

    fn evict_window(&self, st: &mut State, now: Instant) -> usize {
        let mut n = 0;
        while let Some(front) = st.blocks.front() {
            if now.saturating_duration_since(front.newest) < st.limits.window {
                break;
            }
            n += evict_front(st, Reason::Window);
        }
        n
    }

    fn evict_bytes(&self, st: &mut State) -> usize {
        let mut n = 0;
        while self.held_bytes_of(st) > st.limits.max_bytes {
            if st.blocks.is_empty() {
                if st.staging.ids.is_empty() {
                    break;
                }
                seal(st);
            }
            n += evict_front(st, Reason::Bytes);
        }
        n
    }
}

/// Compresses the staging block onto the ring and opens the next one.
fn seal(st: &mut State) {
    let s = &mut st.staging;
    let (Some(newest), false) = (s.newest, s.ids.is_empty()) else {
        return;
    };
    let max = get_maximum_output_size(s.buf.len());
    if st.scratch.len() < max {
        st.scratch.resize(max, 0);
    }
    let data: Box<[u8]> = match compress_into_with_table(&s.buf, &mut st.scratch, &mut st.table) {
        Ok(n) => Box::from(&st.scratch[..n]),
        // Cannot happen: the output is sized for the worst case.
        Err(_) => lz4_flex::block::compress(&s.buf).into_boxed_slice(),
    };
    let dict = std::mem::take(&mut s.dict);
    let block = Block {
        seq: s.seq,
        newest,
        ids: std::mem::take(&mut s.ids),
        data,
        raw_len: s.buf.len(),
        dict: dict.items.into_boxed_slice(),
        dict_bytes: dict.bytes,
    };
    s.buf.clear();
    if s.buf.capacity() > 4 * DEFAULT_BLOCK_SIZE {
        s.buf.shrink_to(DEFAULT_BLOCK_SIZE);
    }
    s.seq += 1;
    s.first = None;
    s.newest = None;
    st.sealed_bytes += block.cost();
    st.sealed_raw_bytes += block.raw_len;
    st.sealed_compressed_bytes += block.data.len();
    st.blocks.push_back(block);
}

/// Drops the oldest sealed block and unmaps its traces; returns the traces evicted (a trace
/// with a later chunk in a younger block stays, with that chunk).
fn evict_front(st: &mut State, reason: Reason) -> usize {
    let Some(block) = st.blocks.pop_front() else {
        return 0;
    };
    st.sealed_bytes -= block.cost();
    st.sealed_raw_bytes -= block.raw_len;
    st.sealed_compressed_bytes -= block.data.len();
    if matches!(&st.cache, Some((seq, _)) if *seq == block.seq) {
        st.cache = None;
    }
    let mut n = 0;
    for id in &block.ids {
        let Some(loc) = st.map.get_mut(id) else {
            continue; // taken, or already unmapped (a trace twice in this block)
        };
        if loc.seq > block.seq {
            continue;
        }
        let mut next = None;
        if !st.extra.is_empty() {
            if let Some(q) = st.extra.get_mut(id) {
                while q.front().is_some_and(|l| l.seq <= block.seq) {
                    q.pop_front();
                }
                next = q.pop_front();
                if q.is_empty() {
                    st.extra.remove(id);
                }
            }
        }
        match next {
            Some(l) => *loc = l,
            None => {
                st.map.remove(id);
                n += 1;
            }
        }
    }
    match reason {
        Reason::Window => st.evicted_window += n as u64,
        Reason::Bytes => st.evicted_bytes += n as u64,
    }
    n
}

fn publish(bytes: usize, traces: usize, evicted: [u64; 2]) {
    metrics::gauge!("casefile_rescue_held_bytes").set(bytes as f64);
    metrics::gauge!("casefile_rescue_held_traces").set(traces as f64);
    if evicted[0] > 0 {
        metrics::counter!("casefile_rescue_evicted_traces_total", "reason" => "window")
            .increment(evicted[0]);
    }
    if evicted[1] > 0 {
        metrics::counter!("casefile_rescue_evicted_traces_total", "reason" => "bytes")
            .increment(evicted[1]);
    }
}

mod records;

use records::{read_records, Dict, Record};

#[cfg(test)]
mod tests;
