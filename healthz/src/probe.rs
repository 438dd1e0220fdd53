//! The probes, behind the small [`Probe`] trait: [`DnsProbe`] resolves a name against skydns
//! over UDP, [`HttpProbe`] GETs kube2sky's `/readiness`. [`run_probe`] runs one probe every
//! period, bounds each run by the timeout, and records the result and metrics.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::{header, Request, StatusCode};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::state::{ProbeResult, State};
use crate::target::{split_host_port, AddressError, HttpTarget, UrlError};

/// Name of the DNS probe (label value and `/healthz/skydns`).
pub const SKYDNS: &str = "skydns";
/// Name of the kube2sky readiness probe (label value and `/healthz/kube2sky`).
pub const KUBE2SKY: &str = "kube2sky";

/// Why one probe run failed. `label` is its `error` label on `healthz_probe_failures_total`.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The DNS server's host name could not be looked up.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host name looked up.
        host: String,
        /// The lookup error.
        source: std::io::Error,
    },
    /// The DNS server's host name has no addresses.
    #[error("cannot resolve {host}: no addresses")]
    NoAddress {
        /// The host name looked up.
        host: String,
    },
    /// The local UDP socket could not be bound.
    #[error("bind UDP socket: {0}")]
    Bind(std::io::Error),
    /// Connecting to the target failed (UDP connect or TCP connect).
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The address connected to.
        addr: SocketAddr,
        /// The connect error.
        source: std::io::Error,
    },
    /// The query could not be encoded.
    #[error("encode query: {0}")]
    Encode(hickory_proto::ProtoError),
    /// Sending the query failed.
    #[error("send to {addr}: {source}")]
    Send {
        /// The DNS server's address.
        addr: SocketAddr,
        /// The send error.
        source: std::io::Error,
    },
    /// Receiving the reply failed (e.g. ICMP port unreachable: nothing listens).
    #[error("no DNS server answering at {addr}: {source}")]
    NoServer {
        /// The DNS server's address.
        addr: SocketAddr,
        /// The receive error.
        source: std::io::Error,
    },
    /// The reply is not a DNS message.
    #[error("undecodable reply: {0}")]
    Undecodable(hickory_proto::serialize::binary::DecodeError),
    /// The reply's ID is not the query's.
    #[error("reply id {got} does not match query id {asked}")]
    WrongId {
        /// ID in the reply.
        got: u16,
        /// ID of the query.
        asked: u16,
    },
    /// The reply has the QR bit clear.
    #[error("reply is not a response (QR bit clear)")]
    NotAResponse,
    /// The reply's question is not the one asked.
    #[error("reply is for {name} {rtype}, not the question asked")]
    OtherQuestion {
        /// Name in the reply's question.
        name: Name,
        /// Type in the reply's question.
        rtype: RecordType,
    },
    /// An error response code: `NXDOMAIN`, `SERVFAIL`, …
    #[error("{}", rcode_name(*.0))]
    Rcode(ResponseCode),
    /// The reply is truncated (TC) and carries no answer records.
    #[error("truncated reply without records")]
    TruncatedEmpty,
    /// NOERROR without answer records (NODATA).
    #[error("NOERROR but no records (NODATA)")]
    NoData,
    /// The HTTP exchange with kube2sky failed.
    #[error("HTTP exchange: {0}")]
    Http(#[from] hyper::Error),
    /// A status other than 200, with the start of the body.
    #[error("status {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// The status received.
        status: StatusCode,
        /// The body's first 200 characters, trimmed (empty if it could not be read).
        body: String,
    },
    /// The run did not finish within `--timeout` (the timeout).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl Failure {
    /// The metric label: what kind of failure.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::Resolve { .. } | Failure::NoAddress { .. } => "resolve",
            Failure::Bind(_) | Failure::Encode(_) => "local",
            Failure::Connect { .. } | Failure::Send { .. } | Failure::NoServer { .. } => {
                "unreachable"
            }
            Failure::Undecodable(_)
            | Failure::WrongId { .. }
            | Failure::NotAResponse
            | Failure::OtherQuestion { .. }
            | Failure::TruncatedEmpty
            | Failure::Http(_) => "bad_reply",
            Failure::Rcode(_) => "rcode",
            Failure::NoData => "nodata",
            Failure::Status { .. } => "status",
            Failure::Timeout(_) => "timeout",
        }
    }

    /// Every label value, for series that exist from the start.
    pub const LABELS: [&'static str; 8] = [
        "resolve",
        "local",
        "unreachable",
        "bad_reply",
        "rcode",
        "nodata",
        "status",
        "timeout",
    ];
}

