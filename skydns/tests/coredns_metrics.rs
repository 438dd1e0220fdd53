//! The CoreDNS metric names and labels (`coredns_dns_*`, `coredns_cache_*`,
//! `coredns_forward_*`, `coredns_proxy_*`, `coredns_build_info`, `coredns_panics_total`):
//! real queries of several types over UDP and TCP (in the zone, NXDOMAIN, forwarded to a fake
//! upstream, cached, failing) against skydns on a real etcd, then `/metrics` scraped and the
//! series a CoreDNS dashboard or the kube-prometheus alerts select checked, label by label,
//! and moved by exactly the number of queries sent.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use test_support::dns::{self, Transport};
use test_support::upstream::{FakeUpstream, Mode};
use test_support::EtcdProcess;

/// One scrape: `name{labels}` → value, labels sorted.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    async fn of(sky: &common::Sky) -> Scrape {
        let (status, body) = common::http_get(sky.http, "/metrics").await;
        assert_eq!(status, 200);
        let mut series = BTreeMap::new();
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (head, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            series.insert(canonical(head), value);
        }
        Scrape(series)
    }

    /// The value of `name` with exactly `labels` (0 when absent).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0.get(&key(name, labels)).copied().unwrap_or(0.0)
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.0.contains_key(&key(name, labels))
    }

    /// Every series of `name`, as their label sets.
    fn label_sets(&self, name: &str) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| k.split('{').next() == Some(name))
            .cloned()
            .collect()
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    l.sort();
    if l.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", l.join(","))
    }
}

/// `name{b="2",a="1"}` → `name{a="1",b="2"}` (our values hold no commas or quotes).
fn canonical(head: &str) -> String {
    match head.split_once('{') {
        None => head.to_string(),
        Some((name, rest)) => {
            let inner = rest.trim_end_matches('}');
            let mut l: Vec<&str> = inner.split(',').filter(|s| !s.is_empty()).collect();
            l.sort();
            format!("{name}{{{}}}", l.join(","))
        }
    }
}

async fn setup(upstreams: &str, extra: &[&str]) -> (EtcdProcess, common::Sky) {
    let etcd = EtcdProcess::start().await.expect("etcd");
    let mut client = etcd.client().await.expect("client");
    common::put(
        &mut client,
        "/skydns/local/kube/db/mysql",
        r#"{"host":"10.0.0.2","port":3306}"#,
    )
    .await;
    let mut args = vec!["--nameservers", upstreams];
    args.extend(extra);
    let sky = common::start_skydns(&etcd.endpoint(), "kube.local", None, &args).await;
    common::ready(&sky).await;
    (etcd, sky)
}

async fn ask(server: SocketAddr, name: &str, rtype: RecordType, t: Transport) -> ResponseCode {
    dns::rcode(&dns::query(server, name, rtype, t).await.expect("reply"))
}

