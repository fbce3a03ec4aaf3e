//! The gateway tier, first steps: a static member list (`cluster: { self, peers }`), trace
//! ownership by rendezvous hashing over it ([`ring`]), forwarding of the spans of traces
//! another member owns to that member over OTLP/gRPC ([`forward`]), so each trace is
//! buffered, decided, indexed and archived whole by one member whichever member its
//! clients reached, and the support API answering for the whole tier ([`fanout`]: lookups
//! merged from every member, a trace by id and complaints about it from its owner,
//! complaints about a user on every member). The data path stays one line: receiver →
//! (forward) → buffer → decider.
//!
//! A member that cannot be reached leaves the ring until a probe finds it again, and the
//! spans waiting for it are routed again: nothing accepted is lost ([`forward`]).
//!
//! A member that stops hands its pending traces to their owners without it
//! ([`Cluster::hand_off`]).
//!
//! With `cluster.tls` members forward and ask each other over (mutual) TLS.
//!
//! Not built yet (SPEC.md, "The gateway tier"): membership from DNS, hand-off when a
//! member fails or joins, of recent decisions and of complaint flags, and running it
//! beside `storage` (refused by the config check).

pub mod config;
pub mod fanout;
mod forward;
pub mod ring;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::buffer::Buffer;
use crate::export::ExportError;
use crate::model::{Span, TraceId};
pub use config::{ClusterCfg, PeerCfg};
use ring::Ring;

/// gRPC metadata on forwarded requests: the sending member. A request carrying it is
/// ingested where it lands, never forwarded again.
pub const FORWARDED_BY: &str = "x-casefile-forwarded-by";

/// This member's handle on the tier.
pub struct Cluster {
    shared: Arc<Shared>,
}

/// Span bytes that may wait for other members (all together): past it, spans are decided
/// where they landed. The memory budget reserves it for a member of a tier.
pub const MAX_QUEUED: usize = 256 << 20;

/// The forwarders' channels, by member (None for this member).
type Senders = Vec<Option<mpsc::Sender<Vec<Span>>>>;