/// A failed run, naming what was probed: `<target>: <failure>`.
#[derive(Debug, thiserror::Error)]
#[error("{target}: {failure}")]
pub struct ProbeError {
    /// What was probed (see [`Probe::target`]).
    pub target: String,
    /// How the run failed.
    pub failure: Failure,
}

/// Why a probe cannot be built from its flags.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The DNS server address is not `host:port`.
    #[error("{0}")]
    Address(#[from] AddressError),
    /// The kube2sky URL is unusable.
    #[error("{0}")]
    Url(#[from] UrlError),
    /// The DNS name to ask for is invalid.
    #[error("bad name {name:?}: {source}")]
    Name {
        /// The name as given.
        name: String,
        /// Why hickory rejects it.
        source: hickory_proto::ProtoError,
    },
}

/// One health check. A run returns the failure; the caller bounds it by a timeout.
pub trait Probe: Send + Sync + 'static {
    /// Short name: the `probe` label and the `/healthz/<name>` path.
    fn name(&self) -> &'static str;
    /// What is probed, for messages (e.g. `kubernetes.default.svc.cluster.local. A @127.0.0.1:53`).
    fn target(&self) -> String;
    /// Run once.
    fn run(&self) -> impl Future<Output = Result<(), Failure>> + Send;
    /// Run once; a failure names the target.
    fn probe(&self) -> impl Future<Output = Result<(), ProbeError>> + Send {
        async move {
            self.run().await.map_err(|failure| ProbeError {
                target: self.target(),
                failure,
            })
        }
    }
}

/// Resolve `host:port` to one socket address (IP literals need no lookup).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, Failure> {
    if let Ok(ip) = host.parse() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| Failure::Resolve {
            host: host.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| Failure::NoAddress {
            host: host.to_string(),
        })
}

/// Resolves `name` (type A) against a DNS server over UDP.
///
/// Success: NOERROR with at least one answer record (normally A/AAAA for the name; other
/// records, e.g. a CNAME, are accepted too). NXDOMAIN, SERVFAIL and other error codes,
/// NOERROR without records, a reply with another id or question, a refused port and a
/// timeout are failures.
#[derive(Debug, Clone)]
pub struct DnsProbe {
    host: String,
    port: u16,
    name: Name,
}

impl DnsProbe {
    /// `server` is `host:port`; `name` a DNS name (made fully qualified).
    pub fn new(server: &str, name: &str) -> Result<Self, SetupError> {
        let (host, port) = split_host_port(server)?;
        let mut name = Name::from_ascii(name).map_err(|source| SetupError::Name {
            name: name.to_string(),
            source,
        })?;
        name.set_fqdn(true);
        Ok(Self { host, port, name })
    }

    /// The query this probe sends (fresh random id each call).
    pub fn query(&self) -> Message {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(self.name.clone(), RecordType::A));
        msg
    }
}

impl Probe for DnsProbe {
    fn name(&self) -> &'static str {
        SKYDNS
    }

    fn target(&self) -> String {
        format!("{} A @{}:{}", self.name, self.host, self.port)
    }

    async fn run(&self) -> Result<(), Failure> {
        let addr = resolve(&self.host, self.port).await?;
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let sock = UdpSocket::bind(local).await.map_err(Failure::Bind)?;
        // A connected socket only receives from the server, and reports ICMP port unreachable
        // as "connection refused" right away instead of waiting for the timeout.
        sock.connect(addr)
            .await
            .map_err(|source| Failure::Connect { addr, source })?;
        let query = self.query();
        let bytes = query.to_vec().map_err(Failure::Encode)?;
        sock.send(&bytes)
            .await
            .map_err(|source| Failure::Send { addr, source })?;
        let mut buf = vec![0u8; 4096];
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|source| Failure::NoServer { addr, source })?;
        check_reply(&query, &buf[..n])
    }
}

