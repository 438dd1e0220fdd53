//! The test API server's state: objects by kind and namespace/name, the global resourceVersion
//! counter, a bounded change history that watches resume from, and the open watches. Everything
//! sits behind one mutex that is never held across an await; watches are fed through bounded
//! channels with `try_send`, so `apply` never waits for a slow client.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::resources::{self, IncludeObject, ResourceType};
use super::selector::{FieldSelector, LabelSelector};
use super::util::{hex_decode, hex_encode, rfc3339, status_body, unix_now};

/// Changes kept for watches to resume from; older ones are compacted away.
const MAX_HISTORY: usize = 50_000;
/// Events buffered per watch before the watch counts as too slow and is closed with 410.
pub(crate) const WATCH_BUFFER: usize = 4096;

/// Highest resourceVersion any server in this process has handed out, so that a server started
/// again on the same port (`start_on`) never reuses resourceVersions a client may still hold.
static HIGH_WATER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn high_water() -> u64 {
    HIGH_WATER.load(Ordering::SeqCst)
}

/// `(apiVersion, kind)`.
type Gvk = (String, String);
/// `(namespace, name)`; namespace is "" for cluster-scoped objects.
type ObjKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in the history.
struct Change {
    rv: u64,
    gvk: Gvk,
    kind: EventType,
    /// The object after the change (for DELETED: the last state, with the deletion's rv).
    object: Arc<Value>,
    /// The object before the change, for selector transitions.
    prev: Option<Arc<Value>>,
}

/// Control messages for a watch stream, out of band of its bounded event channel.
#[derive(Clone)]
pub(crate) enum Ctl {
    Run,
    /// Send the queued events, then this (an ERROR event), then end the response cleanly.
    Expire(Bytes),
    /// Abort the connection mid-stream.
    Drop,
}

/// Which objects a list or watch sees.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let meta = |k: &str| {
            obj.get("metadata")
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        self.namespace
            .as_deref()
            .is_none_or(|ns| meta("namespace") == ns)
            && self.name.as_deref().is_none_or(|n| meta("name") == n)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }
}

/// How a watch wants its events encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Format {
    Json,
    Table(IncludeObject),
}

struct Watcher {
    id: u64,
    rt: &'static ResourceType,
    filter: Filter,
    bookmarks: bool,
    format: Format,
    tx: mpsc::Sender<Bytes>,
    ctl: watch::Sender<Ctl>,
}

/// What a list request asked for.
pub(crate) struct ListRequest<'a> {
    pub rt: &'static ResourceType,
    pub filter: &'a Filter,
    pub limit: Option<usize>,
    pub continue_token: Option<&'a str>,
}

/// One page of a list.
pub(crate) struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// What a watch request asked for.
pub(crate) struct WatchRequest {
    pub rt: &'static ResourceType,
    pub filter: Filter,
    pub resource_version: Option<String>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub format: Format,
}

/// A registered watch's receiving ends.
pub(crate) struct LiveWatch {
    pub id: u64,
    pub rx: mpsc::Receiver<Bytes>,
    pub ctl: watch::Receiver<Ctl>,
}

/// The start of a watch: events to send first, then (unless it was refused) the live feed.
pub(crate) struct WatchStart {
    pub initial: VecDeque<Bytes>,
    pub live: Option<LiveWatch>,
}

struct Inner {
    rv: u64,
    /// Oldest resourceVersion a watch may resume from; history holds every change after it.
    compacted: u64,
    objects: BTreeMap<Gvk, BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Change>,
    watchers: Vec<Watcher>,
    next_watch_id: u64,
    uid_seq: u64,
    uid_seed: u64,
    requests: Vec<String>,
}

/// Shared state of one test API server.
pub(crate) struct Store {
    inner: Mutex<Inner>,
}

#[derive(Serialize)]
struct WireEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    object: &'a Value,
}

fn encode(kind: &str, object: &Value) -> Bytes {
    let mut buf = serde_json::to_vec(&WireEvent { kind, object }).unwrap_or_default();
    buf.push(b'\n');
    Bytes::from(buf)
}

fn encode_for(kind: EventType, object: &Value, rt: &ResourceType, format: Format) -> Bytes {
    match format {
        Format::Json => encode(kind.as_str(), object),
        Format::Table(include) => {
            let rv = object
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or_else(|| json!(""));
            let t = resources::table(rt, [object], json!({"resourceVersion": rv}), include);
            encode(kind.as_str(), &t)
        }
    }
}

fn bookmark_event(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    encode(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}),
    )
}

/// An ERROR watch event carrying a 410 Expired `Status`.
pub(crate) fn expired_event(message: &str) -> Bytes {
    encode("ERROR", &status_body(410, message, None))
}

