//! Protocol hygiene with real packets: EDNS echo and BADVERS, unknown options/flags/types/
//! opcodes, header bits, truncation to the client's size with TC over UDP and complete answers
//! over TCP, malformed packets, UDP bursts from many clients, pipelined TCP queries, connection limits and idle timeouts.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use test_support::dns::{self, Transport};
use test_support::EtcdProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAME: &str = "mysql-service.default.svc.kube.local.";

async fn setup(args: &[&str]) -> (EtcdProcess, common::Sky) {
    let etcd = EtcdProcess::start().await.expect("etcd");
    let mut c = etcd.client().await.unwrap();
    common::put(
        &mut c,
        "/skydns/local/kube/svc/default/mysql-service",
        r#"{"host":"10.254.162.44","ttl":30}"#,
    )
    .await;
    // A headless service with 100 ready endpoints: too big for 512 bytes.
    let many: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"host":"10.1.{}.{}"}}"#, i / 250, i % 250 + 1))
        .collect();
    common::put(
        &mut c,
        "/skydns/local/kube/svc/default/big",
        &format!("[{}]", many.join(",")),
    )
    .await;
    let sky = common::start_skydns(&etcd.endpoint(), "kube.local", None, args).await;
    test_support::eventually(Duration::from_secs(10), "ready", || async {
        (common::http_get(sky.http, "/readiness").await.0 == 200).then_some(())
    })
    .await;
    (etcd, sky)
}

/// A raw query: header flags word, one question, optional OPT (payload, version, flags, options).
fn raw_query(
    id: u16,
    flags: u16,
    name: &str,
    qtype: u16,
    opt: Option<(u16, u8, u16, Vec<u8>)>,
) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&flags.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&(opt.is_some() as u16).to_be_bytes());
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    if let Some((payload, version, eflags, options)) = opt {
        p.push(0);
        p.extend_from_slice(&41u16.to_be_bytes());
        p.extend_from_slice(&payload.to_be_bytes());
        p.push(0);
        p.push(version);
        p.extend_from_slice(&eflags.to_be_bytes());
        p.extend_from_slice(&(options.len() as u16).to_be_bytes());
        p.extend_from_slice(&options);
    }
    p
}

async fn raw(server: SocketAddr, bytes: &[u8], t: Transport) -> anyhow::Result<Vec<u8>> {
    dns::exchange_raw(server, bytes, t, Duration::from_secs(2)).await
}

#[tokio::test]
async fn edns_is_echoed_and_versions_checked() {
    let (_etcd, sky) = setup(&[]).await;
    for t in dns::TRANSPORTS {
        // No EDNS in, no EDNS out.
        let r = Message::from_vec(
            &raw(sky.dns, &raw_query(1, 0x0100, NAME, 1, None), t)
                .await
                .unwrap(),
        )
        .unwrap();
        assert!(r.edns.is_none(), "{t:?}: no OPT without EDNS");
        assert_eq!(dns::answers(&r), vec!["A 10.254.162.44"]);
        // EDNS 0 with DO: OPT echoed with our payload, DO copied.
        let r = Message::from_vec(
            &raw(
                sky.dns,
                &raw_query(2, 0x0100, NAME, 1, Some((4096, 0, 0x8000, vec![]))),
                t,
            )
            .await
            .unwrap(),
        )
        .unwrap();
        let e = r.edns.as_ref().expect("OPT echoed");
        assert_eq!(e.max_payload(), 1232);
        assert!(e.flags().dnssec_ok, "{t:?}: DO echoed");
        assert_eq!(dns::answers(&r), vec!["A 10.254.162.44"]);
        // EDNS version 1: BADVERS, OPT version 0, no answer.
        let bytes = raw(
            sky.dns,
            &raw_query(3, 0x0100, NAME, 1, Some((1232, 1, 0, vec![]))),
            t,
        )
        .await
        .unwrap();
        let r = Message::from_vec(&bytes).unwrap();
        // BADVERS is extended rcode 16 (hickory decodes 16 as BADSIG, its twin).
        assert_eq!(u16::from(r.metadata.response_code), 16, "{t:?}: BADVERS");
        assert_eq!(r.edns.as_ref().map(|e| e.version()), Some(0));
        assert!(r.answers.is_empty());
        // Unknown EDNS option (code 65001) and unknown EDNS flag bit: ignored.
        let option = [0xfd, 0xe9, 0, 2, 0xab, 0xcd].to_vec();
        let bytes = raw(
            sky.dns,
            &raw_query(4, 0x0100, NAME, 1, Some((1232, 0, 0x4000, option))),
            t,
        )
        .await
        .unwrap();
        let r = Message::from_vec(&bytes).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(dns::answers(&r), vec!["A 10.254.162.44"]);
        let e = r.edns.as_ref().unwrap();
        assert!(
            e.options().as_ref().is_empty(),
            "unknown options are not echoed"
        );
        assert_eq!(e.flags().z, 0, "unknown flags are not echoed");
    }
    sky.stop().await;
}

