//! HTTP handling for the test API server: routing of discovery and resource paths, list (with
//! paging and selectors), get, and watch responses streamed as newline-delimited JSON over a
//! chunked body. Every failure is answered with a `Status` body, never a panic.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::resources::{self, IncludeObject, ResourceType};
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Ctl, Filter, Format, ListRequest, LiveWatch, Store, WatchRequest};
use super::util::{status_body, Query};

/// Response body: a whole JSON document or a watch stream.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Longest a watch stays open when the client gives no `timeoutSeconds`.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// Upper bound on `timeoutSeconds`.
const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(86_400);

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes.push(b'\n');
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(code: u16, message: &str, details: Option<Value>) -> Response<Body> {
    json_response(code, &status_body(code, message, details))
}

fn not_found() -> Response<Body> {
    error_response(
        404,
        "the server could not find the requested resource",
        None,
    )
}

/// 401 for a request without valid credentials (as the real server answers it).
pub(crate) fn unauthorized() -> Response<Body> {
    error_response(401, "Unauthorized", None)
}

/// Serve one request.
pub(crate) async fn handle(store: Arc<Store>, port: u16, req: Request<Incoming>) -> Response<Body> {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    store.record_request(format!("{} {target}", req.method()));
    if matches!(*req.method(), Method::POST | Method::PUT | Method::DELETE) {
        return write(store, req).await;
    }
    if req.method() != Method::GET {
        return error_response(
            405,
            "the server does not allow this method on the requested resource",
            None,
        );
    }
    let query = Query::parse(req.uri().query());
    let accept = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let segments: Vec<&str> = req
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        [] => json_response(200, &resources::root_paths()),
        ["version"] => json_response(200, &resources::version()),
        ["healthz" | "livez" | "readyz"] => {
            let mut resp = Response::new(full("ok"));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            resp
        }
        ["api"] => json_response(200, &resources::api_versions(port)),
        ["api", "v1"] => json_response(200, &resources::resource_list("v1")),
        ["apis"] => json_response(200, &resources::api_group_list()),
        ["apis", "discovery.k8s.io"] => json_response(200, &resources::api_group()),
        ["apis", "discovery.k8s.io", "v1"] => {
            json_response(200, &resources::resource_list("discovery.k8s.io/v1"))
        }
        ["api", "v1", rest @ ..] => serve_resource(store, "", rest, &query, &accept),
        ["apis", "discovery.k8s.io", "v1", rest @ ..] => {
            serve_resource(store, "discovery.k8s.io", rest, &query, &accept)
        }
        _ => not_found(),
    }
}

/// Largest request body accepted by POST and PUT.
const MAX_BODY: usize = 4 << 20;

