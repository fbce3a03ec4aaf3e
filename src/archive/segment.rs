//! A segment's index: in memory while the segment is written ([`MemIndex`]), on disk once
//! it is sealed ([`Sealed`], read with positioned reads: only the header is read at open,
//! rows and keys are found by interpolation search, since trace ids and keys are
//! uniform), and rebuilt from the data file when it is missing or damaged ([`scan`]).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use foldhash::HashMap;

use super::files;
use super::format::{self, Entry, Header, Row, BLOCK_ROW, HEADER_LEN, KEY_ROW, ROW};
use super::pack;
use crate::model::TraceId;
use crate::support::index::Key;

/// A record's root service, root name and reasons (comma-separated).
pub(crate) type Names = [Arc<str>; 3];

/// One trace record found by a search, with what is needed to read its entry.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    /// Segment and position: records of a trace are merged in this order.
    pub seq: u64,
    pub pos: u32,
    pub row: Row,
    /// Root service, root name, reasons (comma-separated).
    pub names: Names,
    pub data: Arc<PathBuf>,
    /// The block's payload in the data file.
    pub block_off: u64,
    pub block_len: u32,
}

/// No earlier row or link.
const NONE: u32 = u32::MAX;

/// The index of a segment being written (or re-indexed).
#[derive(Default)]
pub(crate) struct MemIndex {
    /// In write order.
    pub rows: Vec<Row>,
    /// A trace id's last row; `prev[row]` is the trace's row before it (chains instead of
    /// a vector per trace: no allocation per row).
    by_id: HashMap<TraceId, u32>,
    prev: Vec<u32>,
    /// A key's last link in `links`: (row, previous link of the key).
    by_key: HashMap<Key, u32>,
    links: Vec<(u32, u32)>,
    /// (payload offset, payload length) in the data file.
    pub blocks: Vec<(u64, u32)>,
    /// (service, name, reasons) of the rows.
    strings: Vec<Names>,
    /// By the three strings, length-prefixed (looked up without allocating).
    string_ids: HashMap<Box<[u8]>, u32>,
    scratch: Vec<u8>,
    pub min_start: u64,
    pub max_start: u64,
    /// When a block was last added (Unix ns, the archive's clock; a re-indexed file's
    /// modification time): the segment's age for retention.
    pub written: u64,
    /// Bytes of the data file the index covers.
    pub data_len: u64,
}

impl MemIndex {
    fn names(&mut self, e: &Entry<'_>) -> u32 {
        let parts = [e.service, e.name, e.reasons];
        self.scratch.clear();
        for p in parts {
            self.scratch
                .extend_from_slice(&(p.len() as u32).to_le_bytes());
            self.scratch.extend_from_slice(p.as_bytes());
        }
        if let Some(&i) = self.string_ids.get(&self.scratch[..]) {
            return i;
        }
        let i = self.strings.len() as u32;
        self.strings.push(parts.map(Arc::from));
        self.string_ids.insert(self.scratch.as_slice().into(), i);
        i
    }

    /// The rows of a chain ending at `last`, in write order.
    fn chain(&self, mut at: u32, link: impl Fn(u32) -> (u32, u32)) -> Vec<u32> {
        let mut out = Vec::new();
        while at != NONE {
            let (row, prev) = link(at);
            out.push(row);
            at = prev;
        }
        out.reverse();
        out
    }

    fn rows_of_id(&self, id: &TraceId) -> Vec<u32> {
        let last = self.by_id.get(id).copied().unwrap_or(NONE);
        self.chain(last, |r| (r, self.prev[r as usize]))
    }

    fn rows_of_key(&self, key: &Key) -> Vec<u32> {
        let last = self.by_key.get(key).copied().unwrap_or(NONE);
        self.chain(last, |l| self.links[l as usize])
    }

