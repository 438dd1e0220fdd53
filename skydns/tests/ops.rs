//! Day-2 operations against the real server (real etcd, skydns through `skydns::run`, real DNS
//! clients and dig): CHAOS TXT identity and NSID, answer rotation (and the reply cache still
//! hitting under it), graceful drain with a lameduck period.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use test_support::dns::{self, Transport};
use test_support::EtcdProcess;

const DOMAIN: &str = "kube.local";
const WEB: &str = "web.default.svc.kube.local.";

async fn setup(args: &[&str]) -> (EtcdProcess, common::Sky) {
    let etcd = EtcdProcess::start().await.expect("etcd");
    let mut c = etcd.client().await.unwrap();
    let v4: Vec<String> = (1..=10)
        .map(|i| format!(r#"{{"host":"10.9.0.{i}"}}"#))
        .collect();
    common::put(
        &mut c,
        "/skydns/local/kube/svc/default/web",
        &format!("[{}]", v4.join(",")),
    )
    .await;
    let v6: Vec<String> = (1..=10)
        .map(|i| format!(r#"{{"host":"fd00::{i:x}"}}"#))
        .collect();
    common::put(
        &mut c,
        "/skydns/local/kube/svc/default/web6",
        &format!("[{}]", v6.join(",")),
    )
    .await;
    let sky = start(&etcd, args).await;
    (etcd, sky)
}

async fn start(etcd: &EtcdProcess, args: &[&str]) -> common::Sky {
    let sky = common::start_skydns(&etcd.endpoint(), DOMAIN, None, args).await;
    test_support::eventually(Duration::from_secs(10), "ready", || async {
        (common::http_get(sky.http, "/readiness").await.0 == 200).then_some(())
    })
    .await;
    sky
}

/// A raw query (RD set) for `name` `qtype` `qclass`, with an OPT carrying `options` when given.
fn raw_query(id: u16, name: &str, qtype: u16, qclass: u16, options: Option<&[u8]>) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&0x0100u16.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&(options.is_some() as u16).to_be_bytes());
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&qclass.to_be_bytes());
    if let Some(options) = options {
        p.push(0);
        p.extend_from_slice(&41u16.to_be_bytes());
        p.extend_from_slice(&1232u16.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&(options.len() as u16).to_be_bytes());
        p.extend_from_slice(options);
    }
    p
}

async fn ask_raw(server: SocketAddr, bytes: &[u8], t: Transport) -> Message {
    let reply = dns::exchange_raw(server, bytes, t, Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{t:?}: {e}"));
    Message::from_vec(&reply).expect("decode reply")
}

/// The TXT strings of the answer section.
fn txt(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(""),
            ),
            _ => None,
        })
        .collect()
}

