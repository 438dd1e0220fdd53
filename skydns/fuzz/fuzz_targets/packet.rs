//! Arbitrary packets into skydns's query path (`Handler::handle_sync`) over UDP and TCP, with
//! the reply cache on, against a fixed index that holds one of everything the answerer knows:
//! A/AAAA, dual stack, a big headless service, CNAMEs in and out of the zone, a CNAME loop and
//! a chain longer than the chase limit, SRV (Kubernetes and generic), TXT of 10 KiB, MX, PTR,
//! NS at the apex, SkyDNS directories and wildcards.
//!
//! Checked for every input: no panic; a reply (if any) decodes with hickory-proto, keeps the
//! query's id, and fits: ≤ 512 bytes over UDP when the query had no EDNS (or could not be
//! parsed), ≤ our 1232 with EDNS; a reply-cache hit is byte-for-byte the computed reply.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use skydns::answer::ZoneParams;
use skydns::forward::{Forwarder, Transport};
use skydns::handler::{Handler, Step};
use skydns::index::{parse_entry, Index, Snapshot};

const UDP_SIZE: u16 = 1232;

fn records() -> Vec<(String, String)> {
    let s = "local/kube/svc/default";
    let mut v: Vec<(String, String)> = vec![
        (format!("{s}/mysql"), r#"{"host":"10.254.162.44","ttl":30}"#.into()),
        (
            format!("{s}/mysql/_tcp/_mysql"),
            r#"{"host":"mysql.default.svc.kube.local.","port":3306,"priority":10,"weight":10}"#.into(),
        ),
        (format!("{s}/dual"), r#"[{"host":"10.0.0.2"},{"host":"fd00::2"}]"#.into()),
        (format!("{s}/ext"), r#"{"host":"www.example.com"}"#.into()),
        (format!("{s}/alias"), r#"{"host":"mysql.default.svc.kube.local."}"#.into()),
        (format!("{s}/loop-a"), r#"{"host":"loop-b.default.svc.kube.local."}"#.into()),
        (format!("{s}/loop-b"), r#"{"host":"loop-a.default.svc.kube.local."}"#.into()),
        (format!("{s}/web/web-0"), r#"{"host":"10.244.1.5"}"#.into()),
        (format!("{s}/web/web-1"), r#"{"host":"fd00::15"}"#.into()),
        (
            format!("{s}/web/_tcp/_http"),
            r#"[{"host":"web-0.web.default.svc.kube.local.","port":80},{"host":"web-1.web.default.svc.kube.local.","port":80,"weight":0}]"#.into(),
        ),
        (
            format!("{s}/txt"),
            msg::encode_value(&[msg::Record {
                text: "t".repeat(10 * 1024),
                ..Default::default()
            }]),
        ),
        ("local/kube/dns-version".into(), r#"{"text":"1.1.0"}"#.into()),
        ("local/kube/dns/ns/ns1".into(), r#"{"host":"10.0.0.53"}"#.into()),
        ("local/kube/pod/default/10-244-1-5".into(), r#"{"host":"10.244.1.5"}"#.into()),
        ("local/kube/mail".into(), r#"{"host":"10.1.1.1","mail":true,"priority":5,"targetstrip":1}"#.into()),
        ("local/kube/gen/a/x".into(), r#"{"host":"10.2.0.1","port":8080}"#.into()),
        ("local/kube/gen/b/x".into(), r#"{"host":"fd00::21","text":"hi"}"#.into()),
        ("local/kube/gen/a/_tcp/_h".into(), r#"{"host":"10.2.0.9","port":1}"#.into()),
        ("arpa/in-addr/10/254/162/44".into(), r#"[{"host":"mysql.default.svc.kube.local."},{"host":"other.example."}]"#.into()),
        ("arpa/ip6/f/d/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/1/5".into(), r#"{"host":"web-1.web.default.svc.kube.local."}"#.into()),
    ];
    let big: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"host":"10.1.{}.{}"}}"#, i / 250, i % 250 + 1))
        .collect();
    v.push((format!("{s}/big"), format!("[{}]", big.join(","))));
    for i in 0..12 {
        v.push((
            format!("{s}/chain-{i}"),
            format!(r#"{{"host":"chain-{}.default.svc.kube.local."}}"#, i + 1),
        ));
    }
    v
}

fn handler() -> &'static Handler {
    static H: OnceLock<Handler> = OnceLock::new();
    H.get_or_init(|| {
        let mut snapshot = Snapshot::default();
        snapshot.revision = 42;
        snapshot.ready = true;
        for (path, value) in records() {
            let entry = parse_entry(value.as_bytes()).expect("seed records parse");
            snapshot.insert(Arc::from(path.as_str()), entry);
        }
        let index = Arc::new(Index::new());
        index.store(snapshot);
        let zone = msg::Zone::new(msg::Prefix::new("skydns"), "kube.local");
        // An upstream is configured (never contacted: only the synchronous part runs), so
        // forwarding and out-of-zone CNAME chases are prepared too.
        let forwarder = Forwarder::new(
            skydns::forward::ForwardSettings {
                upstreams: vec!["127.0.0.1:9".parse().unwrap()],
                stub_domains: Vec::new(),
                file_config: None,
                timeout: Duration::from_millis(10),
                policy: skydns::forward::routes::Policy::Sequential,
                cache: skydns::forward::cache::CacheLimits {
                    entries: 100,
                    bytes: 1 << 20,
                    min_ttl: 0,
                    max_ttl: 60,
                    serve_stale: Duration::ZERO,
                    prefetch_hits: 0,
                },
                cluster_zone: hickory_proto::rr::Name::from_ascii("kube.local.").unwrap(),
            },
            Arc::new(skydns::metrics::Metrics::new()),
        );
        Handler::new(
            ZoneParams::new(zone, 30, 30, "hostmaster.kube.local."),
            index,
            forwarder,
            Arc::new(skydns::metrics::Metrics::new()),
        )
        .with_udp_size(UDP_SIZE)
        .with_answer_cache(skydns::answer_cache::AnswerCache::new(4096, 1 << 20))
        .with_max_concurrent(64)
    })
}

fn check(data: &[u8], t: Transport) -> Option<Vec<u8>> {
    let client = skydns::observe::Client {
        addr: "127.0.0.1:4000".parse().unwrap(),
        transport: t,
    };
    let bytes = match handler().handle_sync(data, client) {
        Step::Reply(bytes) => bytes,
        Step::Drop | Step::Upstream(_) => return None,
    };
    let reply = Message::from_vec(&bytes).expect("reply decodes");
    assert_eq!(&bytes[..2], &data[..2], "id kept");
    assert_eq!(reply.metadata.id, u16::from_be_bytes([data[0], data[1]]));
    if t == Transport::Udp {
        let edns = Message::from_vec(data).ok().and_then(|m| m.edns);
        let limit = if edns.is_some() {
            usize::from(UDP_SIZE)
        } else {
            512
        };
        assert!(
            bytes.len() <= limit,
            "{} bytes over UDP > {limit}",
            bytes.len()
        );
    } else {
        assert!(bytes.len() <= 65535);
    }
    Some(bytes)
}

fuzz_target!(|data: &[u8]| {
    for t in [Transport::Udp, Transport::Tcp] {
        let first = check(data, t);
        // Again: now possibly from the reply cache, which must give the same bytes.
        let second = check(data, t);
        assert_eq!(
            first, second,
            "reply cache hit differs from the computed reply"
        );
        // With another id: the cached reply carries the new id (checked inside `check`).
        if data.len() >= 2 {
            let mut other = data.to_vec();
            other[0] ^= 0x5a;
            other[1] = other[1].wrapping_add(1);
            check(&other, t);
        }
    }
});
