//! DNS over TCP: an acceptor with a connection limit, an idle timeout, and pipelined queries
//! answered concurrently on each connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::forward::Transport;
use crate::handler::{Handler, Step};

/// Queries in flight at once on one TCP connection (further reads wait).
const MAX_TCP_INFLIGHT: usize = 64;

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