/// Short DNS name of a response code (`NXDOMAIN`, `SERVFAIL`, …).
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("rcode {} ({other})", u16::from(other)),
    }
}

/// Judge a raw reply to `query` (see [`DnsProbe`] for the rules).
pub fn check_reply(query: &Message, reply: &[u8]) -> Result<(), Failure> {
    let reply = Message::from_vec(reply).map_err(Failure::Undecodable)?;
    if reply.metadata.id != query.metadata.id {
        return Err(Failure::WrongId {
            got: reply.metadata.id,
            asked: query.metadata.id,
        });
    }
    if reply.metadata.message_type != MessageType::Response {
        return Err(Failure::NotAResponse);
    }
    if let (Some(asked), Some(answered)) = (query.queries.first(), reply.queries.first()) {
        if asked.name() != answered.name() || asked.query_type() != answered.query_type() {
            return Err(Failure::OtherQuestion {
                name: answered.name().clone(),
                rtype: answered.query_type(),
            });
        }
    }
    let code = reply.metadata.response_code;
    if code != ResponseCode::NoError {
        return Err(Failure::Rcode(code));
    }
    if reply.answers.is_empty() {
        return Err(if reply.metadata.truncation {
            Failure::TruncatedEmpty
        } else {
            Failure::NoData
        });
    }
    Ok(())
}

/// GETs a plain-HTTP URL over one HTTP/1.1 connection (hyper) and expects status 200
/// (kube2sky's `/readiness`).
#[derive(Debug, Clone)]
pub struct HttpProbe {
    name: &'static str,
    url: String,
    target: HttpTarget,
}

/// Body bytes read from a response that is not 200 (its start is quoted in the reason).
const MAX_BODY: usize = 16 * 1024;

impl HttpProbe {
    /// A probe named `name` that GETs `url` (plain `http://`) and wants 200.
    pub fn new(name: &'static str, url: &str) -> Result<Self, SetupError> {
        Ok(Self {
            name,
            url: url.to_string(),
            target: HttpTarget::parse(url)?,
        })
    }

    /// The parsed URL.
    pub fn http_target(&self) -> &HttpTarget {
        &self.target
    }
}

