//! DNS over UDP: dedicated blocking receive threads (no async wake-ups on the hot path). Each
//! thread takes up to [`BATCH`] datagrams per `recvmmsg`, answers index hits inline, and sends
//! the replies with one `sendmmsg`; questions that need the upstream are finished by tokio
//! tasks, as many as the handler's upstream budget allows, and their replies sent without
//! blocking (`MSG_DONTWAIT`). Hand-written on `recvmmsg`/`sendmmsg` because the benchmark says
//! so: batching is what brings UDP hits to Knot's rate (docs/benchmarks.md).

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use rustix::net::addr::SocketAddrArg;
use rustix::net::{sendmmsg, sendto, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
use tokio_util::sync::CancellationToken;

use crate::handler::{Handler, Step};
use crate::observe::Client;

/// How often a blocked receive wakes up to check for shutdown (also the send timeout).
const UDP_POLL: Duration = Duration::from_millis(100);
/// Datagrams taken per receive call, and so replies sent per send call.
const BATCH: usize = 16;
/// Receive buffer per datagram: the largest UDP payload.
const MAX_DATAGRAM: usize = 65535;

/// Serve UDP on `socket` with `threads` dedicated receive threads until `shutdown`; questions
/// that need the upstream are finished on the tokio runtime `rt`. The threads share the one
/// socket, so whichever is free takes the next batch. Returns when every thread has stopped.
pub fn serve_udp_threads(
    socket: UdpSocket,
    handler: Arc<Handler>,
    threads: usize,
    rt: tokio::runtime::Handle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(UDP_POLL))?;
    socket.set_write_timeout(Some(UDP_POLL))?;
    let socket = Arc::new(socket);
    // `is_cancelled` takes a lock; between receives the threads only check a plain flag.
    let stopping = Arc::new(AtomicBool::new(false));
    {
        // Set when shutdown is requested, and also when the runtime drops this task without
        // running it to the end (the runtime itself going away): the threads never outlive
        // the runtime, whose shutdown waits for this blocking task.
        let stop = StopOnDrop(stopping.clone());
        rt.spawn(async move {
            shutdown.cancelled().await;
            drop(stop);
        });
    }
    // Each thread reports when it ends; one that ends before shutdown (a panic) is an error,
    // which the supervisor in `run` turns into a non-zero exit.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, bool)>();
    let count = threads.max(1);
    for i in 0..count {
        let worker = Worker {
            socket: socket.clone(),
            handler: handler.clone(),
            rt: rt.clone(),
        };
        let (stopping, done_tx) = (stopping.clone(), done_tx.clone());
        std::thread::Builder::new()
            .name(format!("skydns-udp-{i}"))
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| worker.run(&stopping));
                let panicked = std::panic::catch_unwind(run).is_err();
                let _ = done_tx.send((i, panicked));
            })?;
    }
    drop(done_tx);
    for _ in 0..count {
        let Ok((i, panicked)) = done_rx.recv() else {
            break;
        };
        if !stopping.load(Ordering::Relaxed) {
            stopping.store(true, Ordering::Relaxed);
            let how = if panicked { "panicked" } else { "stopped" };
            return Err(std::io::Error::other(format!("udp thread {i} {how}")));
        }
    }
    Ok(())
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One receive thread's shared parts.
struct Worker {
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    rt: tokio::runtime::Handle,
}

impl Worker {
    fn run(&self, stopping: &AtomicBool) {
        let mut inbox = Inbox::new();
        let mut outbox: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
        while !stopping.load(Ordering::Relaxed) {
            let received = match inbox.receive(&self.socket) {
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => {
                    // ICMP errors surface here on some systems; keep serving, without spinning
                    // if the error persists (ENOMEM and the like).
                    tracing::debug!(error = %e, "udp receive error");
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            for i in 0..received {
                if let Some((packet, peer)) = inbox.datagram(i) {
                    self.answer(packet, peer, &mut outbox);
                }
            }
            send_all(&self.socket, &mut outbox);
        }
    }

    /// Answer one datagram: into `outbox` when the reply is ready now, else on a task.
    fn answer(&self, packet: &[u8], peer: SocketAddr, outbox: &mut Vec<(Vec<u8>, SocketAddr)>) {
        match self.handler.handle_sync(packet, Client::udp(peer)) {
            Step::Reply(bytes) => outbox.push((bytes, peer)),
            Step::Drop => {}
            // The handler holds the upstream budget: a pending lookup carries its permit.
            Step::Upstream(p) => {
                let socket = self.socket.clone();
                let handler = self.handler.clone();
                self.rt.spawn(async move {
                    if let Some(bytes) = handler.finish(*p).await {
                        // Never block a tokio worker: a full socket drops the reply (the
                        // client retries, as with any lost datagram).
                        if let Err(e) = sendto(&*socket, &bytes, SendFlags::DONTWAIT, &peer) {
                            tracing::debug!(error = %e, %peer, "udp send failed");
                        }
                    }
                });
            }
        }
    }
}

/// Receive buffers and the `recvmmsg` headers that point at them, reused for every call.
struct Inbox {
    buffers: Vec<Vec<u8>>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Length and sender of each datagram of the last receive.
    got: Vec<(usize, Option<SocketAddr>)>,
}

impl Inbox {
    fn new() -> Self {
        Inbox {
            buffers: (0..BATCH).map(|_| vec![0u8; MAX_DATAGRAM]).collect(),
            headers: MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Wait (up to the socket's read timeout) for at least one datagram and take what else is
    /// already queued, up to [`BATCH`]. Returns how many arrived.
    fn receive(&mut self, socket: &UdpSocket) -> nix::Result<usize> {
        self.got.clear();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buffers
            .iter_mut()
            .map(|b| [IoSliceMut::new(b)])
            .collect();
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )?;
        for r in results {
            self.got.push((r.bytes, r.address.and_then(std_addr)));
        }
        Ok(self.got.len())
    }

    /// Datagram `i` of the last receive and its sender (`None` if the sender is unknown).
    fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let (len, peer) = self.got[i];
        Some((&self.buffers[i][..len.min(MAX_DATAGRAM)], peer?))
    }
}

fn std_addr(a: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Send every reply in `outbox` (emptying it), as few `sendmmsg` calls as the kernel allows.
/// A reply the kernel refuses is skipped; when the socket stays full for the write timeout, the
/// rest are dropped (the clients retry, as with any lost datagram).
fn send_all(socket: &UdpSocket, outbox: &mut Vec<(Vec<u8>, SocketAddr)>) {
    if outbox.is_empty() {
        return;
    }
    let addrs: Vec<SocketAddrAny> = outbox.iter().map(|(_, peer)| peer.as_any()).collect();
    let slices: Vec<[IoSlice<'_>; 1]> = outbox.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
        (0..outbox.len()).map(|_| Default::default()).collect();
    let mut messages: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&slices)
        .zip(controls.iter_mut())
        .map(|((addr, slice), control)| MMsgHdr::new_with_addr(addr, slice, control))
        .collect();
    let mut next = 0;
    while next < messages.len() {
        match sendmmsg(socket, &mut messages[next..], SendFlags::empty()) {
            Ok(sent) => next += sent.max(1),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) if e == rustix::io::Errno::AGAIN => {
                tracing::debug!(dropped = messages.len() - next, "udp socket full");
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, peer = %outbox[next].1, "udp send failed");
                next += 1;
            }
        }
    }
    drop(messages);
    outbox.clear();
}
