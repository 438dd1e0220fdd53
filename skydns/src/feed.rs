//! The etcd feed: one range read of the prefix, then one watch from the next revision, applied
//! to the index. On any error (etcd gone, compaction, cancelled watch) it reconnects with
//! backoff and resyncs with a fresh read; until then the index keeps serving the last state.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::index::{parse_entry, Entry, Index, Snapshot};
use crate::metrics::Metrics;

/// Keys read per page of the initial range read.
const PAGE: i64 = 5000;

/// Connect to etcd with the configured endpoints, TLS and credentials.
pub async fn connect(settings: &Settings) -> Result<Client, etcd_client::Error> {
    let opts = settings
        .etcd_security
        .connect_options(None)
        .map_err(|e| etcd_client::Error::InvalidArgs(e.to_string()))?;
    Client::connect(&settings.machines, Some(opts)).await
}

/// Run the feed until `shutdown`.
pub async fn run_feed(
    settings: Arc<Settings>,
    index: Arc<Index>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match sync_and_watch(&settings, &index, &metrics, &shutdown, &mut backoff).await {
            Ok(()) => return,
            Err(e) => {
                metrics.etcd_errors.inc();
                tracing::warn!(error = %e, retry_in = ?backoff, "etcd feed interrupted; serving last state");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error(transparent)]
    Etcd(#[from] etcd_client::Error),
    #[error("watch ended: {0}")]
    WatchEnded(String),
}

async fn sync_and_watch(
    settings: &Settings,
    index: &Index,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> Result<(), FeedError> {
    let root = settings.zone.prefix().root();
    let mut client = connect(settings).await?;
    let (mut snapshot, revision) = read_all(&mut client, &root, settings, metrics).await?;
    snapshot.revision = revision;
    snapshot.ready = true;
    metrics.observe_snapshot(&snapshot);
    index.store(snapshot);
    tracing::info!(
        revision,
        keys = index.load().len(),
        "index loaded from etcd"
    );
    *backoff = Duration::from_millis(100);

    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1)
        .with_progress_notify();
    let mut stream = client.watch(root.as_str(), Some(opts)).await?;
    let mut progress = tokio::time::interval(Duration::from_secs(10));
    progress.tick().await;
    loop {
        let resp = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = progress.tick() => {
                stream.request_progress().await?;
                continue;
            }
            msg = stream.message() => msg?,
        };
        let Some(resp) = resp else {
            return Err(FeedError::WatchEnded("stream closed".into()));
        };
        if resp.canceled() {
            return Err(FeedError::WatchEnded(format!(
                "cancelled (compact revision {}): {}",
                resp.compact_revision(),
                resp.cancel_reason()
            )));
        }
        if resp.events().is_empty() {
            continue;
        }
        let current = index.load();
        let mut next = Snapshot::clone(&current);
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let Some(path) = path_of(settings, kv.key()) else {
                continue;
            };
            next.revision = next.revision.max(kv.mod_revision());
            match event.event_type() {
                EventType::Put => match entry_of(&path, kv.value(), metrics) {
                    Some(entry) => {
                        next.insert(path, entry);
                    }
                    None => {
                        next.remove(&path);
                    }
                },
                EventType::Delete => {
                    next.remove(&path);
                }
            }
        }
        if let Some(h) = resp.header() {
            next.revision = next.revision.max(h.revision());
        }
        metrics.observe_snapshot(&next);
        index.store(next);
    }
}

/// Read every key under the prefix at one revision, page by page.
async fn read_all(
    client: &mut Client,
    root: &str,
    settings: &Settings,
    metrics: &Metrics,
) -> Result<(Snapshot, i64), etcd_client::Error> {
    let mut map = Snapshot::default();
    let range_end = msg::prefix_end(root).into_bytes();
    let mut start: Vec<u8> = root.as_bytes().to_vec();
    let mut revision = 0i64;
    loop {
        let mut opts = GetOptions::new()
            .with_range(range_end.clone())
            .with_limit(PAGE);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let resp = client.get(start.clone(), Some(opts)).await?;
        if revision == 0 {
            revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        }
        for kv in resp.kvs() {
            if let Some(path) = path_of(settings, kv.key()) {
                if let Some(entry) = entry_of(&path, kv.value(), metrics) {
                    map.insert(path, entry);
                }
            }
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => break,
        }
    }
    Ok((map, revision))
}

fn path_of(settings: &Settings, key: &[u8]) -> Option<Arc<str>> {
    let key = std::str::from_utf8(key).ok()?;
    settings
        .zone
        .prefix()
        .lookup_path_of_key(key)
        .map(Arc::from)
}

fn entry_of(path: &str, value: &[u8], metrics: &Metrics) -> Option<Entry> {
    match parse_entry(value) {
        Ok(e) => Some(e),
        Err(e) => {
            metrics.records_skipped.inc();
            tracing::warn!(key = path, error = %e, "skipping unreadable record");
            None
        }
    }
}
