//! The writer: applies the desired state's pending keys to etcd in transactions of at most
//! `--etcd-max-txn-ops` operations (all puts before any delete), coalescing changes that
//! arrive within `--write-interval`. Before its first write, after any etcd error, when it
//! becomes leader, when etcd looks replaced and every `--reconcile-interval`, it reads the
//! owned trees and queues every difference (the start-up prune and the catch-up). On errors it
//! keeps the pending keys and retries with capped exponential backoff (`service_kit::backoff`,
//! 100 ms doubling to 5 s); it never gives up.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse,
};
use service_kit::backoff::{sleep_or_stop, Backoff};
use service_kit::Readiness;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::desired::{owned_ranges, Current, Op, State};
use crate::error::Error;
use crate::leader::{Fence, Leadership, Role};
use crate::metrics::Metrics;

/// Keys read per page while reconciling.
const PAGE: i64 = 1000;
/// Bytes of keys and values per transaction (etcd's default request limit is 1.5 MiB).
const MAX_TXN_BYTES: usize = 1024 * 1024;
/// How often an idle writer checks that etcd still holds its records.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Lock the shared state (a poisoned lock still holds consistent data: every mutation is a
/// plain map update).
pub fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer's etcd connection, pinned to one endpoint at a time. A balanced channel over
/// every endpoint keeps sending a share of the requests to a member that holds its connections
/// but answers nothing (stopped, partitioned), so each of them would wait out the timeout;
/// pinned, the writer moves to the next endpoint after one failure and stays there.
pub struct Connection {
    endpoints: Vec<String>,
    opts: ConnectOptions,
    index: usize,
    kv: KvClient,
}

impl Connection {
    /// Connect, trying the endpoints in turn with capped exponential backoff until one answers
    /// (with credentials, connecting authenticates) or `stop`; `None` on stop.
    pub async fn open(
        endpoints: &[String],
        opts: ConnectOptions,
        metrics: &Metrics,
        stop: &CancellationToken,
    ) -> Option<Connection> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut index = 0;
        loop {
            let endpoint = endpoints.get(index % endpoints.len().max(1))?;
            let attempt = tokio::select! {
                _ = stop.cancelled() => return None,
                r = Client::connect([endpoint.as_str()], Some(opts.clone())) => r,
            };
            match attempt {
                Ok(client) => {
                    return Some(Connection {
                        endpoints: endpoints.to_vec(),
                        opts,
                        index: index % endpoints.len(),
                        kv: client.kv_client(),
                    })
                }
                Err(err) => {
                    let err = Error::from(err);
                    metrics.etcd_error(err.label());
                    tracing::warn!(error = %err, %endpoint, "cannot connect to etcd; retrying");
                    index += 1;
                    if sleep_or_stop(backoff.next(), stop).await {
                        return None;
                    }
                }
            }
        }
    }

    /// After a failed request: move to the next endpoint (no-op with one endpoint). If it
    /// cannot be connected now, the current client stays and the next failure moves on again.
    async fn fail_over(&mut self, timeout: Duration) {
        if self.endpoints.len() < 2 {
            return;
        }
        self.index = (self.index + 1) % self.endpoints.len();
        let endpoint = &self.endpoints[self.index];
        let connect = Client::connect([endpoint.as_str()], Some(self.opts.clone()));
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(client)) => {
                tracing::info!(%endpoint, "etcd writer moved to the next endpoint");
                self.kv = client.kv_client();
            }
            _ => tracing::warn!(%endpoint, "cannot connect to the next etcd endpoint yet"),
        }
    }
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most operations per transaction (`--etcd-max-txn-ops`; one less when fenced).
    pub max_ops: usize,
    /// Shortest spacing of transactions during churn.
    pub write_interval: Duration,
    /// Reconcile period; zero: only on errors, leadership changes and etcd data loss.
    pub reconcile_interval: Duration,
    /// Timeout of each etcd request.
    pub request_timeout: Duration,
    /// Followers report ready once their initial lists are in (with `--leader-elect`).
    pub standby_ready: bool,
}