#[tokio::test]
async fn header_bits_unknown_types_and_opcodes() {
    let (_etcd, sky) = setup(&[]).await;
    for t in dns::TRANSPORTS {
        // RD and CD copied, AD and Z clear, AA set, RA reflects recursion (off here).
        let bytes = raw(
            sky.dns,
            &raw_query(7, 0x0100 | 0x0010 | 0x0020 | 0x0040, NAME, 1, None),
            t,
        )
        .await
        .unwrap();
        let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
        assert_eq!(flags & 0x8000, 0x8000, "QR");
        assert_eq!(flags & 0x0400, 0x0400, "AA");
        assert_eq!(flags & 0x0100, 0x0100, "RD copied");
        assert_eq!(flags & 0x0010, 0x0010, "CD copied");
        assert_eq!(flags & 0x0020, 0, "AD clear");
        assert_eq!(flags & 0x0040, 0, "Z clear");
        assert_eq!(flags & 0x000f, 0, "NOERROR");
        // Unknown type at an existing name: NODATA with SOA.
        let r = Message::from_vec(
            &raw(sky.dns, &raw_query(8, 0x0100, NAME, 65000, None), t)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(
            r.answers.is_empty() && dns::has_soa(&r),
            "{t:?}: unknown type → NODATA"
        );
        // Unknown opcode (3) and NOTIFY (4): NOTIMP, id kept.
        for opcode in [3u16, 4] {
            let bytes = raw(sky.dns, &raw_query(9, opcode << 11, NAME, 1, None), t)
                .await
                .unwrap();
            assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]), 9);
            assert_eq!(bytes[3] & 0x0f, 4, "{t:?}: opcode {opcode} → NOTIMP");
        }
    }
    sky.stop().await;
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_complete_over_tcp() {
    let (_etcd, sky) = setup(&[]).await;
    let name = "big.default.svc.kube.local.";
    // No EDNS: at most 512 bytes, TC set.
    let bytes = raw(
        sky.dns,
        &raw_query(11, 0x0100, name, 1, None),
        Transport::Udp,
    )
    .await
    .unwrap();
    assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    let r = Message::from_vec(&bytes).unwrap();
    assert!(r.metadata.truncation, "TC set");
    // EDNS 1232: within 1232, TC set (100 A records need ~1.6 kB).
    let bytes = raw(
        sky.dns,
        &raw_query(12, 0x0100, name, 1, Some((1232, 0, 0, vec![]))),
        Transport::Udp,
    )
    .await
    .unwrap();
    assert!(bytes.len() <= 1232);
    assert!(Message::from_vec(&bytes).unwrap().metadata.truncation);
    // EDNS 4096 from the client is capped at our 1232 as well.
    let bytes = raw(
        sky.dns,
        &raw_query(13, 0x0100, name, 1, Some((4096, 0, 0, vec![]))),
        Transport::Udp,
    )
    .await
    .unwrap();
    assert!(bytes.len() <= 1232);
    // TCP: all 100, no TC.
    let r = dns::query(sky.dns, name, RecordType::A, Transport::Tcp)
        .await
        .unwrap();
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 100);
    // A small answer is not truncated.
    let r = dns::query(sky.dns, NAME, RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert!(!r.metadata.truncation);
    sky.stop().await;
}

