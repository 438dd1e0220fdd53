//! DNS over TCP: an acceptor with a connection limit, an idle timeout, and pipelined queries
//! answered concurrently on each connection.
//!
//! A connection holds at most [`MAX_TCP_INFLIGHT`] queries between reading them and writing
//! their replies, and at most [`MAX_TCP_QUEUED_BYTES`] of encoded replies waiting for the
//! socket. Every wait races the idle timeout and shutdown: a reply that cannot be written
//! within the idle timeout (the client is not reading), or a reader that cannot take a new
//! query within it (replies backed up), closes the connection, whatever the client keeps
//! sending — so clients that never read cannot hold the connection slots.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::handler::{Handler, Step};
use crate::observe::Client;

/// Queries in flight at once on one TCP connection, from read to reply written.
pub const MAX_TCP_INFLIGHT: usize = 64;
/// Encoded reply bytes queued on one connection and not yet written to the socket.
pub const MAX_TCP_QUEUED_BYTES: usize = 256 * 1024;
/// Consecutive failed accepts after which the listener is considered dead.
const MAX_ACCEPT_FAILURES: u32 = 100;

/// Why the acceptor stopped before shutdown.
#[derive(Debug, thiserror::Error)]
#[error("tcp listener failed {MAX_ACCEPT_FAILURES} times in a row, last: {0}")]
pub struct AcceptError(std::io::Error);

/// Accept TCP connections until `shutdown`, at most `max_conns` at once. Transient accept
/// errors (out of file descriptors) are retried with a short pause; a listener that fails
/// every time is an error, so the supervisor can restart the process.
pub async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    max_conns: usize,
    idle: Duration,
    shutdown: CancellationToken,
) -> Result<(), AcceptError> {
    let slots = Arc::new(Semaphore::new(max_conns));
    let mut failures = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(v) => {
                    failures = 0;
                    v
                }
                Err(e) => {
                    failures += 1;
                    if failures >= MAX_ACCEPT_FAILURES {
                        return Err(AcceptError(e));
                    }
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            handler.metrics.tcp_rejected.inc();
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        let conn = shutdown.child_token();
        tokio::spawn(async move {
            connection(stream, peer, handler, idle, conn).await;
            tracing::trace!(%peer, "tcp connection ended");
            drop(permit);
        });
    }
}

/// What a queued reply holds of the connection's budgets; returned once it is written.
struct Tickets {
    _inflight: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// One connection's shared parts.
#[derive(Clone)]
struct Conn {
    handler: Arc<Handler>,
    /// The client's address.
    peer: SocketAddr,
    idle: Duration,
    /// Cancelled on shutdown, or when either side gives up on the connection.
    cancel: CancellationToken,
    bytes: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<(Vec<u8>, Tickets)>,
}

impl Conn {
    /// Wait for a permit of `sem`, racing the idle timeout and the connection's end. `None`
    /// (and the connection cancelled) when the wait outlasts the idle timeout.
    async fn wait(&self, sem: &Arc<Semaphore>, n: u32) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            _ = self.cancel.cancelled() => None,
            r = sem.clone().acquire_many_owned(n) => r.ok(),
            _ = tokio::time::sleep(self.idle) => {
                self.handler.metrics.tcp_stalled.inc();
                self.cancel.cancel();
                None
            }
        }
    }

    /// Queue a reply for the writer, within the connection's byte budget.
    async fn queue(&self, bytes: Vec<u8>, inflight: OwnedSemaphorePermit) {
        let n = (bytes.len() + 2).min(MAX_TCP_QUEUED_BYTES) as u32;
        if let Some(b) = self.wait(&self.bytes, n).await {
            let tickets = Tickets {
                _inflight: inflight,
                _bytes: b,
            };
            let _ = self.tx.send((bytes, tickets));
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    idle: Duration,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let write_task = tokio::spawn(write_replies(
        writer,
        rx,
        idle,
        cancel.clone(),
        handler.clone(),
    ));
    let conn = Conn {
        handler,
        peer,
        idle,
        cancel: cancel.clone(),
        bytes: Arc::new(Semaphore::new(MAX_TCP_QUEUED_BYTES)),
        tx,
    };
    let inflight = Arc::new(Semaphore::new(MAX_TCP_INFLIGHT));
    loop {
        let Some(permit) = conn.wait(&inflight, 1).await else {
            break;
        };
        let len = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(idle, reader.read_u16()) => match r {
                Err(_) => break,          // idle timeout
                Ok(Err(_)) => break,      // closed or reset
                Ok(Ok(len)) => len as usize,
            },
        };
        let mut packet = vec![0u8; len];
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(idle, reader.read_exact(&mut packet)) => match r {
                Ok(Ok(_)) => {}
                _ => break,
            },
        }
        match conn.handler.handle_sync(&packet, Client::tcp(conn.peer)) {
            Step::Reply(bytes) => conn.queue(bytes, permit).await,
            Step::Drop => drop(permit),
            Step::Upstream(p) => {
                let conn = conn.clone();
                tokio::spawn(async move {
                    let reply = tokio::select! {
                        _ = conn.cancel.cancelled() => None,
                        r = conn.handler.finish(*p) => r,
                    };
                    if let Some(bytes) = reply {
                        conn.queue(bytes, permit).await;
                    }
                });
            }
        }
    }
    // The client stopped sending (or the connection failed): the writer finishes what is
    // queued — within its own timeouts — and upstream tasks still running hold their own
    // senders, so their replies go out too unless the connection was cancelled.
    drop(conn);
    let _ = write_task.await;
}

/// Write queued replies in order; give up (cancelling the connection) when one cannot be
/// written within `idle`.
async fn write_replies(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<(Vec<u8>, Tickets)>,
    idle: Duration,
    cancel: CancellationToken,
    handler: Arc<Handler>,
) {
    loop {
        let (bytes, tickets) = tokio::select! {
            _ = cancel.cancelled() => return,
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        drop(bytes);
        let written = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(idle, writer.write_all(&framed)) => r,
        };
        match written {
            Ok(Ok(())) => drop(tickets),
            Ok(Err(_)) => {
                cancel.cancel();
                return;
            }
            Err(_) => {
                handler.metrics.tcp_stalled.inc();
                cancel.cancel();
                return;
            }
        }
    }
    let _ = tokio::time::timeout(idle, writer.shutdown()).await;
}
