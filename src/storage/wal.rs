//! The write-ahead log on disk: numbered segment files `wal-<16-digit seq>.log` of framed
//! records, `[u32 len LE][u32 crc32 LE of payload][payload]`. One segment is open for
//! appending; it is closed and a new one started once it reaches the segment size.
//! Reading stops at the first torn or corrupt record of a segment and says where.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Bytes of a record's header: length, then checksum.
pub const HEADER: usize = 8;
/// No record is larger: a length above it is corruption, not a record.
pub const MAX_RECORD: usize = 1 << 30;

#[derive(Debug, Error)]
pub enum WalError {
    #[error("cannot create the storage directory {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot list the storage directory {dir}: {source}")]
    List {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open segment {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read segment {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot append to segment {path}: {source}")]
    Append {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("record of {0} bytes is too large for the write-ahead log")]
    TooLarge(usize),
}

/// Why reading a segment stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first record that could not be read.
    pub offset: u64,
    pub reason: &'static str,
}

/// The path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:016}.log"))
}

/// The segments in `dir`, oldest first, with their sequence numbers.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let err = |source| WalError::List {
        dir: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let seq = name
            .strip_prefix("wal-")
            .and_then(|r| r.strip_suffix(".log"))
            .filter(|d| d.len() == 16)
            .and_then(|d| d.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// One framed record: header and payload in one buffer, so one `write()` appends it.
pub fn frame(payload: &[u8]) -> Result<Vec<u8>, WalError> {
    if payload.is_empty() || payload.len() > MAX_RECORD {
        return Err(WalError::TooLarge(payload.len()));
    }
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Calls `each` with every intact record of the segment at `path`, in order. Returns where
/// and why reading stopped early (a torn or corrupt record), if it did; what follows a
/// damaged record is skipped, since its framing can no longer be trusted.
pub fn read_segment(path: &Path, mut each: impl FnMut(&[u8])) -> Result<Option<Damage>, WalError> {
    let bytes = fs::read(path).map_err(|source| WalError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut at = 0usize;
    while at < bytes.len() {
        let damage = |reason| {
            Ok(Some(Damage {
                offset: at as u64,
                reason,
            }))
        };
        let rest = &bytes[at..];
        if rest.len() < HEADER {
            return damage("torn record header");
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        // Zero-filled space (left by some file systems after a crash) is not a record.
        if len == 0 || len > MAX_RECORD {
            return damage("invalid record length");
        }
        let Some(payload) = rest.get(HEADER..HEADER + len) else {
            return damage("torn record");
        };
        if crc32fast::hash(payload) != crc {
            return damage("checksum mismatch");
        }
        each(payload);
        at += HEADER + len;
    }
    Ok(None)
}

/// The segment being appended to.
pub struct Active {
    pub seq: u64,
    pub path: PathBuf,
    file: File,
    /// Bytes in the segment.
    pub len: u64,
}

impl Active {
    /// Creates segment `seq` (or appends to it if it exists).
    pub fn create(dir: &Path, seq: u64) -> Result<Active, WalError> {
        let path = segment_path(dir, seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| WalError::Open {
                path: path.clone(),
                source,
            })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Active {
            seq,
            path,
            file,
            len,
        })
    }

    /// Appends one framed record (`write_all`: the kernel has it when this returns) and,
    /// with `sync`, flushes it to the device.
    pub fn append(&mut self, framed: &[u8], sync: bool) -> Result<(), WalError> {
        let res =
            self.file
                .write_all(framed)
                .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        res.map_err(|source| WalError::Append {
            path: self.path.clone(),
            source,
        })?;
        self.len += framed.len() as u64;
        Ok(())
    }

    /// Flushes to the device (when a segment is closed with `fsync: always`).
    pub fn sync(&self) {
        let _ = self.file.sync_data();
    }
}
