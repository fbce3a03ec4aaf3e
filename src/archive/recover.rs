//! Opening an archive: sealed segments cost their index header only; a data file whose
//! index is missing, damaged or stale (the segment a killed process was writing) is read
//! up to its last complete, checksummed record, truncated there, re-indexed and sealed.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::keys::Hasher;
use super::segment::{self, Sealed};
use super::{files, Counters};
use crate::model::Span;
use crate::support::index::Key;

/// Opens the sealed segments (headers only) and re-indexes any data file whose index is
/// missing, damaged or stale, truncating it after its last complete record. Returns the
/// sealed segments, oldest first, and the next sequence number.
pub(super) fn recover(
    dir: &Path,
    counters: &Counters,
    hasher: &Hasher,
    attributes: &[String],
) -> std::io::Result<(Vec<Arc<Sealed>>, u64)> {
    let listing = files::list(dir)?;
    for t in listing.temps {
        let _ = std::fs::remove_file(t);
    }
    let next = listing.segments.last().map_or(1, |s| s.0 + 1);
    let mut sealed = Vec::new();
    for (seq, data, index) in listing.segments {
        if !data {
            let _ = std::fs::remove_file(files::index_path(dir, seq));
            continue;
        }
        if index {
            if let Some(s) = Sealed::open(dir, seq) {
                sealed.push(Arc::new(s));
                continue;
            }
        }
        match reindex(dir, seq, counters, hasher, attributes) {
            Ok(Some(s)) => sealed.push(Arc::new(s)),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(seq, error = %e, "archive: cannot re-index a segment; skipped")
            }
        }
    }
    Ok((sealed, next))
}

fn reindex(
    dir: &Path,
    seq: u64,
    counters: &Counters,
    hasher: &Hasher,
    attributes: &[String],
) -> std::io::Result<Option<Sealed>> {
    let data = files::data_path(dir, seq);
    let index = files::index_path(dir, seq);
    let rekey = |spans: &[Span]| -> Vec<Key> {
        let keys = hasher.keys_of(attributes, spans, &mut Default::default());
        keys.into_iter().map(|(_, k)| k).collect()
    };
    let scanned = segment::scan(&data, Some(&rekey))?;
    if scanned.corrupt > 0 {
        counters.corrupt.fetch_add(scanned.corrupt, Relaxed);
        metrics::counter!("casefile_archive_corrupt_records_total").increment(scanned.corrupt);
        tracing::warn!(
            seq,
            records = scanned.corrupt,
            "archive: damaged records skipped"
        );
    }
    if scanned.index.is_empty() {
        let _ = std::fs::remove_file(&index);
        std::fs::remove_file(&data)?;
        return Ok(None);
    }
    if files::size(&data) != scanned.good_len {
        let f = std::fs::OpenOptions::new().write(true).open(&data)?;
        f.set_len(scanned.good_len)?;
        f.sync_all()?;
    }
    scanned.index.write(&index)?;
    Ok(Sealed::open(dir, seq))
}
