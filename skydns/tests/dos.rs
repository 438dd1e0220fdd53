//! Denial-of-service and data-exposure paths, each closed and proven against the real server
//! (real etcd, skydns in-process, real sockets): wildcards never reach into the Kubernetes
//! trees and every scan is bounded; TCP clients that never read their replies lose their
//! connection within the idle timeout; upstream work has one budget for UDP and TCP; hostile
//! TTLs are clamped; a serving task that dies ends the process with an error.

mod common;

use common::{metric, ready};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use test_support::dns::{self, Transport, TRANSPORTS};
use test_support::upstream::{FakeUpstream, Mode};
use test_support::EtcdProcess;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const Z: &str = "kube.local";

async fn ask(sky: &common::Sky, name: &str, rtype: RecordType, t: Transport) -> Message {
    dns::query(sky.dns, name, rtype, t)
        .await
        .unwrap_or_else(|e| panic!("{name} {rtype} {t:?}: {e}"))
}

/// Number of keys in the big generic directory: more than one scan may visit.
const BIG: usize = 3000;

#[tokio::test]
async fn wildcards_stay_out_of_the_kubernetes_trees_and_scans_are_bounded() {
    let etcd = EtcdProcess::start().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    let p = "/skydns/local/kube";
    for (k, v) in [
        ("svc/default/web", r#"{"host":"10.0.0.1"}"#.to_string()),
        ("svc/default/web/10-0-5-1", r#"{"host":"10.0.5.1"}"#.into()),
        (
            "svc/default/web/_tcp/_http",
            r#"{"host":"web.default.svc.kube.local","port":80}"#.into(),
        ),
        ("pod/default/10-1-1-1", r#"{"host":"10.1.1.1"}"#.into()),
        ("generic/a", r#"{"host":"10.2.0.1"}"#.into()),
        ("generic/b", r#"{"host":"10.2.0.2"}"#.into()),
        ("svc-like", r#"{"host":"10.2.0.3"}"#.into()),
    ] {
        common::put(&mut c, &format!("{p}/{k}"), &v).await;
    }
    let mut txn = Vec::new();
    for i in 0..BIG {
        txn.push(etcd_client::TxnOp::put(
            format!("{p}/big/k{i:05}"),
            format!(r#"{{"host":"10.3.{}.{}"}}"#, i / 250, i % 250 + 1),
            None,
        ));
    }
    for chunk in txn.chunks(100) {
        c.txn(etcd_client::Txn::new().and_then(chunk.to_vec()))
            .await
            .unwrap();
    }
    let sky = common::start_skydns(&etcd.endpoint(), Z, None, &[]).await;
    ready(&sky).await;

    let kube_address = |r: &Message| {
        dns::answers(r)
            .into_iter()
            .find(|a| a.starts_with("A 10.0.") || a.starts_with("A 10.1."))
    };
    for t in TRANSPORTS {
        for name in [
            "*.kube.local.",
            "any.kube.local.",
            "*.*.kube.local.",
            "*.*.*.kube.local.",
            "*.*.*.*.kube.local.",
            "web.*.svc.kube.local.",
            "*.default.svc.kube.local.",
            "*.svc.kube.local.",
            "*.default.pod.kube.local.",
            "web.default.*.kube.local.",
            "10-0-5-1.web.default.*.kube.local.",
            "10-1-1-1.default.*.kube.local.",
        ] {
            let r = ask(&sky, name, RecordType::A, t).await;
            assert_eq!(kube_address(&r), None, "{name} {t:?} leaks {:?}", r.answers);
            assert_ne!(dns::rcode(&r), ResponseCode::ServFail, "{name} {t:?}");
        }
        // SRV through a wildcard label does not reach the named ports either.
        let r = ask(&sky, "*.*.default.svc.kube.local.", RecordType::SRV, t).await;
        assert!(r.answers.is_empty(), "{t:?} {:?}", r.answers);
        let r = ask(
            &sky,
            "_http._tcp.web.default.*.kube.local.",
            RecordType::SRV,
            t,
        )
        .await;
        assert!(r.answers.is_empty(), "{t:?} {:?}", r.answers);

        // Wildcards outside the Kubernetes trees still work, and a label merely starting
        // with `svc` is an ordinary one.
        let r = ask(&sky, "*.generic.kube.local.", RecordType::A, t).await;
        assert_eq!(dns::answers(&r), vec!["A 10.2.0.1", "A 10.2.0.2"], "{t:?}");
        let r = ask(&sky, "svc-like.kube.local.", RecordType::A, t).await;
        assert_eq!(dns::answers(&r), vec!["A 10.2.0.3"], "{t:?}");

        // The Kubernetes names themselves answer as before.
        let r = ask(&sky, "web.default.svc.kube.local.", RecordType::A, t).await;
        assert_eq!(dns::answers(&r), vec!["A 10.0.0.1"]);
        let r = ask(&sky, "web.default.svc.kube.local.", RecordType::SRV, t).await;
        assert_eq!(r.answers.len(), 1, "{t:?}");
        // SRV at a namespace answers nothing (NODATA), it is not a service.
        let r = ask(&sky, "default.svc.kube.local.", RecordType::SRV, t).await;
        assert!(r.answers.is_empty() && dns::rcode(&r) == ResponseCode::NoError);
    }

    // A directory union over more keys than one scan visits: answered, bounded, counted.
    let before = metric(&sky, "skydns_scans_limited_total").await;
    let r = ask(&sky, "big.kube.local.", RecordType::A, Transport::Tcp).await;
    assert_eq!(dns::rcode(&r), ResponseCode::NoError);
    assert!(!r.metadata.truncation, "TCP reply fits");
    assert_eq!(
        r.answers.len(),
        skydns::answer::MAX_SCAN_KEYS,
        "the union stops at the scan bound"
    );
    // Through a wildcard from the apex: the same bound.
    let r = ask(&sky, "*.kube.local.", RecordType::A, Transport::Tcp).await;
    assert!(r.answers.len() <= skydns::answer::MAX_SCAN_KEYS);
    assert!(metric(&sky, "skydns_scans_limited_total").await >= before + 2);
    sky.stop().await;
}

/// One TCP connection that pipelines `burst` queries for a large answer, never reads, and
/// keeps sending a query every 200 ms until the server closes it. Returns when the
/// connection is found closed (a write fails), with the time it took.
async fn never_reads(server: SocketAddr, burst: usize) -> Duration {
    let started = Instant::now();
    let sock = TcpSocket::new_v4().unwrap();
    // A small receive buffer: the server's replies back up quickly.
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s: TcpStream = sock.connect(server).await.unwrap();
    let q = dns::build_query("big.txt.kube.local.", RecordType::TXT, None).unwrap();
    let b = q.to_vec().unwrap();
    let mut one = (b.len() as u16).to_be_bytes().to_vec();
    one.extend_from_slice(&b);
    let all: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * burst)
        .collect();
    // The burst may itself block once the server stops reading; the trickle follows it.
    if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(20), s.write_all(&all)).await {
        return started.elapsed();
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match tokio::time::timeout(Duration::from_secs(1), s.write_all(&one)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return started.elapsed(),
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(30) {
            return started.elapsed();
        }
    }
}

#[tokio::test]
async fn tcp_clients_that_never_read_lose_their_slot_within_the_idle_timeout() {
    const SLOTS: usize = 4;
    let etcd = EtcdProcess::start().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    let text: String = (0..8 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    common::put(
        &mut c,
        "/skydns/local/kube/txt/big",
        &msg::encode_value(&[msg::Record {
            text,
            ..Default::default()
        }]),
    )
    .await;
    common::put(&mut c, "/skydns/local/kube/good", r#"{"host":"10.4.0.1"}"#).await;
    let sky = common::start_skydns(
        &etcd.endpoint(),
        Z,
        None,
        &["--tcp-max-conns", "4", "--tcp-idle-timeout", "1s"],
    )
    .await;
    ready(&sky).await;

    // Every slot taken by a client that pipelines 2,000 queries of 8 KiB answers, never reads,
    // and keeps trickling queries.
    let hostile: Vec<_> = (0..SLOTS)
        .map(|_| tokio::spawn(never_reads(sky.dns, 2000)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A fresh client is answered soon: the stalled connections are closed within the idle
    // timeout (plus the time to fill the socket buffers), whatever they keep sending.
    let started = Instant::now();
    test_support::eventually(
        Duration::from_secs(8),
        "a fresh TCP query answered",
        || async {
            let r = dns::query(sky.dns, "good.kube.local.", RecordType::A, Transport::Tcp)
                .await
                .ok()?;
            (dns::answers(&r) == vec!["A 10.4.0.1"]).then_some(())
        },
    )
    .await;
    let fresh = started.elapsed();
    let mut closed_after = Vec::new();
    for h in hostile {
        closed_after.push(h.await.unwrap());
    }
    eprintln!(
        "fresh client answered after {fresh:?}; stalled connections closed after {closed_after:?}"
    );
    assert!(
        closed_after.iter().all(|d| *d < Duration::from_secs(10)),
        "{closed_after:?}"
    );
    assert!(metric(&sky, "skydns_tcp_connections_stalled_total").await >= SLOTS as u64);
    sky.stop().await;
}

#[tokio::test]
async fn upstream_work_has_one_budget_for_udp_and_tcp() {
    let etcd = EtcdProcess::start().await.unwrap();
    let silent = FakeUpstream::start(Mode::Silent).await.unwrap();
    let sky = common::start_skydns(
        &etcd.endpoint(),
        Z,
        Some(silent.addr()),
        &["--max-concurrent", "4"],
    )
    .await;
    ready(&sky).await;

    // Four lookups hang on the silent upstream (500 ms per attempt), holding the budget.
    let mut held = Vec::new();
    for i in 0..4 {
        let server = sky.dns;
        let t = if i % 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        held.push(tokio::spawn(async move {
            dns::query(server, &format!("held{i}.example.org."), RecordType::A, t).await
        }));
    }
    test_support::eventually(Duration::from_secs(2), "four lookups upstream", || async {
        (silent.queries() >= 4).then_some(())
    })
    .await;
    // Beyond the budget, on either transport: REFUSED at once, counted.
    for (i, t) in [
        Transport::Udp,
        Transport::Tcp,
        Transport::Udp,
        Transport::Tcp,
    ]
    .into_iter()
    .enumerate()
    {
        let started = Instant::now();
        let r = ask(&sky, &format!("over{i}.example.org."), RecordType::A, t).await;
        assert_eq!(dns::rcode(&r), ResponseCode::Refused, "{t:?}");
        assert!(started.elapsed() < Duration::from_millis(300), "{t:?}");
    }
    assert_eq!(metric(&sky, "skydns_upstream_overflow_total").await, 4);
    // The held lookups end (SERVFAIL: the upstream never answers) and give the budget back.
    for h in held {
        let r = h.await.unwrap().unwrap();
        assert_eq!(dns::rcode(&r), ResponseCode::ServFail);
    }
    let r = ask(&sky, "after.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(dns::rcode(&r), ResponseCode::ServFail, "forwarded again");
    sky.stop().await;
}

#[tokio::test]
async fn ttls_with_the_top_bit_set_are_treated_as_zero() {
    let etcd = EtcdProcess::start().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    for (name, ttl) in [
        ("max", u32::MAX),
        ("top", 1u32 << 31),
        ("ok", (1u32 << 31) - 1),
    ] {
        common::put(
            &mut c,
            &format!("/skydns/local/kube/ttl/{name}"),
            &format!(r#"{{"host":"10.5.0.1","ttl":{ttl}}}"#),
        )
        .await;
    }
    let sky = common::start_skydns(&etcd.endpoint(), Z, None, &["--ttl", "30"]).await;
    ready(&sky).await;
    for (name, want) in [("max", 30), ("top", 30), ("ok", (1u32 << 31) - 1)] {
        let r = ask(
            &sky,
            &format!("{name}.ttl.kube.local."),
            RecordType::A,
            Transport::Udp,
        )
        .await;
        assert_eq!(r.answers.len(), 1, "{name}");
        assert_eq!(r.answers[0].ttl, want, "{name}");
    }
    sky.stop().await;
}

#[tokio::test]
async fn a_dead_tcp_listener_ends_the_server_with_an_error() {
    use std::os::fd::AsRawFd;
    test_support::init_test_tracing();
    let etcd = EtcdProcess::start().await.unwrap();
    let settings = {
        use clap::Parser;
        skydns::Config::try_parse_from([
            "skydns",
            "--lameduck",
            "0",
            "--machines",
            &etcd.endpoint(),
            "--domain",
            Z,
            "--no-rec",
        ])
        .unwrap()
        .validate()
        .unwrap()
    };
    let (udp, tcp) = test_support::upstream::bind_pair().await.unwrap();
    // A second descriptor of the same listening socket, to kill it under the running server.
    let tcp = tcp.into_std().unwrap();
    let dup = tcp.try_clone().unwrap();
    let tcp = tokio::net::TcpListener::from_std(tcp).unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(skydns::run(
        settings,
        skydns::Listeners { udp, tcp, http },
        shutdown.clone(),
    ));
    test_support::eventually(Duration::from_secs(10), "ready", || async {
        (common::http_get(http_addr, "/readiness").await.0 == 200).then_some(())
    })
    .await;
    // Every accept fails from now on: the server must not go on half-deaf (UDP only).
    nix::sys::socket::shutdown(dup.as_raw_fd(), nix::sys::socket::Shutdown::Read).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run ends after its TCP listener died")
        .unwrap();
    let err = ended.expect_err("an error, so the process exits non-zero");
    assert!(err.to_string().contains("tcp"), "{err:#}");
    assert!(shutdown.is_cancelled(), "the other tasks were told to stop");
}