    /// Adds a block written at `offset` (its payload), whose entries are `entries`.
    /// The keys of `entries[i]` are `keys[ends[i - 1]..ends[i]]`.
    pub(crate) fn add_block(
        &mut self,
        offset: u64,
        len: u32,
        entries: &[(Entry<'_>, u32, u32)],
        keys: &[Key],
        ends: &[u32],
    ) {
        let block = self.blocks.len() as u32;
        self.blocks.push((offset, len));
        self.data_len = self.data_len.max(offset + u64::from(len));
        let mut from = 0usize;
        for ((e, off, _), &end) in entries.iter().zip(ends) {
            let end = end as usize;
            let keys = &keys[from..end];
            from = end;
            let row = Row {
                id: e.id,
                start: e.start,
                end: e.end,
                span_count: e.span_count,
                decision: e.decision,
                flags: e.flags,
                names: self.names(e),
                block,
                off: *off,
            };
            if self.rows.is_empty() {
                self.min_start = row.start;
                self.max_start = row.start;
            }
            self.min_start = self.min_start.min(row.start);
            self.max_start = self.max_start.max(row.start);
            let i = self.rows.len() as u32;
            self.rows.push(row);
            let last = self.by_id.entry(e.id).or_insert(NONE);
            self.prev.push(*last);
            *last = i;
            for key in keys {
                let link = self.links.len() as u32;
                let last = self.by_key.entry(*key).or_insert(NONE);
                if *last != NONE && self.links[*last as usize].0 == i {
                    continue;
                }
                self.links.push((i, *last));
                *last = link;
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn rec(&self, seq: u64, data: &Arc<PathBuf>, i: u32) -> Rec {
        let row = self.rows[i as usize];
        let (block_off, block_len) = self.blocks[row.block as usize];
        Rec {
            seq,
            pos: i,
            row,
            names: self.strings[row.names as usize].clone(),
            data: Arc::clone(data),
            block_off,
            block_len,
        }
    }

    pub(crate) fn by_id(&self, seq: u64, data: &Arc<PathBuf>, id: &TraceId) -> Vec<Rec> {
        self.rows_of_id(id)
            .into_iter()
            .map(|i| self.rec(seq, data, i))
            .collect()
    }

    pub(crate) fn by_key(&self, seq: u64, data: &Arc<PathBuf>, key: &Key) -> Vec<Rec> {
        self.rows_of_key(key)
            .into_iter()
            .map(|i| self.rec(seq, data, i))
            .collect()
    }

    pub(crate) fn all(&self, seq: u64, data: &Arc<PathBuf>) -> Vec<Rec> {
        (0..self.rows.len() as u32)
            .map(|i| self.rec(seq, data, i))
            .collect()
    }

    /// Writes the index file for the data file (temp file, then rename): rows sorted by
    /// trace id (equal ids in write order), keys sorted. Returns the header.
    pub(crate) fn write(&self, path: &Path) -> io::Result<Header> {
        let mut order: Vec<u32> = (0..self.rows.len() as u32).collect();
        order.sort_by_key(|&i| self.rows[i as usize].id); // stable: equal ids keep write order
        let mut new_pos = vec![0u32; self.rows.len()];
        for (n, &i) in order.iter().enumerate() {
            new_pos[i as usize] = n as u32;
        }
        let mut keys: Vec<(Key, u32)> = Vec::with_capacity(self.links.len());
        for (k, &last) in &self.by_key {
            let mut at = last;
            while at != NONE {
                let (row, prev) = self.links[at as usize];
                keys.push((*k, new_pos[row as usize]));
                at = prev;
            }
        }
        keys.sort_unstable();
        let mut h = Header {
            data_len: self.data_len,
            rows: self.rows.len() as u32,
            keys: keys.len() as u32,
            blocks: self.blocks.len() as u32,
            strings: self.strings.len() as u32 * 3,
            min_start: self.min_start,
            max_start: self.max_start,
            written: self.written,
            ..Header::default()
        };
        let mut body = Vec::with_capacity(
            self.rows.len() * ROW + keys.len() * KEY_ROW + self.blocks.len() * BLOCK_ROW,
        );
        h.rows_off = HEADER_LEN as u64;
        for &i in &order {
            self.rows[i as usize].put(&mut body);
        }
        h.keys_off = HEADER_LEN as u64 + body.len() as u64;
        for (k, r) in &keys {
            body.extend_from_slice(&k.0);
            body.extend_from_slice(&r.to_le_bytes());
        }
        h.blocks_off = HEADER_LEN as u64 + body.len() as u64;
        for (off, len) in &self.blocks {
            body.extend_from_slice(&off.to_le_bytes());
            body.extend_from_slice(&len.to_le_bytes());
        }
        h.strings_off = HEADER_LEN as u64 + body.len() as u64;
        let mut ends = Vec::with_capacity(self.strings.len() * 4);
        let mut bytes = Vec::new();
        for part in self.strings.iter().flatten() {
            bytes.extend_from_slice(part.as_bytes());
            ends.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        }
        body.extend_from_slice(&ends);
        body.extend_from_slice(&bytes);
        h.file_len = HEADER_LEN as u64 + body.len() as u64;
        let tmp = path.with_extension("index.tmp");
        let mut f = files::create(&tmp)?;
        f.write_all(&h.encode())?;
        f.write_all(&body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        Ok(h)
    }
}

/// What re-reading a data file found.
pub(crate) struct Scanned {
    pub index: MemIndex,
    /// Records not read: a torn, corrupt or zero-filled tail (one), or a checksummed record
    /// that does not decompress or parse.
    pub corrupt: u64,
    /// Where the intact part ends.
    pub good_len: u64,
}

/// Re-indexes a data file from its blocks, up to its last complete, checksummed record.
/// Derives the keys of spans (for entries with [`format::KEYS_IN_SPANS`]).
pub(crate) type Rekey<'a> = &'a dyn Fn(&[crate::model::Span]) -> Vec<Key>;

/// Re-indexes a data file; without `rekey`, entries whose keys are in their spans get none
/// (offline reading, which finds traces by id only).
pub(crate) fn scan(path: &Path, rekey: Option<Rekey<'_>>) -> io::Result<Scanned> {
    let mut index = MemIndex::default();
    let mut corrupt = 0;
    let read = super::records::read(path, |offset, payload| {
        let block = format::decompress(payload);
        let split = block.as_deref().and_then(pack::split);
        let Some((dict, entries)) = split.and_then(|(d, area)| Some((d, format::entries(area)?)))
        else {
            corrupt += 1;
            return;
        };
        let mut keys: Vec<Key> = Vec::new();
        let mut ends: Vec<u32> = Vec::with_capacity(entries.len());
        for (e, _, _) in &entries {
            match rekey {
                Some(rekey) if e.flags & format::KEYS_IN_SPANS != 0 => {
                    if let Some(spans) = pack::unpack(&e.id, e.start, e.spans, &dict) {
                        keys.extend(rekey(&spans));
                    }
                }
                _ => keys.extend(e.keys.iter().map(|(_, k)| *k)),
            }
            ends.push(keys.len() as u32);
        }
        index.add_block(offset, payload.len() as u32, &entries, &keys, &ends);
    })?;
    corrupt += read.damaged;
    let at = read.good_len;
    index.data_len = at;
    index.written = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
    Ok(Scanned {
        index,
        corrupt,
        good_len: at,
    })
}

/// A sealed segment: its header in memory, everything else read on demand.
pub(crate) struct Sealed {
    pub seq: u64,
    pub data: Arc<PathBuf>,
    pub index: PathBuf,
    /// The index file, open for positioned reads (a deleted segment's space is freed once
    /// the last reader lets go of it).
    file: File,
    pub header: Header,
    /// The string table, read at first use (a few KiB).
    strings: OnceLock<Vec<Names>>,
}

impl Sealed {
    /// Opens the index of `seq`: None when it is missing, damaged, or does not describe
    /// the data file as it is.
    pub(crate) fn open(dir: &Path, seq: u64) -> Option<Sealed> {
        let index = files::index_path(dir, seq);
        let data = files::data_path(dir, seq);
        let f = File::open(&index).ok()?;
        let len = f.metadata().ok()?.len();
        let header = Header::decode(&files::read_at(&f, 0, HEADER_LEN).ok()?)?;
        if header.file_len != len || header.data_len != files::size(&data) {
            return None;
        }
        Some(Sealed {
            seq,
            data: Arc::new(data),
            index,
            file: f,
            header,
            strings: OnceLock::new(),
        })
    }

    /// Bytes on disk (data and index).
    pub(crate) fn bytes(&self) -> u64 {
        self.header.data_len + self.header.file_len
    }

    fn strings(&self, f: &File) -> io::Result<&Vec<Names>> {
        if let Some(s) = self.strings.get() {
            return Ok(s);
        }
        let h = &self.header;
        let n = h.strings as usize;
        let raw = files::read_at(f, h.strings_off, (h.file_len - h.strings_off) as usize)?;
        let bad = || io::Error::other("damaged string table");
        let (ends, bytes) = raw.split_at_checked(n * 4).ok_or_else(bad)?;
        let mut parts = Vec::with_capacity(n);
        let mut from = 0usize;
        for c in ends.chunks_exact(4) {
            let to = u32::from_le_bytes(c.try_into().expect("4 bytes")) as usize;
            let s = bytes
                .get(from..to)
                .and_then(|b| std::str::from_utf8(b).ok());
            parts.push(Arc::<str>::from(s.ok_or_else(bad)?));
            from = to;
        }
        let out = parts
            .chunks_exact(3)
            .map(|p| [Arc::clone(&p[0]), Arc::clone(&p[1]), Arc::clone(&p[2])])
            .collect();
        Ok(self.strings.get_or_init(|| out))
    }

    /// The first position in a sorted table of `n` rows of `size` bytes at `off` whose
    /// first 16 bytes are >= `target`, and the rows from there on that start with
    /// `target`. Interpolation while the range is large (ids and keys are uniform), with
    /// a fall-back to bisection, then one read of the remaining range.
    fn search(
        f: &File,
        off: u64,
        n: u32,
        size: usize,
        target: &[u8; 16],
    ) -> io::Result<(u32, Vec<Vec<u8>>)> {
        let val = |b: &[u8]| u128::from_be_bytes(b[..16].try_into().expect("16 bytes"));
        let t = val(target);
        let (mut lo, mut hi) = (0u32, n);
        let (mut vlo, mut vhi) = (0u128, u128::MAX);
        let mut probes = 0;
        while hi - lo > 64 {
            probes += 1;
            let span = (hi - lo) as u128;
            let g = if probes <= 6 && vhi > vlo && t >= vlo {
                let frac = (t - vlo) / ((vhi - vlo) / span).max(1);
                lo + (frac.min(span - 1) as u32)
            } else {
                lo + (hi - lo) / 2
            };
            let v = val(&files::read_at(f, off + u64::from(g) * size as u64, 16)?);
            if v < t {
                lo = g + 1;
                vlo = v;
            } else {
                hi = g;
                vhi = v;
            }
        }
        let mut out = Vec::new();
        let mut at = lo;
        let mut first = None;
        loop {
            let take = (hi - at + 16).min(n - at);
            if take == 0 {
                break;
            }
            let chunk = files::read_at(f, off + u64::from(at) * size as u64, take as usize * size)?;
            let mut past = false;
            for (i, r) in chunk.chunks_exact(size).enumerate() {
                let v = val(r);
                if v < t {
                    continue;
                }
                if v > t {
                    past = true;
                    break;
                }
                first.get_or_insert(at + i as u32);
                out.push(r.to_vec());
            }
            at += take;
            if past || at >= n {
                break;
            }
            hi = at;
        }
        Ok((first.unwrap_or(lo), out))
    }

    fn rec(&self, f: &File, pos: u32, row: Row) -> io::Result<Rec> {
        let strings = self.strings(f)?;
        let s = |i: u32| {
            strings
                .get(i as usize)
                .cloned()
                .ok_or_else(|| io::Error::other("damaged row"))
        };
        if row.block >= self.header.blocks {
            return Err(io::Error::other("damaged row"));
        }
        let b = files::read_at(
            f,
            self.header.blocks_off + u64::from(row.block) * BLOCK_ROW as u64,
            BLOCK_ROW,
        )?;
        Ok(Rec {
            seq: self.seq,
            pos,
            row,
            names: s(row.names)?,
            data: Arc::clone(&self.data),
            block_off: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            block_len: u32::from_le_bytes(b[8..].try_into().expect("4 bytes")),
        })
    }

    pub(crate) fn by_id(&self, id: &TraceId) -> io::Result<Vec<Rec>> {
        let f = &self.file;
        let h = &self.header;
        let (first, rows) = Self::search(f, h.rows_off, h.rows, ROW, id)?;
        rows.iter()
            .enumerate()
            .map(|(i, r)| self.rec(f, first + i as u32, Row::parse(r)))
            .collect()
    }

    pub(crate) fn by_key(&self, key: &Key) -> io::Result<Vec<Rec>> {
        let f = &self.file;
        let h = &self.header;
        let (_, keys) = Self::search(f, h.keys_off, h.keys, KEY_ROW, &key.0)?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let pos = u32::from_le_bytes(k[16..20].try_into().expect("4 bytes"));
            if pos >= h.rows {
                return Err(io::Error::other("damaged key row"));
            }
            let r = files::read_at(f, h.rows_off + u64::from(pos) * ROW as u64, ROW)?;
            out.push(self.rec(f, pos, Row::parse(&r))?);
        }
        Ok(out)
    }

    /// Every record (offline reading).
    pub(crate) fn all(&self) -> io::Result<Vec<Rec>> {
        let f = &self.file;
        let h = &self.header;
        let raw = files::read_at(f, h.rows_off, h.rows as usize * ROW)?;
        raw.chunks_exact(ROW)
            .enumerate()
            .map(|(i, r)| self.rec(f, i as u32, Row::parse(r)))
            .collect()
    }
}
