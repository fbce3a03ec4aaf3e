//! The TLS side of a listening socket, in front of the OTLP/gRPC server (tonic), the
//! OTLP/HTTP server and the support API (axum): accepts TCP connections, runs each
//! handshake in a task of its own under a deadline, and hands on only the connections
//! whose handshake completed. A plaintext client, a client without the required
//! certificate or one that never finishes its handshake is refused and counted
//! (`casefile_tls_refused_connections_total{listener}`) without disturbing the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::ServerTls;

/// A handshake not finished in this time is abandoned (a client that connects and says
/// nothing must not hold a handshake slot).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past it, accepting waits for one to end.
const MAX_HANDSHAKES: usize = 256;
/// Connections handshaken and not yet taken by the server.
const READY_QUEUE: usize = 64;
/// One refusal per listener is logged at warn level this often; the others at debug.
const WARN_EVERY: Duration = Duration::from_secs(60);

type Conn = (TlsStream<TcpStream>, SocketAddr);

/// A TCP listener whose connections come out with their TLS handshake done.
/// Dropping it stops accepting and closes the socket.
pub struct TlsListener {
    ready: mpsc::Receiver<Conn>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` (on the current tokio runtime). Each connection's
    /// handshake uses the configuration `tls` has in force when it is accepted. `name`
    /// labels logs and metrics: `otlp_grpc`, `otlp_http`, `api`.
    pub fn new(listener: TcpListener, tls: Arc<ServerTls>, name: &'static str) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(listener, tls, tx, name));
        TlsListener { ready, local }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming_shutdown`.
    pub fn into_stream(
        self,
    ) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> + Send + 'static {
        futures_util::stream::unfold(self, |mut l| async move {
            let (io, _) = l.ready.recv().await?;
            Some((Ok(io), l))
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> Conn {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ends only once this listener is gone; never reached.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    tx: mpsc::Sender<Conn>,
    name: &'static str,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let refusals = Arc::new(Refusals::new(name));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = tx.closed() => return,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_error(name, e).await;
                    continue;
                }
            },
            _ = tx.closed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.current());
        let (tx, refusals) = (tx.clone(), Arc::clone(&refusals));
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    // The server is gone when this fails: the connection just closes.
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => refusals.note(peer, &e),
                Err(_) => refusals.note(peer, &"no TLS handshake within 10s"),
            }
        });
    }
}

/// As axum's own listener: errors of one connection are skipped; others (too many open
/// files) are logged and accepting pauses a moment instead of spinning.
async fn accept_error(name: &'static str, e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(listener = name, error = %e, "accept failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Logs refused handshakes: the first of each minute at warn (so a misconfigured client
/// shows up in the default log), the rest at debug (so a scanner cannot flood it).
struct Refusals {
    name: &'static str,
    last_warn: parking_lot::Mutex<Option<Instant>>,
}

impl Refusals {
    fn new(name: &'static str) -> Refusals {
        Refusals {
            name,
            last_warn: parking_lot::Mutex::new(None),
        }
    }

    fn note(&self, peer: SocketAddr, reason: &dyn std::fmt::Display) {
        metrics::counter!("casefile_tls_refused_connections_total", "listener" => self.name)
            .increment(1);
        let now = Instant::now();
        let warn = {
            let mut last = self.last_warn.lock();
            let due = last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
            if due {
                *last = Some(now);
            }
            due
        };
        if warn {
            tracing::warn!(listener = self.name, %peer, %reason, "TLS handshake refused (more in the next minute are logged at debug level)");
        } else {
            tracing::debug!(listener = self.name, %peer, %reason, "TLS handshake refused");
        }
    }
}