/// POST (create in a collection), PUT (replace a named object) and DELETE (a named object),
/// as `kubectl create`, `replace` and `delete` send them. The object is stored as
/// [`Store::apply`] does (creating a namespace is not required); POST of an existing name is
/// 409 AlreadyExists, PUT and DELETE of a missing one 404.
async fn write(store: Arc<Store>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", "discovery.k8s.io", "v1", rest @ ..] => ("discovery.k8s.io", rest),
        _ => return not_found(),
    };
    let Some((rt, namespace, name)) = route(group, rest) else {
        return not_found();
    };
    let namespace = namespace.unwrap_or("");
    if rt.namespaced && namespace.is_empty() {
        return error_response(
            405,
            "the server does not allow this method on the requested resource",
            None,
        );
    }
    match (&method, name) {
        (&Method::DELETE, Some(name)) => {
            return match store.get(rt, namespace, name) {
                Some(obj) => {
                    store.delete(rt.api_version, rt.kind, namespace, name);
                    json_response(200, &obj)
                }
                None => error_response(404, &format!("{} \"{name}\" not found", rt.plural), None),
            };
        }
        (&Method::POST, None) | (&Method::PUT, Some(_)) => {}
        _ => {
            return error_response(
                405,
                "the server does not allow this method on the requested resource",
                None,
            )
        }
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(400, &format!("reading the body: {e}"), None),
    };
    let mut obj: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return error_response(400, "the body is not a JSON object", None),
        Err(e) => return error_response(400, &format!("the body is not JSON: {e}"), None),
    };
    let Some(map) = obj.as_object_mut() else {
        return error_response(400, "the body is not a JSON object", None);
    };
    for (field, want) in [("apiVersion", rt.api_version), ("kind", rt.kind)] {
        match map.get(field).and_then(Value::as_str) {
            None => {
                map.insert(field.into(), json!(want));
            }
            Some(got) if got == want => {}
            Some(got) => {
                return error_response(
                    400,
                    &format!("{field} {got:?} does not match {want:?}"),
                    None,
                )
            }
        }
    }
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return error_response(400, "metadata is not an object", None);
    };
    let obj_name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if obj_name.is_empty() {
        return error_response(422, "metadata.name: Required value", None);
    }
    if let Some(name) = name {
        if obj_name != name {
            return error_response(400, "the name of the object does not match the URL", None);
        }
    }
    if rt.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if ns != namespace => {
                return error_response(
                    400,
                    "the namespace of the object does not match the URL",
                    None,
                )
            }
            _ => {
                meta.insert("namespace".into(), json!(namespace));
            }
        }
    }
    let exists = store.get(rt, namespace, &obj_name).is_some();
    match (&method, exists) {
        (&Method::POST, true) => error_response(
            409,
            &format!("{} \"{obj_name}\" already exists", rt.plural),
            Some(json!({"name": obj_name, "kind": rt.plural})),
        ),
        (&Method::PUT, false) => error_response(
            404,
            &format!("{} \"{obj_name}\" not found", rt.plural),
            None,
        ),
        (&Method::POST, false) => json_response(201, &store.apply(obj)),
        _ => json_response(200, &store.apply(obj)),
    }
}

/// `(resource, namespace, name)` for the path below a group version.
fn route<'a>(
    group: &str,
    rest: &[&'a str],
) -> Option<(&'static ResourceType, Option<&'a str>, Option<&'a str>)> {
    match rest {
        [plural] => Some((resources::by_plural(group, plural)?, None, None)),
        [plural, name] => {
            let rt = resources::by_plural(group, plural)?;
            (!rt.namespaced).then_some((rt, None, Some(*name)))
        }
        ["namespaces", ns, plural] => {
            let rt = resources::by_plural(group, plural)?;
            rt.namespaced.then_some((rt, Some(*ns), None))
        }
        ["namespaces", ns, plural, name] => {
            let rt = resources::by_plural(group, plural)?;
            rt.namespaced.then_some((rt, Some(*ns), Some(*name)))
        }
        _ => None,
    }
}

fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

fn serve_resource(
    store: Arc<Store>,
    group: &str,
    rest: &[&str],
    query: &Query,
    accept: &str,
) -> Response<Body> {
    let Some((rt, namespace, name)) = route(group, rest) else {
        return not_found();
    };
    let watching = query.flag("watch");
    if let (Some(name), false) = (name, watching) {
        return match store.get(rt, namespace.unwrap_or(""), name) {
            Some(obj) => json_response(200, &obj),
            None => error_response(
                404,
                &format!("{} \"{name}\" not found", rt.plural),
                Some(json!({"name": name, "group": rt.group, "kind": rt.plural})),
            ),
        };
    }
    let labels = match LabelSelector::parse(query.get("labelSelector").unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return error_response(400, &e, None),
    };
    let fields = match FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), rt) {
        Ok(s) => s,
        Err(e) => return error_response(400, &e, None),
    };
    let filter = Filter {
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        labels,
        fields,
    };
    let format = if wants_table(accept) {
        Format::Table(IncludeObject::parse(query.get("includeObject")))
    } else {
        Format::Json
    };
    if watching {
        serve_watch(store, rt, filter, query, format)
    } else {
        serve_list(&store, rt, &filter, query, format)
    }
}

