//! The gateway tier, first steps: a static member list (`cluster: { self, peers }`), trace
//! ownership by rendezvous hashing over it ([`ring`]), forwarding of the spans of traces
//! another member owns to that member over OTLP/gRPC ([`forward`]), so each trace is
//! buffered, decided, indexed and archived whole by one member whichever member its
//! clients reached, and the support API answering for the whole tier ([`fanout`]: lookups
//! merged from every member, a trace by id and complaints about it from its owner,
//! complaints about a user on every member). The data path stays one line: receiver →
//! (forward) → buffer → decider.
//!
//! Not built yet (SPEC.md, "The gateway tier"): membership from DNS, health checks (an
//! unreachable member stays in the ring; its spans wait in its forwarder's queue and
//! retries, then are decided here once that queue is full), hand-off of pending traces and
//! recent decisions when membership changes or a member stops, TLS between members, and
//! running it beside `storage` (refused by the config check).

pub mod config;
pub mod fanout;
mod forward;
pub mod ring;

use std::time::Duration;

use parking_lot::Mutex;

use crate::export::ExportError;
use crate::model::{Span, TraceId};
pub use config::{ClusterCfg, PeerCfg};
use forward::Forwarder;
use ring::Ring;

/// gRPC metadata on forwarded requests: the sending member. A request carrying it is
/// ingested where it lands, never forwarded again.
pub const FORWARDED_BY: &str = "x-casefile-forwarded-by";

pub struct Cluster {
    ring: Ring,
    me: usize,
    /// `cluster.peers[].api`, by member.
    apis: Vec<Option<String>>,
    asker: fanout::Asker,
    /// By member; None for this one. Taken at shutdown.
    forwarders: Mutex<Option<Vec<Option<Forwarder>>>>,
}

impl Cluster {
    /// Starts a forwarder to every other member (on the current runtime).
    pub fn start(cfg: &ClusterCfg) -> Result<Cluster, ExportError> {
        let ring = Ring::new(cfg.peers.iter().map(|p| p.otlp.clone()).collect());
        let me = cfg
            .peers
            .iter()
            .position(|p| p.otlp == cfg.me)
            .expect("checked: self is one of the peers");
        let mut forwarders = Vec::with_capacity(cfg.peers.len());
        for (i, p) in cfg.peers.iter().enumerate() {
            forwarders.push(if i == me {
                None
            } else {
                Some(Forwarder::start(&cfg.me, &p.otlp)?)
            });
        }
        tracing::info!(
            member = %cfg.me,
            members = ring.len(),
            "cluster: spans of traces other members own are forwarded to them"
        );
        Ok(Cluster {
            ring,
            me,
            apis: cfg.peers.iter().map(|p| p.api.clone()).collect(),
            asker: fanout::Asker::default(),
            forwarders: Mutex::new(Some(forwarders)),
        })
    }

    /// This member's name (its otlp address as the list has it).
    pub fn name(&self) -> &str {
        self.ring.name(self.me)
    }

    /// The other members (name, api), the owner of `first` first when given.
    pub fn others(&self, first: Option<&TraceId>) -> Vec<(String, Option<String>)> {
        let owner = first.map(|id| self.ring.owner(id));
        let mut out: Vec<(usize, (String, Option<String>))> = (0..self.ring.len())
            .filter(|&i| i != self.me)
            .map(|i| (i, (self.ring.name(i).to_owned(), self.apis[i].clone())))
            .collect();
        out.sort_by_key(|(i, _)| Some(*i) != owner);
        out.into_iter().map(|(_, m)| m).collect()
    }

    /// Asks the other members' support APIs ([`fanout`]).
    pub fn asker(&self) -> &fanout::Asker {
        &self.asker
    }

    /// The member that owns `id`, by name.
    pub fn owner_of(&self, id: &TraceId) -> &str {
        self.ring.name(self.ring.owner(id))
    }

    /// Hands the spans of traces other members own to their forwarders; returns the spans
    /// to ingest here (this member's, and any a full forwarder gave back).
    pub fn route(&self, spans: Vec<Span>) -> Vec<Span> {
        let mut by_member: Vec<Vec<Span>> = (0..self.ring.len()).map(|_| Vec::new()).collect();
        // Spans of one trace mostly come together: one hash round per run.
        let mut last: Option<(TraceId, usize)> = None;
        for span in spans {
            let id = span.trace_id();
            let owner = match last {
                Some((l, o)) if l == id => o,
                _ => {
                    let o = self.ring.owner(&id);
                    last = Some((id, o));
                    o
                }
            };
            by_member[owner].push(span);
        }
        let mut here = std::mem::take(&mut by_member[self.me]);
        let forwarders = self.forwarders.lock();
        for (member, spans) in by_member.into_iter().enumerate() {
            if spans.is_empty() {
                continue;
            }
            let fwd = forwarders
                .as_ref()
                .and_then(|f| f.get(member))
                .and_then(Option::as_ref);
            let (back, reason) = match fwd {
                Some(f) => (f.try_forward(spans).err(), "forwarder_full"),
                None => (Some(spans), "stopping"),
            };
            if let Some(back) = back {
                metrics::counter!("casefile_cluster_decided_here_spans_total", "reason" => reason)
                    .increment(back.len() as u64);
                here.extend(back);
            }
        }
        here
    }

    /// Sends what the forwarders hold, within `grace`; returns the spans not delivered.
    pub async fn finish(&self, grace: Duration) -> u64 {
        let Some(forwarders) = self.forwarders.lock().take() else {
            return 0;
        };
        let mut undelivered = 0;
        for f in forwarders.into_iter().flatten() {
            undelivered += f.finish(grace).await;
        }
        undelivered
    }
}

#[cfg(test)]
mod tests;
