//! DNS query helpers for tests: send one question over UDP or TCP with hickory-proto and return
//! the decoded response, plus small accessors for the answers tests assert on.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How to send a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram each way (a truncated reply is returned as received).
    Udp,
    /// One length-prefixed message over a new connection.
    Tcp,
}

/// Both transports, for tests that check every case over each.
pub const TRANSPORTS: [Transport; 2] = [Transport::Udp, Transport::Tcp];

/// Build a query message with RD set and EDNS (payload `edns`) when given.
pub fn build_query(name: &str, rtype: RecordType, edns: Option<u16>) -> anyhow::Result<Message> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name)?, rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        msg.set_edns(e);
    }
    Ok(msg)
}

/// Send `name`/`rtype` to `server` and wait up to 3 s for the answer.
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    transport: Transport,
) -> anyhow::Result<Message> {
    let msg = build_query(name, rtype, Some(1232))?;
    exchange(server, &msg, transport).await
}

/// Send a prepared message and decode the reply (checks the id matches).
pub async fn exchange(
    server: SocketAddr,
    msg: &Message,
    transport: Transport,
) -> anyhow::Result<Message> {
    let bytes = msg.to_vec()?;
    let reply = exchange_raw(server, &bytes, transport, Duration::from_secs(3)).await?;
    let decoded = Message::from_vec(&reply).context("decode reply")?;
    if decoded.metadata.id != msg.metadata.id {
        bail!(
            "reply id {} != query id {}",
            decoded.metadata.id,
            msg.metadata.id
        );
    }
    Ok(decoded)
}

/// Send raw bytes and return the raw reply (one datagram, or one length-prefixed TCP message).
pub async fn exchange_raw(
    server: SocketAddr,
    bytes: &[u8],
    transport: Transport,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    tokio::time::timeout(timeout, async {
        match transport {
            Transport::Udp => {
                let sock = UdpSocket::bind("127.0.0.1:0").await?;
                sock.send_to(bytes, server).await?;
                let mut buf = vec![0u8; 65535];
                let (n, _) = sock.recv_from(&mut buf).await?;
                buf.truncate(n);
                Ok(buf)
            }
            Transport::Tcp => {
                let mut stream = TcpStream::connect(server).await?;
                let len = u16::try_from(bytes.len())?;
                stream.write_all(&len.to_be_bytes()).await?;
                stream.write_all(bytes).await?;
                let reply_len = stream.read_u16().await?;
                let mut buf = vec![0u8; reply_len as usize];
                stream.read_exact(&mut buf).await?;
                Ok(buf)
            }
        }
    })
    .await
    .context("DNS query timed out")?
}

/// The answer section rendered as `"<type> <rdata>"` strings (sorted), e.g. `"A 10.0.0.1"`.
pub fn answers(msg: &Message) -> Vec<String> {
    let mut v: Vec<String> = msg
        .answers
        .iter()
        .map(|r| render(r.record_type(), &r.data))
        .collect();
    v.sort();
    v
}

/// Only the answers of one type, rendered as their rdata (sorted).
pub fn rdata_of(msg: &Message, rtype: RecordType) -> Vec<String> {
    let mut v: Vec<String> = msg
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| r.data.to_string())
        .collect();
    v.sort();
    v
}

/// The response code.
pub fn rcode(msg: &Message) -> ResponseCode {
    msg.metadata.response_code
}

/// Whether the authority section holds an SOA (negative answers must carry one).
pub fn has_soa(msg: &Message) -> bool {
    msg.authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA)
}

fn render(rtype: RecordType, data: &RData) -> String {
    format!("{rtype} {data}")
}

/// `dig @server -p port +time=3 +tries=1 <args>`: what a person would type, stdout as text
/// (needs bind9-dnsutils).
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig (install bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
