//! The sockets: dedicated UDP receive threads (blocking receives, no async wake-ups on the hot
//! path) that answer index hits inline and hand upstream work to bounded tokio tasks, and a TCP
//! acceptor with a connection limit, an idle timeout, and pipelined queries answered
//! concurrently on each connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::forward::Transport;
use crate::handler::{Handler, Step};

/// Upstream lookups in flight at once from UDP clients; beyond it we answer SERVFAIL.
const MAX_UDP_PENDING: usize = 1024;
/// Queries in flight at once on one TCP connection (further reads wait).
const MAX_TCP_INFLIGHT: usize = 64;

/// How often a blocked UDP receive wakes up to check for shutdown.
const UDP_POLL: Duration = Duration::from_millis(100);

/// Serve UDP on `socket` with `threads` dedicated receive threads until `shutdown`. Each thread
/// receives, answers from the index and sends without leaving its thread; questions that need
/// the upstream are finished on the tokio runtime `rt`. Returns when every thread has stopped.
pub fn serve_udp_threads(
    socket: std::net::UdpSocket,
    handler: Arc<Handler>,
    threads: usize,
    rt: tokio::runtime::Handle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(UDP_POLL))?;
    socket.set_write_timeout(Some(UDP_POLL))?;
    let socket = Arc::new(socket);
    let pending = Arc::new(Semaphore::new(MAX_UDP_PENDING));
    let mut joins = Vec::new();
    for i in 0..threads.max(1) {
        let (socket, handler, pending, shutdown, rt) = (
            socket.clone(),
            handler.clone(),
            pending.clone(),
            shutdown.clone(),
            rt.clone(),
        );
        joins.push(
            std::thread::Builder::new()
                .name(format!("skydns-udp-{i}"))
                .spawn(move || udp_thread(socket, handler, pending, rt, shutdown))?,
        );
    }
    for j in joins {
        let _ = j.join();
    }
    Ok(())
}

fn udp_thread(
    socket: Arc<std::net::UdpSocket>,
    handler: Arc<Handler>,
    pending: Arc<Semaphore>,
    rt: tokio::runtime::Handle,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 65535];
    // `is_cancelled` takes a lock; between timeouts the loop only checks a plain flag.
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (stopping, shutdown) = (stopping.clone(), shutdown.clone());
        rt.spawn(async move {
            shutdown.cancelled().await;
            stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                // ICMP errors surface here on some systems; keep serving.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        match handler.handle_sync(&buf[..n], Transport::Udp) {
            Step::Reply(bytes) => send_blocking(&socket, &bytes, peer),
            Step::Drop => {}
            Step::Upstream(p) => match pending.clone().try_acquire_owned() {
                Ok(permit) => {
                    let socket = socket.clone();
                    let handler = handler.clone();
                    rt.spawn(async move {
                        if let Some(bytes) = handler.finish(*p).await {
                            send_blocking(&socket, &bytes, peer);
                        }
                        drop(permit);
                    });
                }
                Err(_) => {
                    handler.metrics.error(
                        crate::metrics::System::Recursive,
                        crate::metrics::Cause::Overflow,
                    );
                    if let Some(bytes) = servfail(&buf[..n]) {
                        send_blocking(&socket, &bytes, peer);
                    }
                }
            },
        }
    }
}

/// A UDP send never waits long: the socket has a short write timeout.
fn send_blocking(socket: &std::net::UdpSocket, bytes: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, peer) {
        tracing::debug!(error = %e, %peer, "udp send failed");
    }
}

/// A minimal SERVFAIL for a query we cannot take on now (header + question copied).
fn servfail(packet: &[u8]) -> Option<Vec<u8>> {
    let mut msg = hickory_proto::op::Message::from_vec(packet).ok()?;
    msg.metadata.message_type = hickory_proto::op::MessageType::Response;
    msg.metadata.response_code = hickory_proto::op::ResponseCode::ServFail;
    msg.answers.clear();
    msg.authorities.clear();
    msg.additionals.clear();
    msg.to_vec().ok()
}

/// Accept TCP connections until `shutdown`, at most `max_conns` at once.
pub async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    max_conns: usize,
    idle: Duration,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_conns));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
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
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, handler, idle, shutdown).await {
                tracing::debug!(%peer, error = %e, "tcp connection ended");
            }
            drop(permit);
        });
    }
}

async fn connection(
    stream: TcpStream,
    handler: Arc<Handler>,
    idle: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(MAX_TCP_INFLIGHT);
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let mut framed = Vec::with_capacity(bytes.len() + 2);
            framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            framed.extend_from_slice(&bytes);
            if writer.write_all(&framed).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let inflight = Arc::new(Semaphore::new(MAX_TCP_INFLIGHT));
    loop {
        let len = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = tokio::time::timeout(idle, reader.read_u16()) => match r {
                Err(_) => break,          // idle timeout
                Ok(Err(_)) => break,      // closed or reset
                Ok(Ok(len)) => len as usize,
            },
        };
        let mut packet = vec![0u8; len];
        match tokio::time::timeout(idle, reader.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        match handler.handle_sync(&packet, Transport::Tcp) {
            Step::Reply(bytes) => {
                if tx.send(bytes).await.is_err() {
                    break;
                }
                drop(permit);
            }
            Step::Drop => drop(permit),
            Step::Upstream(p) => {
                let handler = handler.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(bytes) = handler.finish(*p).await {
                        let _ = tx.send(bytes).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(tx);
    let _ = write_task.await;
    Ok(())
}
