//! The complaint desk: turns a ticket ("user usr_k8x9m2, order failed around 14:15") into
//! actions on traces. A named trace still in its window is flagged (kept, reason
//! `complaint`); one already kept is reported so; a dropped one still in the rescue buffer
//! is sent on now. A user or attributes open a watch (every new trace of that key is kept,
//! reason `watch`) and act on that key's traces in [start, end]. Every complaint is stored
//! with the trace ids it resolved to; live watches are restored at start.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use thiserror::Error;

use super::index::Key;
use super::marks::Mark;
use super::store::{self, Complaint, ComplaintStore, Outcome, StoreError, TraceOutcome};
use crate::buffer::{Buffer, Resolved};
use crate::model::TraceId;
use crate::support::index::rfc3339;

/// Longest ticket id and label accepted.
pub const MAX_ID_LEN: usize = 128;
/// Complaint text beyond this many characters is cut.
pub const MAX_TEXT_LEN: usize = 4000;

/// The body of `POST /api/v1/complaints` (serialized again when a tier member passes it
/// on).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewComplaint {
    pub ticket_id: String,
    pub trace_id: Option<String>,
    pub user_id: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub label: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Error)]
pub enum ComplaintError {
    #[error("{0}")]
    Invalid(String),
    #[error("complaint store: {0}")]
    Store(#[from] StoreError),
}

fn invalid(msg: impl Into<String>) -> ComplaintError {
    ComplaintError::Invalid(msg.into())
}

/// Parses a 32-hex-digit trace id (any case, not all zero).
pub fn parse_trace_id(s: &str) -> Option<TraceId> {
    let id: TraceId = hex::decode(s).ok()?.try_into().ok()?;
    (id != [0; 16]).then_some(id)
}

/// Parses an instant to Unix nanoseconds (see [`crate::support::time`]).
pub fn parse_time(s: &str) -> Option<u64> {
    crate::support::time::parse_nanos(s)
}

/// A duration in nanoseconds, saturating (584 years).
fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Files complaints against a running buffer.
pub struct Desk {
    buffer: Arc<Buffer>,
    store: Arc<ComplaintStore>,
    /// `support.complaints.watch_for` in nanoseconds; a reload changes it for the
    /// complaints filed from then on.
    watch_for: AtomicU64,
    /// `support.complaints.max_rescue_traces`: rescues one complaint about a key makes.
    max_rescue_traces: AtomicUsize,
}

impl Desk {
    pub fn new(buffer: Arc<Buffer>, store: Arc<ComplaintStore>, watch_for: Duration) -> Desk {
        Desk {
            buffer,
            store,
            watch_for: AtomicU64::new(nanos(watch_for)),
            max_rescue_traces: AtomicUsize::new(1000),
        }
    }

    /// At most `n` traces rescued by one complaint about a user or attributes.
    pub fn set_max_rescue_traces(&self, n: usize) {
        self.max_rescue_traces.store(n, Ordering::Relaxed);
    }

    /// How long a complaint filed from now on watches its keys.
    pub fn watch_for(&self) -> Duration {
        Duration::from_nanos(self.watch_for.load(Ordering::Relaxed))
    }

    /// Changes [`Desk::watch_for`] for the complaints filed from now on; running watches
    /// keep their end.
    pub fn set_watch_for(&self, watch_for: Duration) {
        self.watch_for.store(nanos(watch_for), Ordering::Relaxed);
    }

    pub fn store(&self) -> &ComplaintStore {
        &self.store
    }

    /// The index keys a complaint names: `user_id` stands for user.id and enduser.id.
    fn keys(&self, c: &NewComplaint) -> Result<Vec<Key>, ComplaintError> {
        let named = c.user_id.is_some() || !c.attributes.is_empty();
        let Some(index) = self.buffer.index() else {
            return if named {
                Err(invalid("the index is off (support.index.attributes is empty): only trace_id can be used"))
            } else {
                Ok(Vec::new())
            };
        };
        let mut keys = Vec::new();
        if let Some(user) = &c.user_id {
            keys.extend(
                ["user.id", "enduser.id"]
                    .iter()
                    .filter_map(|a| index.query_key(a, user)),
            );
            if keys.is_empty() {
                return Err(invalid(format!(
                    "user_id needs user.id or enduser.id indexed; indexed: {}",
                    index.attributes().join(", ")
                )));
            }
        }
        for (attr, value) in &c.attributes {
            let key = index.query_key(attr, value).ok_or_else(|| {
                invalid(format!(
                    "attribute {attr:?} is not indexed; indexed attributes: {}",
                    index.attributes().join(", ")
                ))
            })?;
            keys.push(key);
        }
        Ok(keys)
    }

