//! What SkyDNS gave users with their own records, and kube-dns's pod modes, against a real
//! etcd and the real server (`skydns::run`), asked with hickory's client:
//! - `group`: a union keeps the group of its shortest keys (and records with none); keys that
//!   disagree at that depth keep everything;
//! - SRV and MX targets that are names in the zone get their A/AAAA in the additional section,
//!   CNAMEs followed;
//! - `--local`: `local.dns.<zone>` answers with the records of the name given;
//! - `--pods verified|insecure|disabled`.

mod common;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType::{self, A, AAAA, MX, SRV};
use test_support::dns::{self, Transport};
use test_support::EtcdProcess;

const DOMAIN: &str = "kube.local";

async fn start(etcd: &EtcdProcess, args: &[&str]) -> common::Sky {
    let sky = common::start_skydns(&etcd.endpoint(), DOMAIN, None, args).await;
    common::ready(&sky).await;
    sky
}

async fn ask(sky: &common::Sky, name: &str, t: RecordType) -> Message {
    dns::query(sky.dns, name, t, Transport::Udp)
        .await
        .unwrap_or_else(|e| panic!("{name} {t}: {e}"))
}

fn additional(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .additionals
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn group_filters_a_union_as_skydns_does() {
    let etcd = common::etcd_with(&[
        // Shortest keys of `dom`: `a` (group g1) and `c` (no group) → g1 and ungrouped kept.
        (
            "/skydns/local/kube/dom/a",
            r#"{"host":"10.1.0.1","group":"g1"}"#,
        ),
        (
            "/skydns/local/kube/dom/b/x",
            r#"{"host":"10.1.0.2","group":"g2"}"#,
        ),
        ("/skydns/local/kube/dom/c", r#"{"host":"10.1.0.3"}"#),
        (
            "/skydns/local/kube/dom/d/y",
            r#"{"host":"10.1.0.4","group":"g1"}"#,
        ),
        // Disagreement at the shortest depth: no group applies.
        (
            "/skydns/local/kube/dis/a",
            r#"{"host":"10.1.1.1","group":"g1"}"#,
        ),
        (
            "/skydns/local/kube/dis/b",
            r#"{"host":"10.1.1.2","group":"g2"}"#,
        ),
    ])
    .await;
    let sky = start(&etcd, &[]).await;
    let m = ask(&sky, "dom.kube.local.", A).await;
    assert_eq!(
        dns::rdata_of(&m, A),
        vec!["10.1.0.1", "10.1.0.3", "10.1.0.4"],
        "group g1 and ungrouped records only"
    );
    let m = ask(&sky, "dis.kube.local.", A).await;
    assert_eq!(dns::rdata_of(&m, A), vec!["10.1.1.1", "10.1.1.2"]);
    // One key asked exactly is unaffected.
    let m = ask(&sky, "x.b.dom.kube.local.", A).await;
    assert_eq!(dns::rdata_of(&m, A), vec!["10.1.0.2"]);
    sky.stop().await;
}

#[tokio::test]
async fn srv_and_mx_targets_in_the_zone_get_glue_through_cnames() {
    let etcd = common::etcd_with(&[
        (
            "/skydns/local/kube/gen/_udp/_sip",
            r#"{"host":"alias.kube.local","port":5060}"#,
        ),
        (
            "/skydns/local/kube/alias",
            r#"{"host":"target.kube.local"}"#,
        ),
        (
            "/skydns/local/kube/target",
            r#"[{"host":"10.2.0.9"},{"host":"fd00::9"}]"#,
        ),
        (
            "/skydns/local/kube/mail",
            r#"{"host":"alias.kube.local","mail":true,"priority":10}"#,
        ),
        (
            "/skydns/local/kube/ext/_tcp/_x",
            r#"{"host":"www.example.com","port":80}"#,
        ),
    ])
    .await;
    let sky = start(&etcd, &[]).await;
    let glue = vec![
        "alias.kube.local. CNAME target.kube.local.".to_string(),
        "target.kube.local. A 10.2.0.9".to_string(),
        "target.kube.local. AAAA fd00::9".to_string(),
    ];
    let m = ask(&sky, "_sip._udp.gen.kube.local.", SRV).await;
    assert_eq!(
        dns::rdata_of(&m, SRV),
        vec!["10 100 5060 alias.kube.local."]
    );
    // The CNAME is met once per address type; the reply holds it once.
    assert_eq!(additional(&m), glue);
    let m = ask(&sky, "mail.kube.local.", MX).await;
    assert_eq!(dns::rdata_of(&m, MX), vec!["10 alias.kube.local."]);
    assert_eq!(additional(&m), glue);
    // A target outside the zone gets no glue (and no upstream lookup).
    let m = ask(&sky, "_x._tcp.ext.kube.local.", SRV).await;
    assert_eq!(dns::rdata_of(&m, SRV), vec!["10 100 80 www.example.com."]);
    assert!(additional(&m).is_empty(), "{:?}", additional(&m));
    sky.stop().await;
}

#[tokio::test]
async fn local_names_the_replicas_own_record() {
    let etcd = common::etcd_with(&[
        (
            "/skydns/local/kube/dns/replicas/r1",
            r#"{"host":"10.3.0.1"}"#,
        ),
        (
            "/skydns/local/kube/dns/replicas/r2",
            r#"{"host":"10.3.0.2"}"#,
        ),
    ])
    .await;
    let plain = start(&etcd, &[]).await;
    let m = ask(&plain, "local.dns.kube.local.", A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    plain.stop().await;
    let r1 = start(&etcd, &["--local", "r1.replicas.dns.kube.local"]).await;
    let m = ask(&r1, "local.dns.kube.local.", A).await;
    assert_eq!(dns::rdata_of(&m, A), vec!["10.3.0.1"]);
    assert_eq!(m.answers[0].name.to_ascii(), "local.dns.kube.local.");
    r1.stop().await;
    // A name outside the zone is refused before anything binds.
    let bad = skydns::Config::try_parse_from_args(["--local", "r1.example.com"]);
    assert!(bad.unwrap_err().contains("--local"));
}

trait ParseArgs {
    fn try_parse_from_args<const N: usize>(args: [&str; N]) -> Result<skydns::Settings, String>;
}

impl ParseArgs for skydns::Config {
    fn try_parse_from_args<const N: usize>(args: [&str; N]) -> Result<skydns::Settings, String> {
        use clap::Parser;
        let mut argv = vec!["skydns", "--nameservers", "127.0.0.1:5353"];
        argv.extend(args);
        skydns::Config::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn pod_modes() {
    let etcd = common::etcd_with(&[(
        "/skydns/local/kube/pod/default/10-0-0-5",
        r#"{"host":"10.0.0.5"}"#,
    )])
    .await;
    let written = "10-0-0-5.default.pod.kube.local.";
    let unwritten = "10-0-0-6.default.pod.kube.local.";
    let v6 = "fd00--6.default.pod.kube.local.";

    let verified = start(&etcd, &[]).await;
    assert_eq!(
        dns::rdata_of(&ask(&verified, written, A).await, A),
        vec!["10.0.0.5"]
    );
    let m = ask(&verified, unwritten, A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    verified.stop().await;

    let insecure = start(&etcd, &["--pods", "insecure"]).await;
    assert_eq!(
        dns::rdata_of(&ask(&insecure, written, A).await, A),
        vec!["10.0.0.5"]
    );
    assert_eq!(
        dns::rdata_of(&ask(&insecure, unwritten, A).await, A),
        vec!["10.0.0.6"]
    );
    assert_eq!(
        dns::rdata_of(&ask(&insecure, v6, AAAA).await, AAAA),
        vec!["fd00::6"]
    );
    let m = ask(&insecure, unwritten, AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(
        m.answers.is_empty() && dns::has_soa(&m),
        "NODATA for the other family"
    );
    let m = ask(&insecure, "not-an-ip.default.pod.kube.local.", A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    insecure.stop().await;

    let disabled = start(&etcd, &["--pods", "disabled"]).await;
    let m = ask(&disabled, written, A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(dns::has_soa(&m));
    let m = ask(&disabled, "pod.kube.local.", A).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "the root stays"
    );
    disabled.stop().await;
}
