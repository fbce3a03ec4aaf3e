//! Reading a data file's records (`[u32 len][u32 crc32][zstd frame]`, the write-ahead log's
//! framing) when re-indexing it. Unlike the log, which stops at the first damaged record
//! (what follows in a log is not trusted), a damaged record here costs only itself: the
//! reader looks for the next zstd frame whose record header and checksum hold and goes on
//! from there, so a flipped byte in the middle of a segment loses one block, not the rest.

use std::io;
use std::path::Path;

use crate::storage::wal::{HEADER, MAX_RECORD};

/// Every zstd frame begins with these bytes: where a record may start again after damage.
const ZSTD_MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();

/// What reading a data file found besides its records.
pub(crate) struct Read {
    /// Damaged stretches skipped (a torn or zero-filled tail counts as one).
    pub damaged: u64,
    /// Where the last intact record ends: what follows is damage only.
    pub good_len: u64,
}

/// Calls `each(offset of the payload, payload)` with every intact record of the file.
pub(crate) fn read(path: &Path, mut each: impl FnMut(u64, &[u8])) -> io::Result<Read> {
    let bytes = std::fs::read(path)?;
    let mut out = Read {
        damaged: 0,
        good_len: 0,
    };
    let mut at = 0usize;
    while at < bytes.len() {
        match record_at(&bytes, at) {
            Some(payload) => {
                each((at + HEADER) as u64, payload);
                at += HEADER + payload.len();
                out.good_len = at as u64;
            }
            None => {
                out.damaged += 1;
                match next_record(&bytes, at + 1) {
                    Some(next) => at = next,
                    None => break,
                }
            }
        }
    }
    Ok(out)
}

/// The payload of an intact record at `at`.
fn record_at(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let header = bytes.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    // Zero-filled space (left by some file systems after a crash) is not a record.
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// The first intact record starting at or after `from`.
fn next_record(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from + HEADER;
    while let Some(i) = bytes.get(at..)?.windows(4).position(|w| w == ZSTD_MAGIC) {
        let start = at + i - HEADER;
        if record_at(bytes, start).is_some() {
            return Some(start);
        }
        at += i + 1;
    }
    None
}

/// Checks a record read back whole (header and payload): its payload when intact.
pub(crate) fn checked(record: &[u8]) -> Option<&[u8]> {
    let payload = record_at(record, 0)?;
    (payload.len() + HEADER == record.len()).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut r = (payload.len() as u32).to_le_bytes().to_vec();
        r.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        r.extend_from_slice(payload);
        r
    }

    fn frame(n: u8) -> Vec<u8> {
        zstd::bulk::compress(&vec![n; 300 + usize::from(n)], 1).unwrap()
    }

    fn read_all(bytes: &[u8]) -> (Vec<(u64, Vec<u8>)>, Read) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        std::fs::write(&p, bytes).unwrap();
        let mut got = Vec::new();
        let r = read(&p, |at, payload| got.push((at, payload.to_vec()))).unwrap();
        (got, r)
    }

    /// Damage in the middle costs its record only; at the end, it is cut.
    #[test]
    fn a_damaged_record_costs_itself_only() {
        let frames: Vec<Vec<u8>> = (1..=4).map(frame).collect();
        let mut file = Vec::new();
        let mut starts = Vec::new();
        for f in &frames {
            starts.push(file.len());
            file.extend(record(f));
        }
        let (got, r) = read_all(&file);
        assert_eq!(got.len(), 4);
        assert_eq!((r.damaged, r.good_len), (0, file.len() as u64));
        // A flipped byte in the second payload, then a bad length in the third's header.
        let mut bad = file.clone();
        bad[starts[1] + HEADER + 5] ^= 0x40;
        bad[starts[2]] ^= 0x01;
        let (got, r) = read_all(&bad);
        let payloads: Vec<&Vec<u8>> = got.iter().map(|(_, p)| p).collect();
        assert_eq!(payloads, [&frames[0], &frames[3]]);
        assert_eq!(
            got[1].0,
            (starts[3] + HEADER) as u64,
            "offsets as in the file"
        );
        assert_eq!(r.damaged, 1, "one damaged stretch");
        assert_eq!(r.good_len, file.len() as u64);
        // A torn tail and zeros after the last record.
        let mut tail = file[..starts[3] + 20].to_vec();
        tail.extend([0u8; 64]);
        let (got, r) = read_all(&tail);
        assert_eq!(got.len(), 3);
        assert_eq!((r.damaged, r.good_len), (1, starts[3] as u64));
        // A whole record, checked when read back.
        assert_eq!(checked(&record(&frames[0])), Some(&frames[0][..]));
        assert_eq!(checked(&bad[starts[1]..starts[2]]), None);
    }
}
