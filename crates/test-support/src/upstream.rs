//! A scriptable upstream nameserver for forwarding tests, on UDP and TCP of one loopback port:
//! it answers A records from a table and NXDOMAIN (with an SOA) for everything else, or is
//! silent, or refuses, or fails — and counts the queries it received.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// How the fake upstream behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer from the table; NXDOMAIN + SOA otherwise.
    Answer,
    /// Receive and never reply.
    Silent,
    /// Reply REFUSED.
    Refuse,
    /// Reply SERVFAIL.
    ServFail,
}

struct State {
    mode: Mutex<Mode>,
    records: Mutex<HashMap<String, (Ipv4Addr, u32)>>,
    queries: AtomicUsize,
}

/// The running fake upstream; stopped when dropped.
pub struct FakeUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

impl FakeUpstream {
    /// Bind UDP and TCP on one 127.0.0.1 port and serve in `mode`.
    pub async fn start(mode: Mode) -> anyhow::Result<Self> {
        let (udp, tcp) = bind_pair().await?;
        let addr = udp.local_addr()?;
        let state = Arc::new(State {
            mode: Mutex::new(mode),
            records: Mutex::new(HashMap::new()),
            queries: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(serve_udp(udp, state.clone(), stop.clone()));
        tokio::spawn(serve_tcp(tcp, state.clone(), stop.clone()));
        Ok(FakeUpstream { addr, state, stop })
    }

    /// The address (UDP and TCP) to forward to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer `name` (any case, trailing dot optional) with an A record.
    pub fn add_a(&self, name: &str, ip: Ipv4Addr, ttl: u32) {
        if let Ok(mut r) = self.state.records.lock() {
            r.insert(normalise(name), (ip, ttl));
        }
    }

    /// Change how it answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        if let Ok(mut m) = self.state.mode.lock() {
            *m = mode;
        }
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.state.queries.load(Ordering::SeqCst)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn normalise(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n.ends_with('.') {
        n
    } else {
        format!("{n}.")
    }
}

/// UDP and TCP sockets on the same free loopback port.
pub async fn bind_pair() -> anyhow::Result<(UdpSocket, TcpListener)> {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = udp.local_addr()?;
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return Ok((udp, tcp));
        }
    }
    anyhow::bail!("no free port for a UDP+TCP pair")
}

fn reply(state: &State, packet: &[u8]) -> Option<Vec<u8>> {
    state.queries.fetch_add(1, Ordering::SeqCst);
    let req = Message::from_vec(packet).ok()?;
    let mode = *state.mode.lock().ok()?;
    let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries = req.queries.clone();
    match mode {
        Mode::Silent => return None,
        Mode::Refuse => resp.metadata.response_code = ResponseCode::Refused,
        Mode::ServFail => resp.metadata.response_code = ResponseCode::ServFail,
        Mode::Answer => {
            let q = req.queries.first()?;
            let found = state
                .records
                .lock()
                .ok()?
                .get(&normalise(&q.name().to_ascii()))
                .copied();
            match found {
                Some((ip, ttl)) if q.query_type() == RecordType::A => {
                    resp.add_answer(Record::from_rdata(q.name().clone(), ttl, RData::A(A(ip))));
                }
                Some(_) => {}
                None => {
                    resp.metadata.response_code = ResponseCode::NXDomain;
                    let soa = SOA::new(
                        Name::from_ascii("ns.upstream.test.").ok()?,
                        Name::from_ascii("hostmaster.upstream.test.").ok()?,
                        1,
                        3600,
                        600,
                        86400,
                        60,
                    );
                    resp.add_authority(Record::from_rdata(Name::root(), 60, RData::SOA(soa)));
                }
            }
        }
    }
    resp.to_vec().ok()
}

async fn serve_udp(sock: UdpSocket, state: Arc<State>, stop: CancellationToken) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r { Ok(v) => v, Err(_) => continue },
        };
        if let Some(bytes) = reply(&state, &buf[..n]) {
            let _ = sock.send_to(&bytes, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r { Ok(v) => v, Err(_) => continue },
        };
        let state = state.clone();
        tokio::spawn(async move {
            while let Ok(len) = stream.read_u16().await {
                let mut buf = vec![0u8; len as usize];
                if stream.read_exact(&mut buf).await.is_err() {
                    return;
                }
                if let Some(bytes) = reply(&state, &buf) {
                    let _ = stream.write_all(&(bytes.len() as u16).to_be_bytes()).await;
                    let _ = stream.write_all(&bytes).await;
                }
            }
        });
    }
}
