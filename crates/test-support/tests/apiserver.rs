//! Tests of the Kubernetes test API server as a client sees it: a minimal HTTP/1.1 client over
//! raw TCP (so chunked framing and abrupt closes are visible), plus the real `kubectl`.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use test_support::objects::{
    endpoint, endpoint_slice, namespace, pod, port, service_cluster_ip, service_headless,
};
use test_support::{eventually, TestApiServer};

const WAIT: Duration = Duration::from_secs(10);

/// Status line and headers (lower-cased names) of a response, and the connection to read on.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn send(port: u16, method: &str, target: &str, accept: Option<&str>) -> Head {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{accept}Connection: close\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .expect("write request");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("header");
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Head {
        status,
        headers,
        reader,
    }
}

/// A whole response body parsed as JSON.
async fn request_json(port: u16, method: &str, target: &str, accept: Option<&str>) -> (u16, Value) {
    let mut head = send(port, method, target, accept).await;
    let status = head.status;
    let mut body = Vec::new();
    if head.header("transfer-encoding") == Some("chunked") {
        let mut w = Watch {
            head,
            buf: Vec::new(),
        };
        while let Some(chunk) = w.chunk().await.expect("complete chunked body") {
            body.extend(chunk);
        }
    } else {
        head.reader.read_to_end(&mut body).await.expect("body");
    }
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{target}: body is not JSON ({e}): {body:?}"));
    (status, v)
}

async fn get_json(port: u16, target: &str) -> (u16, Value) {
    request_json(port, "GET", target, None).await
}

/// What the next read of a watch gave.
#[derive(Debug)]
enum Next {
    Event(Value),
    /// The terminating zero-length chunk: the server ended the stream cleanly.
    End,
    /// EOF in the middle of the chunked body: the connection was dropped.
    Aborted,
}

struct Watch {
    head: Head,
    buf: Vec<u8>,
}

impl Watch {
    async fn open(port: u16, target: &str) -> Watch {
        let head = send(port, "GET", target, None).await;
        assert_eq!(head.status, 200, "{target}");
        assert_eq!(head.header("content-type"), Some("application/json"));
        assert_eq!(head.header("transfer-encoding"), Some("chunked"));
        Watch {
            head,
            buf: Vec::new(),
        }
    }

    /// One chunk: `Ok(None)` at the terminating chunk, `Err(())` on EOF before it.
    async fn chunk(&mut self) -> Result<Option<Vec<u8>>, ()> {
        let mut line = String::new();
        match self.head.reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(_) => {}
        }
        let size = usize::from_str_radix(line.trim(), 16).map_err(|_| ())?;
        let mut data = vec![0u8; size + 2];
        self.head
            .reader
            .read_exact(&mut data)
            .await
            .map_err(|_| ())?;
        data.truncate(size);
        Ok((size > 0).then_some(data))
    }

    async fn next(&mut self) -> Next {
        tokio::time::timeout(WAIT, self.next_inner())
            .await
            .expect("watch event within 10 s")
    }

    async fn next_inner(&mut self) -> Next {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Next::Event(serde_json::from_slice(&line).expect("event is JSON"));
            }
            match self.chunk().await {
                Ok(Some(data)) => self.buf.extend(data),
                Ok(None) => {
                    assert!(self.buf.is_empty(), "partial event before the end");
                    return Next::End;
                }
                Err(()) => return Next::Aborted,
            }
        }
    }

    /// The next event, skipping BOOKMARKs.
    async fn event(&mut self) -> Value {
        loop {
            match self.next().await {
                Next::Event(e) if e["type"] == "BOOKMARK" => continue,
                Next::Event(e) => return e,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// Whether anything (but a bookmark) arrives within `d`.
    async fn quiet_for(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.next_inner()).await {
                Err(_) => return true,
                Ok(Next::Event(e)) if e["type"] == "BOOKMARK" => continue,
                Ok(other) => {
                    eprintln!("unexpected: {other:?}");
                    return false;
                }
            }
        }
    }
}

fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {obj}"))
}

fn names(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn svc(ns: &str, name: &str) -> Value {
    service_cluster_ip(ns, name, &["10.0.0.10"], &[port("http", 80, "TCP")])
}

async fn wait_watches(server: &TestApiServer, n: usize) {
    eventually(WAIT, &format!("{n} open watches"), || async {
        (server.open_watches() == n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn list_pages_through_all_items_exactly_once() {
    let server = TestApiServer::start().await.unwrap();
    let mut last = 0;
    for (ns, name) in [
        ("b", "s3"),
        ("a", "s2"),
        ("b", "s1"),
        ("a", "s1"),
        ("c", "s9"),
        ("a", "s5"),
        ("b", "s0"),
    ] {
        last = rv_of(&server.apply(svc(ns, name)));
    }
    // Other kinds do not leak into the service list.
    server.apply(pod("a", "p", &["10.1.0.1"]));
    let latest = rv_of(&server.apply(namespace("a")));
    assert!(latest > last);

    let mut seen = Vec::new();
    let mut target = "/api/v1/services?&limit=3".to_string();
    let mut pages = 0;
    loop {
        let (status, list) = get_json(server.port(), &target).await;
        assert_eq!(status, 200);
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(list["kind"], "ServiceList");
        assert_eq!(list["metadata"]["resourceVersion"], latest.to_string());
        for item in list["items"].as_array().unwrap() {
            assert!(item.get("apiVersion").is_none() && item.get("kind").is_none());
            assert!(rv_of(item) <= latest);
        }
        seen.extend(names(&list["items"]));
        pages += 1;
        match list["metadata"]["continue"].as_str() {
            Some(c) => {
                assert_eq!(
                    list["metadata"]["remainingItemCount"].as_u64(),
                    Some(7 - seen.len() as u64)
                );
                target = format!("/api/v1/services?limit=3&continue={c}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        ["a/s1", "a/s2", "a/s5", "b/s0", "b/s1", "b/s3", "c/s9"],
        "every item once, ordered by namespace/name"
    );

    // Unpaged, namespaced, selectors.
    let (_, all) = get_json(server.port(), "/api/v1/services?resourceVersion=0").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 7);
    assert!(all["metadata"].get("continue").is_none());
    let (_, in_b) = get_json(server.port(), "/api/v1/namespaces/b/services").await;
    assert_eq!(names(&in_b["items"]), ["b/s0", "b/s1", "b/s3"]);
    let (_, one) = get_json(
        server.port(),
        "/api/v1/services?fieldSelector=metadata.name%3Ds1,metadata.namespace!%3Da",
    )
    .await;
    assert_eq!(names(&one["items"]), ["b/s1"]);
    let mut labelled = svc("c", "lab");
    labelled["metadata"]["labels"] = json!({"tier": "web", "env": "test"});
    server.apply(labelled);
    let (_, sel) = get_json(
        server.port(),
        "/api/v1/services?labelSelector=tier%3Dweb%2Cenv%3D%3Dtest",
    )
    .await;
    assert_eq!(names(&sel["items"]), ["c/lab"]);
    let (_, sel) = get_json(server.port(), "/api/v1/services?labelSelector=tier+in+(db)").await;
    assert_eq!(names(&sel["items"]), Vec::<String>::new());

    let (status, err) = get_json(
        server.port(),
        "/api/v1/services?fieldSelector=spec.bogus%3Dx",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["kind"], "Status");
    assert_eq!(err["reason"], "BadRequest");
    let (status, _) = get_json(server.port(), "/api/v1/services?labelSelector=a%3D%3D%3D").await;
    assert_eq!(status, 400);
    let (status, _) = get_json(server.port(), "/api/v1/services?limit=2&continue=zz").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn endpointslices_namespaces_and_single_gets() {
    let server = TestApiServer::start().await.unwrap();
    let slice = endpoint_slice(
        "default",
        "web-abc",
        "web",
        "IPv4",
        &[endpoint(&["10.1.0.1"], None, Some(true))],
        &[port("http", 80, "TCP")],
    );
    server.apply(slice);
    let ns = server.apply(namespace("default"));
    assert!(ns["metadata"].get("namespace").is_none());

    let (status, list) = get_json(
        server.port(),
        "/apis/discovery.k8s.io/v1/endpointslices?limit=500",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["apiVersion"], "discovery.k8s.io/v1");
    assert_eq!(list["kind"], "EndpointSliceList");
    assert_eq!(names(&list["items"]), ["default/web-abc"]);
    let (_, list) = get_json(
        server.port(),
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb",
    )
    .await;
    assert_eq!(names(&list["items"]), ["default/web-abc"]);

    let (status, one) = get_json(
        server.port(),
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-abc",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["kind"], "EndpointSlice");
    assert_eq!(one["metadata"]["generation"], 1);
    assert!(one["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    let (status, ns) = get_json(server.port(), "/api/v1/namespaces/default").await;
    assert_eq!((status, ns["kind"].as_str()), (200, Some("Namespace")));
    let (_, nss) = get_json(server.port(), "/api/v1/namespaces").await;
    assert_eq!(nss["kind"], "NamespaceList");

    let (status, missing) =
        get_json(server.port(), "/api/v1/namespaces/default/services/nope").await;
    assert_eq!(status, 404);
    assert_eq!(missing["kind"], "Status");
    assert_eq!(missing["reason"], "NotFound");
    assert_eq!(missing["code"], 404);
    let (status, _) = get_json(server.port(), "/api/v1/services/nope").await;
    assert_eq!(status, 404);
    let (status, unknown) = get_json(server.port(), "/apis/apps/v1/deployments").await;
    assert_eq!((status, unknown["kind"].as_str()), (404, Some("Status")));
    let (status, denied) = request_json(
        server.port(),
        "PATCH",
        "/api/v1/namespaces/default/services/kubernetes",
        None,
    )
    .await;
    assert_eq!(
        (status, denied["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    // POST (create) is served, but needs a body (tests/apiserver_https.rs covers writes).
    let (status, empty) = request_json(
        server.port(),
        "POST",
        "/api/v1/namespaces/default/services",
        None,
    )
    .await;
    assert_eq!(
        (status, empty["reason"].as_str()),
        (400, Some("BadRequest"))
    );

    // Discovery documents.
    let (_, api) = get_json(server.port(), "/api").await;
    assert_eq!(api["versions"], json!(["v1"]));
    let (_, core) = get_json(server.port(), "/api/v1").await;
    let core_names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(core_names, ["services", "endpoints", "pods", "namespaces"]);
    let (_, groups) = get_json(server.port(), "/apis").await;
    assert_eq!(groups["groups"][0]["name"], "discovery.k8s.io");
    let (_, disc) = get_json(server.port(), "/apis/discovery.k8s.io/v1").await;
    assert_eq!(disc["resources"][0]["kind"], "EndpointSlice");
    let (_, version) = get_json(server.port(), "/version").await;
    assert_eq!(version["major"], "1");

    // Table output.
    let (_, table) = request_json(
        server.port(),
        "GET",
        "/apis/discovery.k8s.io/v1/endpointslices",
        Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
    )
    .await;
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"][0]["cells"][0], "web-abc");
    assert_eq!(
        table["rows"][0]["object"]["metadata"]["namespace"],
        "default"
    );

    let reqs = server.requests();
    assert!(reqs.contains(&"GET /apis/discovery.k8s.io/v1/endpointslices?limit=500".to_string()));
    assert!(reqs.contains(&"POST /api/v1/namespaces/default/services".to_string()));
}

#[tokio::test]
async fn watch_from_list_rv_sees_changes_in_order() {
    let server = TestApiServer::start().await.unwrap();
    server.apply(svc("default", "before"));
    let (_, list) = get_json(server.port(), "/api/v1/services?limit=500").await;
    let list_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let mut all = Watch::open(
        server.port(),
        &format!("/api/v1/services?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion={list_rv}"),
    )
    .await;
    let mut only_b = Watch::open(
        server.port(),
        &format!("/api/v1/namespaces/b/services?watch=1&resourceVersion={list_rv}"),
    )
    .await;
    wait_watches(&server, 2).await;

    server.apply(svc("a", "web"));
    server.apply(svc("b", "web"));
    let mut changed = svc("a", "web");
    changed["spec"]["ports"][0]["port"] = json!(8080);
    let modified = server.apply(changed);
    assert_eq!(modified["metadata"]["generation"], 2);
    server.apply(pod("a", "p", &["10.1.0.1"]));
    assert!(server.delete("v1", "Service", "a", "web"));
    assert!(!server.delete("v1", "Service", "a", "web"));

    let mut rvs = vec![list_rv.parse::<u64>().unwrap()];
    let mut seen = Vec::new();
    for _ in 0..4 {
        let ev = all.event().await;
        assert_eq!(ev["object"]["kind"], "Service");
        assert_eq!(ev["object"]["apiVersion"], "v1");
        rvs.push(rv_of(&ev["object"]));
        seen.push(format!(
            "{} {}/{}",
            ev["type"].as_str().unwrap(),
            ev["object"]["metadata"]["namespace"].as_str().unwrap(),
            ev["object"]["metadata"]["name"].as_str().unwrap()
        ));
    }
    assert_eq!(
        seen,
        [
            "ADDED a/web",
            "ADDED b/web",
            "MODIFIED a/web",
            "DELETED a/web"
        ]
    );
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "increasing: {rvs:?}");
    let ev = only_b.event().await;
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["namespace"].as_str()
        ),
        (Some("ADDED"), Some("b"))
    );
    assert!(only_b.quiet_for(Duration::from_millis(300)).await);

    // Resuming from the list rv replays the same history.
    let mut replay = Watch::open(
        server.port(),
        &format!("/api/v1/services?watch=true&resourceVersion={list_rv}"),
    )
    .await;
    let types: Vec<String> = futures_types(&mut replay, 4).await;
    assert_eq!(types, ["ADDED", "ADDED", "MODIFIED", "DELETED"]);

    // resourceVersion "0" (and none) starts from the current state.
    let mut from_state = Watch::open(
        server.port(),
        "/api/v1/services?watch=true&resourceVersion=0",
    )
    .await;
    let mut names_seen = Vec::new();
    for _ in 0..2 {
        let ev = from_state.event().await;
        assert_eq!(ev["type"], "ADDED");
        names_seen.push(
            ev["object"]["metadata"]["namespace"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(names_seen, ["b", "default"]);

    // Streaming list: state then the initial-events-end bookmark.
    let mut streaming = Watch::open(
        server.port(),
        "/api/v1/services?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
    )
    .await;
    assert_eq!(streaming.event().await["type"], "ADDED");
    assert_eq!(streaming.event().await["type"], "ADDED");
    match streaming.next().await {
        Next::Event(bm) => {
            assert_eq!(bm["type"], "BOOKMARK");
            assert_eq!(
                bm["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
                "true"
            );
        }
        other => panic!("expected the initial-events-end bookmark, got {other:?}"),
    }
}

async fn futures_types(w: &mut Watch, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(w.event().await["type"].as_str().unwrap().to_string());
    }
    out
}

#[tokio::test]
async fn label_selector_watch_sees_transitions() {
    let server = TestApiServer::start().await.unwrap();
    let (_, list) = get_json(server.port(), "/api/v1/services").await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut w = Watch::open(
        server.port(),
        &format!("/api/v1/services?watch=true&labelSelector=dns%3Dyes&resourceVersion={rv}"),
    )
    .await;
    let mut s = svc("default", "x");
    server.apply(s.clone());
    s["metadata"]["labels"] = json!({"dns": "yes"});
    server.apply(s.clone());
    s["metadata"]["labels"] = json!({"dns": "no"});
    server.apply(s);
    assert_eq!(w.event().await["type"], "ADDED");
    let gone = w.event().await;
    assert_eq!(gone["type"], "DELETED");
    assert_eq!(gone["object"]["metadata"]["labels"]["dns"], "yes");
}

#[tokio::test]
async fn expire_watches_sends_410_and_compacts_history() {
    let server = TestApiServer::start().await.unwrap();
    let first = rv_of(&server.apply(svc("default", "a")));
    let mut open = Watch::open(
        server.port(),
        &format!("/api/v1/services?watch=true&resourceVersion={first}"),
    )
    .await;
    wait_watches(&server, 1).await;
    server.apply(svc("default", "b"));
    assert_eq!(open.event().await["type"], "ADDED");

    server.expire_watches();
    let ev = open.event().await;
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["kind"], "Status");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    assert_eq!(ev["object"]["status"], "Failure");
    assert!(matches!(open.next().await, Next::End));
    assert_eq!(server.open_watches(), 0);

    // Resuming from before the compaction point: 200 with a lone ERROR 410, then the end.
    let mut stale = Watch::open(
        server.port(),
        &format!("/api/v1/services?watch=true&resourceVersion={first}"),
    )
    .await;
    let ev = stale.event().await;
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert!(ev["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("too old resource version: {first} (")));
    assert!(matches!(stale.next().await, Next::End));

    // A relist gives a resourceVersion that can be watched from.
    let (_, list) = get_json(server.port(), "/api/v1/services").await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut fresh = Watch::open(
        server.port(),
        &format!("/api/v1/services?watch=true&resourceVersion={rv}"),
    )
    .await;
    server.apply(svc("default", "c"));
    let ev = fresh.event().await;
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["name"], "c");
}

#[tokio::test]
async fn drop_watches_aborts_streams_without_a_final_event() {
    let server = TestApiServer::start().await.unwrap();
    let mut a = Watch::open(server.port(), "/api/v1/services?watch=true").await;
    let mut b = Watch::open(
        server.port(),
        "/api/v1/pods?watch=true&allowWatchBookmarks=true",
    )
    .await;
    wait_watches(&server, 2).await;
    server.drop_watches();
    assert!(matches!(a.next().await, Next::Aborted));
    assert!(matches!(b.next().await, Next::Aborted));
    assert_eq!(server.open_watches(), 0);
    // The server keeps serving.
    let (status, _) = get_json(server.port(), "/api/v1/pods").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bookmarks_only_when_asked() {
    let server = TestApiServer::start().await.unwrap();
    let mut with = Watch::open(
        server.port(),
        "/api/v1/services?watch=true&allowWatchBookmarks=true",
    )
    .await;
    let mut without = Watch::open(server.port(), "/api/v1/services?watch=true").await;
    wait_watches(&server, 2).await;
    let rv = rv_of(&server.apply(svc("default", "a")));
    server.bookmark();
    assert_eq!(with.event().await["type"], "ADDED");
    match with.next().await {
        Next::Event(bm) => {
            assert_eq!(bm["type"], "BOOKMARK");
            assert_eq!(bm["object"]["kind"], "Service");
            assert_eq!(bm["object"]["apiVersion"], "v1");
            assert_eq!(bm["object"]["metadata"]["resourceVersion"], rv.to_string());
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
    assert_eq!(without.event().await["type"], "ADDED");
    server.apply(svc("default", "b"));
    match without.next().await {
        Next::Event(ev) => assert_eq!(ev["type"], "ADDED", "no bookmark in between"),
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream_cleanly() {
    let server = TestApiServer::start().await.unwrap();
    let start = tokio::time::Instant::now();
    let mut w = Watch::open(
        server.port(),
        "/api/v1/services?watch=true&timeoutSeconds=1",
    )
    .await;
    assert!(matches!(w.next().await, Next::End));
    assert!(start.elapsed() >= Duration::from_millis(900));
    wait_watches(&server, 0).await;
}

#[tokio::test]
async fn client_disconnect_unregisters_the_watch() {
    let server = TestApiServer::start().await.unwrap();
    let w = Watch::open(server.port(), "/api/v1/services?watch=true").await;
    wait_watches(&server, 1).await;
    drop(w);
    wait_watches(&server, 0).await;
}

#[tokio::test]
async fn slow_watcher_is_closed_with_410_and_apply_does_not_block() {
    let server = TestApiServer::start().await.unwrap();
    let mut w = Watch::open(server.port(), "/api/v1/pods?watch=true").await;
    wait_watches(&server, 1).await;
    let started = std::time::Instant::now();
    for i in 0..20_000 {
        server.apply(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p{i}"), "namespace": "default"},
        }));
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(server.open_watches(), 0, "the unread watch was closed");
    let mut added = 0;
    loop {
        match w.next().await {
            Next::Event(ev) if ev["type"] == "ADDED" => added += 1,
            Next::Event(ev) => {
                assert_eq!(ev["type"], "ERROR");
                assert_eq!(ev["object"]["code"], 410);
                break;
            }
            other => panic!("expected events then ERROR, got {other:?}"),
        }
    }
    assert!(added < 20_000);
    assert!(matches!(w.next().await, Next::End));
}

#[tokio::test]
async fn many_concurrent_watches_all_see_an_event() {
    let server = TestApiServer::start().await.unwrap();
    let mut watches = Vec::new();
    for _ in 0..25 {
        watches.push(
            Watch::open(
                server.port(),
                "/apis/discovery.k8s.io/v1/endpointslices?watch=true",
            )
            .await,
        );
    }
    wait_watches(&server, 25).await;
    server.apply(endpoint_slice("x", "s", "svc", "IPv4", &[], &[]));
    for w in &mut watches {
        let ev = w.event().await;
        assert_eq!(ev["type"], "ADDED");
        assert_eq!(ev["object"]["kind"], "EndpointSlice");
    }
}

#[tokio::test]
async fn reset_history_and_restart_on_the_same_port() {
    let server = TestApiServer::start().await.unwrap();
    let old = rv_of(&server.apply(svc("default", "a")));
    let mut w = Watch::open(
        server.port(),
        &format!("/api/v1/services?watch=true&resourceVersion={old}"),
    )
    .await;
    wait_watches(&server, 1).await;
    server.reset_history(5000);
    assert_eq!(w.event().await["object"]["code"], 410);
    let (_, list) = get_json(server.port(), "/api/v1/services").await;
    assert_eq!(list["metadata"]["resourceVersion"], "4999");
    assert_eq!(
        names(&list["items"]),
        ["default/a"],
        "objects survive the reset"
    );
    assert_eq!(rv_of(&server.apply(svc("default", "b"))), 5000);
    let mut stale = Watch::open(
        server.port(),
        &format!("/api/v1/services?watch=true&resourceVersion={old}"),
    )
    .await;
    assert_eq!(stale.event().await["object"]["code"], 410);

    // Restart: same port, empty, resourceVersions beyond the old server's.
    let port = server.port();
    let url = server.url();
    server.shutdown().await;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "port closed"
    );
    let restarted = TestApiServer::start_on(port).await.unwrap();
    assert_eq!(restarted.url(), url);
    let (status, list) = get_json(port, "/api/v1/services").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]));
    let rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > 5000, "{rv}");
    let mut from_old_server =
        Watch::open(port, "/api/v1/services?watch=true&resourceVersion=5000").await;
    assert_eq!(from_old_server.event().await["object"]["code"], 410);

    // Dropping the server stops it too.
    drop(restarted);
    eventually(WAIT, "port closed after drop", || async {
        TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

// ---- kubectl ----

fn kubectl_available() -> bool {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("kubectl").is_file())
    });
    if !found {
        eprintln!("note: kubectl is not on PATH; skipping the kubectl check");
    }
    found
}

fn kubectl(server: &TestApiServer, cache: &tempfile::TempDir) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("--server")
        .arg(server.url())
        .arg("--cache-dir")
        .arg(cache.path())
        .arg("--request-timeout=10s")
        .env("KUBECONFIG", cache.path().join("no-kubeconfig"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn kubectl_output(
    server: &TestApiServer,
    cache: &tempfile::TempDir,
    args: &[&str],
) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        kubectl(server, cache).args(args).output(),
    )
    .await
    .expect("kubectl finished within 30 s")
    .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn kubectl_get_lists_applied_objects() {
    if !kubectl_available() {
        return;
    }
    let server = TestApiServer::start().await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    server.apply(svc("default", "web"));
    server.apply(service_headless(
        "kube-system",
        "dns",
        &[port("dns", 53, "UDP")],
    ));
    server.apply(endpoint_slice(
        "default",
        "web-xyz",
        "web",
        "IPv4",
        &[endpoint(&["10.1.0.7"], None, Some(true))],
        &[port("http", 80, "TCP")],
    ));
    server.apply(pod("default", "web-0", &["10.1.0.7"]));

    let json_out = kubectl_output(&server, &cache, &["get", "svc", "-A", "-o", "json"]).await;
    let list: Value = serde_json::from_str(&json_out).expect("kubectl -o json output parses");
    let mut got = names(&list["items"]);
    got.sort();
    assert_eq!(got, ["default/web", "kube-system/dns"]);
    assert_eq!(list["items"][0]["kind"], "Service");

    let table = kubectl_output(&server, &cache, &["get", "svc", "-A"]).await;
    assert!(
        table.contains("NAMESPACE") && table.contains("CLUSTER-IP"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("kube-system") && l.contains("dns") && l.contains("None")),
        "{table}"
    );
    let slices = kubectl_output(&server, &cache, &["get", "endpointslices", "-A"]).await;
    assert!(
        slices.contains("web-xyz") && slices.contains("10.1.0.7"),
        "{slices}"
    );
    let pods = kubectl_output(&server, &cache, &["get", "pods", "-n", "default"]).await;
    assert!(pods.contains("web-0") && pods.contains("Running"), "{pods}");
    let one = kubectl_output(
        &server,
        &cache,
        &["get", "svc", "web", "-n", "default", "-o", "json"],
    )
    .await;
    let one: Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["spec"]["clusterIP"], "10.0.0.10");
}

#[tokio::test]
async fn kubectl_watch_prints_new_objects() {
    if !kubectl_available() {
        return;
    }
    let server = TestApiServer::start().await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    server.apply(svc("default", "existing"));
    let mut child = kubectl(&server, &cache)
        .args([
            "get",
            "svc",
            "-A",
            "-w",
            "--output-watch-events",
            "--request-timeout=0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_watches(&server, 1).await;
    server.apply(svc("team", "late-arrival"));
    let mut changed = svc("team", "late-arrival");
    changed["spec"]["type"] = json!("NodePort");
    server.apply(changed);
    server.delete("v1", "Service", "team", "late-arrival");

    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("late-arrival") {
                seen.push(line.split_whitespace().next().unwrap_or("").to_string());
                if seen.len() == 3 {
                    break;
                }
            }
        }
    })
    .await;
    let _ = child.kill().await;
    assert!(read.is_ok(), "kubectl printed {seen:?} within 20 s");
    assert_eq!(seen, ["ADDED", "MODIFIED", "DELETED"]);
}
