//! Leader election for `--leader-elect` (etcd's election API): campaign with a lease kept
//! alive, publish `Role::Leader` with the fence (the election key and its creation revision
//! that every write transaction compares), and step down the moment a keep-alive fails, the
//! lease expires or a fenced write is refused. Without `--leader-elect` the role is always
//! leader, unfenced.

use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use service_kit::backoff::{sleep_or_stop, Backoff};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The guard a leader's transactions carry: they apply only while this key, created at this
/// revision, exists (it vanishes with the lease).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The election key this replica created.
    pub key: Vec<u8>,
    /// The etcd revision at which it was created.
    pub rev: i64,
}

/// Whether this replica may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Another replica leads (or none yet): do not write.
    Follower,
    /// `term` changes with every leadership won, so the writer reconciles first.
    Leader {
        /// Leadership term, counting from 1.
        term: u64,
        /// The guard for writes; `None` without `--leader-elect`.
        fence: Option<Fence>,
    },
}

/// The writer's view of leadership: the current role, and a way to report a refused write.
pub struct Leadership {
    /// The current role, updated by the election.
    pub role: watch::Receiver<Role>,
    lost: mpsc::Sender<u64>,
}

impl Leadership {
    /// Report that a write fenced by `term` was refused: leadership is gone.
    pub fn lost(&self, term: u64) {
        let _ = self.lost.try_send(term);
    }
}

/// Always leader, unfenced (no `--leader-elect`).
pub fn always() -> (Leadership, watch::Sender<Role>) {
    let (tx, rx) = watch::channel(Role::Leader {
        term: 1,
        fence: None,
    });
    let (lost, _) = mpsc::channel(1);
    (Leadership { role: rx, lost }, tx)
}

/// Election settings.
#[derive(Debug, Clone)]
pub struct Election {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// TLS and credentials for etcd.
    pub security: service_kit::EtcdSecurity,
    /// Election name: an etcd key prefix outside the records.
    pub name: String,
    /// This replica's identity (the election key's value).
    pub id: String,
    /// Lease TTL; a dead leader is replaced after at most this long.
    pub ttl: Duration,
    /// Timeout of each etcd request of the election.
    pub request_timeout: Duration,
}

/// A follower handle plus the future that runs the election until `stop`.
pub fn elect(
    election: Election,
    metrics: Metrics,
    stop: CancellationToken,
) -> (Leadership, impl std::future::Future<Output = ()>) {
    let (tx, rx) = watch::channel(Role::Follower);
    let (lost_tx, lost_rx) = mpsc::channel(4);
    let handle = Leadership {
        role: rx,
        lost: lost_tx,
    };
    (handle, run(election, tx, lost_rx, metrics, stop))
}

async fn run(
    e: Election,
    role: watch::Sender<Role>,
    mut lost: mpsc::Receiver<u64>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    metrics.set_leader(false);
    // No request timeout: a campaign blocks until elected. HTTP/2 keep-alives notice a dead
    // connection; every other call is bounded below.
    let opts = match e.security.connect_options(None) {
        Ok(o) => o
            .with_auto_token_refresh(true)
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2)),
        Err(err) => {
            tracing::error!(error = %err, "election: unusable etcd TLS/auth settings");
            stop.cancelled().await;
            return;
        }
    };
    let mut client = loop {
        match Client::connect(&e.endpoints, Some(opts.clone())).await {
            Ok(c) => break c,
            Err(err) => {
                tracing::warn!(error = %err, "election: cannot connect to etcd; retrying");
                if sleep_or_stop(Duration::from_secs(1), &stop).await {
                    return;
                }
            }
        }
    };
    let ttl_secs = i64::try_from(e.ttl.as_secs()).unwrap_or(10).max(2);
    let mut term = 0u64;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        if stop.is_cancelled() {
            return;
        }
        let lease = match tokio::time::timeout(
            e.request_timeout,
            client.lease_grant(ttl_secs, None),
        )
        .await
        {
            Ok(Ok(l)) => l.id(),
            other => {
                tracing::warn!(result = ?other.map(|r| r.map(|_| ())), "election: lease grant failed; retrying");
                if sleep_or_stop(backoff.next(), &stop).await {
                    return;
                }
                continue;
            }
        };
        let keeper =
            match tokio::time::timeout(e.request_timeout, client.lease_keep_alive(lease)).await {
                Ok(Ok(k)) => k,
                _ => {
                    revoke(&mut client, lease, e.request_timeout).await;
                    if sleep_or_stop(backoff.peek(), &stop).await {
                        return;
                    }
                    continue;
                }
            };
        let keepalive = keep_alive(keeper.0, keeper.1, e.ttl);
        futures::pin_mut!(keepalive);
        let mut election = client.election_client();
        let campaign = election.campaign(e.name.as_str(), e.id.as_str(), lease);
        let won = tokio::select! {
            _ = stop.cancelled() => {
                revoke(&mut client, lease, e.request_timeout).await;
                return;
            }
            reason = &mut keepalive => {
                tracing::warn!(reason, "election: lease lost while campaigning");
                None
            }
            r = campaign => match r {
                Ok(resp) => resp.leader().cloned(),
                Err(err) => {
                    tracing::warn!(error = %err, "election: campaign failed");
                    None
                }
            },
        };
        let Some(key) = won else {
            revoke(&mut client, lease, e.request_timeout).await;
            if sleep_or_stop(backoff.next(), &stop).await {
                return;
            }
            continue;
        };
        backoff.reset();
        term += 1;
        role.send_replace(Role::Leader {
            term,
            fence: Some(Fence {
                key: key.key().to_vec(),
                rev: key.rev(),
            }),
        });
        metrics.set_leader(true);
        tracing::info!(id = %e.id, term, "elected leader; reconciling before writing");
        let stopping = loop {
            tokio::select! {
                _ = stop.cancelled() => break true,
                reason = &mut keepalive => {
                    tracing::warn!(reason, "lost leadership; stopped writing");
                    break false;
                }
                t = lost.recv() => {
                    if t == Some(term) || t.is_none() {
                        tracing::warn!("a fenced write was refused; lost leadership");
                        break false;
                    }
                }
            }
        };
        role.send_replace(Role::Follower);
        metrics.set_leader(false);
        // Give the election up at once so another replica takes over without waiting for
        // the lease to expire.
        revoke(&mut client, lease, e.request_timeout).await;
        if stopping {
            tracing::info!("resigned leadership on shutdown");
            return;
        }
    }
}

/// Keep the lease alive; returns why it could not (the caller must stop writing at once).
async fn keep_alive(
    mut keeper: LeaseKeeper,
    mut stream: LeaseKeepAliveStream,
    ttl: Duration,
) -> String {
    let period = (ttl / 3).max(Duration::from_millis(500));
    loop {
        let round = tokio::time::timeout(period, async {
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        match round {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {}
            Ok(Ok(Some(_))) => return "lease expired".into(),
            Ok(Ok(None)) => return "keep-alive stream closed".into(),
            Ok(Err(err)) => return format!("keep-alive failed: {err}"),
            Err(_) => return "keep-alive timed out".into(),
        }
        tokio::time::sleep(period).await;
    }
}

async fn revoke(client: &mut Client, lease: i64, timeout: Duration) {
    let _ = tokio::time::timeout(
        timeout.min(Duration::from_secs(2)),
        client.lease_revoke(lease),
    )
    .await;
}
