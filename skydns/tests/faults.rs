//! etcd faults: not ready (SERVFAIL, readiness 503) until the first read; etcd killed while
//! queries flow (answers continue from the last state, changes after its return show up);
//! etcd restarted empty (what disappeared is dropped).

mod common;

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use test_support::dns::{self, Transport};
use test_support::EtcdProcess;

const NAME: &str = "mysql-service.default.svc.kube.local.";
const KEY: &str = "/skydns/local/kube/svc/default/mysql-service";

async fn ready(sky: &common::Sky) {
    test_support::eventually(Duration::from_secs(15), "ready", || async {
        (common::http_get(sky.http, "/readiness").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn not_ready_until_the_first_read_then_serving() {
    let mut etcd = EtcdProcess::start().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    common::put(&mut c, KEY, r#"{"host":"10.254.162.44"}"#).await;
    drop(c);
    etcd.stop();
    let sky = common::start_skydns(&etcd.endpoint(), "kube.local", None, &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = common::http_get(sky.http, "/readiness").await;
    assert_eq!(status, 503, "not ready without etcd");
    for t in dns::TRANSPORTS {
        let r = dns::query(sky.dns, NAME, RecordType::A, t).await.unwrap();
        assert_eq!(
            dns::rcode(&r),
            ResponseCode::ServFail,
            "{t:?}: SERVFAIL before the first read"
        );
    }
    etcd.restart().await.unwrap();
    ready(&sky).await;
    let r = dns::query(sky.dns, NAME, RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(dns::answers(&r), vec!["A 10.254.162.44"]);
    sky.stop().await;
}

#[tokio::test]
async fn etcd_outage_keeps_answers_and_converges_after() {
    let mut etcd = EtcdProcess::start().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    common::put(&mut c, KEY, r#"{"host":"10.254.162.44"}"#).await;
    let sky = common::start_skydns(&etcd.endpoint(), "kube.local", None, &[]).await;
    ready(&sky).await;
    etcd.stop();
    // Every query during the outage is answered from the last state.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while tokio::time::Instant::now() < until {
        let t = if n % 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let r = dns::query(sky.dns, NAME, RecordType::A, t).await.unwrap();
        assert_eq!(
            dns::answers(&r),
            vec!["A 10.254.162.44"],
            "query {n} during outage"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        common::http_get(sky.http, "/readiness").await.0,
        200,
        "still ready: serving last state"
    );
    etcd.restart().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    common::put(&mut c, KEY, r#"{"host":"10.254.0.2"}"#).await;
    test_support::eventually(
        Duration::from_secs(15),
        "change after etcd returns",
        || async {
            let r = dns::query(sky.dns, NAME, RecordType::A, Transport::Udp)
                .await
                .ok()?;
            (dns::answers(&r) == vec!["A 10.254.0.2"]).then_some(())
        },
    )
    .await;
    sky.stop().await;
}

#[tokio::test]
async fn etcd_restarted_empty_drops_what_disappeared() {
    let mut etcd = EtcdProcess::start().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    common::put(&mut c, KEY, r#"{"host":"10.254.162.44"}"#).await;
    common::put(
        &mut c,
        "/skydns/local/kube/svc/default/other",
        r#"{"host":"10.254.0.3"}"#,
    )
    .await;
    let sky = common::start_skydns(&etcd.endpoint(), "kube.local", None, &[]).await;
    ready(&sky).await;
    etcd.restart_empty().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    common::put(
        &mut c,
        "/skydns/local/kube/svc/default/other",
        r#"{"host":"10.254.0.4"}"#,
    )
    .await;
    test_support::eventually(
        Duration::from_secs(15),
        "resync after empty restart",
        || async {
            let gone = dns::query(sky.dns, NAME, RecordType::A, Transport::Udp)
                .await
                .ok()?;
            let other = dns::query(
                sky.dns,
                "other.default.svc.kube.local.",
                RecordType::A,
                Transport::Udp,
            )
            .await
            .ok()?;
            (dns::rcode(&gone) == ResponseCode::NXDomain
                && dns::answers(&other) == vec!["A 10.254.0.4"])
            .then_some(())
        },
    )
    .await;
    sky.stop().await;
}