    /// The archive's keys for what a complaint names (checked by [`Desk::keys`] first):
    /// `user_id` as every indexed one of user.id and enduser.id.
    fn archive_keys(&self, c: &NewComplaint) -> Vec<crate::archive::Key> {
        let (Some(archive), Some(index)) = (self.buffer.archive(), self.buffer.index()) else {
            return Vec::new();
        };
        let indexed = index.attributes();
        let mut keys = Vec::new();
        if let Some(user) = &c.user_id {
            for a in ["user.id", "enduser.id"] {
                if indexed.iter().any(|i| i == a) {
                    keys.push(archive.key(a, user));
                }
            }
        }
        for (attr, value) in &c.attributes {
            keys.push(archive.key(attr, value));
        }
        keys
    }

    /// Files one complaint: acts on its traces, opens its watch, stores the record.
    /// Blocking (one durable write): call from a blocking thread.
    pub fn file(&self, mut c: NewComplaint) -> Result<Complaint, ComplaintError> {
        let ticket = c.ticket_id.trim().to_owned();
        if ticket.is_empty() || ticket.len() > MAX_ID_LEN || ticket.chars().any(char::is_control) {
            return Err(invalid(format!(
                "ticket_id is required: 1 to {MAX_ID_LEN} printable characters"
            )));
        }
        if c.label
            .as_ref()
            .is_some_and(|l| l.len() > MAX_ID_LEN || l.chars().any(char::is_control))
        {
            return Err(invalid(format!(
                "label: at most {MAX_ID_LEN} printable characters"
            )));
        }
        if c.trace_id.is_none() && c.user_id.is_none() && c.attributes.is_empty() {
            return Err(invalid("name a trace_id, a user_id or attributes"));
        }
        let trace_id = match &c.trace_id {
            Some(s) => Some(parse_trace_id(s).ok_or_else(|| {
                invalid(format!("invalid trace_id {s:?}: expected 32 hex digits"))
            })?),
            None => None,
        };
        let time = |name: &str, v: &Option<String>| match v {
            Some(s) => parse_time(s).map(Some).ok_or_else(|| {
                invalid(format!(
                    "invalid {name} {s:?}: {}",
                    crate::support::time::FORMS
                ))
            }),
            None => Ok(None),
        };
        let (start, end) = (time("start", &c.start)?, time("end", &c.end)?);
        if let (Some(s), Some(e)) = (start, end) {
            if s > e {
                return Err(invalid("start is after end"));
            }
        }
        if let Some(t) = &mut c.text {
            if let Some((cut, _)) = t.char_indices().nth(MAX_TEXT_LEN) {
                t.truncate(cut);
            }
        }
        let keys = self.keys(&c)?;

        let complaint_id = store::new_id();
        let mark = Mark::new("complaint", &ticket, c.label.as_deref());
        let mut traces = Vec::new();
        let mut seen = HashSet::new();
        if let Some(id) = trace_id {
            seen.insert(id);
            traces.push(self.act(&id, &mark));
        }
        // The key's traces from memory, then from the archive, each once, in range.
        let in_range = |t: u64| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e);
        let mut named = Vec::new();
        for key in &keys {
            let index = self.buffer.index().expect("keys imply an index");
            for (id, decided) in index.lookup(key) {
                let started = self
                    .buffer
                    .pending_summary(&id)
                    .or(decided)
                    .map(|s| s.start_unix_nano);
                if started.is_some_and(in_range) && seen.insert(id) {
                    named.push(id);
                }
            }
        }
        let limit = self.max_rescue_traces.load(Ordering::Relaxed);
        if let Some(archive) = self.buffer.archive() {
            for key in self.archive_keys(&c) {
                // Past the limit, a thousand more are reported, not rescued.
                for s in archive.lookup(&key, start, end, limit.saturating_add(1000)) {
                    if in_range(s.start_unix_nano) && seen.insert(s.trace_id) {
                        named.push(s.trace_id);
                    }
                }
            }
        }
        let mut rescued = 0;
        for id in named {
            // Past the limit, traces still pending are flagged (that costs nothing); the
            // others are reported, not rescued.
            if rescued >= limit && self.buffer.pending_summary(&id).is_none() {
                traces.push(TraceOutcome {
                    trace_id: hex::encode(id),
                    outcome: Outcome::NotRescuedLimit,
                });
                continue;
            }
            let t = self.act(&id, &mark);
            rescued += usize::from(t.outcome == Outcome::Rescued);
            traces.push(t);
        }
        let now = SystemTime::now();
        let watch_for = self.watch_for();
        let watch_until = (!keys.is_empty() && !watch_for.is_zero()).then(|| now + watch_for);
        if let Some(until) = watch_until {
            for key in keys {
                self.buffer.hooks().marks.watch(
                    key,
                    until,
                    Mark::new("watch", &ticket, c.label.as_deref()).of_complaint(&complaint_id),
                );
            }
        }
        let to_rfc = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        let record = Complaint {
            complaint_id,
            ticket_id: ticket,
            created_at: to_rfc(now),
            label: c.label,
            text: c.text,
            user_id: c.user_id,
            attributes: c.attributes,
            start: start.map(rfc3339),
            end: end.map(rfc3339),
            traces,
            watch_until: watch_until.map(to_rfc),
        };
        self.store.insert(&record)?;
        metrics::counter!("casefile_support_complaints_total").increment(1);
        tracing::info!(complaint = %record.complaint_id, ticket = %record.ticket_id, traces = record.traces.len(), watch = record.watch_until.is_some(), "complaint filed");
        Ok(record)
    }

