//! Reading an archive without the daemon (`casefile archive stats|export`, `what-if
//! --archive`): nothing in the directory is changed; a data file without a valid index
//! (the segment a running or killed daemon was writing) is scanned in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::read::{merge, BlockCache};
use super::segment::{scan, MemIndex, Rec, Sealed};
use super::{files, ArchiveError, ArchiveStats};
use crate::model::{Span, TraceId};
use crate::support::index::Summary;
use crate::wire::encode::encode_request;

/// The segments of a directory, read-only.
struct Catalog {
    sealed: Vec<Sealed>,
    scanned: Vec<(u64, Arc<PathBuf>, MemIndex)>,
    corrupt: u64,
}

impl Catalog {
    fn open(dir: &Path) -> Result<Catalog, ArchiveError> {
        let err = |source| ArchiveError::Dir {
            dir: dir.to_owned(),
            source,
        };
        let listing = files::list(dir).map_err(err)?;
        let mut c = Catalog {
            sealed: Vec::new(),
            scanned: Vec::new(),
            corrupt: 0,
        };
        for (seq, data, index) in listing.segments {
            if !data {
                continue;
            }
            if let Some(s) = index.then(|| Sealed::open(dir, seq)).flatten() {
                c.sealed.push(s);
                continue;
            }
            let path = files::data_path(dir, seq);
            let s = scan(&path, None).map_err(|source| ArchiveError::Io {
                path: path.clone(),
                source,
            })?;
            c.corrupt += s.corrupt;
            c.scanned.push((seq, Arc::new(path), s.index));
        }
        Ok(c)
    }

    fn recs_of(&self, id: &TraceId) -> Vec<Rec> {
        let mut out: Vec<Rec> = Vec::new();
        for s in &self.sealed {
            out.extend(s.by_id(id).unwrap_or_default());
        }
        for (seq, path, idx) in &self.scanned {
            out.extend(idx.by_id(*seq, path, id));
        }
        out
    }

    fn all(&self) -> Vec<Rec> {
        let mut out: Vec<Rec> = Vec::new();
        for s in &self.sealed {
            match s.all() {
                Ok(r) => out.extend(r),
                Err(e) => tracing::warn!(seq = s.seq, error = %e, "archive: segment unreadable"),
            }
        }
        for (seq, path, idx) in &self.scanned {
            out.extend(idx.all(*seq, path));
        }
        out
    }
}

/// Sizes of the archive in `dir` (counters of a running daemon are not on disk: zero).
pub fn stats(dir: &Path) -> Result<ArchiveStats, ArchiveError> {
    let c = Catalog::open(dir)?;
    let mut s = ArchiveStats {
        corrupt_records: c.corrupt,
        ..ArchiveStats::default()
    };
    for seg in &c.sealed {
        s.bytes += seg.bytes();
        s.traces += u64::from(seg.header.rows);
        if seg.header.rows > 0 {
            s.saw_starts(seg.header.min_start, seg.header.max_start);
        }
    }
    for (_, path, idx) in &c.scanned {
        s.bytes += files::size(path);
        s.traces += idx.rows.len() as u64;
        if !idx.is_empty() {
            s.saw_starts(idx.min_start, idx.max_start);
        }
    }
    s.segments = (c.sealed.len() + c.scanned.len()) as u64;
    Ok(s)
}

/// The archived spans of a trace as one encoded `ExportTraceServiceRequest`; None when the
/// archive holds none of its spans.
pub fn export(dir: &Path, id: &TraceId) -> Result<Option<Vec<u8>>, ArchiveError> {
    let c = Catalog::open(dir)?;
    let mut recs = c.recs_of(id);
    recs.sort_by_key(|r| (r.seq, r.pos));
    Ok(BlockCache::default()
        .spans(&recs)
        .map(|spans| encode_request(&spans)))
}

/// The summary of a trace (None when the archive has no record of it).
pub fn summary(dir: &Path, id: &TraceId) -> Result<Option<Summary>, ArchiveError> {
    let c = Catalog::open(dir)?;
    Ok(merge(*id, &mut c.recs_of(id)))
}

/// Every archived trace that started at or after `since` (Unix nanoseconds), oldest first,
/// with its spans (empty when only its summary is archived). The records are listed up
/// front (a few dozen bytes per trace), the spans read as the iterator goes.
pub fn traces(
    dir: &Path,
    since: Option<u64>,
) -> Result<impl Iterator<Item = (Summary, Vec<Span>)>, ArchiveError> {
    let c = Catalog::open(dir)?;
    let mut by_id: std::collections::HashMap<TraceId, Vec<Rec>> = Default::default();
    for r in c.all() {
        by_id.entry(r.row.id).or_default().push(r);
    }
    let mut merged: Vec<(Summary, Vec<Rec>)> = by_id
        .into_iter()
        .filter_map(|(id, mut recs)| merge(id, &mut recs).map(|s| (s, recs)))
        .filter(|(s, _)| since.is_none_or(|t| s.start_unix_nano >= t))
        .collect();
    merged.sort_by_key(|(s, _)| (s.start_unix_nano, s.trace_id));
    let cache = BlockCache::default();
    Ok(merged.into_iter().map(move |(s, recs)| {
        let spans = cache.spans(&recs).unwrap_or_default();
        (s, spans)
    }))
}