/// What the cluster handle, its forwarders and probes share.
struct Shared {
    ring: Ring,
    me: usize,
    /// By member: in the ring (this member always is).
    up: Vec<AtomicBool>,
    /// This member is stopping: it owns nothing, its pending traces go to the others.
    leaving: AtomicBool,
    /// Span bytes waiting for other members or being sent (at most [`MAX_QUEUED`]).
    queued: std::sync::atomic::AtomicUsize,
    /// By member: a probe is waiting for it to come back.
    probing: Vec<AtomicBool>,
    /// `cluster.peers[].api`, by member.
    apis: Vec<Option<String>>,
    asker: fanout::Asker,
    /// Where spans decided here go (handed back by a forwarder).
    buffer: Arc<Buffer>,
    /// By member; None for this one. Taken at shutdown.
    senders: Mutex<Option<Senders>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Cluster {
    /// Starts a forwarder to every other member (on the current runtime); spans handed
    /// back are buffered in `buffer`.
    pub fn start(cfg: &ClusterCfg, buffer: Arc<Buffer>) -> Result<Cluster, ExportError> {
        let ring = Ring::new(cfg.peers.iter().map(|p| p.otlp.clone()).collect());
        let me = cfg
            .peers
            .iter()
            .position(|p| p.otlp == cfg.me)
            .expect("checked: self is one of the peers");
        let mut sinks = Vec::with_capacity(cfg.peers.len());
        for (i, p) in cfg.peers.iter().enumerate() {
            sinks.push(if i == me {
                None
            } else {
                Some(forward::sink(&cfg.me, &p.otlp, cfg.tls.as_ref())?)
            });
        }
        let n = cfg.peers.len();
        let mut senders = Vec::with_capacity(n);
        let mut receivers = Vec::with_capacity(n);
        for sink in &sinks {
            if sink.is_some() {
                let (tx, rx) = mpsc::channel(forward::PENDING);
                senders.push(Some(tx));
                receivers.push(Some(rx));
            } else {
                senders.push(None);
                receivers.push(None);
            }
        }
        let shared = Arc::new(Shared {
            ring,
            me,
            up: (0..n).map(|_| AtomicBool::new(true)).collect(),
            leaving: AtomicBool::new(false),
            queued: Default::default(),
            probing: (0..n).map(|_| AtomicBool::new(false)).collect(),
            apis: cfg.peers.iter().map(|p| p.api.clone()).collect(),
            asker: fanout::Asker::new(cfg.tls.as_ref())?,
            buffer,
            senders: Mutex::new(Some(senders)),
            tasks: Mutex::new(Vec::new()),
        });
        for (member, (sink, rx)) in sinks.into_iter().zip(receivers).enumerate() {
            if let (Some(sink), Some(rx)) = (sink, rx) {
                let task = tokio::spawn(forward::run(Arc::clone(&shared), member, rx, sink));
                shared.tasks.lock().push(task);
            }
        }
        shared.publish_up();
        tracing::info!(
            member = %cfg.me,
            members = n,
            "cluster: spans of traces other members own are forwarded to them"
        );
        Ok(Cluster { shared })
    }

    /// This member's name (its otlp address as the list has it).
    pub fn name(&self) -> &str {
        self.shared.ring.name(self.shared.me)
    }

    /// The other members (name, api), the owner of `first` first when given.
    pub fn others(&self, first: Option<&TraceId>) -> Vec<(String, Option<String>)> {
        let sh = &self.shared;
        let owner = first.map(|id| sh.owner(id));
        let mut out: Vec<(usize, (String, Option<String>))> = (0..sh.ring.len())
            .filter(|&i| i != sh.me)
            .map(|i| (i, (sh.ring.name(i).to_owned(), sh.apis[i].clone())))
            .collect();
        out.sort_by_key(|(i, _)| Some(*i) != owner);
        out.into_iter().map(|(_, m)| m).collect()
    }

    /// Asks the other members' support APIs ([`fanout`]).
    pub fn asker(&self) -> &fanout::Asker {
        &self.shared.asker
    }

    /// The member that owns `id` among those up, by name.
    pub fn owner_of(&self, id: &TraceId) -> &str {
        self.shared.ring.name(self.shared.owner(id))
    }

    /// Members in the ring now (this one included).
    pub fn members_up(&self) -> usize {
        self.shared.up.iter().filter(|u| u.load(Relaxed)).count()
    }

    /// Hands the spans of traces other members own to their forwarders; returns the spans
    /// to ingest here (this member's, and any a full forwarder gave back).
    pub fn route(&self, spans: Vec<Span>) -> Vec<Span> {
        self.shared.route(spans)
    }

    /// Before stopping: hands every pending trace to the member that owns it without this
    /// one, so traces whose spans keep coming are decided whole there. Returns the traces
    /// handed over; what cannot go stays here and is decided at shutdown. Call
    /// [`Cluster::finish`] next to send them.
    pub fn hand_off(&self, buffer: &Buffer) -> usize {
        let sh = &self.shared;
        if !(0..sh.ring.len()).any(|i| i != sh.me && sh.is_up(i)) {
            return 0;
        }
        sh.leaving.store(true, Relaxed);
        let spans = buffer.take_pending();
        let mut ids: Vec<TraceId> = spans.iter().map(Span::trace_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let here = sh.route(spans);
        let kept_here = {
            let mut k: Vec<TraceId> = here.iter().map(Span::trace_id).collect();
            k.sort_unstable();
            k.dedup();
            k.len()
        };
        if !here.is_empty() {
            buffer.ingest(here, tokio::time::Instant::now());
        }
        let handed = ids.len() - kept_here;
        metrics::counter!("casefile_cluster_handed_off_traces_total").increment(handed as u64);
        tracing::info!(
            traces = handed,
            kept = kept_here,
            "cluster: pending traces handed to the members that own them now"
        );
        handed
    }

    /// Sends what the forwarders hold (handing back what cannot go), within `grace`;
    /// returns how many forwarders had not finished then.
    pub async fn finish(&self, grace: Duration) -> usize {
        let senders = self.shared.senders.lock().take();
        drop(senders);
        let tasks = std::mem::take(&mut *self.shared.tasks.lock());
        let deadline = tokio::time::Instant::now() + grace;
        let mut unfinished = 0;
        for mut t in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
                unfinished += 1;
            }
        }
        unfinished
    }
}

impl Shared {
    fn is_up(&self, member: usize) -> bool {
        self.up[member].load(Relaxed)
    }

