//! The archive's files: names, modes (a 0700 directory of 0600 files), listing, positioned
//! reads.
//!
//! `seg-<16-digit seq>.data` holds a segment's blocks; `seg-<seq>.index` its index, written
//! once when the segment is sealed (temp file, then rename); `seed` the xxh3 seed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub(crate) fn data_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:016}.data"))
}

pub(crate) fn index_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:016}.index"))
}

/// Creates (or truncates) a file readable by its owner only.
pub(crate) fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Creates a new segment data file to append to.
pub(crate) fn create_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Creates the directory (and parents) 0700, or narrows an existing one to 0700.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Takes `<dir>/lock` for this process (an advisory lock, released when the file closes,
/// at exit too): a second daemon on the same directory would interleave segments and
/// delete the other's by retention. The holder's pid is written in it for the message.
pub(crate) fn lock(dir: &Path) -> io::Result<File> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("lock");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0)?;
            f.seek(io::SeekFrom::Start(0))?;
            writeln!(f, "{}", std::process::id())?;
            Ok(f)
        }
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "{} is held by another process (pid {}): one archive directory per daemon",
                    path.display(),
                    holder.trim()
                ),
            ))
        }
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The segments in `dir`: `(seq, has data, has index)`, oldest first. Temp files left by
/// a crash are listed under `temps`.
pub(crate) struct Listing {
    pub segments: Vec<(u64, bool, bool)>,
    pub temps: Vec<PathBuf>,
}

pub(crate) fn list(dir: &Path) -> io::Result<Listing> {
    let mut segs = std::collections::BTreeMap::<u64, (bool, bool)>::new();
    let mut temps = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            temps.push(entry.path());
            continue;
        }
        let Some(rest) = name.strip_prefix("seg-") else {
            continue;
        };
        let (digits, data) = match (rest.strip_suffix(".data"), rest.strip_suffix(".index")) {
            (Some(d), _) => (d, true),
            (_, Some(d)) => (d, false),
            _ => continue,
        };
        let Some(seq) = (digits.len() == 16)
            .then(|| digits.parse::<u64>().ok())
            .flatten()
        else {
            continue;
        };
        let e = segs.entry(seq).or_default();
        if data {
            e.0 = true;
        } else {
            e.1 = true;
        }
    }
    Ok(Listing {
        segments: segs.into_iter().map(|(s, (d, i))| (s, d, i)).collect(),
        temps,
    })
}

/// Reads `len` bytes at `offset` (short file: an error).
pub(crate) fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Size of a file, 0 when it is gone.
pub(crate) fn size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