#[tokio::test]
async fn malformed_packets_never_take_the_server_down() {
    let (_etcd, sky) = setup(&[]).await;
    // Too short for a header: dropped.
    assert!(raw(sky.dns, &[1, 2, 3, 4, 5], Transport::Udp)
        .await
        .is_err());
    // A header with a broken body: FORMERR with the id kept.
    let mut junk = raw_query(0x4242, 0x0100, NAME, 1, None);
    junk.truncate(20);
    let bytes = raw(sky.dns, &junk, Transport::Udp).await.unwrap();
    assert_eq!(&bytes[0..2], &[0x42, 0x42]);
    assert_eq!(bytes[3] & 0x0f, 1, "FORMERR");
    let bytes = raw(sky.dns, &junk, Transport::Tcp).await.unwrap();
    assert_eq!(bytes[3] & 0x0f, 1, "FORMERR over TCP");
    // A response (QR=1) sent to us: never answered.
    assert!(raw(
        sky.dns,
        &raw_query(5, 0x8100, NAME, 1, None),
        Transport::Udp
    )
    .await
    .is_err());
    // Two questions: FORMERR.
    let mut two = raw_query(6, 0x0100, NAME, 1, None);
    two[5] = 2;
    let q = two[12..].to_vec();
    two.extend_from_slice(&q);
    let bytes = raw(sky.dns, &two, Transport::Udp).await.unwrap();
    assert_eq!(bytes[3] & 0x0f, 1, "two questions → FORMERR");
    // Random garbage of many sizes; the server keeps answering.
    for len in [12usize, 13, 40, 300, 1500] {
        let garbage: Vec<u8> = (0..len)
            .map(|i| (i * 37 % 251) as u8 & !0x80u8.wrapping_mul((i == 2) as u8))
            .collect();
        let _ = raw(sky.dns, &garbage, Transport::Udp).await;
    }
    let r = dns::query(sky.dns, NAME, RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(dns::answers(&r), vec!["A 10.254.162.44"]);
    let (_, metrics) = common::http_get(sky.http, "/metrics").await;
    assert!(
        metrics.contains("skydns_malformed_queries_total"),
        "counted"
    );
    sky.stop().await;
}

#[tokio::test]
async fn pipelined_tcp_queries_are_all_answered() {
    let (_etcd, sky) = setup(&[]).await;
    let mut stream = tokio::net::TcpStream::connect(sky.dns).await.unwrap();
    let mut out = Vec::new();
    for id in 0..20u16 {
        let name = if id.is_multiple_of(2) {
            NAME
        } else {
            "nope.default.svc.kube.local."
        };
        let q = raw_query(1000 + id, 0x0100, name, 1, None);
        out.extend_from_slice(&(q.len() as u16).to_be_bytes());
        out.extend_from_slice(&q);
    }
    stream.write_all(&out).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let len = tokio::time::timeout(Duration::from_secs(2), stream.read_u16())
            .await
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; len as usize];
        stream.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        let expect = if m.metadata.id.is_multiple_of(2) {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        assert_eq!(m.metadata.response_code, expect);
        ids.push(m.metadata.id);
    }
    ids.sort();
    assert_eq!(ids, (1000..1020).collect::<Vec<u16>>());
    sky.stop().await;
}

/// Many clients fire at once, so the receive threads take several datagrams per call and send
/// the replies together: each client gets exactly its own answers, nothing crossed or lost.
#[tokio::test]
async fn udp_bursts_from_many_clients_each_get_their_own_replies() {
    let (_etcd, sky) = setup(&[]).await;
    // 128 datagrams: well inside a default socket receive buffer, so none is dropped.
    const CLIENTS: u16 = 8;
    const PER_CLIENT: u16 = 16;
    let mut sockets = Vec::new();
    for _ in 0..CLIENTS {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.connect(sky.dns).await.unwrap();
        sockets.push(s);
    }
    // Every client sends all its queries before anyone reads: the server's queue fills up.
    for (c, s) in sockets.iter().enumerate() {
        for i in 0..PER_CLIENT {
            let id = c as u16 * 1000 + i;
            let name = if i.is_multiple_of(2) {
                NAME
            } else {
                "nope.default.svc.kube.local."
            };
            s.send(&raw_query(id, 0x0100, name, 1, None)).await.unwrap();
        }
    }
    for (c, s) in sockets.iter().enumerate() {
        let mut ids = Vec::new();
        let mut buf = vec![0u8; 4096];
        while ids.len() < PER_CLIENT as usize {
            let n = tokio::time::timeout(Duration::from_secs(3), s.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("client {c}: only {} replies", ids.len()))
                .unwrap();
            let m = Message::from_vec(&buf[..n]).unwrap();
            let id = m.metadata.id;
            assert_eq!(id / 1000, c as u16, "a reply meant for another client");
            let (rcode, answers) = if (id % 1000).is_multiple_of(2) {
                (ResponseCode::NoError, 1)
            } else {
                (ResponseCode::NXDomain, 0)
            };
            assert_eq!(m.metadata.response_code, rcode, "id {id}");
            assert_eq!(m.answers.len(), answers, "id {id}");
            ids.push(id);
        }
        ids.sort();
        let want: Vec<u16> = (0..PER_CLIENT).map(|i| c as u16 * 1000 + i).collect();
        assert_eq!(ids, want, "client {c}");
    }
    sky.stop().await;
}

#[tokio::test]
async fn tcp_connections_are_bounded_and_idle_ones_closed() {
    let (_etcd, sky) = setup(&["--tcp-max-conns", "2", "--tcp-idle-timeout", "300ms"]).await;
    let mut a = tokio::net::TcpStream::connect(sky.dns).await.unwrap();
    let _b = tokio::net::TcpStream::connect(sky.dns).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Third connection: accepted by the kernel, closed by us at once.
    let mut c = tokio::net::TcpStream::connect(sky.dns).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "over-limit connection closed");
    // UDP keeps serving meanwhile.
    let r = dns::query(sky.dns, NAME, RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(dns::answers(&r), vec!["A 10.254.162.44"]);
    // Idle connection closed after the idle timeout.
    let n = tokio::time::timeout(Duration::from_secs(3), a.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "idle connection closed");
    // Slots free again: a new TCP query works.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = dns::query(sky.dns, NAME, RecordType::A, Transport::Tcp)
        .await
        .unwrap();
    assert_eq!(dns::answers(&r), vec!["A 10.254.162.44"]);
    sky.stop().await;
}