impl Probe for HttpProbe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn target(&self) -> String {
        format!("GET {}", self.url)
    }

    async fn run(&self) -> Result<(), Failure> {
        let t = &self.target;
        let addr = resolve(&t.host, t.port).await?;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| Failure::Connect { addr, source })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let request = Request::get(t.path.as_str())
            .header(header::HOST, t.host_header())
            .header(
                header::USER_AGENT,
                concat!("healthz/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::ACCEPT, "*/*")
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .expect("a request from a parsed URL is valid");
        let exchange = async move {
            let response = sender.send_request(request).await?;
            let status = response.status();
            if status == StatusCode::OK {
                return Ok(());
            }
            let body = match Limited::new(response.into_body(), MAX_BODY).collect().await {
                Ok(b) => {
                    let b = b.to_bytes();
                    String::from_utf8_lossy(&b)
                        .trim()
                        .chars()
                        .take(200)
                        .collect()
                }
                Err(_) => String::new(),
            };
            Err(Failure::Status { status, body })
        };
        // The connection is driven here, not spawned: a run dropped at its timeout leaves
        // nothing behind.
        let mut exchange = std::pin::pin!(exchange);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = &mut exchange => r,
            c = &mut conn => {
                c?;
                exchange.await
            }
        }
    }
}

/// Run `probe` every `period` until `shutdown`, each run bounded by `timeout` (a run that
/// does not finish in time is a failure), recording every result in `state` and `metrics`.
pub async fn run_probe<P: Probe>(
    probe: P,
    state: State,
    metrics: Metrics,
    period: Duration,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let name = probe.name();
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut was_ok: Option<bool> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let start = Instant::now();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = tokio::time::timeout(timeout, probe.run()) => match r {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::Timeout(timeout)),
            },
        };
        let latency = start.elapsed();
        let ok = outcome.is_ok();
        metrics.observe(name, latency, outcome.as_ref().err().map(Failure::label));
        let outcome = outcome.map_err(|failure| {
            ProbeError {
                target: probe.target(),
                failure,
            }
            .to_string()
        });
        match (&outcome, was_ok) {
            (Err(e), Some(true) | None) => {
                tracing::warn!(probe = name, reason = %e, "probe failing")
            }
            (Ok(()), Some(false) | None) => {
                tracing::info!(
                    probe = name,
                    latency_ms = latency.as_millis() as u64,
                    "probe ok"
                )
            }
            _ => tracing::debug!(
                probe = name,
                ok,
                latency_ms = latency.as_millis() as u64,
                "probe run"
            ),
        }
        was_ok = Some(ok);
        state.record(
            name,
            ProbeResult {
                outcome,
                at: Instant::now(),
                latency,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::rr::{RData, Record};

    fn probe() -> DnsProbe {
        DnsProbe::new("127.0.0.1:53", "kubernetes.default.svc.cluster.local").unwrap()
    }

    fn reply_to(q: &Message, code: ResponseCode, answers: Vec<RData>) -> Message {
        let mut r = Message::response(q.metadata.id, q.metadata.op_code);
        r.metadata.response_code = code;
        r.add_queries(q.queries.clone());
        for data in answers {
            r.add_answer(Record::from_rdata(q.queries[0].name().clone(), 30, data));
        }
        r
    }

    fn check(q: &Message, r: &Message) -> Result<(), String> {
        check_reply(q, &r.to_vec().unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn noerror_with_a_record_is_ok() {
        let q = probe().query();
        let r = reply_to(
            &q,
            ResponseCode::NoError,
            vec![RData::A(A::new(10, 96, 0, 1))],
        );
        check(&q, &r).unwrap();
    }

    #[test]
    fn noerror_with_other_records_is_ok() {
        let q = probe().query();
        let target = Name::from_ascii("elsewhere.example.").unwrap();
        let r = reply_to(&q, ResponseCode::NoError, vec![RData::CNAME(CNAME(target))]);
        check(&q, &r).unwrap();
    }

    #[test]
    fn failures_have_clear_reasons() {
        let q = probe().query();
        let table: Vec<(Message, &str)> = vec![
            (reply_to(&q, ResponseCode::NXDomain, vec![]), "NXDOMAIN"),
            (reply_to(&q, ResponseCode::ServFail, vec![]), "SERVFAIL"),
            (reply_to(&q, ResponseCode::Refused, vec![]), "REFUSED"),
            (reply_to(&q, ResponseCode::NoError, vec![]), "NODATA"),
            (
                {
                    let mut r = reply_to(&q, ResponseCode::NoError, vec![]);
                    r.metadata.id = q.metadata.id.wrapping_add(1);
                    r
                },
                "does not match query id",
            ),
            (
                {
                    let mut r = reply_to(&q, ResponseCode::NoError, vec![]);
                    r.metadata.message_type = MessageType::Query;
                    r
                },
                "not a response",
            ),
            (
                {
                    let mut other = q.clone();
                    other.queries[0].set_name(Name::from_ascii("other.").unwrap());
                    reply_to(
                        &other,
                        ResponseCode::NoError,
                        vec![RData::A(A::new(1, 2, 3, 4))],
                    )
                },
                "not the question asked",
            ),
        ];
        for (reply, want) in table {
            let err = check(&q, &reply).unwrap_err();
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
        assert!(check_reply(&q, b"\x00\x01")
            .unwrap_err()
            .to_string()
            .contains("undecodable"));
    }

    #[test]
    fn target_names_server_and_name() {
        assert_eq!(
            probe().target(),
            "kubernetes.default.svc.cluster.local. A @127.0.0.1:53"
        );
        assert!(DnsProbe::new("127.0.0.1", "x").is_err());
        let h = HttpProbe::new(KUBE2SKY, "http://127.0.0.1:8081/readiness").unwrap();
        assert_eq!(h.target(), "GET http://127.0.0.1:8081/readiness");
    }
}
