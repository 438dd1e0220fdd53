//! One question to one upstream over UDP or TCP, within a timeout: the query is built with a
//! random id and EDNS (payload 1232), and only a reply with that id and that question is
//! taken (anything else on the socket — spoofing, stale replies — is ignored).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{Transport, Upstream};
use crate::index::MAX_TTL;

/// Why one exchange failed (the label is what metrics count it as).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// No reply within the per-upstream timeout (`--rtimeout`).
    #[error("timed out")]
    Timeout,
    /// The socket failed (send, receive, connect), with the system's message.
    #[error("network: {0}")]
    Io(String),
    /// A reply arrived but cannot be used (undecodable, wrong id or question).
    #[error("bad reply: {0}")]
    BadReply(String),
}

impl ExchangeError {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            ExchangeError::Timeout => "timeout",
            ExchangeError::Io(_) => "network",
            ExchangeError::BadReply(_) => "bad_reply",
        }
    }
}

/// Receive buffer for one UDP reply (we advertise 1232 bytes; some room beyond).
const UDP_REPLY_BUFFER: usize = 4096;

fn io(e: std::io::Error) -> ExchangeError {
    ExchangeError::Io(e.to_string())
}

/// Ask `server` for `query`, waiting at most `timeout`.
pub async fn ask(
    server: SocketAddr,
    query: &Query,
    dnssec_ok: bool,
    transport: Transport,
    timeout: Duration,
) -> Result<Upstream, ExchangeError> {
    let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(dnssec_ok);
    msg.set_edns(edns);
    let bytes = msg
        .to_vec()
        .map_err(|e| ExchangeError::BadReply(e.to_string()))?;
    let id = msg.metadata.id;
    let reply = tokio::time::timeout(timeout, async {
        match transport {
            // A truncated UDP answer is handed back as it is: the client retries over TCP.
            Transport::Udp => udp_exchange(server, &bytes, id, query).await,
            Transport::Tcp => tcp_exchange(server, &bytes, id).await,
        }
    })
    .await
    .map_err(|_| ExchangeError::Timeout)??;
    let mut up = Upstream {
        rcode: reply.metadata.response_code,
        truncated: reply.metadata.truncation,
        answers: reply.answers,
        authorities: reply.authorities,
        additionals: reply
            .additionals
            .into_iter()
            .filter(|r| r.record_type() != RecordType::OPT)
            .collect(),
        from_cache: false,
    };
    // RFC 2181 §8: a TTL with the top bit set is treated as zero.
    for r in up
        .answers
        .iter_mut()
        .chain(up.authorities.iter_mut())
        .chain(up.additionals.iter_mut())
    {
        if r.ttl > MAX_TTL {
            r.ttl = 0;
        }
    }
    Ok(up)
}

async fn udp_exchange(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, ExchangeError> {
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = UdpSocket::bind(bind).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    sock.send(bytes).await.map_err(io)?;
    // We advertise an EDNS payload of 1232 bytes, so a conforming UDP reply fits; a larger one
    // is cut by the kernel, fails to parse and is ignored (the attempt then times out).
    let mut buf = vec![0u8; UDP_REPLY_BUFFER];
    loop {
        let n = sock.recv(&mut buf).await.map_err(io)?;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        // Upstreams may change the case of the question (0x20 is not echoed by all).
        let same_question = reply.queries.first().is_some_and(|q| {
            q.name().eq_ignore_root(query.name()) && q.query_type() == query.query_type()
        });
        if reply.metadata.id == id
            && reply.metadata.message_type == MessageType::Response
            && same_question
        {
            return Ok(reply);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, ExchangeError> {
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    let len = u16::try_from(bytes.len()).map_err(|e| ExchangeError::BadReply(e.to_string()))?;
    stream.write_all(&len.to_be_bytes()).await.map_err(io)?;
    stream.write_all(bytes).await.map_err(io)?;
    let n = stream.read_u16().await.map_err(io)?;
    let mut buf = vec![0u8; n as usize];
    stream.read_exact(&mut buf).await.map_err(io)?;
    let reply = Message::from_vec(&buf).map_err(|e| ExchangeError::BadReply(e.to_string()))?;
    if reply.metadata.id != id {
        return Err(ExchangeError::BadReply("mismatched id".into()));
    }
    Ok(reply)
}