fn serve_list(
    store: &Store,
    rt: &'static ResourceType,
    filter: &Filter,
    query: &Query,
    format: Format,
) -> Response<Body> {
    let limit = match query.get("limit").filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => match l.parse::<i64>() {
            Ok(n) => usize::try_from(n).ok(),
            Err(_) => return error_response(400, &format!("invalid limit: {l:?}"), None),
        },
    };
    let page = match store.list(&ListRequest {
        rt,
        filter,
        limit,
        continue_token: query.get("continue"),
    }) {
        Ok(p) => p,
        Err((code, msg)) => return error_response(code, &msg, None),
    };
    let mut meta = Map::new();
    meta.insert(
        "resourceVersion".into(),
        json!(page.resource_version.to_string()),
    );
    if let Some(c) = &page.continue_token {
        meta.insert("continue".into(), json!(c));
    }
    if let Some(n) = page.remaining {
        meta.insert("remainingItemCount".into(), json!(n));
    }
    let body = match format {
        Format::Table(include) => resources::table(
            rt,
            page.items.iter().map(|o| &**o),
            Value::Object(meta),
            include,
        ),
        Format::Json => {
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|o| {
                    let mut item = (**o).clone();
                    if let Some(m) = item.as_object_mut() {
                        m.remove("apiVersion");
                        m.remove("kind");
                    }
                    item
                })
                .collect();
            json!({
                "apiVersion": rt.api_version,
                "kind": rt.list_kind(),
                "metadata": meta,
                "items": items,
            })
        }
    };
    json_response(200, &body)
}

fn serve_watch(
    store: Arc<Store>,
    rt: &'static ResourceType,
    filter: Filter,
    query: &Query,
    format: Format,
) -> Response<Body> {
    let timeout = match query.get("timeoutSeconds").filter(|t| !t.is_empty()) {
        None => DEFAULT_WATCH_TIMEOUT,
        Some(t) => match t.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs).min(MAX_WATCH_TIMEOUT),
            Err(_) => return error_response(400, &format!("invalid timeoutSeconds: {t:?}"), None),
        },
    };
    let start = match store.watch(WatchRequest {
        rt,
        filter,
        resource_version: query.get("resourceVersion").map(str::to_string),
        send_initial_events: query.flag("sendInitialEvents"),
        bookmarks: query.flag("allowWatchBookmarks"),
        format,
    }) {
        Ok(s) => s,
        Err((code, msg)) => return error_response(code, &msg, None),
    };
    let guard = start.live.as_ref().map(|l| WatchGuard {
        store: store.clone(),
        id: l.id,
    });
    let body = WatchBody {
        pending: start.initial,
        live: start.live,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        _guard: guard,
    };
    let mut resp = Response::new(StreamBody::new(watch_stream(body)).boxed_unsync());
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    resp
}

/// Unregisters a watch when its response body is dropped (client gone, connection closed).
struct WatchGuard {
    store: Arc<Store>,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.store.remove_watcher(self.id);
    }
}

struct WatchBody {
    pending: VecDeque<Bytes>,
    live: Option<LiveWatch>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _guard: Option<WatchGuard>,
}

enum Step {
    Ctl(bool),
    Event(Option<Bytes>),
    Timeout,
}

type WatchFrame = Result<Frame<Bytes>, std::io::Error>;

fn watch_stream(body: WatchBody) -> impl Stream<Item = WatchFrame> + Send + 'static {
    futures::stream::unfold(body, |mut b| async move {
        loop {
            if let Some(bytes) = b.pending.pop_front() {
                return Some((Ok(Frame::data(bytes)), b));
            }
            let live = b.live.as_mut()?;
            let step = tokio::select! {
                biased;
                r = live.ctl.changed() => Step::Ctl(r.is_ok()),
                ev = live.rx.recv() => Step::Event(ev),
                _ = b.deadline.as_mut() => Step::Timeout,
            };
            match step {
                Step::Ctl(open) => {
                    let ctl = live.ctl.borrow_and_update().clone();
                    match ctl {
                        Ctl::Run => {
                            if !open {
                                b.live = None;
                            }
                        }
                        Ctl::Expire(error_event) => {
                            while let Ok(bytes) = live.rx.try_recv() {
                                b.pending.push_back(bytes);
                            }
                            b.pending.push_back(error_event);
                            b.live = None;
                        }
                        Ctl::Drop => {
                            b.live = None;
                            b.pending.clear();
                            let err = std::io::Error::new(
                                std::io::ErrorKind::ConnectionAborted,
                                "watch dropped by the test",
                            );
                            return Some((Err(err), b));
                        }
                    }
                }
                Step::Event(Some(bytes)) => return Some((Ok(Frame::data(bytes)), b)),
                Step::Event(None) | Step::Timeout => b.live = None,
            }
        }
    })
}
