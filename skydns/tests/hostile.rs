//! Hostile data and hostile clients against the real server (real etcd, skydns in-process):
//! malformed or oversized etcd values are skipped and counted while their neighbours are
//! served; CNAME loops and long chains are bounded; a flood of idle, slow and busy TCP
//! connections is held to the connection limit and the idle timeout while UDP keeps answering.

mod common;

use common::{metric, ready};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use test_support::dns::{self, Transport, TRANSPORTS};
use test_support::EtcdProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const Z: &str = "kube.local";
const DIR: &str = "/skydns/local/kube/svc/hostile";

fn key(name: &str) -> String {
    format!("{DIR}/{name}")
}

fn fqdn(name: &str) -> String {
    format!("{name}.hostile.svc.{Z}.")
}

/// The 10 KiB TXT served in 255-byte strings: printable, varied, no two strings alike.
fn ten_kib_text() -> String {
    (0..10 * 1024)
        .map(|i| char::from(b'!' + (i * 7 % 90) as u8))
        .collect()
}

/// Values that must be skipped (and counted), by the name they are stored at.
fn hostile_values() -> Vec<(&'static str, Vec<u8>)> {
    let huge = format!(
        "[{}]",
        (0..10_000)
            .map(|i| format!(r#"{{"host":"10.9.{}.{}"}}"#, i / 250, i % 250 + 1))
            .collect::<Vec<_>>()
            .join(",")
    );
    let long_host = format!(
        r#"{{"host":"{}.example.com"}}"#,
        vec!["a".repeat(60); 5].join(".")
    );
    assert!(long_host.len() > 300);
    vec![
        ("bad-json", br#"{"host":"10.0.0.1""#.to_vec()),
        ("host-int", br#"{"host":5}"#.to_vec()),
        ("port-str", br#"{"host":"10.0.0.2","port":"x"}"#.to_vec()),
        ("ttl-neg", br#"{"host":"10.0.0.3","ttl":-1}"#.to_vec()),
        ("huge", huge.into_bytes()),
        ("long-host", long_host.into_bytes()),
        (
            "spaces",
            br#"{"host":"bad host name.example.com"}"#.to_vec(),
        ),
        (
            "txt-too-big",
            format!(r#"{{"text":"{}"}}"#, "x".repeat(16 * 1024 + 1)).into_bytes(),
        ),
        ("not-utf8", b"\xff\xfe{\"host\":\"10.0.0.4\"}".to_vec()),
        ("empty-array", b"[]".to_vec()),
        ("a-string", br#""10.0.0.5""#.to_vec()),
        (
            "nested",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        ),
    ]
}

/// Values that must be served.
fn good_values() -> Vec<(String, String)> {
    let mut v = vec![
        ("good".to_string(), r#"{"host":"10.254.0.1"}"#.to_string()),
        (
            "loop-a".to_string(),
            format!(r#"{{"host":"{}"}}"#, fqdn("loop-b")),
        ),
        (
            "loop-b".to_string(),
            format!(r#"{{"host":"{}"}}"#, fqdn("loop-a")),
        ),
        (
            "txt-10k".to_string(),
            msg::encode_value(&[msg::Record {
                text: ten_kib_text(),
                ..Default::default()
            }]),
        ),
        (
            "max-array".to_string(),
            format!(
                "[{}]",
                (0..msg::record::MAX_RECORDS_PER_VALUE)
                    .map(|i| format!(r#"{{"host":"10.8.{}.{}"}}"#, i / 250, i % 250 + 1))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
    ];
    // chain-0 → chain-1 → … → chain-20 (an address): longer than the chase limit.
    for i in 0..20 {
        v.push((
            format!("chain-{i}"),
            format!(r#"{{"host":"{}"}}"#, fqdn(&format!("chain-{}", i + 1))),
        ));
    }
    v.push(("chain-20".into(), r#"{"host":"10.254.0.20"}"#.into()));
    v
}

async fn query_raw(
    sky: &common::Sky,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
    t: Transport,
) -> (usize, Message) {
    let q = dns::build_query(name, rtype, edns).unwrap();
    let bytes = dns::exchange_raw(sky.dns, &q.to_vec().unwrap(), t, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("{name} {rtype} {t:?}: {e}"));
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    (bytes.len(), m)
}

#[tokio::test]
async fn hostile_values_are_skipped_and_counted_and_neighbours_served() {
    let etcd = EtcdProcess::start().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    let bad = hostile_values();
    let good = good_values();
    // Half the hostile values are there at the first read, the rest arrive through the watch.
    let (before, after) = bad.split_at(bad.len() / 2);
    for (name, value) in before {
        c.put(key(name), value.clone(), None).await.unwrap();
    }
    for (name, value) in &good {
        common::put(&mut c, &key(name), value).await;
    }
    let sky = common::start_skydns(&etcd.endpoint(), Z, None, &[]).await;
    ready(&sky).await;
    assert_eq!(
        metric(&sky, "skydns_records_skipped_total").await,
        before.len() as u64,
        "first read: each hostile value counted once"
    );
    for (name, value) in after {
        c.put(key(name), value.clone(), None).await.unwrap();
    }
    // A marker written last: once it answers, the watch has applied everything before it.
    common::put(&mut c, &key("marker"), r#"{"host":"10.254.0.99"}"#).await;
    test_support::eventually(Duration::from_secs(10), "watch caught up", || async {
        let r = dns::query(sky.dns, &fqdn("marker"), RecordType::A, Transport::Udp)
            .await
            .ok()?;
        (!r.answers.is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        metric(&sky, "skydns_records_skipped_total").await,
        bad.len() as u64,
        "every hostile value counted exactly once"
    );

    for t in TRANSPORTS {
        // Skipped values do not exist: NXDOMAIN with the SOA, never SERVFAIL or silence.
        for (name, _) in &bad {
            let r = dns::query(sky.dns, &fqdn(name), RecordType::A, t)
                .await
                .unwrap();
            assert_eq!(dns::rcode(&r), ResponseCode::NXDomain, "{name} {t:?}");
            assert!(dns::has_soa(&r), "{name} {t:?}");
        }
        // Good neighbours answer.
        let r = dns::query(sky.dns, &fqdn("good"), RecordType::A, t)
            .await
            .unwrap();
        assert_eq!(dns::answers(&r), vec!["A 10.254.0.1"], "{t:?}");

        // CNAME loop: answered at once, NOERROR, the two aliases, no address.
        let started = Instant::now();
        let r = dns::query(sky.dns, &fqdn("loop-a"), RecordType::A, t)
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(dns::rcode(&r), ResponseCode::NoError, "loop {t:?}");
        assert_eq!(
            dns::answers(&r),
            vec![
                format!("CNAME {}", fqdn("loop-a")),
                format!("CNAME {}", fqdn("loop-b")),
            ],
            "loop {t:?}"
        );
        // A 20-long chain stops after MAX_CHASE aliases, NOERROR, no address.
        let r = dns::query(sky.dns, &fqdn("chain-0"), RecordType::A, t)
            .await
            .unwrap();
        assert_eq!(dns::rcode(&r), ResponseCode::NoError, "chain {t:?}");
        assert_eq!(r.answers.len(), skydns::answer::MAX_CHASE, "chain {t:?}");
        assert!(r
            .answers
            .iter()
            .all(|a| a.record_type() == RecordType::CNAME));
        // The largest array accepted (4096 records): served, truncated over UDP, and over
        // TCP whole or (above 64 KiB) truncated too, but always answered.
        let (len, r) = query_raw(&sky, &fqdn("max-array"), RecordType::A, Some(1232), t).await;
        assert_eq!(dns::rcode(&r), ResponseCode::NoError);
        eprintln!(
            "max-array over {t:?}: {len} bytes, {} answers, TC {}",
            r.answers.len(),
            r.metadata.truncation
        );
        if t == Transport::Udp {
            assert!(len <= 1232 && r.metadata.truncation);
        }
        // A value that arrived later through the watch: equally skipped.
        let r = dns::query(sky.dns, &fqdn("nested"), RecordType::A, t)
            .await
            .unwrap();
        assert_eq!(dns::rcode(&r), ResponseCode::NXDomain);
    }

    // 10 KiB TXT: whole over TCP in 255-byte strings; TC over UDP within the client's size.
    let (_, r) = query_raw(
        &sky,
        &fqdn("txt-10k"),
        RecordType::TXT,
        None,
        Transport::Tcp,
    )
    .await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 1);
    let RData::TXT(txt) = &r.answers[0].data else {
        panic!("not a TXT: {:?}", r.answers[0]);
    };
    let strings = &txt.txt_data;
    assert_eq!(strings.len(), (10 * 1024usize).div_ceil(255));
    assert!(strings.iter().all(|s| s.len() <= 255));
    assert_eq!(strings.concat(), ten_kib_text().into_bytes());
    for (edns, limit) in [(None, 512), (Some(1232), 1232), (Some(4096), 1232)] {
        let (len, r) = query_raw(
            &sky,
            &fqdn("txt-10k"),
            RecordType::TXT,
            edns,
            Transport::Udp,
        )
        .await;
        assert!(len <= limit, "{len} > {limit}");
        assert!(
            r.metadata.truncation && r.answers.is_empty(),
            "TC over UDP ({edns:?})"
        );
    }

    // Still healthy, and nothing more was counted while serving.
    assert_eq!(common::http_get(sky.http, "/readiness").await.0, 200);
    assert_eq!(
        metric(&sky, "skydns_records_skipped_total").await,
        bad.len() as u64
    );
    sky.stop().await;
}

const GOOD: &str = "good.hostile.svc.kube.local.";

/// One UDP query that must answer correctly within 1 s.
async fn udp_ok(server: SocketAddr) -> Duration {
    let started = Instant::now();
    let q = dns::build_query(GOOD, RecordType::A, Some(1232)).unwrap();
    let bytes = dns::exchange_raw(
        server,
        &q.to_vec().unwrap(),
        Transport::Udp,
        Duration::from_secs(1),
    )
    .await
    .expect("UDP answered within 1 s during the TCP flood");
    let r = Message::from_vec(&bytes).unwrap();
    assert_eq!(r.metadata.id, q.metadata.id);
    assert_eq!(dns::answers(&r), vec!["A 10.254.0.1"]);
    started.elapsed()
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // Replies to queries sent earlier: keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

fn framed(q: &Message) -> Vec<u8> {
    let b = q.to_vec().unwrap();
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

#[tokio::test]
async fn tcp_flood_is_bounded_and_udp_keeps_answering() {
    const CONNS: usize = 300;
    const LIMIT: usize = 50;
    let etcd = EtcdProcess::start().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    common::put(&mut c, &key("good"), r#"{"host":"10.254.0.1"}"#).await;
    let sky = common::start_skydns(
        &etcd.endpoint(),
        Z,
        None,
        &["--tcp-max-conns", "50", "--tcp-idle-timeout", "1s"],
    )
    .await;
    ready(&sky).await;
    udp_ok(sky.dns).await;

    // 300 connections: a third send nothing, a third half a length prefix, a third a length
    // prefix and half a query (slowloris); each then trickles one more byte now and then.
    let query = framed(&dns::build_query(GOOD, RecordType::A, None).unwrap());
    let mut conns = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
        let mut s = TcpStream::connect(sky.dns).await.unwrap();
        let _ = match i % 3 {
            0 => Ok(()),
            1 => s.write_all(&query[..1]).await,
            _ => s.write_all(&query[..query.len() / 2]).await,
        };
        conns.push(s);
    }
    // While they hang there, UDP answers, each within 1 s.
    let flood_started = Instant::now();
    let mut worst = Duration::ZERO;
    for round in 0..8 {
        for s in conns.iter_mut().skip(round % 3).step_by(3).take(50) {
            let _ = s.write_all(&[0]).await;
        }
        for _ in 0..5 {
            worst = worst.max(udp_ok(sky.dns).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worst < Duration::from_secs(1),
        "worst UDP latency {worst:?}"
    );
    // Over the limit: closed at accept and counted.
    let rejected = metric(&sky, "skydns_tcp_connections_rejected_total").await;
    assert!(
        rejected >= (CONNS - LIMIT) as u64,
        "{rejected} connections rejected, want ≥ {}",
        CONNS - LIMIT
    );
    // Every connection ends: the rejected ones at once, the held ones at the idle timeout
    // (a trickle does not keep a half-read query open past it).
    let mut open = 0;
    let deadline = flood_started + Duration::from_secs(6);
    for s in conns.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if !closed_within(s, left).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "connections still open 6 s into the flood");
    drop(conns);

    // A query flood on many connections: 100 connections × 20 pipelined queries. At most
    // 50 are served at once; every one is either answered completely or closed, and UDP
    // keeps answering meanwhile.
    let mut tasks = Vec::new();
    for conn in 0..100u16 {
        let server = sky.dns;
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(server).await else {
                return 0usize;
            };
            let mut out = Vec::new();
            for i in 0..20u16 {
                let mut q = dns::build_query(GOOD, RecordType::A, None).unwrap();
                q.metadata.id = conn * 20 + i;
                out.extend_from_slice(&framed(&q));
            }
            if s.write_all(&out).await.is_err() {
                return 0;
            }
            let mut answered = 0;
            for _ in 0..20 {
                let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(3), s.read_u16()).await
                else {
                    break;
                };
                let mut buf = vec![0u8; len as usize];
                if s.read_exact(&mut buf).await.is_err() {
                    break;
                }
                let m = Message::from_vec(&buf).unwrap();
                assert_eq!(dns::answers(&m), vec!["A 10.254.0.1"]);
                assert_eq!(m.metadata.id / 20, conn, "answer on the right connection");
                answered += 1;
            }
            answered
        }));
    }
    for _ in 0..10 {
        worst = worst.max(udp_ok(sky.dns).await);
    }
    let mut answered = 0;
    let mut whole = 0;
    for t in tasks {
        let n = t.await.unwrap();
        assert!(
            n == 0 || n == 20,
            "a served connection gets all its answers ({n})"
        );
        answered += n;
        whole += usize::from(n == 20);
    }
    eprintln!(
        "query flood: {whole} of 100 connections served ({answered} answers), \
         {rejected} rejected in the idle flood, worst UDP latency {worst:?}"
    );
    assert!(whole >= 1, "some connections served ({answered} answers)");
    assert!(
        worst < Duration::from_secs(1),
        "worst UDP latency {worst:?}"
    );

    // Afterwards a plain TCP query works.
    test_support::eventually(Duration::from_secs(5), "TCP after the flood", || async {
        let r = dns::query(sky.dns, GOOD, RecordType::A, Transport::Tcp)
            .await
            .ok()?;
        (dns::answers(&r) == vec!["A 10.254.0.1"]).then_some(())
    })
    .await;
    sky.stop().await;
}