    fn act(&self, id: &TraceId, mark: &Mark) -> TraceOutcome {
        let outcome = match self.buffer.resolve(id, mark) {
            Resolved::Flagged => Outcome::Flagged,
            Resolved::AlreadySampled => Outcome::AlreadySampled,
            Resolved::Rescued => Outcome::Rescued,
            Resolved::NotFound => Outcome::NotFound,
        };
        TraceOutcome {
            trace_id: hex::encode(id),
            outcome,
        }
    }

    /// Adds the traces watches kept since the last call to their complaints' records
    /// (outcome `flagged`). Blocking: one write per trace. Returns how many.
    pub fn record_hits(&self) -> Result<usize, ComplaintError> {
        let marks = &self.buffer.hooks().marks;
        marks.sweep(SystemTime::now());
        let hits = marks.take_hits();
        for (complaint, id) in &hits {
            self.store.add_trace(
                complaint,
                TraceOutcome {
                    trace_id: hex::encode(id),
                    outcome: Outcome::Flagged,
                },
            )?;
        }
        Ok(hits.len())
    }

    /// Re-opens the watches of stored complaints that have not expired. Returns how many.
    pub fn restore_watches(&self) -> Result<usize, ComplaintError> {
        let now = SystemTime::now();
        let mut n = 0;
        for c in self.store.active_watches(now)? {
            let Some(until) = c.watch_until.as_deref().and_then(parse_time) else {
                continue;
            };
            let until = SystemTime::UNIX_EPOCH + Duration::from_nanos(until);
            let req = NewComplaint {
                user_id: c.user_id.clone(),
                attributes: c.attributes.clone(),
                ..Default::default()
            };
            // A key no longer indexed after a config change cannot be watched: skip it.
            let Ok(keys) = self.keys(&req) else { continue };
            for key in keys {
                self.buffer.hooks().marks.watch(
                    key,
                    until,
                    Mark::new("watch", &c.ticket_id, c.label.as_deref())
                        .of_complaint(&c.complaint_id),
                );
            }
            n += 1;
        }
        Ok(n)
    }
}