/// The etcd writer task.
pub struct Writer {
    conn: Connection,
    state: Arc<Mutex<State>>,
    work: Arc<Notify>,
    leadership: Leadership,
    metrics: Metrics,
    readiness: Readiness,
    cfg: WriterConfig,
    /// Highest revision seen; a lower one means etcd lost its data.
    revision: i64,
    /// Bytes of keys and values per transaction (lowered when etcd refuses one as too large).
    txn_bytes: usize,
}

impl Writer {
    /// A writer over `conn` that writes `state`'s pending keys when `work` is notified.
    pub fn new(
        conn: Connection,
        state: Arc<Mutex<State>>,
        work: Arc<Notify>,
        leadership: Leadership,
        metrics: Metrics,
        readiness: Readiness,
        cfg: WriterConfig,
    ) -> Self {
        Writer {
            conn,
            state,
            work,
            leadership,
            metrics,
            readiness,
            cfg,
            revision: 0,
            txn_bytes: MAX_TXN_BYTES,
        }
    }

    /// Run until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut need_reconcile = true;
        let mut term_seen: Option<u64> = None;
        // When the last transaction went out (coalescing window, see below).
        let mut last_write: Option<Instant>;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut probe = tokio::time::interval(PROBE_INTERVAL);
        probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let reconcile_every =
            (!self.cfg.reconcile_interval.is_zero()).then_some(self.cfg.reconcile_interval);
        let mut next_reconcile = reconcile_every.map(|d| Instant::now() + d);
        loop {
            if stop.is_cancelled() {
                return;
            }
            let role = self.leadership.role.borrow_and_update().clone();
            let lists_done = lock(&self.state).initial_lists_done();
            let (term, fence) = match role {
                Role::Leader { term, fence } if lists_done => (term, fence),
                _ => {
                    if lists_done && self.cfg.standby_ready {
                        self.readiness.set(true);
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        r = self.leadership.role.changed() => if r.is_err() { stop.cancelled().await; return },
                        _ = self.work.notified() => {}
                    }
                    continue;
                }
            };
            if term_seen != Some(term) {
                term_seen = Some(term);
                need_reconcile = true;
            }
            if need_reconcile {
                match self.reconcile().await {
                    Ok(queued) => {
                        need_reconcile = false;
                        backoff.reset();
                        next_reconcile = reconcile_every.map(|d| Instant::now() + d);
                        tracing::info!(queued, "reconciled etcd with the desired records");
                    }
                    Err(err) => {
                        self.failed(&err, "reconcile").await;
                        if sleep_or_stop(backoff.next(), &stop).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let flushed = self.flush(term, fence.as_ref(), &stop).await;
            last_write = Some(Instant::now());
            match flushed {
                Ok(()) => {
                    backoff.reset();
                    let pending = {
                        let s = lock(&self.state);
                        self.metrics.observe(s.stats());
                        s.pending()
                    };
                    if pending == 0 {
                        if !self.readiness.is_ready() {
                            tracing::info!("first full sync written; ready");
                        }
                        self.readiness.set(true);
                        self.metrics.synced_now();
                    }
                }
                Err(Error::NotLeader) => {
                    self.metrics.etcd_error(Error::NotLeader.label());
                    tracing::warn!(term, "write refused: no longer the leader");
                    self.leadership.lost(term);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = self.leadership.role.changed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
                Err(err) => {
                    self.failed(&err, "write").await;
                    need_reconcile = true;
                    if sleep_or_stop(backoff.next(), &stop).await {
                        return;
                    }
                    continue;
                }
            }
            if lock(&self.state).pending() > 0 {
                continue;
            }
            let reconcile_at =
                next_reconcile.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                _ = stop.cancelled() => return,
                r = self.leadership.role.changed() => if r.is_err() { stop.cancelled().await; return },
                _ = self.work.notified() => {
                    // Leading edge: a change after a quiet spell is written at once; during
                    // churn, changes arriving within one interval of the last write are
                    // coalesced into the next one.
                    let wait = last_write
                        .map(|t| (t + self.cfg.write_interval).saturating_duration_since(Instant::now()))
                        .unwrap_or_default();
                    if !wait.is_zero() && sleep_or_stop(wait, &stop).await {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(reconcile_at) => need_reconcile = true,
                _ = probe.tick() => match self.probe().await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("etcd no longer holds our records (restored or wiped?); reconciling");
                        need_reconcile = true;
                    }
                    Err(err) => {
                        self.failed(&err, "probe").await;
                        need_reconcile = true;
                    }
                },
            }
        }
    }

    async fn failed(&mut self, err: &Error, what: &str) {
        self.metrics.etcd_error(err.label());
        tracing::warn!(error = %err, "etcd {what} failed; keeping the pending changes and retrying");
        self.conn.fail_over(self.cfg.request_timeout).await;
    }

    fn saw_revision(&mut self, header: Option<&etcd_client::ResponseHeader>) -> bool {
        let Some(rev) = header.map(|h| h.revision()) else {
            return true;
        };
        let ok = rev >= self.revision;
        self.revision = rev;
        ok
    }

    /// Write every pending key, batch by batch. Each transaction compares the fence (with
    /// `--leader-elect`) and the modification revision of every reverse key it writes; when a
    /// comparison fails, the same transaction reads those keys back and the state decides again
    /// (a foreign PTR value is never overwritten or deleted).
    async fn flush(
        &mut self,
        term: u64,
        fence: Option<&Fence>,
        stop: &CancellationToken,
    ) -> Result<(), Error> {
        // etcd's `--max-txn-ops` bounds the comparisons too: the fence takes one.
        let max_ops = if fence.is_some() {
            self.cfg.max_ops.saturating_sub(1).max(1)
        } else {
            self.cfg.max_ops
        };
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            if !matches!(&*self.leadership.role.borrow(), Role::Leader { term: t, .. } if *t == term)
            {
                return Err(Error::NotLeader);
            }
            let (batch, guards) = {
                let mut s = lock(&self.state);
                let batch = s.take_batch(max_ops, self.txn_bytes);
                let guards: Vec<(String, i64)> = batch
                    .iter()
                    .filter_map(|op| s.guard(op.key()).map(|rev| (op.key().to_string(), rev)))
                    .collect();
                (batch, guards)
            };
            if batch.is_empty() {
                return Ok(());
            }
            let (puts, deletes, bytes) = batch.iter().fold((0, 0, 0), |(p, d, b), op| match op {
                Op::Put { key, value } => (p + 1, d, b + key.len() + value.len()),
                Op::Delete { key } => (p, d + 1, b + key.len()),
            });
            let mut compares = Vec::with_capacity(guards.len() + 1);
            let mut reads = Vec::with_capacity(guards.len() + 1);
            if let Some(f) = fence {
                compares.push(Compare::create_revision(
                    f.key.clone(),
                    CompareOp::Equal,
                    f.rev,
                ));
                reads.push(TxnOp::get(f.key.clone(), None));
            }
            for (key, rev) in &guards {
                compares.push(Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev));
                reads.push(TxnOp::get(key.as_str(), None));
            }
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|op| match op {
                    Op::Put { key, value } => TxnOp::put(key.as_str(), value.as_str(), None),
                    Op::Delete { key } => TxnOp::delete(key.as_str(), None),
                })
                .collect();
            let mut txn = Txn::new();
            if !compares.is_empty() {
                txn = txn.when(compares);
            }
            txn = txn.and_then(ops);
            if !reads.is_empty() {
                txn = txn.or_else(reads);
            }
            let result =
                tokio::time::timeout(self.cfg.request_timeout, self.conn.kv.txn(txn)).await;
            match result {
                Ok(Ok(resp)) if resp.succeeded() => {
                    self.saw_revision(resp.header());
                    let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
                    lock(&self.state).committed(&batch, revision);
                    self.metrics.etcd_written(puts, deletes);
                    tracing::debug!(puts, deletes, "etcd transaction committed");
                }
                Ok(Ok(resp)) => {
                    let mut read: Vec<Current> = resp
                        .op_responses()
                        .into_iter()
                        .map(|r| match r {
                            TxnOpResponse::Get(g) => g
                                .kvs()
                                .first()
                                .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
                            _ => None,
                        })
                        .collect();
                    if let Some(f) = fence {
                        // The fence key's creation revision decides leadership; its value is
                        // the leader's id.
                        let held = resp.op_responses().into_iter().next().is_some_and(|r| {
                            matches!(r, TxnOpResponse::Get(g)
                                if g.kvs().first().is_some_and(|kv| kv.create_revision() == f.rev))
                        });
                        if !held {
                            lock(&self.state).requeue(batch);
                            return Err(Error::NotLeader);
                        }
                        read.remove(0);
                    }
                    let current: Vec<(String, Current)> =
                        guards.into_iter().map(|(k, _)| k).zip(read).collect();
                    let foreign = lock(&self.state).conflicted(batch, &current);
                    self.metrics.ptr_conflict();
                    tracing::info!(
                        keys = current.len(),
                        foreign,
                        "a reverse key changed since it was read; decided again"
                    );
                }
                Ok(Err(err)) if is_too_large(&err) => {
                    let mut s = lock(&self.state);
                    match batch.as_slice() {
                        [Op::Put { key, value }] => {
                            s.refused_as_too_large(key, key.len() + value.len());
                        }
                        _ => {
                            // Learn the limit: smaller transactions from now on.
                            self.txn_bytes = (bytes / 2).max(1);
                            tracing::warn!(
                                bytes,
                                now = self.txn_bytes,
                                "etcd refused a transaction as too large; splitting"
                            );
                            s.requeue(batch);
                        }
                    }
                    self.metrics.observe(s.stats());
                }
                Ok(Err(err)) => {
                    lock(&self.state).requeue(batch);
                    return Err(err.into());
                }
                Err(_) => {
                    lock(&self.state).requeue(batch);
                    return Err(Error::EtcdTimeout);
                }
            }
        }
    }

    /// Read the owned trees page by page and queue every difference from the desired state.
    async fn reconcile(&mut self) -> Result<usize, Error> {
        let ranges = {
            let mut s = lock(&self.state);
            s.begin_reconcile();
            owned_ranges(s.zone())
        };
        let mut queued = 0;
        for range in &ranges {
            let mut lo = range.start.clone();
            loop {
                let opts = GetOptions::new()
                    .with_range(range.end.as_str())
                    .with_limit(PAGE);
                let resp = tokio::time::timeout(
                    self.cfg.request_timeout,
                    self.conn.kv.get(lo.as_str(), Some(opts)),
                )
                .await
                .map_err(|_| Error::EtcdTimeout)??;
                self.saw_revision(resp.header());
                let more = resp.more();
                let kvs: Vec<(String, Vec<u8>, i64)> = resp
                    .kvs()
                    .iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(kv.key()).into_owned(),
                            kv.value().to_vec(),
                            kv.mod_revision(),
                        )
                    })
                    .collect();
                let hi = match kvs.last() {
                    Some((last, _, _)) if more => format!("{last}\0"),
                    _ => range.end.clone(),
                };
                queued += lock(&self.state).reconcile_chunk(range, &lo, &hi, &kvs);
                if !more || hi <= lo {
                    break;
                }
                lo = hi;
            }
        }
        self.metrics.reconciled();
        Ok(queued)
    }

    /// Whether etcd still looks like the store we wrote: the revision has not gone back and
    /// `dns-version` holds its value.
    async fn probe(&mut self) -> Result<bool, Error> {
        let (key, want) = {
            let s = lock(&self.state);
            let key = s.zone().dns_version_key();
            let want = s.desired(&key).map(str::to_string);
            (key, want)
        };
        let resp = tokio::time::timeout(
            self.cfg.request_timeout,
            self.conn.kv.get(key.as_str(), None),
        )
        .await
        .map_err(|_| Error::EtcdTimeout)??;
        let monotonic = self.saw_revision(resp.header());
        let have = resp.kvs().first().map(|kv| kv.value().to_vec());
        Ok(monotonic && have == want.map(String::into_bytes))
    }
}

/// Whether etcd refused a request for its size: over `--max-request-bytes` ("request is too
/// large") or over the gRPC message limit above it.
fn is_too_large(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            // gRPC code 8 is RESOURCE_EXHAUSTED.
            status.code() as i32 == 8 || status.message().contains("request is too large")
        }
        _ => false,
    }
}