#[tokio::test]
async fn coredns_series_count_every_query_with_coredns_labels() {
    let up = FakeUpstream::start(Mode::Answer).await.unwrap();
    up.add_a("www.example.com", "203.0.113.10".parse().unwrap(), 300);
    let (_etcd, sky) = setup(&up.addr().to_string(), &[]).await;
    let server = format!("dns://{}", sky.dns);
    let to = up.addr().to_string();
    let before = Scrape::of(&sky).await;
    let upstream_before = up.queries();

    // In the zone, over UDP: 3 A, 2 AAAA (NODATA), 1 SRV, 1 NULL (CoreDNS type "other"),
    // 2 NXDOMAIN; over TCP: 2 A, 1 TXT.
    let name = "mysql.db.kube.local.";
    let mut sent: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    let mut send = |t: Transport, ty: &'static str| {
        let proto = if t == Transport::Udp { "udp" } else { "tcp" };
        *sent.entry((proto, ty)).or_default() += 1;
    };
    for _ in 0..3 {
        assert_eq!(
            ask(sky.dns, name, RecordType::A, Transport::Udp).await,
            ResponseCode::NoError
        );
        send(Transport::Udp, "A");
    }
    for _ in 0..2 {
        assert_eq!(
            ask(sky.dns, name, RecordType::AAAA, Transport::Udp).await,
            ResponseCode::NoError
        );
        send(Transport::Udp, "AAAA");
    }
    ask(sky.dns, name, RecordType::SRV, Transport::Udp).await;
    send(Transport::Udp, "SRV");
    ask(sky.dns, name, RecordType::NULL, Transport::Udp).await;
    send(Transport::Udp, "other");
    for n in ["nope.db.kube.local.", "gone.kube.local."] {
        assert_eq!(
            ask(sky.dns, n, RecordType::A, Transport::Udp).await,
            ResponseCode::NXDomain
        );
        send(Transport::Udp, "A");
    }
    for _ in 0..2 {
        assert_eq!(
            ask(sky.dns, name, RecordType::A, Transport::Tcp).await,
            ResponseCode::NoError
        );
        send(Transport::Tcp, "A");
    }
    ask(sky.dns, name, RecordType::TXT, Transport::Tcp).await;
    send(Transport::Tcp, "TXT");
    // Forwarded over UDP: a miss then a hit for each of an answer and an NXDOMAIN.
    for _ in 0..2 {
        assert_eq!(
            ask(sky.dns, "www.example.com.", RecordType::A, Transport::Udp).await,
            ResponseCode::NoError
        );
        send(Transport::Udp, "A");
        assert_eq!(
            ask(sky.dns, "nope.example.com.", RecordType::A, Transport::Udp).await,
            ResponseCode::NXDomain
        );
        send(Transport::Udp, "A");
    }
    assert_eq!(
        up.queries() - upstream_before,
        2,
        "the second of each came from the cache"
    );
    let after = Scrape::of(&sky).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);
    let base = [("server", server.as_str()), ("zone", "."), ("view", "")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        let mut l = base.to_vec();
        l.extend_from_slice(extra);
        l
    };

    // coredns_dns_requests_total{server,zone,view,proto,family,type}
    let total: u32 = sent.values().sum();
    for ((proto, ty), n) in &sent {
        let labels = with(&[("proto", proto), ("family", "1"), ("type", ty)]);
        assert_eq!(
            delta("coredns_dns_requests_total", &labels),
            f64::from(*n),
            "{proto} {ty}: {:#?}",
            after.label_sets("coredns_dns_requests_total")
        );
    }
    let all_requests: f64 = after
        .0
        .iter()
        .filter(|(k, _)| k.starts_with("coredns_dns_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(all_requests, f64::from(total), "no other series counted");

    // coredns_dns_responses_total{server,zone,view,rcode,plugin}
    for (rcode, plugin, n) in [
        ("NOERROR", "etcd", 10.0),
        ("NXDOMAIN", "etcd", 2.0),
        ("NOERROR", "forward", 1.0),
        ("NXDOMAIN", "forward", 1.0),
        ("NOERROR", "cache", 1.0),
        ("NXDOMAIN", "cache", 1.0),
    ] {
        let labels = with(&[("rcode", rcode), ("plugin", plugin)]);
        assert_eq!(
            delta("coredns_dns_responses_total", &labels),
            n,
            "{rcode} {plugin}: {:#?}",
            after.label_sets("coredns_dns_responses_total")
        );
    }

    // coredns_dns_request_duration_seconds{server,zone,view}: CoreDNS's buckets, 0.25 ms to 8 s.
    assert_eq!(
        delta("coredns_dns_request_duration_seconds_count", &base),
        f64::from(total)
    );
    for le in [
        "0.00025", "0.0005", "0.001", "0.064", "1.024", "8.192", "+Inf",
    ] {
        let labels = with(&[("le", le)]);
        assert!(
            after.has("coredns_dns_request_duration_seconds_bucket", &labels),
            "bucket le={le}: {:#?}",
            after.label_sets("coredns_dns_request_duration_seconds_bucket")
        );
    }
    let inf = with(&[("le", "+Inf")]);
    assert_eq!(
        delta("coredns_dns_request_duration_seconds_bucket", &inf),
        f64::from(total)
    );

    // Sizes per proto, CoreDNS's byte buckets.
    let udp_n: u32 = sent
        .iter()
        .filter(|((p, _), _)| *p == "udp")
        .map(|(_, n)| n)
        .sum();
    for (metric, proto, n) in [
        ("coredns_dns_request_size_bytes_count", "udp", udp_n),
        ("coredns_dns_request_size_bytes_count", "tcp", total - udp_n),
        ("coredns_dns_response_size_bytes_count", "udp", udp_n),
        (
            "coredns_dns_response_size_bytes_count",
            "tcp",
            total - udp_n,
        ),
    ] {
        assert_eq!(
            delta(metric, &with(&[("proto", proto)])),
            f64::from(n),
            "{metric} {proto}"
        );
    }
    // CoreDNS's bounds (integral ones written `511.0`, the same number to histogram_quantile).
    for le in ["0.0", "100.0", "511.0", "8291.0", "64000.0", "+Inf"] {
        assert!(
            after.has(
                "coredns_dns_response_size_bytes_bucket",
                &with(&[("proto", "udp"), ("le", le)])
            ),
            "le={le}: {:#?}",
            after.label_sets("coredns_dns_response_size_bytes_bucket")
        );
    }
    // Our queries carry EDNS and a 20-odd byte name: every one is under 100 bytes.
    let between = delta(
        "coredns_dns_request_size_bytes_bucket",
        &with(&[("proto", "udp"), ("le", "100.0")]),
    );
    assert_eq!(between, f64::from(udp_n), "requests are < 100 bytes");

    // coredns_cache_*{server,zones,view[,type]}: the forwarding cache, one request per forwarded
    // question, one miss and one hit per name.
    let cache = [("server", server.as_str()), ("zones", "."), ("view", "")];
    let cache_with = |t: &'static str| {
        let mut l = cache.to_vec();
        l.push(("type", t));
        l
    };
    assert_eq!(delta("coredns_cache_requests_total", &cache), 4.0);
    assert_eq!(delta("coredns_cache_misses_total", &cache), 2.0);
    assert_eq!(
        delta("coredns_cache_hits_total", &cache_with("success")),
        1.0
    );
    assert_eq!(
        delta("coredns_cache_hits_total", &cache_with("denial")),
        1.0
    );
    assert!(after.has("coredns_cache_served_stale_total", &cache));
    assert!(after.has("coredns_cache_prefetch_total", &cache));
    assert!(after.has("coredns_cache_evictions_total", &cache_with("success")));
    test_support::eventually(Duration::from_secs(5), "cache entries gauge", || async {
        let s = Scrape::of(&sky).await;
        (s.get("coredns_cache_entries", &cache_with("success")) == 1.0
            && s.get("coredns_cache_entries", &cache_with("denial")) == 1.0)
            .then_some(())
    })
    .await;

    // coredns_forward_*{to[,rcode]}: one reply of each rcode from the upstream.
    assert_eq!(delta("coredns_forward_requests_total", &[("to", &to)]), 2.0);
    for rcode in ["NOERROR", "NXDOMAIN"] {
        let l = [("to", to.as_str()), ("rcode", rcode)];
        assert_eq!(delta("coredns_forward_responses_total", &l), 1.0, "{rcode}");
        assert_eq!(
            delta("coredns_forward_request_duration_seconds_count", &l),
            1.0
        );
        let p = [
            ("proxy_name", "forward"),
            ("to", to.as_str()),
            ("rcode", rcode),
        ];
        assert_eq!(
            delta("coredns_proxy_request_duration_seconds_count", &p),
            1.0
        );
    }
    assert!(after.has(
        "coredns_forward_request_duration_seconds_bucket",
        &[("to", to.as_str()), ("rcode", "NOERROR"), ("le", "0.00025")]
    ));
    assert_eq!(delta("coredns_forward_healthcheck_broken_total", &[]), 0.0);
    assert!(after.has("coredns_forward_max_concurrent_rejects_total", &[]));

    // Build info and panics.
    assert_eq!(
        after.get(
            "coredns_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", "unknown"),
                ("goversion", "none (Rust)"),
            ]
        ),
        1.0,
        "{:#?}",
        after.label_sets("coredns_build_info")
    );
    assert!(after.has("coredns_panics_total", &[]));
    // The SkyDNS names are still there beside them.
    assert!(
        after.get(
            "skydns_skydns_dns_request_count_total",
            &[("system", "auth")]
        ) >= 11.0
    );
    sky.stop().await;
}

