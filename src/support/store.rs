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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// Neither buffered nor in the rescue buffer.
    NotFound,
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

/// Parses an RFC3339 timestamp to unix millis. Accepts `Z`, no zone (taken as UTC) and
/// numeric offsets `±hh:mm` (humantime alone only handles UTC).
pub(crate) fn parse_millis(s: &str) -> Option<u64> {
    parse_time(s).map(millis_of)
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let b = s.as_bytes();
    let n = b.len();
    if n >= 25 && (b[n - 6] == b'+' || b[n - 6] == b'-') && b[n - 3] == b':' {
        let sign = b[n - 6];
        let hh: u64 = s[n - 5..n - 3].parse().ok()?;
        let mm: u64 = s[n - 2..].parse().ok()?;
        if hh > 23 || mm > 59 {
            return None;
        }
        let base = humantime::parse_rfc3339_weak(&s[..n - 6]).ok()?;
        let off = Duration::from_secs(hh * 3600 + mm * 60);
        // local = utc + offset, so utc = local - offset for '+'.
        return if sign == b'+' {
            base.checked_sub(off)
        } else {
            base.checked_add(off)
        };
    }
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix('z'))
        .unwrap_or(s);
    humantime::parse_rfc3339_weak(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn at(ms: u64) -> String {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
    }

    fn tid(n: u8) -> String {
        format!("{:032x}", n)
    }

    fn complaint(id: &str, ticket: &str, user: Option<&str>, created_ms: u64) -> Complaint {
        Complaint {
            complaint_id: id.to_string(),
            ticket_id: ticket.to_string(),
            created_at: at(created_ms),
            label: Some("wrong_policy_answer".to_string()),
            text: Some("the bot said no".to_string()),
            user_id: user.map(str::to_string),
            attributes: BTreeMap::from([("session.id".to_string(), "sess_918".to_string())]),
            start: Some(at(created_ms.saturating_sub(60_000))),
            end: None,
            traces: vec![TraceOutcome {
                trace_id: tid(1),
                outcome: Outcome::Flagged,
            }],
            watch_until: None,
        }
    }

    fn ids(v: &[Complaint]) -> Vec<&str> {
        v.iter().map(|c| c.complaint_id.as_str()).collect()
    }

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn new_id_shape() {
        let a = new_id();
        assert_eq!(a.len(), 4 + 16);
        assert!(a.starts_with("cmp_"));
        assert!(a[4..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn insert_get_round_trip() {
        let s = ComplaintStore::in_memory().unwrap();
        let c = complaint("cmp_a", "cs_441", Some("usr_k8x9m2"), T0);
        s.insert(&c).unwrap();
        assert_eq!(s.get("cmp_a").unwrap(), Some(c));
        assert_eq!(s.get("cmp_missing").unwrap(), None);
        assert_eq!(s.len().unwrap(), 1);
    }

    #[test]
    fn insert_same_id_replaces_and_reindexes() {
        let s = ComplaintStore::in_memory().unwrap();
        s.insert(&complaint("cmp_a", "cs_1", Some("u1"), T0))
            .unwrap();
        let mut c = complaint("cmp_a", "cs_2", Some("u2"), T0 + 5);
        c.watch_until = Some(at(T0 + 10_000));
        s.insert(&c).unwrap();
        assert_eq!(s.len().unwrap(), 1);
        let by = |t: Option<&str>, u: Option<&str>| {
            let f = Filter {
                ticket_id: t.map(str::to_string),
                user_id: u.map(str::to_string),
            };
            s.list(&f, 10).unwrap().len()
        };
        assert_eq!(by(Some("cs_1"), None), 0);
        assert_eq!(by(None, Some("u1")), 0);
        assert_eq!(by(Some("cs_2"), None), 1);
        assert_eq!(by(None, Some("u2")), 1);
        assert_eq!(by(None, None), 1);
        let w = s
            .active_watches(UNIX_EPOCH + Duration::from_millis(T0))
            .unwrap();
        assert_eq!(ids(&w), vec!["cmp_a"]);
    }

    #[test]
    fn list_newest_first_with_limit_and_filters() {
        let s = ComplaintStore::in_memory().unwrap();
        // Insert out of order; two share a timestamp (order then by id, descending).
        s.insert(&complaint("cmp_3", "cs_b", Some("u1"), T0 + 3000))
            .unwrap();
        s.insert(&complaint("cmp_1", "cs_a", Some("u1"), T0 + 1000))
            .unwrap();
        s.insert(&complaint("cmp_5", "cs_a", None, T0 + 5000))
            .unwrap();
        s.insert(&complaint("cmp_2", "cs_a", Some("u2"), T0 + 2000))
            .unwrap();
        s.insert(&complaint("cmp_4a", "cs_b", Some("u1"), T0 + 4000))
            .unwrap();
        s.insert(&complaint("cmp_4b", "cs_c", Some("u1"), T0 + 4000))
            .unwrap();
        // Neighbouring keys in the ticket index must not leak into the range.
        s.insert(&complaint("cmp_x", "cs_", Some("u"), T0 + 9000))
            .unwrap();
        s.insert(&complaint("cmp_y", "cs_aa", Some("u10"), T0 + 9000))
            .unwrap();

        let all = Filter::default();
        assert_eq!(
            ids(&s.list(&all, 100).unwrap()),
            vec!["cmp_y", "cmp_x", "cmp_5", "cmp_4b", "cmp_4a", "cmp_3", "cmp_2", "cmp_1"]
        );
        assert_eq!(
            ids(&s.list(&all, 3).unwrap()),
            vec!["cmp_y", "cmp_x", "cmp_5"]
        );
        assert!(s.list(&all, 0).unwrap().is_empty());

        let ticket = Filter {
            ticket_id: Some("cs_a".into()),
            user_id: None,
        };
        assert_eq!(
            ids(&s.list(&ticket, 100).unwrap()),
            vec!["cmp_5", "cmp_2", "cmp_1"]
        );
        assert_eq!(ids(&s.list(&ticket, 2).unwrap()), vec!["cmp_5", "cmp_2"]);

        let user = Filter {
            ticket_id: None,
            user_id: Some("u1".into()),
        };
        assert_eq!(
            ids(&s.list(&user, 100).unwrap()),
            vec!["cmp_4b", "cmp_4a", "cmp_3", "cmp_1"]
        );
        assert_eq!(ids(&s.list(&user, 1).unwrap()), vec!["cmp_4b"]);

        let both = Filter {
            ticket_id: Some("cs_b".into()),
            user_id: Some("u1".into()),
        };
        assert_eq!(ids(&s.list(&both, 100).unwrap()), vec!["cmp_4a", "cmp_3"]);
        let none = Filter {
            ticket_id: Some("cs_zzz".into()),
            user_id: None,
        };
        assert!(s.list(&none, 100).unwrap().is_empty());
        let first = Filter {
            ticket_id: Some("a".into()),
            user_id: None,
        };
        assert!(s.list(&first, 100).unwrap().is_empty());
    }

    #[test]
    fn set_traces_and_add_trace_update_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("complaints.db");
        {
            let s = ComplaintStore::open(&path).unwrap();
            s.insert(&complaint("cmp_a", "cs_1", Some("u1"), T0))
                .unwrap();
            let new = vec![
                TraceOutcome {
                    trace_id: tid(2),
                    outcome: Outcome::Rescued,
                },
                TraceOutcome {
                    trace_id: tid(3),
                    outcome: Outcome::NotFound,
                },
            ];
            assert!(s.set_traces("cmp_a", &new).unwrap());
            assert_eq!(s.get("cmp_a").unwrap().unwrap().traces, new);
            assert!(!s.set_traces("cmp_nope", &new).unwrap());

            // Append a new trace.
            assert!(s
                .add_trace(
                    "cmp_a",
                    TraceOutcome {
                        trace_id: tid(4),
                        outcome: Outcome::Flagged
                    }
                )
                .unwrap());
            // Update the outcome of an existing trace.
            assert!(s
                .add_trace(
                    "cmp_a",
                    TraceOutcome {
                        trace_id: tid(3),
                        outcome: Outcome::Rescued
                    }
                )
                .unwrap());
            // Same outcome again: still true, nothing duplicated.
            assert!(s
                .add_trace(
                    "cmp_a",
                    TraceOutcome {
                        trace_id: tid(4),
                        outcome: Outcome::Flagged
                    }
                )
                .unwrap());
            assert!(!s
                .add_trace(
                    "cmp_nope",
                    TraceOutcome {
                        trace_id: tid(4),
                        outcome: Outcome::Flagged
                    }
                )
                .unwrap());
        }
        let s = ComplaintStore::open(&path).unwrap();
        let c = s.get("cmp_a").unwrap().unwrap();
        assert_eq!(
            c.traces,
            vec![
                TraceOutcome {
                    trace_id: tid(2),
                    outcome: Outcome::Rescued
                },
                TraceOutcome {
                    trace_id: tid(3),
                    outcome: Outcome::Rescued
                },
                TraceOutcome {
                    trace_id: tid(4),
                    outcome: Outcome::Flagged
                },
            ]
        );
        // Other fields and indexes untouched by trace updates.
        assert_eq!(c.ticket_id, "cs_1");
        let f = Filter {
            ticket_id: Some("cs_1".into()),
            user_id: None,
        };
        assert_eq!(ids(&s.list(&f, 10).unwrap()), vec!["cmp_a"]);
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("complaints.db");
        let mut written = Vec::new();
        {
            let s = ComplaintStore::open(&path).unwrap();
            assert_eq!(s.path(), Some(path.as_path()));
            for i in 0..20u64 {
                let mut c = complaint(&format!("cmp_{i:02}"), "cs_9", Some("u"), T0 + i);
                if i % 2 == 0 {
                    c.watch_until = Some(at(T0 + 3_600_000));
                }
                s.insert(&c).unwrap();
                written.push(c);
            }
        }
        let s = ComplaintStore::open(&path).unwrap();
        assert_eq!(s.len().unwrap(), 20);
        for c in &written {
            assert_eq!(s.get(&c.complaint_id).unwrap().as_ref(), Some(c));
        }
        let listed = s.list(&Filter::default(), 100).unwrap();
        written.reverse();
        assert_eq!(listed, written);
        let w = s
            .active_watches(UNIX_EPOCH + Duration::from_millis(T0))
            .unwrap();
        assert_eq!(w.len(), 10);
    }

    #[test]
    fn active_watches_only_unexpired() {
        let s = ComplaintStore::in_memory().unwrap();
        let now = T0 + 100_000;
        let mk = |id: &str, until: Option<u64>| {
            let mut c = complaint(id, "cs_w", Some("u"), T0);
            c.watch_until = until.map(at);
            c
        };
        s.insert(&mk("cmp_none", None)).unwrap();
        s.insert(&mk("cmp_past", Some(now - 1))).unwrap();
        s.insert(&mk("cmp_exact", Some(now))).unwrap();
        s.insert(&mk("cmp_soon", Some(now + 1))).unwrap();
        s.insert(&mk("cmp_later", Some(now + 3_600_000))).unwrap();
        let w = s
            .active_watches(UNIX_EPOCH + Duration::from_millis(now))
            .unwrap();
        assert_eq!(ids(&w), vec!["cmp_soon", "cmp_later"]);
        // Far future: nothing is active; before everything: all watches.
        assert!(s
            .active_watches(UNIX_EPOCH + Duration::from_millis(now + 10_000_000))
            .unwrap()
            .is_empty());
        assert_eq!(s.active_watches(UNIX_EPOCH).unwrap().len(), 4);
    }

    #[test]
    fn open_creates_missing_parent_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("nested").join("complaints.db");
        assert!(!path.parent().unwrap().exists());
        let s = ComplaintStore::open(&path).unwrap();
        s.insert(&complaint("cmp_a", "cs_1", None, T0)).unwrap();
        assert!(path.is_file());
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("complaints.db");
        let mut rng = fastrand::Rng::with_seed(7);
        let bytes: Vec<u8> = (0..64 * 1024).map(|_| rng.u8(..)).collect();
        std::fs::write(&path, &bytes).unwrap();
        let err = ComplaintStore::open(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, StoreError::Open { .. } | StoreError::Init { .. }),
            "{err:?}"
        );
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        // The file is left as it was: the store never overwrites what it cannot read.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn small_garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("complaints.db");
        std::fs::write(&path, b"this is not a database\n").unwrap();
        let err = ComplaintStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("complaints.db"), "{err}");
    }

    #[test]
    fn json_has_exactly_the_spec_fields() {
        let mut c = complaint("cmp_a", "cs_441", Some("usr_1"), T0);
        c.watch_until = Some(at(T0 + 1));
        c.traces.push(TraceOutcome {
            trace_id: tid(9),
            outcome: Outcome::AlreadySampled,
        });
        let v = serde_json::to_value(&c).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "complaint_id",
            "ticket_id",
            "created_at",
            "label",
            "text",
            "user_id",
            "attributes",
            "start",
            "end",
            "traces",
            "watch_until",
        ];
        let mut got = keys.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let t = &v["traces"][0];
        let mut tkeys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        tkeys.sort();
        assert_eq!(tkeys, vec!["outcome", "trace_id"]);
        assert_eq!(v["traces"][0]["outcome"], "flagged");
        assert_eq!(v["traces"][1]["outcome"], "already_sampled");
        assert_eq!(
            serde_json::to_value(Outcome::NotFound).unwrap(),
            serde_json::json!("not_found")
        );
        assert_eq!(
            serde_json::to_value(Outcome::Rescued).unwrap(),
            serde_json::json!("rescued")
        );
        // Nulls are present, not omitted.
        c.watch_until = None;
        c.end = None;
        let v = serde_json::to_value(&c).unwrap();
        assert!(v["watch_until"].is_null() && v.get("watch_until").is_some());
        assert!(v.get("end").is_some());
        // Round trip.
        let back: Complaint = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn invalid_timestamps_are_rejected() {
        let s = ComplaintStore::in_memory().unwrap();
        let mut c = complaint("cmp_a", "cs_1", None, T0);
        c.created_at = "yesterday".into();
        assert!(matches!(
            s.insert(&c),
            Err(StoreError::InvalidTime {
                field: "created_at",
                ..
            })
        ));
        let mut c = complaint("cmp_a", "cs_1", None, T0);
        c.watch_until = Some("soon".into());
        assert!(matches!(
            s.insert(&c),
            Err(StoreError::InvalidTime {
                field: "watch_until",
                ..
            })
        ));
        let mut c = complaint("", "cs_1", None, T0);
        c.complaint_id.clear();
        assert!(matches!(s.insert(&c), Err(StoreError::EmptyId)));
        assert!(s.is_empty().unwrap());
    }

    #[test]
    fn parses_rfc3339_variants() {
        let base = parse_millis("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(parse_millis("2024-05-01T12:00:00.000Z"), Some(base));
        assert_eq!(parse_millis("2024-05-01T12:00:00"), Some(base));
        assert_eq!(parse_millis("2024-05-01T12:00:00+00:00"), Some(base));
        assert_eq!(parse_millis("2024-05-01T14:00:00+02:00"), Some(base));
        assert_eq!(
            parse_millis("2024-05-01T14:00:00.250+02:00"),
            Some(base + 250)
        );
        assert_eq!(parse_millis("2024-05-01T07:30:00-04:30"), Some(base));
        assert_eq!(parse_millis("2024-05-01T12:00:00.5Z"), Some(base + 500));
        assert_eq!(parse_millis("nope"), None);
        assert_eq!(parse_millis(&at(T0)), Some(T0));
    }

    #[test]
    fn concurrent_writers_from_threads() {
        let s = Arc::new(ComplaintStore::in_memory().unwrap());
        s.insert(&complaint("cmp_shared", "cs_1", None, T0))
            .unwrap();
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for i in 0..10u8 {
                        let id = format!("cmp_t{t}_{i}");
                        s.insert(&complaint(&id, "cs_2", None, T0 + u64::from(i)))
                            .unwrap();
                        s.add_trace(
                            "cmp_shared",
                            TraceOutcome {
                                trace_id: tid(t * 16 + i + 2),
                                outcome: Outcome::Flagged,
                            },
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.len().unwrap(), 41);
        // 40 new traces + the original one.
        assert_eq!(s.get("cmp_shared").unwrap().unwrap().traces.len(), 41);
    }

    #[test]
    fn store_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ComplaintStore>();
    }
}
