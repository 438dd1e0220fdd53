//! The probes, behind the small [`Probe`] trait: [`DnsProbe`] resolves a name against skydns
//! over UDP, [`HttpProbe`] GETs kube2sky's `/readiness`. [`run_probe`] runs one probe every
//! period, bounds each run by the timeout, and records the result and metrics.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::HttpTarget;
use crate::metrics::Metrics;
use crate::state::{ProbeResult, State};

/// Name of the DNS probe (label value and `/healthz/skydns`).
pub const SKYDNS: &str = "skydns";
/// Name of the kube2sky readiness probe (label value and `/healthz/kube2sky`).
pub const KUBE2SKY: &str = "kube2sky";

/// One health check. A run returns `Err(reason)` on failure; the caller bounds it by a timeout.
pub trait Probe: Send + Sync + 'static {
    /// Short name: the `probe` label and the `/healthz/<name>` path.
    fn name(&self) -> &'static str;
    /// What is probed, for messages (e.g. `kubernetes.default.svc.cluster.local. A @127.0.0.1:53`).
    fn target(&self) -> String;
    /// Run once.
    fn probe(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Resolve `host:port` to one socket address (IP literals need no lookup).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}: no addresses"))
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
    pub fn new(server: &str, name: &str) -> Result<Self, String> {
        let (host, port) = crate::config::split_host_port(server)?;
        let mut name = Name::from_ascii(name).map_err(|e| format!("bad name {name:?}: {e}"))?;
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

    async fn exchange(&self) -> Result<(), String> {
        let addr = resolve(&self.host, self.port).await?;
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let sock = UdpSocket::bind(local)
            .await
            .map_err(|e| format!("bind UDP socket: {e}"))?;
        // A connected socket only receives from the server, and reports ICMP port unreachable
        // as "connection refused" right away instead of waiting for the timeout.
        sock.connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let query = self.query();
        let bytes = query.to_vec().map_err(|e| format!("encode query: {e}"))?;
        sock.send(&bytes)
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut buf = vec![0u8; 4096];
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| format!("no DNS server answering at {addr}: {e}"))?;
        check_reply(&query, &buf[..n])
    }
}

impl Probe for DnsProbe {
    fn name(&self) -> &'static str {
        SKYDNS
    }

    fn target(&self) -> String {
        format!("{} A @{}:{}", self.name, self.host, self.port)
    }

    async fn probe(&self) -> Result<(), String> {
        self.exchange()
            .await
            .map_err(|e| format!("{}: {e}", self.target()))
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
pub fn check_reply(query: &Message, reply: &[u8]) -> Result<(), String> {
    let reply = Message::from_vec(reply).map_err(|e| format!("undecodable reply: {e}"))?;
    if reply.metadata.id != query.metadata.id {
        return Err(format!(
            "reply id {} does not match query id {}",
            reply.metadata.id, query.metadata.id
        ));
    }
    if reply.metadata.message_type != MessageType::Response {
        return Err("reply is not a response (QR bit clear)".into());
    }
    if let (Some(asked), Some(answered)) = (query.queries.first(), reply.queries.first()) {
        if asked.name() != answered.name() || asked.query_type() != answered.query_type() {
            return Err(format!(
                "reply is for {} {}, not the question asked",
                answered.name(),
                answered.query_type()
            ));
        }
    }
    let code = reply.metadata.response_code;
    if code != ResponseCode::NoError {
        return Err(rcode_name(code));
    }
    if reply.answers.is_empty() {
        return Err(if reply.metadata.truncation {
            "truncated reply without records".into()
        } else {
            "NOERROR but no records (NODATA)".into()
        });
    }
    Ok(())
}

/// GETs a plain-HTTP URL and expects status 200 (kube2sky's `/readiness`).
#[derive(Debug, Clone)]
pub struct HttpProbe {
    name: &'static str,
    url: String,
    target: HttpTarget,
}

/// Response head is read up to this many bytes.
const MAX_HEAD: usize = 16 * 1024;

impl HttpProbe {
    pub fn new(name: &'static str, url: &str) -> Result<Self, String> {
        Ok(Self {
            name,
            url: url.to_string(),
            target: HttpTarget::parse(url)?,
        })
    }

    async fn get(&self) -> Result<(), String> {
        let t = &self.target;
        let addr = resolve(&t.host, t.port).await?;
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: healthz/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            t.path,
            t.host_header(),
            env!("CARGO_PKG_VERSION"),
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send request: {e}"))?;
        let mut buf = Vec::with_capacity(1024);
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() >= MAX_HEAD {
                return Err("response head too large".into());
            }
            let mut chunk = [0u8; 2048];
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read response: {e}"))?;
            if n == 0 {
                if buf.is_empty() {
                    return Err("connection closed without a response".into());
                }
                break buf.len();
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]);
        let status_line = head.lines().next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") || code.len() != 3 {
            return Err(format!("not an HTTP response: {status_line:?}"));
        }
        if code == "200" {
            return Ok(());
        }
        let mut msg = format!("status {}", status_line[version.len()..].trim());
        let body_start = (head_end + 4).min(buf.len());
        let body = String::from_utf8_lossy(&buf[body_start..]);
        let body: String = body.trim().chars().take(200).collect();
        if !body.is_empty()
            && !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
        {
            msg.push_str(": ");
            msg.push_str(&body);
        }
        Err(msg)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Probe for HttpProbe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn target(&self) -> String {
        format!("GET {}", self.url)
    }

    async fn probe(&self) -> Result<(), String> {
        self.get()
            .await
            .map_err(|e| format!("{}: {e}", self.target()))
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
            r = tokio::time::timeout(timeout, probe.probe()) => match r {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("{}: no answer within {timeout:?}", probe.target())),
            },
        };
        let latency = start.elapsed();
        let ok = outcome.is_ok();
        metrics.observe(name, latency, ok);
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
        check_reply(q, &r.to_vec().unwrap())
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