fn with_rv(obj: &Value, rv: u64) -> Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
    }
    o
}

/// What a watch with `filter` sees of `change`, if anything: selector transitions turn
/// MODIFIED into ADDED (now matches) or DELETED (no longer matches), like the watch cache.
fn project(change: &Change, filter: &Filter) -> Option<(EventType, Arc<Value>)> {
    let now = filter.matches(&change.object);
    match change.kind {
        EventType::Added => now.then(|| (EventType::Added, change.object.clone())),
        EventType::Deleted => now.then(|| (EventType::Deleted, change.object.clone())),
        EventType::Modified => {
            let before = change.prev.as_deref().is_some_and(|p| filter.matches(p));
            match (before, now) {
                (true, true) => Some((EventType::Modified, change.object.clone())),
                (false, true) => Some((EventType::Added, change.object.clone())),
                (true, false) => change
                    .prev
                    .as_deref()
                    .map(|p| (EventType::Deleted, Arc::new(with_rv(p, change.rv)))),
                (false, false) => None,
            }
        }
    }
}

fn content_without_meta(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

impl Inner {
    fn bump(&mut self) -> u64 {
        self.rv = self.rv.saturating_add(1);
        HIGH_WATER.fetch_max(self.rv, Ordering::SeqCst);
        self.rv
    }

    fn new_uid(&mut self) -> String {
        self.uid_seq += 1;
        let x = self.uid_seed ^ self.uid_seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (x >> 32) as u32,
            (x >> 16) as u16,
            self.uid_seq & 0xfff,
            (x >> 4) & 0xfff,
            self.uid_seq & 0xffff_ffff_ffff
        )
    }

    fn record(&mut self, change: Change) {
        self.broadcast(&change);
        self.history.push_back(change);
        while self.history.len() > MAX_HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// Feed a change to every interested watch; close watches whose buffer is full.
    fn broadcast(&mut self, change: &Change) {
        let mut gone: Vec<u64> = Vec::new();
        for w in &self.watchers {
            if w.rt.api_version != change.gvk.0 || w.rt.kind != change.gvk.1 {
                continue;
            }
            let Some((kind, obj)) = project(change, &w.filter) else {
                continue;
            };
            match w.tx.try_send(encode_for(kind, &obj, w.rt, w.format)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.ctl.send_replace(Ctl::Expire(expired_event(
                        "watch closed: the client did not keep up with events; \
                         too old resource version, relist",
                    )));
                    gone.push(w.id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(w.id),
            }
        }
        if !gone.is_empty() {
            self.watchers.retain(|w| !gone.contains(&w.id));
        }
    }

    fn expire_all(&mut self, message: &str) {
        let ev = expired_event(message);
        for w in self.watchers.drain(..) {
            w.ctl.send_replace(Ctl::Expire(ev.clone()));
        }
    }

    fn compact_all(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }
}

impl Store {
    /// A store whose resourceVersion counter starts at `initial_rv` (the first change gets
    /// `initial_rv + 1`).
    pub(crate) fn new(initial_rv: u64) -> Store {
        HIGH_WATER.fetch_max(initial_rv, Ordering::SeqCst);
        let seed = u64::try_from(unix_now())
            .unwrap_or(0)
            .wrapping_mul(0x2545_F491_4F6C_DD1D)
            ^ u64::from(std::process::id());
        Store {
            inner: Mutex::new(Inner {
                rv: initial_rv,
                compacted: initial_rv,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                watchers: Vec::new(),
                next_watch_id: 0,
                uid_seq: 0,
                uid_seed: seed,
                requests: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn record_request(&self, line: String) {
        let mut inner = self.lock();
        if inner.requests.len() < 1_000_000 {
            inner.requests.push(line);
        }
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    pub(crate) fn open_watches(&self) -> usize {
        self.lock().watchers.len()
    }

    /// Create or replace; see `TestApiServer::apply`. Panics on an object without
    /// apiVersion, kind or metadata.name (a bug in the calling test, not client input).
    pub(crate) fn apply(&self, mut obj: Value) -> Value {
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let api_version = text(&obj, "apiVersion")
            .unwrap_or_else(|| panic!("TestApiServer::apply: object has no apiVersion: {obj}"));
        let kind = text(&obj, "kind")
            .unwrap_or_else(|| panic!("TestApiServer::apply: object has no kind: {obj}"));
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            panic!("TestApiServer::apply: object has no metadata object");
        };
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("TestApiServer::apply: object has no metadata.name"));
        let namespaced = resources::by_kind(&api_version, &kind)
            .map(|rt| rt.namespaced)
            .unwrap_or_else(|| meta.contains_key("namespace"));
        let namespace = if namespaced {
            let ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or("default")
                .to_string();
            meta.insert("namespace".into(), json!(ns));
            ns
        } else {
            meta.remove("namespace");
            String::new()
        };
        let given_uid = meta
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        let given_created = meta
            .get("creationTimestamp")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_string);

        let gvk = (api_version, kind);
        let key = (namespace, name);
        let mut inner = self.lock();
        let prev = inner.objects.get(&gvk).and_then(|m| m.get(&key)).cloned();
        let prev_meta = |k: &str| {
            prev.as_deref()
                .and_then(|p| p.get("metadata"))
                .and_then(|m| m.get(k))
                .cloned()
        };
        let uid = match (prev_meta("uid"), given_uid) {
            (Some(u), _) => u,
            (None, Some(u)) => json!(u),
            (None, None) => json!(inner.new_uid()),
        };
        let created = prev_meta("creationTimestamp")
            .or(given_created.map(Value::from))
            .unwrap_or_else(|| json!(rfc3339(unix_now())));
        let generation = match prev.as_deref() {
            None => 1,
            Some(p) => {
                let g = p
                    .pointer("/metadata/generation")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                if content_without_meta(p) == content_without_meta(&obj) {
                    g
                } else {
                    g + 1
                }
            }
        };
        let rv = inner.bump();
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("uid".into(), uid);
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            meta.insert("creationTimestamp".into(), created);
            meta.insert("generation".into(), json!(generation));
        }
        let stored = Arc::new(obj);
        inner
            .objects
            .entry(gvk.clone())
            .or_default()
            .insert(key, stored.clone());
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        inner.record(Change {
            rv,
            gvk,
            kind,
            object: stored.clone(),
            prev,
        });
        (*stored).clone()
    }

    pub(crate) fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> bool {
        let gvk = (api_version.to_string(), kind.to_string());
        let namespaced = resources::by_kind(api_version, kind).is_none_or(|rt| rt.namespaced);
        let ns = if namespaced { namespace } else { "" };
        let key = (ns.to_string(), name.to_string());
        let mut inner = self.lock();
        let Some(prev) = inner.objects.get_mut(&gvk).and_then(|m| m.remove(&key)) else {
            return false;
        };
        let rv = inner.bump();
        let object = Arc::new(with_rv(&prev, rv));
        inner.record(Change {
            rv,
            gvk,
            kind: EventType::Deleted,
            object,
            prev: Some(prev),
        });
        true
    }

    /// Every open watch gets 410 and is closed; history is compacted to the current rv.
    pub(crate) fn expire_watches(&self) {
        let mut inner = self.lock();
        let message = format!(
            "The resourceVersion for the provided watch is too old. (current: {})",
            inner.rv
        );
        inner.expire_all(&message);
        inner.compact_all();
    }

    pub(crate) fn drop_watches(&self) {
        let mut inner = self.lock();
        for w in inner.watchers.drain(..) {
            w.ctl.send_replace(Ctl::Drop);
        }
    }

    /// BOOKMARK at the current rv to every watch that allowed bookmarks (skipped for a watch
    /// whose buffer is full: bookmarks are optional).
    pub(crate) fn bookmark(&self) {
        let mut inner = self.lock();
        let rv = inner.rv;
        let mut gone = Vec::new();
        for w in inner.watchers.iter().filter(|w| w.bookmarks) {
            if let Err(mpsc::error::TrySendError::Closed(_)) =
                w.tx.try_send(bookmark_event(w.rt, rv, false))
            {
                gone.push(w.id);
            }
        }
        if !gone.is_empty() {
            inner.watchers.retain(|w| !gone.contains(&w.id));
        }
    }

    /// The next change gets `next_rv`; history is forgotten and every watch expired.
    pub(crate) fn reset_history(&self, next_rv: u64) {
        let mut inner = self.lock();
        inner.rv = next_rv.saturating_sub(1);
        HIGH_WATER.fetch_max(inner.rv, Ordering::SeqCst);
        let message = format!(
            "The resourceVersion for the provided watch is too old. (current: {})",
            inner.rv
        );
        inner.expire_all(&message);
        inner.compact_all();
    }

    pub(crate) fn remove_watcher(&self, id: u64) {
        self.lock().watchers.retain(|w| w.id != id);
    }

    pub(crate) fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        let gvk = (rt.api_version.to_string(), rt.kind.to_string());
        let key = (namespace.to_string(), name.to_string());
        self.lock()
            .objects
            .get(&gvk)
            .and_then(|m| m.get(&key))
            .map(|o| (**o).clone())
    }

    /// One page of a list; `Err((code, message))` for a bad or expired continue token.
    pub(crate) fn list(&self, req: &ListRequest<'_>) -> Result<ListPage, (u16, String)> {
        let inner = self.lock();
        let (list_rv, start) = match req.continue_token {
            None | Some("") => (inner.rv, None),
            Some(tok) => {
                let bad = || {
                    (400u16, "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".to_string())
                };
                let raw = hex_decode(tok).ok_or_else(bad)?;
                let text = String::from_utf8(raw).map_err(|_| bad())?;
                let mut parts = text.splitn(3, '\0');
                let (Some(rv), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad());
                };
                let rv: u64 = rv.parse().map_err(|_| bad())?;
                if rv < inner.compacted || rv > inner.rv {
                    return Err((
                        410,
                        "The provided continue parameter is too old to display a consistent \
                         list result. You can start a new list without the continue parameter."
                            .to_string(),
                    ));
                }
                (rv, Some((ns.to_string(), name.to_string())))
            }
        };
        let gvk = (req.rt.api_version.to_string(), req.rt.kind.to_string());
        let empty = BTreeMap::new();
        let objects = inner.objects.get(&gvk).unwrap_or(&empty);
        let lower = match &start {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        let matching = objects
            .range::<ObjKey, _>((lower, Bound::Unbounded))
            .filter(|(_, o)| req.filter.matches(o));
        let limit = req.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last_key = None;
        for (k, o) in matching {
            if items.len() == limit {
                break;
            }
            items.push(o.clone());
            last_key = Some(k);
        }
        // Matching objects after this page (counted only when the page filled up).
        let rest = if items.len() == limit {
            objects
                .range::<ObjKey, _>((
                    last_key.map_or(Bound::Unbounded, Bound::Excluded),
                    Bound::Unbounded,
                ))
                .filter(|(_, o)| req.filter.matches(o))
                .count()
        } else {
            0
        };
        let continue_token = match (rest, last_key) {
            (n, Some((ns, name))) if n > 0 => {
                Some(hex_encode(format!("{list_rv}\0{ns}\0{name}").as_bytes()))
            }
            _ => None,
        };
        let remaining = (continue_token.is_some()
            && req.filter.labels.is_empty()
            && req.filter.fields.is_empty())
        .then_some(rest);
        Ok(ListPage {
            items,
            resource_version: list_rv,
            continue_token,
            remaining,
        })
    }

    /// Start a watch: the initial events (synthetic ADDED for "0"/unset, history replay for a
    /// resourceVersion, or a lone 410 ERROR when that is compacted away or unknown) and, unless
    /// refused, a registered live feed. `Err((400, message))` for an unparsable resourceVersion.
    pub(crate) fn watch(&self, req: WatchRequest) -> Result<WatchStart, (u16, String)> {
        let mut inner = self.lock();
        let gvk = (req.rt.api_version.to_string(), req.rt.kind.to_string());
        let mut initial = VecDeque::new();
        let from_state = req.send_initial_events
            || matches!(req.resource_version.as_deref(), None | Some("") | Some("0"));
        if from_state {
            if let Some(objects) = inner.objects.get(&gvk) {
                for o in objects.values().filter(|o| req.filter.matches(o)) {
                    initial.push_back(encode_for(EventType::Added, o, req.rt, req.format));
                }
            }
            if req.send_initial_events {
                initial.push_back(bookmark_event(req.rt, inner.rv, true));
            }
        } else {
            let raw = req.resource_version.as_deref().unwrap_or("");
            let rv: u64 = raw
                .parse()
                .map_err(|_| (400u16, format!("invalid resource version: {raw:?}")))?;
            if rv < inner.compacted {
                let msg = format!("too old resource version: {rv} ({})", inner.compacted);
                initial.push_back(expired_event(&msg));
                return Ok(WatchStart {
                    initial,
                    live: None,
                });
            }
            if rv > inner.rv {
                let msg = format!("too large resource version: {rv}, current: {}", inner.rv);
                initial.push_back(expired_event(&msg));
                return Ok(WatchStart {
                    initial,
                    live: None,
                });
            }
            let skip = inner.history.partition_point(|c| c.rv <= rv);
            for change in inner.history.iter().skip(skip) {
                if change.gvk != gvk {
                    continue;
                }
                if let Some((kind, obj)) = project(change, &req.filter) {
                    initial.push_back(encode_for(kind, &obj, req.rt, req.format));
                }
            }
        }
        inner.next_watch_id += 1;
        let id = inner.next_watch_id;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let (ctl_tx, ctl_rx) = watch::channel(Ctl::Run);
        inner.watchers.push(Watcher {
            id,
            rt: req.rt,
            filter: req.filter,
            bookmarks: req.bookmarks,
            format: req.format,
            tx,
            ctl: ctl_tx,
        });
        Ok(WatchStart {
            initial,
            live: Some(LiveWatch {
                id,
                rx,
                ctl: ctl_rx,
            }),
        })
    }
}
