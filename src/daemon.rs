//! Wiring: builds every stage from a validated [`Config`], binds the listeners and runs
//! until told to stop; then shuts down in data-flow order (receivers, pending decisions,
//! exporters) under one grace period. Tests start it on port 0 through [`Daemon::start`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::buffer::{Buffer, BufferCfg};
use crate::cluster::Cluster;
use crate::config::{Config, Problem, ServerTlsCfg};
use crate::export::{ExportError, Exporters};
use crate::memory::{self, Budget, Host, MemoryGuard};
use crate::policy::Policies;
use crate::receiver::Intake;
use crate::reload::certs::{self, Certs};
use crate::storage::Storage;
use crate::support::complaints::Desk;
use crate::support::store::StoreError;
use crate::support::{self, Hooks};
use crate::tls::{Alpn, ServerTls};
use crate::{api, decider, receiver, telemetry};

#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot listen on {endpoint} ({what}): {source}")]
    Bind {
        what: &'static str,
        endpoint: String,
        source: std::io::Error,
    },
    #[error("invalid policies: {}", .0.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "))]
    Policies(Vec<Problem>),
    #[error("cannot start exporters: {0}")]
    Exporters(#[from] ExportError),
    #[error("cannot open the complaint store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot open the write-ahead log: {0}")]
    Storage(#[from] crate::storage::WalError),
    #[error("TLS of the {what}: {source}")]
    Tls {
        what: &'static str,
        source: crate::tls::TlsError,
    },
}

/// A running daemon.
pub struct Daemon {
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub api_addr: Option<SocketAddr>,
    pub buffer: Arc<Buffer>,
    /// The API's live settings (token, rate limit, trace URL); None when the API is off.
    pub(crate) api_settings: Option<api::LiveSettings>,
    /// Files complaints; a reload changes its `watch_for`.
    pub(crate) desk: Arc<Desk>,
    /// The TLS blocks whose files a reload reads again.
    pub(crate) certs: Certs,
    /// The support settings in force, to name what a reload changed.
    pub(crate) support: parking_lot::Mutex<crate::config::SupportCfg>,
    /// The memory figures it runs with.
    pub budget: Budget,
    /// Its memory level, as the receivers see it.
    pub memory: MemoryGuard,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn bind(what: &'static str, endpoint: &str) -> Result<TcpListener, RunError> {
    TcpListener::bind(endpoint)
        .await
        .map_err(|source| RunError::Bind {
            what,
            endpoint: endpoint.to_owned(),
            source,
        })
}

/// The live TLS side of a listener with `tls:` (at `block` in the config), its files read
/// now.
fn server_tls(
    what: &'static str,
    block: &'static str,
    cfg: Option<&ServerTlsCfg>,
    alpn: Alpn,
) -> Result<Option<Arc<ServerTls>>, RunError> {
    cfg.map(|c| ServerTls::load(block, c, alpn))
        .transpose()
        .map_err(|source| RunError::Tls { what, source })
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl Daemon {
    /// Binds every endpoint of `config` and starts all stages.
    pub async fn start(config: Config) -> Result<Daemon, RunError> {
        Daemon::start_on(config, Host::system()).await
    }

    /// Same, reading the cgroup limit and resident memory under `host` (tests point it at
    /// a fake tree).
    pub async fn start_on(config: Config, host: Host) -> Result<Daemon, RunError> {
        let metrics = telemetry::metrics_handle();
        for w in &config.warnings {
            let line = w.line.map(|l| format!(":{l}")).unwrap_or_default();
            tracing::warn!(
                "config {}{line}: {}: {}",
                config.source,
                w.problem.path,
                w.problem.message
            );
        }
        // Certificate files are read before anything starts, so a bad one starts nothing.
        let grpc_tls = server_tls(
            "OTLP/gRPC receiver",
            certs::GRPC,
            certs::server_block(&config, certs::GRPC),
            Alpn::Grpc,
        )?;
        let http_tls = server_tls(
            "OTLP/HTTP receiver",
            certs::HTTP,
            certs::server_block(&config, certs::HTTP),
            Alpn::Http,
        )?;
        let api_tls = server_tls(
            "support API",
            certs::API,
            certs::server_block(&config, certs::API),
            Alpn::Http,
        )?;
        let tls_servers: Vec<Arc<ServerTls>> = [&grpc_tls, &http_tls, &api_tls]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let policies = Policies::for_config(&config.tail_sampling).map_err(RunError::Policies)?;
        let budget = Budget::resolve(&config, &host);
        for line in budget.lines() {
            tracing::info!("{line}");
        }
        for w in &budget.warnings {
            tracing::warn!("memory: {w}");
        }
        let hooks =
            Hooks::from_config(&config.support).with_archive(config.support.archive.as_ref());
        let buffer_cfg = BufferCfg::from_config(&config.tail_sampling, budget.max_buffer_bytes);
        let buffer = Buffer::new(buffer_cfg, policies);
        let buffer = Arc::new(buffer.with_hooks(hooks));
        let store = support::open_store(&config.support.complaints)?;
        let desk = Arc::new(Desk::new(
            Arc::clone(&buffer),
            store,
            config.support.complaints.watch_for,
        ));
        desk.set_max_rescue_traces(config.support.complaints.max_rescue_traces);
        match desk.restore_watches() {
            Ok(0) => {}
            Ok(n) => tracing::info!(watches = n, "restored the watches of stored complaints"),
            Err(e) => tracing::warn!(error = %e, "could not restore watches"),
        }
        let exporters = Exporters::start(&config.exporters)?;
        let exporters_tls = exporters.certificates();
        let storage = restore(&config, &buffer)?;
        let (stop, stop_rx) = watch::channel(false);

        // Receivers refuse while the exporters are behind or kept spans pile up.
        let outbox_limit = budget.outbox_bytes;
        let backpressure: receiver::Backpressure = {
            let (b, e) = (Arc::clone(&buffer), exporters.clone());
            Arc::new(move || e.saturated() || b.outbox_bytes() > outbox_limit)
        };
        let guard = MemoryGuard::default();
        let cluster = match &config.cluster {
            Some(c) => Some(Arc::new(Cluster::start(c, Arc::clone(&buffer))?)),
            None => None,
        };
        let intake = Intake::new(Arc::clone(&buffer), backpressure)
            .with_cluster(cluster.clone())
            .with_storage(storage.clone())
            .with_memory(guard.clone())
            .with_checks(config.receivers.checks);
        if let (Some(limit), Some(soft)) = (budget.limit, budget.soft) {
            let watch = memory::guard::Watch {
                guard: guard.clone(),
                rss: memory::Rss::new(&host),
                limit,
                soft,
                check_interval: budget.check_interval,
                buffer: Arc::clone(&buffer),
            };
            tokio::spawn(memory::guard::run(watch, stop_rx.clone()));
        }

        let mut receivers: Vec<JoinHandle<()>> = Vec::new();
        let mut grpc_addr = None;
        if let Some(g) = &config.receivers.grpc {
            let l = bind("OTLP/gRPC", &g.endpoint).await?;
            grpc_addr = l.local_addr().ok();
            let (intake, max, sd) = (
                intake.clone(),
                g.max_recv_msg_size,
                stopped(stop_rx.clone()),
            );
            receivers.push(tokio::spawn(async move {
                if let Err(e) = receiver::grpc::serve(l, intake, max, grpc_tls, sd).await {
                    tracing::error!(error = %e, "OTLP/gRPC receiver failed");
                }
            }));
        }
        let mut http_addr = None;
        if let Some(h) = &config.receivers.http {
            let l = bind("OTLP/HTTP", &h.endpoint).await?;
            http_addr = l.local_addr().ok();
            let (intake, max, sd) = (
                intake.clone(),
                h.max_request_body_size,
                stopped(stop_rx.clone()),
            );
            receivers.push(tokio::spawn(async move {
                if let Err(e) = receiver::http::serve(l, intake, max, http_tls, sd).await {
                    tracing::error!(error = %e, "OTLP/HTTP receiver failed");
                }
            }));
        }
        let ready = Arc::new(AtomicBool::new(false));
        let mut api_addr = None;
        let mut api_task = None;
        let mut api_settings = None;
        if let Some(endpoint) = config.support.api.endpoint.as_deref() {
            let l = bind("support API", endpoint).await?;
            api_addr = l.local_addr().ok();
            tracing::info!(addr = ?api_addr, tls = api_tls.is_some(), "support API listening");
            let settings =
                api::LiveSettings::new(api::Settings::from_config(&config.support, None));
            api_settings = Some(settings.clone());
            let state = api::ApiState {
                ready: Arc::clone(&ready),
                metrics,
                buffer: Arc::clone(&buffer),
                exporters: exporters.names(),
                desk: Some(Arc::clone(&desk)),
                settings,
                cluster: cluster.clone(),
            };
            let sd = stopped(stop_rx.clone());
            api_task = Some(tokio::spawn(async move {
                if let Err(e) = api::serve(l, state, api_tls, sd).await {
                    tracing::error!(error = %e, "support API failed");
                }
            }));
        }

        let tick = decider::tick_for(config.tail_sampling.decision_wait);
        // A task on the shared runtime, not a thread of its own: under saturation the
        // workers then share time between accepting and deciding, so ingest cannot outrun
        // the decisions (a separate thread measured p99 delays of 1 s and RSS doubling).
        let decider_task = tokio::spawn(decider::run(
            Arc::clone(&buffer),
            exporters.clone(),
            tick,
            stop_rx.clone(),
            storage.clone(),
        ));
        ready.store(true, Ordering::Relaxed);
        tracing::info!(policies = ?buffer.policies().names(), exporters = ?exporters.names(), "casefile started");

        let grace = config.shutdown_grace;
        let drop_pending = config.tail_sampling.drop_pending_traces_on_shutdown;
        let task_buffer = Arc::clone(&buffer);
        let task_desk = Arc::clone(&desk);
        tokio::spawn(record_watch_hits(Arc::clone(&desk), stop_rx.clone()));
        let mut stop_wait = stop_rx;
        let task = tokio::spawn(async move {
            let _ = stop_wait.wait_for(|s| *s).await;
            ready.store(false, Ordering::Relaxed);
            let stages = Stages {
                buffer: task_buffer,
                exporters,
                receivers,
                decider_task,
                api_task,
                desk: task_desk,
                storage,
                cluster,
            };
            shutdown(stages, grace, drop_pending).await;
        });
        Ok(Daemon {
            grpc_addr,
            http_addr,
            api_addr,
            buffer,
            api_settings,
            desk,
            certs: Certs {
                servers: tls_servers,
                clients: exporters_tls,
            },
            support: parking_lot::Mutex::new(config.support.clone()),
            budget,
            memory: guard,
            stop,
            task,
        })
    }

    /// Stops the daemon and waits until it has flushed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// With `storage.dir`: opens the write-ahead log and replays what it holds into the buffer,
/// before any receiver listens (the decider decides and hands on the replayed traces once
/// it runs).
fn restore(config: &Config, buffer: &Buffer) -> Result<Option<Arc<Storage>>, RunError> {
    let Some(cfg) = &config.storage else {
        return Ok(None);
    };
    let storage = Arc::new(Storage::open(cfg, config.tail_sampling.decision_wait)?);
    // Decisions taken while replaying (bounds reached) are logged too.
    buffer.set_decision_log(storage.clone());
    let r = storage.restore(buffer);
    if r.segments > 0 {
        tracing::info!(
            dir = %cfg.dir.display(),
            segments = r.segments,
            records = r.records,
            spans = r.spans,
            damaged_segments = r.damaged,
            decisions = r.decisions,
            skipped_delivered_spans = r.delivered,
            "write-ahead log replayed; kept spans not yet delivered are exported again"
        );
    } else {
        tracing::info!(dir = %cfg.dir.display(), fsync = ?cfg.fsync, "write-ahead log opened");
    }
    Ok(Some(storage))
}

/// The stages shutdown stops, in data-flow order.
struct Stages {
    buffer: Arc<Buffer>,
    exporters: Exporters,
    receivers: Vec<JoinHandle<()>>,
    decider_task: JoinHandle<()>,
    api_task: Option<JoinHandle<()>>,
    desk: Arc<Desk>,
    storage: Option<Arc<Storage>>,
    cluster: Option<Arc<Cluster>>,
}

/// Adds the traces that complaint watches kept to their complaint records, once a second
/// (store writes are blocking: off the runtime's workers).
async fn record_watch_hits(desk: Arc<Desk>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let d = Arc::clone(&desk);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || d.record_hits()).await {
            tracing::warn!(error = %e, "could not add watched traces to their complaints");
        }
    }
}

async fn shutdown(stages: Stages, grace: Duration, drop_pending: bool) {
    let Stages {
        buffer,
        exporters,
        receivers,
        decider_task,
        api_task,
        desk,
        storage,
        cluster,
    } = stages;
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!("shutting down: receivers stop, pending traces are decided, exporters drain");
    for r in receivers {
        // Open client connections must not hold the shutdown past a fraction of the grace.
        let _ = tokio::time::timeout(grace / 4, r).await;
    }
    // Spans received for other members go to them before this member's own decisions; so
    // do its pending traces (their spans may still be arriving at the others).
    if let Some(c) = cluster {
        if !drop_pending {
            c.hand_off(&buffer);
        }
        let unfinished = c.finish(grace / 4).await;
        if unfinished > 0 {
            tracing::warn!(
                members = unfinished,
                "spans for other members were still being sent when the time for it ran out"
            );
        }
    }
    let _ = decider_task.await;
    let decided = decider::finish(&buffer, &exporters, drop_pending).await;
    tracing::info!(
        traces = decided,
        dropped_unseen = drop_pending,
        "pending traces decided"
    );
    let _ = tokio::task::spawn_blocking(move || desk.record_hits()).await;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let undelivered = exporters.shutdown(left).await;
    if undelivered > 0 {
        tracing::warn!(
            spans = undelivered,
            "spans of kept traces could not be delivered before the grace period ended"
        );
    }
    // Receivers are stopped, every trace is decided and every kept span delivered: the log
    // holds nothing a restart would need (kept otherwise, so a restart sends them again).
    if let Some(s) = storage {
        if undelivered == 0 {
            s.clear();
        } else {
            tracing::warn!("the write-ahead log is kept: the next start replays it");
        }
    }
    if let Some(t) = api_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
    }
    // Everything decided went to the archive: write it out before exiting.
    if let Some(a) = buffer.archive().cloned() {
        let _ = tokio::task::spawn_blocking(move || a.close()).await;
    }
    tracing::info!("casefile stopped");
}

/// Runs the daemon until `signal` resolves, then shuts down cleanly.
/// Runs until `signal`; with a reload source, policies are reloaded on SIGHUP and when the
/// config file changes.
pub async fn run(
    config: Config,
    reload: Option<crate::reload::Source>,
    signal: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let started = config.clone();
    let daemon = Daemon::start(config).await?;
    match reload {
        Some(source) => {
            tokio::select! {
                _ = signal => {}
                _ = crate::reload::watch(&daemon, source, started) => {}
            }
        }
        None => signal.await,
    }
    daemon.shutdown().await;
    Ok(())
}
