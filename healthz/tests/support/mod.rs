//! Test doubles for the healthz integration tests: a UDP DNS responder (hickory-proto) whose
//! behaviour can be switched or stopped, a kube2sky-like `/readiness` server, a TCP server that
//! never answers, a raw HTTP/1.1 client, a Prometheus text parser, and `healthz::run` on port 0.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use clap::Parser;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use service_kit::Readiness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How the fake DNS server treats queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// NOERROR with one A record for the asked name.
    Answer,
    NxDomain,
    ServFail,
    /// NOERROR, no records.
    NoData,
    /// Answers with the id changed.
    WrongId,
    /// Receives and never answers.
    Silent,
}

/// A UDP DNS responder on 127.0.0.1 that can be switched between modes, stopped and restarted
/// on the same port.
pub(crate) struct FakeDns {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    received: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl FakeDns {
    pub(crate) async fn start(mode: Mode) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut dns = Self {
            addr: sock.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(mode)),
            received: Arc::new(AtomicUsize::new(0)),
            task: None,
        };
        dns.spawn(sock);
        dns
    }

    fn spawn(&mut self, sock: UdpSocket) {
        let mode = self.mode.clone();
        let received = self.received.clone();
        self.task = Some(tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                received.fetch_add(1, Ordering::SeqCst);
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mode = *mode.lock().unwrap();
                if let Some(reply) = respond(&query, mode) {
                    let _ = sock.send_to(&reply.to_vec().unwrap(), peer).await;
                }
            }
        }));
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Queries received so far (answered or not).
    pub(crate) fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// Close the socket (later queries get ICMP port unreachable).
    pub(crate) async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Bind the same port again and answer as before.
    pub(crate) async fn restart(&mut self) {
        assert!(self.task.is_none(), "restart a running FakeDns");
        let sock = UdpSocket::bind(self.addr).await.unwrap();
        self.spawn(sock);
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn respond(query: &Message, mode: Mode) -> Option<Message> {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.authoritative = true;
    reply.add_queries(query.queries.clone());
    match mode {
        Mode::Answer | Mode::WrongId => {
            let name = query.queries.first()?.name().clone();
            reply.add_answer(Record::from_rdata(name, 30, RData::A(A::new(10, 96, 0, 1))));
            if mode == Mode::WrongId {
                reply.metadata.id = query.metadata.id.wrapping_add(1);
            }
        }
        Mode::NxDomain => reply.metadata.response_code = ResponseCode::NXDomain,
        Mode::ServFail => reply.metadata.response_code = ResponseCode::ServFail,
        Mode::NoData => {}
        Mode::Silent => return None,
    }
    Some(reply)
}

/// A kube2sky-like server: `GET /readiness` → 200 `ok` or 503 `not ready`.
pub(crate) struct FakeReadiness {
    pub addr: SocketAddr,
    pub ready: Readiness,
    stop: CancellationToken,
}

impl FakeReadiness {
    pub(crate) async fn start(ready: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let readiness = Readiness::new();
        readiness.set(ready);
        let r = readiness.clone();
        let app = Router::new().route("/readiness", get(move || async move { r.response() }));
        let stop = CancellationToken::new();
        tokio::spawn(service_kit::serve_http(listener, app, stop.clone()));
        Self {
            addr,
            ready: readiness,
            stop,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/readiness", self.addr)
    }
}

impl Drop for FakeReadiness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A TCP server that accepts connections, reads, and never writes.
pub(crate) struct HangingHttp {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HangingHttp {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                held.push(conn);
            }
        });
        Self { addr, task }
    }
}

impl Drop for HangingHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `healthz::run` on 127.0.0.1:0 with short timings (period 100ms, timeout 300ms, max-age 1s)
/// plus `args`.
pub(crate) struct Healthz {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

pub(crate) const MAX_AGE: Duration = Duration::from_secs(1);

impl Healthz {
    pub(crate) async fn start(args: &[&str]) -> Self {
        test_support::init_test_tracing();
        let base = [
            "healthz",
            "--period",
            "100ms",
            "--timeout",
            "300ms",
            "--max-age",
            "1s",
        ];
        let settings = healthz::Config::try_parse_from(base.iter().chain(args.iter()).copied())
            .unwrap()
            .validate()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(healthz::run(settings, listener, shutdown.clone()));
        Self {
            addr,
            shutdown,
            handle,
        }
    }

    /// Probing both fakes.
    pub(crate) async fn for_fakes(dns: &FakeDns, ready: &FakeReadiness) -> Self {
        let dns_addr = dns.addr.to_string();
        let url = ready.url();
        Self::start(&["--dns-addr", &dns_addr, "--kube2sky-url", &url]).await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path, None).await
    }

    pub(crate) async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = http_get(self.addr, path, Some("application/json")).await;
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (code, v)
    }
}

impl Drop for Healthz {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Minimal HTTP/1.1 GET (Connection: close) returning status and body; panics after 2 s.
pub(crate) async fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String) {
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head");
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (code, body.to_string())
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} on {addr} took longer than 2 s"))
}

/// One sample of the Prometheus/OpenMetrics text format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parse the text exposition format strictly enough to catch malformed output: comment lines
/// are `# HELP|TYPE|UNIT|EOF`, sample lines `name{k="v",...} value [timestamp]`.
pub(crate) fn parse_metrics(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
        if line.is_empty() {
            return Err(err("empty line"));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let kw = rest.split(' ').next().unwrap_or_default();
            if !["HELP", "TYPE", "UNIT", "EOF"].contains(&kw) {
                return Err(err("unknown comment"));
            }
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .ok_or_else(|| err("no value"))?;
        let name = &line[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut it = r.char_indices();
            loop {
                let mut key = String::new();
                let close = loop {
                    match it.next().ok_or_else(|| err("unclosed labels"))? {
                        (i, '}') => break Some(i),
                        (_, '=') => break None,
                        (_, ',') if key.is_empty() => continue,
                        (_, c) => key.push(c),
                    }
                };
                if let Some(i) = close {
                    if !key.is_empty() {
                        return Err(err("label without value"));
                    }
                    rest = &r[i + 1..];
                    break;
                }
                if it.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match it.next().ok_or_else(|| err("unterminated label value"))? {
                        (_, '\\') => match it.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => return Err(err("bad escape")),
                        },
                        (_, '"') => break,
                        (_, c) => value.push(c),
                    }
                }
                labels.insert(key, value);
            }
        }
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before value"))?
            .split(' ');
        let value = match fields.next().unwrap_or_default() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| err("bad value"))?,
        };
        if fields.clone().count() > 1 {
            return Err(err("trailing fields"));
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    if text.lines().last() != Some("# EOF") {
        return Err("missing # EOF".into());
    }
    Ok(out)
}

/// The value of `name` with label `probe=<probe>` (`None` when absent).
pub(crate) fn probe_value(samples: &[Sample], name: &str, probe: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.labels.get("probe").map(String::as_str) == Some(probe))
        .map(|s| s.value)
}
