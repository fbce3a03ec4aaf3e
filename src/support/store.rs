//! Complaint store: complaint records kept durably in an embedded redb database file
//! (`support.complaints.store`), so they survive restarts and unexpired watches can be
//! restored at start.
//!
//! Schema (all tables in one redb file):
//! - `complaints`: `complaint_id (&str) -> JSON bytes` of [`Complaint`], exactly the object
//!   the API answers.
//! - `complaints_by_time`: `(created_at unix millis (u64), complaint_id) -> ()`, iterated in
//!   reverse by [`ComplaintStore::list`] for newest first.
//! - `complaints_by_ticket`: `(ticket_id, created_at millis, complaint_id) -> ()`.
//! - `complaints_by_user`: `(user_id, created_at millis, complaint_id) -> ()` (only for
//!   complaints with a `user_id`).
//! - `complaints_by_watch`: `(watch_until unix millis, complaint_id) -> ()` (only for
//!   complaints with a `watch_until`), ranged over by [`ComplaintStore::active_watches`].
//! - `meta`: `"schema_version" -> u64` (currently 1); a newer version is refused at open.
//!
//! Every insert/update is one short write transaction committed with redb's default
//! (immediate) durability.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

/// One trace a complaint resolved to, and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceOutcome {
    /// 32 lowercase hex characters.
    pub trace_id: String,
    pub outcome: Outcome,
}

/// What a complaint did to one trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still in the decision window: kept at decision time, reason `complaint`/`watch`.
    Flagged,
    /// Already decided and kept.
    AlreadySampled,
    /// Dropped but still in the rescue buffer: exported now.
    Rescued,
    /// Neither buffered nor in the rescue buffer or the archive.
    NotFound,
    /// Dropped and held, but past `support.complaints.max_rescue_traces` for one
    /// complaint: not rescued (file another complaint with a narrower range for more).
    NotRescuedLimit,
}

/// A complaint record, exactly the JSON object the API answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Complaint {
    /// e.g. `cmp_` + 16 hex chars, see [`new_id`].
    pub complaint_id: String,
    pub ticket_id: String,
    /// RFC3339 UTC with millis.
    pub created_at: String,
    pub label: Option<String>,
    pub text: Option<String>,
    pub user_id: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// RFC3339 or null, as given.
    pub start: Option<String>,
    /// RFC3339 or null, as given.
    pub end: Option<String>,
    #[serde(default)]
    pub traces: Vec<TraceOutcome>,
    /// RFC3339 or null.
    pub watch_until: Option<String>,
}

/// Filter for [`ComplaintStore::list`]; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub ticket_id: Option<String>,
    pub user_id: Option<String>,
}

/// A fresh complaint id: `cmp_` followed by 16 lowercase hex characters.
pub fn new_id() -> String {
    format!("cmp_{}", hex::encode(fastrand::u64(..).to_be_bytes()))
}

/// Errors of the complaint store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create directory {path} for the complaint store: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot open complaint store {path}: {source} (not a casefile complaint store, \
         damaged, or in use by another process)"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::DatabaseError>,
    },
    #[error("cannot initialise complaint store {path}: {source}")]
    Init {
        path: PathBuf,
        #[source]
        source: Box<StoreError>,
    },
    #[error(
        "complaint store has schema version {found}, this casefile supports up to {supported}"
    )]
    UnsupportedSchema { found: u64, supported: u64 },
    #[error("complaint store database error: {0}")]
    Db(#[source] Box<redb::Error>),
    #[error("complaint store record {id} is corrupt: {source}")]
    Corrupt {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode complaint {id}: {source}")]
    Encode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("complaint {id}: invalid {field} timestamp {value:?} (want RFC3339)")]
    InvalidTime {
        id: String,
        field: &'static str,
        value: String,
    },
    #[error("complaint has an empty complaint_id")]
    EmptyId,
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Db(Box::new(e))
    }
}

macro_rules! redb_into_store_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from(redb::Error::from(e))
            }
        }
    )*};
}
redb_into_store_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

const COMPLAINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("complaints");
const BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("complaints_by_time");
const BY_TICKET: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("complaints_by_ticket");
const BY_USER: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("complaints_by_user");
const BY_WATCH: TableDefinition<(u64, &str), ()> = TableDefinition::new("complaints_by_watch");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const SCHEMA_KEY: &str = "schema_version";
const SCHEMA_VERSION: u64 = 1;

/// Durable complaint records. `Send + Sync`; share it in an `Arc`.
pub struct ComplaintStore {
    db: Database,
    /// redb allows one writer at a time; this keeps writers queued in-process.
    write_lock: Mutex<()>,
    /// Where the file is (None for the in-memory backend), for messages.
    path: Option<PathBuf>,
}

impl std::fmt::Debug for ComplaintStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComplaintStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Index keys derived from one record.
struct Keys {
    created_ms: u64,
    watch_ms: Option<u64>,
}

impl Keys {
    fn of(c: &Complaint) -> Result<Keys, StoreError> {
        let created_ms = parse_millis(&c.created_at).ok_or_else(|| StoreError::InvalidTime {
            id: c.complaint_id.clone(),
            field: "created_at",
            value: c.created_at.clone(),
        })?;
        let watch_ms = match &c.watch_until {
            None => None,
            Some(w) => Some(parse_millis(w).ok_or_else(|| StoreError::InvalidTime {
                id: c.complaint_id.clone(),
                field: "watch_until",
                value: w.clone(),
            })?),
        };
        Ok(Keys {
            created_ms,
            watch_ms,
        })
    }
}