#[tokio::test]
async fn failing_upstreams_show_in_the_series_the_forward_alerts_use() {
    // One upstream answering SERVFAIL, one silent: every question gets SERVFAIL.
    let failing = FakeUpstream::start(Mode::ServFail).await.unwrap();
    let silent = FakeUpstream::start(Mode::Silent).await.unwrap();
    let list = format!("{},{}", failing.addr(), silent.addr());
    let (_etcd, sky) = setup(
        &list,
        &[
            "--forward-policy",
            "sequential",
            "--max-concurrent",
            "1",
            "--serve-stale",
            "0",
        ],
    )
    .await;
    let before = Scrape::of(&sky).await;
    let f = failing.addr().to_string();
    let s = silent.addr().to_string();

    assert_eq!(
        ask(sky.dns, "a.example.com.", RecordType::A, Transport::Udp).await,
        ResponseCode::ServFail
    );
    let after = Scrape::of(&sky).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);
    // CoreDNSForwardErrorsHigh: rcode="SERVFAIL" replies of the upstream.
    assert_eq!(
        delta(
            "coredns_forward_responses_total",
            &[("to", &f), ("rcode", "SERVFAIL")]
        ),
        1.0,
        "{:#?}",
        after.label_sets("coredns_forward_responses_total")
    );
    assert_eq!(delta("coredns_forward_requests_total", &[("to", &f)]), 1.0);
    // The silent one sent no reply: counted nowhere in the CoreDNS forward series (as CoreDNS).
    assert_eq!(delta("coredns_forward_requests_total", &[("to", &s)]), 0.0);
    let server = format!("dns://{}", sky.dns);
    let labels = [
        ("server", server.as_str()),
        ("zone", "."),
        ("view", ""),
        ("rcode", "SERVFAIL"),
        ("plugin", "forward"),
    ];
    // CoreDNSErrorsHigh: rcode="SERVFAIL" among the server's responses.
    assert_eq!(delta("coredns_dns_responses_total", &labels), 1.0);

    // The silent upstream is now down and probed: its failed health checks are counted.
    test_support::eventually(Duration::from_secs(10), "health check failures", || async {
        let now = Scrape::of(&sky).await;
        (now.get("coredns_forward_healthcheck_failures_total", &[("to", &s)]) >= 1.0
            && now.get(
                "coredns_proxy_healthcheck_failures_total",
                &[("proxy_name", "forward"), ("to", &s)],
            ) >= 1.0)
            .then_some(())
    })
    .await;

    // --max-concurrent 1: while one lookup waits on the silent upstream, a second question is
    // refused at once (coredns_forward_max_concurrent_rejects_total).
    failing.set_mode(Mode::Silent);
    let slow = tokio::spawn({
        let dns = sky.dns;
        async move { dns::query(dns, "b.example.com.", RecordType::A, Transport::Udp).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ask(sky.dns, "c.example.com.", RecordType::A, Transport::Udp).await,
        ResponseCode::Refused
    );
    let _ = slow.await;
    let now = Scrape::of(&sky).await;
    assert_eq!(
        now.get("coredns_forward_max_concurrent_rejects_total", &[])
            - before.get("coredns_forward_max_concurrent_rejects_total", &[]),
        1.0
    );
    // Both upstreams have failed now: the next question is sent with every upstream down
    // (CoreDNSForwardHealthcheckBrokenCount).
    test_support::eventually(Duration::from_secs(10), "healthcheck broken", || async {
        let _ = dns::query(sky.dns, "d.example.com.", RecordType::A, Transport::Udp).await;
        let now = Scrape::of(&sky).await;
        (now.get("coredns_forward_healthcheck_broken_total", &[]) >= 1.0).then_some(())
    })
    .await;
    sky.stop().await;
}
