//! Forwarding: names outside the zone go upstream over the client's transport, answers and
//! negative answers are cached per their TTLs, failing upstreams give SERVFAIL within the
//! timeout (never silence) and are not cached, and the next upstream is tried.

mod common;

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use test_support::dns::{self, Transport};
use test_support::upstream::{FakeUpstream, Mode};
use test_support::EtcdProcess;

async fn setup(upstreams: &[&FakeUpstream]) -> (EtcdProcess, common::Sky) {
    let etcd = EtcdProcess::start().await.expect("etcd");
    let list: Vec<String> = upstreams.iter().map(|u| u.addr().to_string()).collect();
    let list = list.join(",");
    let sky = common::start_skydns(
        &etcd.endpoint(),
        "kube.local",
        None,
        &["--nameservers", &list],
    )
    .await;
    test_support::eventually(Duration::from_secs(10), "ready", || async {
        (common::http_get(sky.http, "/readiness").await.0 == 200).then_some(())
    })
    .await;
    (etcd, sky)
}

#[tokio::test]
async fn answers_and_negative_answers_are_cached() {
    let up = FakeUpstream::start(Mode::Answer).await.unwrap();
    up.add_a("www.example.com", "203.0.113.10".parse().unwrap(), 300);
    let (_etcd, sky) = setup(&[&up]).await;
    for t in dns::TRANSPORTS {
        let r = dns::query(sky.dns, "WWW.example.com.", RecordType::A, t)
            .await
            .unwrap();
        assert_eq!(dns::answers(&r), vec!["A 203.0.113.10"], "{t:?}");
        assert!(!r.metadata.authoritative && r.metadata.recursion_available);
        assert_eq!(
            r.answers[0].name.to_ascii(),
            "WWW.example.com.",
            "question case kept"
        );
    }
    let before = up.queries();
    let r = dns::query(sky.dns, "www.example.com.", RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(dns::answers(&r), vec!["A 203.0.113.10"]);
    assert!(r.answers[0].ttl <= 60, "capped by --rcache-ttl (60)");
    assert_eq!(up.queries(), before, "served from the cache");
    // NXDOMAIN cached per RFC 2308 (SOA minimum 60).
    let r = dns::query(sky.dns, "nope.example.com.", RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(dns::rcode(&r), ResponseCode::NXDomain);
    let n = up.queries();
    let r = dns::query(sky.dns, "nope.example.com.", RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(dns::rcode(&r), ResponseCode::NXDomain);
    assert!(dns::has_soa(&r));
    assert_eq!(up.queries(), n, "negative answer cached");
    let (_, metrics) = common::http_get(sky.http, "/metrics").await;
    assert!(
        metrics.contains("skydns_skydns_dns_request_count_total{system=\"cache\"} 3"),
        "{metrics}"
    );
    sky.stop().await;
}

#[tokio::test]
async fn silent_or_refusing_upstreams_give_servfail_and_do_not_poison_the_cache() {
    let up = FakeUpstream::start(Mode::Silent).await.unwrap();
    up.add_a("www.example.com", "203.0.113.10".parse().unwrap(), 300);
    let (_etcd, sky) = setup(&[&up]).await;
    for t in dns::TRANSPORTS {
        let started = Instant::now();
        let r = dns::query(sky.dns, "www.example.com.", RecordType::A, t)
            .await
            .unwrap();
        assert_eq!(
            dns::rcode(&r),
            ResponseCode::ServFail,
            "{t:?}: silent upstream → SERVFAIL"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "within the 500ms timeout"
        );
    }
    up.set_mode(Mode::Refuse);
    let r = dns::query(sky.dns, "www.example.com.", RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(
        dns::rcode(&r),
        ResponseCode::ServFail,
        "refusing upstream → SERVFAIL"
    );
    up.set_mode(Mode::ServFail);
    let r = dns::query(sky.dns, "www.example.com.", RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(dns::rcode(&r), ResponseCode::ServFail);
    // Upstream healthy again: the failure was not cached.
    up.set_mode(Mode::Answer);
    let r = dns::query(sky.dns, "www.example.com.", RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(dns::answers(&r), vec!["A 203.0.113.10"]);
    sky.stop().await;
}

#[tokio::test]
async fn the_next_upstream_is_tried_when_one_fails() {
    let dead = FakeUpstream::start(Mode::Silent).await.unwrap();
    let good = FakeUpstream::start(Mode::Answer).await.unwrap();
    good.add_a("www.example.com", "203.0.113.10".parse().unwrap(), 300);
    let (_etcd, sky) = setup(&[&dead, &good]).await;
    for t in dns::TRANSPORTS {
        let r = dns::query(sky.dns, "www.example.com.", RecordType::A, t)
            .await
            .unwrap();
        assert_eq!(dns::answers(&r), vec!["A 203.0.113.10"], "{t:?}");
    }
    assert!(dead.queries() >= 1 && good.queries() >= 1);
    sky.stop().await;
}

#[tokio::test]
async fn reverse_names_we_do_not_hold_are_forwarded() {
    let up = FakeUpstream::start(Mode::Answer).await.unwrap();
    let (etcd, sky) = setup(&[&up]).await;
    let mut c = etcd.client().await.unwrap();
    common::put(
        &mut c,
        "/skydns/arpa/in-addr/10/0/0/1",
        r#"[{"host":"kubernetes.default.svc.kube.local."}]"#,
    )
    .await;
    test_support::eventually(Duration::from_secs(5), "PTR from etcd", || async {
        let r = dns::query(
            sky.dns,
            "1.0.0.10.in-addr.arpa.",
            RecordType::PTR,
            Transport::Udp,
        )
        .await
        .ok()?;
        (dns::answers(&r) == vec!["PTR kubernetes.default.svc.kube.local."]).then_some(())
    })
    .await;
    let before = up.queries();
    let r = dns::query(
        sky.dns,
        "2.0.0.10.in-addr.arpa.",
        RecordType::PTR,
        Transport::Udp,
    )
    .await
    .unwrap();
    assert_eq!(
        dns::rcode(&r),
        ResponseCode::NXDomain,
        "upstream's answer relayed"
    );
    assert_eq!(up.queries(), before + 1, "forwarded");
    sky.stop().await;
}