/// The NSID the reply's OPT carries, if any.
fn nsid(m: &Message) -> Option<Vec<u8>> {
    let e = m.edns.as_ref()?;
    e.options().options.iter().find_map(|(code, o)| {
        (u16::from(*code) == 3).then(|| match o {
            hickory_proto::rr::rdata::opt::EdnsOption::NSID(p) => p.as_ref().to_vec(),
            hickory_proto::rr::rdata::opt::EdnsOption::Unknown(_, d) => d.clone(),
            #[allow(unreachable_patterns)]
            _ => Vec::new(),
        })
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "skydns".into())
}

#[tokio::test]
async fn chaos_txt_names_the_version_and_the_replica_and_nsid_echoes_it() {
    let (etcd, sky) = setup(&["--id", "replica-7", "--nsid"]).await;
    let version = env!("CARGO_PKG_VERSION");
    const CH: u16 = 3;
    for t in dns::TRANSPORTS {
        // Twice each: the second may come from the reply cache and must say the same.
        for round in 0..3u16 {
            for (name, want) in [
                ("version.bind.", version),
                ("VERSION.server.", version),
                ("hostname.bind.", "replica-7"),
                ("id.server.", "replica-7"),
                ("authors.bind.", "kube-dns-rs authors"),
            ] {
                let r = ask_raw(sky.dns, &raw_query(round, name, 16, CH, None), t).await;
                assert_eq!(
                    r.metadata.response_code,
                    ResponseCode::NoError,
                    "{name} {t:?}"
                );
                assert_eq!(txt(&r), vec![want.to_string()], "{name} {t:?}");
                assert_eq!(r.answers[0].dns_class, DNSClass::CH, "{name} {t:?}");
            }
            // Any other CHAOS question: SERVFAIL, as SkyDNS answers it.
            for (name, qtype) in [
                ("version.bind.", 1u16),
                ("foo.bind.", 16),
                ("web.default.svc.kube.local.", 1),
            ] {
                let r = ask_raw(sky.dns, &raw_query(round, name, qtype, CH, None), t).await;
                assert_eq!(
                    r.metadata.response_code,
                    ResponseCode::ServFail,
                    "{name} {t:?}"
                );
                assert!(r.answers.is_empty());
            }
            // Other classes stay REFUSED (HS = 4).
            let r = ask_raw(sky.dns, &raw_query(round, "version.bind.", 16, 4, None), t).await;
            assert_eq!(r.metadata.response_code, ResponseCode::Refused, "HS {t:?}");
            // NSID: an empty option in, our identity out; no option in, none out; the
            // answer itself unchanged. Repeated so the reply cache serves them too.
            let with = [0u8, 3, 0, 0];
            let r = ask_raw(sky.dns, &raw_query(round, WEB, 1, 1, Some(&with)), t).await;
            assert_eq!(nsid(&r).as_deref(), Some(&b"replica-7"[..]), "{t:?}");
            assert_eq!(dns::answers(&r).len(), 10);
            let r = ask_raw(sky.dns, &raw_query(round, WEB, 1, 1, Some(&[])), t).await;
            assert_eq!(nsid(&r), None, "{t:?}: no NSID asked");
            assert!(r.edns.is_some());
            assert_eq!(dns::answers(&r).len(), 10);
        }
    }
    // dig, as an operator would ask.
    assert_eq!(
        dns::dig(sky.dns, &["CH", "TXT", "version.bind", "+short"]).trim(),
        format!("\"{version}\"")
    );
    assert_eq!(
        dns::dig(sky.dns, &["CH", "TXT", "hostname.bind", "+short"]).trim(),
        "\"replica-7\""
    );
    let out = dns::dig(sky.dns, &["+nsid", WEB, "A"]);
    assert!(out.contains("NSID") && out.contains("replica-7"), "{out}");
    sky.stop().await;

    // Defaults: the hostname is the identity; no NSID unless --nsid.
    let sky = start(&etcd, &[]).await;
    let r = ask_raw(
        sky.dns,
        &raw_query(1, "id.server.", 16, CH, None),
        Transport::Udp,
    )
    .await;
    assert_eq!(txt(&r), vec![hostname()]);
    let r = ask_raw(
        sky.dns,
        &raw_query(2, WEB, 1, 1, Some(&[0, 3, 0, 0])),
        Transport::Udp,
    )
    .await;
    assert_eq!(nsid(&r), None, "NSID off by default");
    assert_eq!(dns::answers(&r).len(), 10);
    sky.stop().await;
}

/// A labelled or plain metric's value, 0 when absent.
async fn metric(sky: &common::Sky, name: &str) -> f64 {
    let (_, body) = common::http_get(sky.http, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The rdata of the answers in the order they came.
fn in_order(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

#[tokio::test]
async fn multi_record_answers_rotate_and_the_reply_cache_still_hits() {
    let (etcd, sky) = setup(&[]).await;
    let hits = "skydns_answer_cache_hits_total";
    let auth = "skydns_skydns_dns_request_count_total{system=\"auth\"}";
    for (name, rtype) in [
        (WEB, RecordType::A),
        ("web6.default.svc.kube.local.", RecordType::AAAA),
    ] {
        for t in dns::TRANSPORTS {
            let (hits0, auth0) = (metric(&sky, hits).await, metric(&sky, auth).await);
            let mut firsts = BTreeSet::new();
            let mut set = None;
            for _ in 0..20 {
                let r = dns::query(sky.dns, name, rtype, t).await.unwrap();
                assert_eq!(r.metadata.response_code, ResponseCode::NoError);
                let order = in_order(&r);
                assert_eq!(order.len(), 10, "{name} {t:?}");
                firsts.insert(order[0].clone());
                let sorted = dns::rdata_of(&r, rtype);
                assert_eq!(
                    set.get_or_insert(sorted.clone()),
                    &sorted,
                    "same set every time"
                );
            }
            assert!(firsts.len() >= 5, "{name} {t:?}: first records {firsts:?}");
            let (hits1, auth1) = (metric(&sky, hits).await, metric(&sky, auth).await);
            assert_eq!(auth1 - auth0, 20.0, "{name} {t:?}: every reply counted");
            assert!(
                hits1 - hits0 >= 18.0,
                "{name} {t:?}: {} cache hits",
                hits1 - hits0
            );
        }
    }
    // dig sees the rotation too.
    let a = dns::dig(sky.dns, &[WEB, "A", "+short"]);
    let b = dns::dig(sky.dns, &[WEB, "A", "+short"]);
    assert_eq!(a.lines().count(), 10);
    assert_ne!(a, b, "consecutive replies differ in order");
    sky.stop().await;

    // --round-robin=false: a stable order (and still cached).
    let sky = start(&etcd, &["--round-robin=false"]).await;
    for t in dns::TRANSPORTS {
        let mut orders = BTreeSet::new();
        for _ in 0..20 {
            let r = dns::query(sky.dns, WEB, RecordType::A, t).await.unwrap();
            orders.insert(in_order(&r));
        }
        assert_eq!(orders.len(), 1, "{t:?}: {orders:?}");
    }
    assert!(metric(&sky, hits).await >= 36.0);
    sky.stop().await;
}

#[tokio::test]
async fn shutdown_drains_readiness_first_and_keeps_answering_for_the_lameduck() {
    let (_etcd, sky) = setup(&["--lameduck", "2s"]).await;
    let dns_addr = sky.dns;
    let stop = tokio_util::sync::CancellationToken::new();
    // Clients asking continuously over UDP and TCP, each query timed.
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            let t = if i % 2 == 0 {
                Transport::Udp
            } else {
                Transport::Tcp
            };
            tokio::spawn(async move {
                let mut log = Vec::new();
                while !stop.is_cancelled() {
                    let sent = Instant::now();
                    let ok = dns::query(dns_addr, WEB, RecordType::A, t)
                        .await
                        .map(|r| dns::answers(&r).len() == 10)
                        .unwrap_or(false);
                    log.push((sent, ok));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                log
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled = Instant::now();
    sky.shutdown.cancel();
    let (http, shutdown) = (sky.http, sky.shutdown.clone());
    let run = tokio::spawn(sky.join());
    let (status, _) = common::http_get(http, "/readiness").await;
    assert_eq!(status, 503, "readiness drops at once");
    // Still 503 well inside the lameduck.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(common::http_get(http, "/readiness").await.0, 503);
    assert!(shutdown.is_cancelled());
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run returns")
        .expect("join");
    let took = cancelled.elapsed();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "run returned after {took:?}"
    );
    stop.cancel();
    let mut during = 0;
    for c in clients {
        for (sent, ok) in c.await.unwrap() {
            // Everything sent before the lameduck's last 200 ms is answered.
            if sent < cancelled + Duration::from_millis(1800) {
                assert!(
                    ok,
                    "a query sent {:?} after the cancel was not answered",
                    sent.checked_duration_since(cancelled)
                );
                if sent > cancelled {
                    during += 1;
                }
            }
        }
    }
    assert!(
        during >= 40,
        "{during} queries answered during the lameduck"
    );
}