    /// The owner of `id` among the members up (not this one once it is leaving, unless no
    /// other is up).
    fn owner(&self, id: &TraceId) -> usize {
        if self.leaving.load(Relaxed) {
            let others = |i| i != self.me && self.is_up(i);
            if (0..self.ring.len()).any(others) {
                return self.ring.owner_among(id, others);
            }
        }
        self.ring.owner_among(id, |i| self.is_up(i))
    }

    fn route(&self, spans: Vec<Span>) -> Vec<Span> {
        let mut by_member: Vec<Vec<Span>> = (0..self.ring.len()).map(|_| Vec::new()).collect();
        // Spans of one trace mostly come together: one hash round per run.
        let mut last: Option<(TraceId, usize)> = None;
        for span in spans {
            let id = span.trace_id();
            let owner = match last {
                Some((l, o)) if l == id => o,
                _ => {
                    let o = self.owner(&id);
                    last = Some((id, o));
                    o
                }
            };
            by_member[owner].push(span);
        }
        let mut here = std::mem::take(&mut by_member[self.me]);
        let senders = self.senders.lock();
        for (member, spans) in by_member.into_iter().enumerate() {
            if spans.is_empty() {
                continue;
            }
            let tx = senders
                .as_ref()
                .and_then(|f| f.get(member))
                .and_then(Option::as_ref);
            let bytes: usize = spans.iter().map(|s| s.bytes.len()).sum();
            let (back, reason) = match tx {
                Some(_) if self.queued.fetch_add(bytes, Relaxed) + bytes > MAX_QUEUED => {
                    self.queued.fetch_sub(bytes, Relaxed);
                    (spans, "forwarder_full")
                }
                Some(tx) => match tx.try_send(spans) {
                    Ok(()) => continue,
                    Err(e) => {
                        self.queued.fetch_sub(bytes, Relaxed);
                        match e {
                            mpsc::error::TrySendError::Full(s) => (s, "forwarder_full"),
                            mpsc::error::TrySendError::Closed(s) => (s, "stopping"),
                        }
                    }
                },
                None => (spans, "stopping"),
            };
            metrics::counter!("casefile_cluster_decided_here_spans_total", "reason" => reason)
                .increment(back.len() as u64);
            here.extend(back);
        }
        here
    }

    /// Spans a forwarder could not deliver: routed again (their member is down now, so to
    /// their new owner) and buffered here if that is this member.
    fn hand_back(&self, spans: Vec<Span>, reason: &'static str) {
        metrics::counter!("casefile_cluster_rerouted_spans_total", "reason" => reason)
            .increment(spans.len() as u64);
        let here = self.route(spans);
        if !here.is_empty() {
            self.buffer.ingest(here, tokio::time::Instant::now());
        }
    }

    /// Spans decided here whoever owns them.
    fn decide_here(&self, spans: Vec<Span>, reason: &'static str) {
        metrics::counter!("casefile_cluster_decided_here_spans_total", "reason" => reason)
            .increment(spans.len() as u64);
        self.buffer.ingest(spans, tokio::time::Instant::now());
    }

    /// Takes `member` out of the ring and probes it until it accepts connections again.
    fn mark_down(self: &Arc<Self>, member: usize, why: &str) {
        if self.up[member].swap(false, Relaxed) {
            tracing::warn!(member = %self.ring.name(member), error = why, "cluster: a member cannot be reached; its traces go to the others until it answers");
            self.publish_up();
        }
        if self.probing[member].swap(true, Relaxed) {
            return;
        }
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let otlp = shared.ring.name(member).to_owned();
            loop {
                tokio::time::sleep(forward::PROBE_EVERY).await;
                if shared.senders.lock().is_none() {
                    break;
                }
                if forward::reachable(&otlp).await {
                    shared.up[member].store(true, Relaxed);
                    tracing::info!(member = %otlp, "cluster: a member answers again and owns its traces again");
                    shared.publish_up();
                    break;
                }
            }
            shared.probing[member].store(false, Relaxed);
        });
    }

    fn publish_up(&self) {
        let n = self.up.iter().filter(|u| u.load(Relaxed)).count();
        metrics::gauge!("casefile_cluster_members_up").set(n as f64);
    }
}

#[cfg(test)]
mod tests;