impl ComplaintStore {
    /// Opens (or creates) the store file at `path`, creating missing parent directories.
    pub fn open(path: &Path) -> Result<ComplaintStore, StoreError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
        }
        // redb validates headers and returns errors for foreign files; a panic inside redb
        // on a damaged file must still not take the daemon down at start.
        let opened = std::panic::catch_unwind(|| Database::create(path));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(source)) => {
                return Err(StoreError::Open {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })
            }
            Err(_) => {
                return Err(StoreError::Open {
                    path: path.to_path_buf(),
                    source: Box::new(redb::DatabaseError::Storage(redb::StorageError::Corrupted(
                        "not a readable redb database file".into(),
                    ))),
                })
            }
        };
        Self::init(db, Some(path.to_path_buf()))
    }

    /// A store in memory (redb's in-memory backend): for tests and when no store path is
    /// configured. Nothing survives the process.
    pub fn in_memory() -> Result<ComplaintStore, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| StoreError::Open {
                path: PathBuf::from(":memory:"),
                source: Box::new(source),
            })?;
        Self::init(db, None)
    }

    fn init(db: Database, path: Option<PathBuf>) -> Result<ComplaintStore, StoreError> {
        let store = ComplaintStore {
            db,
            write_lock: Mutex::new(()),
            path,
        };
        store.create_tables().map_err(|e| match e {
            e @ StoreError::UnsupportedSchema { .. } => e,
            e => StoreError::Init {
                path: store
                    .path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(":memory:")),
                source: Box::new(e),
            },
        })?;
        Ok(store)
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        let _w = self.write_lock.lock();
        let tx = self.db.begin_write()?;
        {
            tx.open_table(COMPLAINTS)?;
            tx.open_table(BY_TIME)?;
            tx.open_table(BY_TICKET)?;
            tx.open_table(BY_USER)?;
            tx.open_table(BY_WATCH)?;
            let mut meta = tx.open_table(META)?;
            let found = meta.get(SCHEMA_KEY)?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::UnsupportedSchema {
                        found: v,
                        supported: SCHEMA_VERSION,
                    })
                }
                Some(_) => {}
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The file backing this store, None when in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Stores a complaint; a record with the same `complaint_id` is replaced (and its index
    /// entries updated). One durable commit.
    pub fn insert(&self, c: &Complaint) -> Result<(), StoreError> {
        if c.complaint_id.is_empty() {
            return Err(StoreError::EmptyId);
        }
        let keys = Keys::of(c)?;
        let bytes = encode(c)?;
        let _w = self.write_lock.lock();
        let tx = self.db.begin_write()?;
        {
            let mut main = tx.open_table(COMPLAINTS)?;
            let old = match main.get(c.complaint_id.as_str())? {
                Some(v) => Some(decode(&c.complaint_id, v.value())?),
                None => None,
            };
            if let Some(old) = old {
                // Old record was validated on insert; tolerate a bad timestamp anyway.
                if let Ok(old_keys) = Keys::of(&old) {
                    remove_indexes(&tx, &old, &old_keys)?;
                }
            }
            main.insert(c.complaint_id.as_str(), bytes.as_slice())?;
            add_indexes(&tx, c, &keys)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Replaces the trace outcomes of a complaint (e.g. a watch flagged more traces).
    /// Returns false if there is no such complaint.
    pub fn set_traces(
        &self,
        complaint_id: &str,
        traces: &[TraceOutcome],
    ) -> Result<bool, StoreError> {
        self.update(complaint_id, |c| {
            c.traces = traces.to_vec();
            true
        })
    }

    /// Appends one trace outcome, or updates the outcome of the same trace id if the
    /// complaint already lists it. Returns false if there is no such complaint.
    pub fn add_trace(&self, complaint_id: &str, t: TraceOutcome) -> Result<bool, StoreError> {
        self.update(complaint_id, move |c| {
            if let Some(existing) = c.traces.iter_mut().find(|e| e.trace_id == t.trace_id) {
                if existing.outcome == t.outcome {
                    return false;
                }
                existing.outcome = t.outcome;
            } else {
                c.traces.push(t);
            }
            true
        })
    }

    /// Read-modify-write of one record's traces (indexes do not depend on traces).
    /// `f` returns whether anything changed; nothing is written otherwise.
    fn update(
        &self,
        complaint_id: &str,
        f: impl FnOnce(&mut Complaint) -> bool,
    ) -> Result<bool, StoreError> {
        let _w = self.write_lock.lock();
        let tx = self.db.begin_write()?;
        {
            let mut main = tx.open_table(COMPLAINTS)?;
            let current = match main.get(complaint_id)? {
                Some(v) => decode(complaint_id, v.value())?,
                None => return Ok(false), // tx aborted on drop
            };
            let mut next = current;
            if !f(&mut next) {
                return Ok(true);
            }
            let bytes = encode(&next)?;
            main.insert(complaint_id, bytes.as_slice())?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// One complaint by id.
    pub fn get(&self, complaint_id: &str) -> Result<Option<Complaint>, StoreError> {
        let tx = self.db.begin_read()?;
        let main = tx.open_table(COMPLAINTS)?;
        let found = match main.get(complaint_id)? {
            Some(v) => Some(decode(complaint_id, v.value())?),
            None => None,
        };
        Ok(found)
    }

    /// Complaints matching `filter`, newest first (by `created_at`, then id, both
    /// descending), at most `limit`.
    pub fn list(&self, filter: &Filter, limit: usize) -> Result<Vec<Complaint>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let tx = self.db.begin_read()?;
        let main = tx.open_table(COMPLAINTS)?;
        let load = |id: &str| -> Result<Option<Complaint>, StoreError> {
            match main.get(id)? {
                Some(v) => Ok(Some(decode(id, v.value())?)),
                // Index entry without a record: skip rather than fail the listing.
                None => Ok(None),
            }
        };
        let matches = |c: &Complaint| {
            filter.ticket_id.as_deref().is_none_or(|t| c.ticket_id == t)
                && filter
                    .user_id
                    .as_deref()
                    .is_none_or(|u| c.user_id.as_deref() == Some(u))
        };
        // Pick the narrowest index: ticket, then user, then time.
        let keyed = match (&filter.ticket_id, &filter.user_id) {
            (Some(t), _) => Some((BY_TICKET, t.as_str())),
            (None, Some(u)) => Some((BY_USER, u.as_str())),
            (None, None) => None,
        };
        match keyed {
            Some((def, key)) => {
                let idx = tx.open_table(def)?;
                // `key + "\0"` is the smallest string greater than `key`, so this range
                // holds exactly the entries whose first field is `key`.
                let next = format!("{key}\0");
                let range =
                    idx.range::<(&str, u64, &str)>((key, 0u64, "")..(next.as_str(), 0u64, ""))?;
                for entry in range.rev() {
                    let (k, _) = entry?;
                    let (_, _, id) = k.value();
                    if let Some(c) = load(id)? {
                        if matches(&c) {
                            out.push(c);
                            if out.len() >= limit {
                                break;
                            }
                        }
                    }
                }
            }
            None => {
                let idx = tx.open_table(BY_TIME)?;
                for entry in idx.iter()?.rev() {
                    let (k, _) = entry?;
                    let (_, id) = k.value();
                    if let Some(c) = load(id)? {
                        out.push(c);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Complaints whose `watch_until` is after `now` (watches to restore at start), soonest
    /// expiry first.
    pub fn active_watches(&self, now: SystemTime) -> Result<Vec<Complaint>, StoreError> {
        let now_ms = millis_of(now);
        let tx = self.db.begin_read()?;
        let main = tx.open_table(COMPLAINTS)?;
        let idx = tx.open_table(BY_WATCH)?;
        let mut out = Vec::new();
        // Strictly after now: first key with millis > now_ms.
        let Some(from) = now_ms.checked_add(1) else {
            return Ok(out);
        };
        for entry in idx.range::<(u64, &str)>((from, "")..)? {
            let (k, _) = entry?;
            let (_, id) = k.value();
            if let Some(v) = main.get(id)? {
                out.push(decode(id, v.value())?);
            }
        }
        Ok(out)
    }

    /// Number of stored complaints.
    pub fn len(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let main = tx.open_table(COMPLAINTS)?;
        Ok(main.len()?)
    }

    /// Whether the store holds no complaint.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}

fn add_indexes(tx: &redb::WriteTransaction, c: &Complaint, k: &Keys) -> Result<(), StoreError> {
    let id = c.complaint_id.as_str();
    tx.open_table(BY_TIME)?.insert((k.created_ms, id), ())?;
    tx.open_table(BY_TICKET)?
        .insert((c.ticket_id.as_str(), k.created_ms, id), ())?;
    if let Some(u) = &c.user_id {
        tx.open_table(BY_USER)?
            .insert((u.as_str(), k.created_ms, id), ())?;
    }
    if let Some(w) = k.watch_ms {
        tx.open_table(BY_WATCH)?.insert((w, id), ())?;
    }
    Ok(())
}

fn remove_indexes(tx: &redb::WriteTransaction, c: &Complaint, k: &Keys) -> Result<(), StoreError> {
    let id = c.complaint_id.as_str();
    tx.open_table(BY_TIME)?.remove((k.created_ms, id))?;
    tx.open_table(BY_TICKET)?
        .remove((c.ticket_id.as_str(), k.created_ms, id))?;
    if let Some(u) = &c.user_id {
        tx.open_table(BY_USER)?
            .remove((u.as_str(), k.created_ms, id))?;
    }
    if let Some(w) = k.watch_ms {
        tx.open_table(BY_WATCH)?.remove((w, id))?;
    }
    Ok(())
}

fn encode(c: &Complaint) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(c).map_err(|source| StoreError::Encode {
        id: c.complaint_id.clone(),
        source,
    })
}

fn decode(id: &str, bytes: &[u8]) -> Result<Complaint, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        id: id.to_string(),
        source,
    })
}

fn millis_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Parses a timestamp to unix millis (see [`crate::support::time`]).
pub(crate) fn parse_millis(s: &str) -> Option<u64> {
    crate::support::time::parse(s).map(millis_of)
}

#[cfg(test)]
mod tests;
