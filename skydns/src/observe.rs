//! What happens once a reply is made: who asked ([`Client`]), the query log (`--log-queries`,
//! one line per query in CoreDNS `log`'s common format, written by its own thread through a
//! bounded queue so a slow stdout never holds up an answer), and the SERVFAIL cause log
//! (each cause logged at most once per [`ERROR_LOG_EVERY`], with the count in between, as
//! CoreDNS's `errors` plugin consolidates).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use prometheus_client::metrics::counter::Counter;

use crate::forward::Transport;

/// Who asked, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub addr: SocketAddr,
    pub transport: Transport,
}

impl Client {
    /// A UDP client (tests and benchmarks that call the handler directly).
    pub fn udp(addr: SocketAddr) -> Self {
        Client {
            addr,
            transport: Transport::Udp,
        }
    }

    /// A TCP client.
    pub fn tcp(addr: SocketAddr) -> Self {
        Client {
            addr,
            transport: Transport::Tcp,
        }
    }
}

/// Query-log lines waiting for the writer; beyond this lines are dropped and counted.
pub const QUERY_LOG_QUEUE: usize = 8192;

/// `--log-queries`: formats a line per query and hands it to the writer thread.
pub struct QueryLog {
    tx: SyncSender<String>,
    dropped: Counter,
}

