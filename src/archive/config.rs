//! What the archive is told by `support.archive` (and `support.index`): where it lives, how
//! long and how much it keeps, which traces keep their spans, which keys it indexes.

use std::path::PathBuf;
use std::time::Duration;

/// `support.archive.traces`: whose spans are archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Traces {
    /// Dropped and kept traces keep their spans.
    #[default]
    All,
    /// Only dropped traces keep their spans; kept ones keep their summary and keys (their
    /// spans are downstream already).
    Dropped,
}

/// The archive's settings. `Debug` never shows the hash key.
#[derive(Clone)]
pub struct ArchiveCfg {
    /// Directory of the segment files (created 0700, files 0600).
    pub dir: PathBuf,
    /// Whole segments whose newest trace started longer ago than this are deleted.
    pub retention: Duration,
    /// Past this total, the oldest segments are deleted (the total never exceeds it by more
    /// than one segment).
    pub max_bytes: u64,
    pub traces: Traces,
    /// The indexed attribute names (`support.index.attributes`).
    pub attributes: Vec<String>,
    /// `Some` with `support.index.hash_values`: keys are HMAC-SHA256 digests under it.
    pub hash_key: Option<Vec<u8>>,
}

/// Segment size bounds: small enough that deleting one is a fine step of `max_bytes`, big
/// enough that a 10 GiB archive has few files.
const MIN_SEGMENT: u64 = 1 << 20;
const MAX_SEGMENT: u64 = 256 << 20;

impl ArchiveCfg {
    /// The size at which a segment is sealed: about 2 % of `max_bytes`, clamped to
    /// [1 MiB, 256 MiB].
    pub fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 50).clamp(MIN_SEGMENT, MAX_SEGMENT)
    }
}

/// Disk bytes an archived span takes, data and index, on the load tool's traces with
/// `traces: all` (BENCHMARKS.md, "The archive"): what `casefile check` sizes `max_bytes` with.
pub const ESTIMATED_BYTES_PER_SPAN: u64 = 30;

impl std::fmt::Debug for ArchiveCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveCfg")
            .field("dir", &self.dir)
            .field("retention", &self.retention)
            .field("max_bytes", &self.max_bytes)
            .field("traces", &self.traces)
            .field("attributes", &self.attributes)
            .field("hash_key", &self.hash_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