impl QueryLog {
    /// Start the writer thread; lines go to `out` (stdout in the server). `dropped` counts
    /// lines lost because the queue was full.
    pub fn start(out: Box<dyn Write + Send>, dropped: Counter) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<String>(QUERY_LOG_QUEUE);
        std::thread::Builder::new()
            .name("query-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    // Write what else is queued, then flush: one syscall per burst.
                    while let Ok(line) = rx.try_recv() {
                        let _ = out.write_all(line.as_bytes());
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(QueryLog { tx, dropped })
    }

    /// Log one exchange.
    pub fn log(
        &self,
        client: Client,
        request: &[u8],
        reply: &[u8],
        rcode: ResponseCode,
        took: Duration,
    ) {
        let line = format_line(client, request, reply, rcode, took);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(line) {
            self.dropped.inc();
        }
    }
}

/// CoreDNS `log`'s common format:
/// `{remote}:{port} - {id} "{type} {class} {name} {proto} {size} {do} {bufsize}" {rcode}
/// {rflags} {rsize} {duration}`.
pub fn format_line(
    client: Client,
    request: &[u8],
    reply: &[u8],
    rcode: ResponseCode,
    took: Duration,
) -> String {
    let id = if request.len() >= 2 {
        u16::from_be_bytes([request[0], request[1]])
    } else {
        0
    };
    let proto = match client.transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let (qtype, qclass, qname, dnssec_ok, bufsize) = match Message::from_vec(request) {
        Ok(m) => {
            let (t, c, n) = match m.queries.first() {
                Some(q) => (
                    q.query_type().to_string(),
                    q.query_class().to_string(),
                    q.name().to_string(),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let (dok, size) = match &m.edns {
                Some(e) => (e.flags().dnssec_ok, e.max_payload()),
                None => (false, 512),
            };
            (t, c, n, dok, size)
        }
        Err(_) => ("-".into(), "-".into(), "-".into(), false, 512),
    };
    let ip = client.addr.ip();
    let remote = match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    };
    format!(
        "{remote}:{port} - {id} \"{qtype} {qclass} {qname} {proto} {size} {dnssec_ok} {bufsize}\" {rcode} {flags} {rsize} {secs:.9}s\n",
        port = client.addr.port(),
        size = request.len(),
        rcode = rcode_name(rcode),
        flags = reply_flags(reply),
        rsize = reply.len(),
        secs = took.as_secs_f64(),
    )
}

/// The rcode as CoreDNS names it (`NOERROR`, `NXDOMAIN`, `SERVFAIL`…).
pub fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::BADVERS => "BADVERS".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// The header flags set in a reply, comma-separated in CoreDNS's order (`qr,aa,rd,ra`).
fn reply_flags(reply: &[u8]) -> String {
    if reply.len() < 4 {
        return "-".into();
    }
    let (a, b) = (reply[2], reply[3]);
    let flags = [
        (a & 0x80 != 0, "qr"),
        (a & 0x04 != 0, "aa"),
        (a & 0x02 != 0, "tc"),
        (a & 0x01 != 0, "rd"),
        (b & 0x80 != 0, "ra"),
        (b & 0x20 != 0, "ad"),
        (b & 0x10 != 0, "cd"),
    ];
    let set: Vec<&str> = flags.iter().filter(|f| f.0).map(|f| f.1).collect();
    if set.is_empty() {
        "-".into()
    } else {
        set.join(",")
    }
}

/// The question type of a raw query, read without parsing the rest (0 when unreadable).
pub fn raw_qtype(packet: &[u8]) -> u16 {
    let mut at = 12;
    while let Some(&len) = packet.get(at) {
        if len == 0 {
            return match packet.get(at + 1..at + 3) {
                Some(t) => u16::from_be_bytes([t[0], t[1]]),
                None => 0,
            };
        }
        if len & 0xc0 != 0 {
            return 0;
        }
        at += 1 + len as usize;
    }
    0
}

/// Each SERVFAIL cause is logged at most once in this long.
pub const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Rate-limited SERVFAIL cause log: the first failure of a cause is logged at once, later
/// ones at most once per [`ERROR_LOG_EVERY`] with how many there were in between.
pub struct ErrorLog {
    origin: Instant,
    causes: Mutex<Vec<(&'static str, u64, u64)>>,
    total: AtomicU64,
}

impl Default for ErrorLog {
    fn default() -> Self {
        ErrorLog {
            origin: Instant::now(),
            causes: Mutex::new(Vec::new()),
            total: AtomicU64::new(0),
        }
    }
}

impl ErrorLog {
    /// Note a SERVFAIL for `cause` about `name`.
    pub fn servfail(
        &self,
        cause: &'static str,
        name: &dyn std::fmt::Display,
        detail: &dyn std::fmt::Display,
    ) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let now = self.origin.elapsed().as_millis() as u64;
        let every = ERROR_LOG_EVERY.as_millis() as u64;
        let Ok(mut causes) = self.causes.lock() else {
            return;
        };
        let slot = match causes.iter().position(|c| c.0 == cause) {
            Some(i) => i,
            None => {
                // First of its cause: logged now (the bound is the fixed set of causes).
                causes.push((cause, now, 0));
                drop(causes);
                tracing::warn!(cause, %name, error = %detail, "SERVFAIL");
                return;
            }
        };
        let (_, last, suppressed) = &mut causes[slot];
        if now.saturating_sub(*last) >= every {
            let repeated = *suppressed;
            *last = now;
            *suppressed = 0;
            drop(causes);
            tracing::warn!(cause, %name, error = %detail, repeated, "SERVFAIL");
        } else {
            *suppressed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn line_in_coredns_common_format() {
        let mut q = Message::new(4242, MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(
            Name::from_ascii("kubernetes.default.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(true);
        q.set_edns(e);
        let request = q.to_vec().unwrap();
        let reply = [0x10, 0x92, 0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        let line = format_line(
            Client::udp("10.244.0.1:52874".parse().unwrap()),
            &request,
            &reply,
            ResponseCode::NoError,
            Duration::from_micros(130),
        );
        assert_eq!(
            line,
            format!(
                "10.244.0.1:52874 - 4242 \"A IN kubernetes.default.svc.cluster.local. udp {} true 1232\" NOERROR qr,aa,rd,ra 12 0.000130000s\n",
                request.len()
            )
        );
        assert_eq!(raw_qtype(&request), 1);
        assert_eq!(raw_qtype(&[0; 5]), 0);
    }
}
