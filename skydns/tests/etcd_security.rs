//! skydns against a real etcd that demands TLS client certificates, and one that demands a
//! username and password: with the right flags it serves; without them it never becomes ready.

mod common;

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use test_support::dns::{self, Transport};
use test_support::EtcdProcess;

const NAME: &str = "mysql-service.default.svc.kube.local.";
const KEY: &str = "/skydns/local/kube/svc/default/mysql-service";

async fn ready_within(sky: &common::Sky, secs: u64) -> bool {
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            if common::http_get(sky.http, "/readiness").await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn tls_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let files = test_support::tls::generate(dir.path()).unwrap();
    let etcd = EtcdProcess::start_tls(files.clone()).await.unwrap();
    assert!(etcd.endpoint().starts_with("https://"));
    let mut c = etcd.client().await.unwrap();
    common::put(&mut c, KEY, r#"{"host":"10.254.162.44"}"#).await;

    let (ca, pem, key) = (
        files.ca.display().to_string(),
        files.client_cert.display().to_string(),
        files.client_key.display().to_string(),
    );
    let sky = common::start_skydns(
        &etcd.endpoint(),
        "kube.local",
        None,
        &["--ca-cert", &ca, "--tls-pem", &pem, "--tls-key", &key],
    )
    .await;
    assert!(ready_within(&sky, 10).await, "ready over TLS");
    let r = dns::query(sky.dns, NAME, RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(dns::answers(&r), vec!["A 10.254.162.44"]);
    sky.stop().await;

    // Trusting the CA but presenting no client certificate: refused by etcd, never ready.
    let sky = common::start_skydns(&etcd.endpoint(), "kube.local", None, &["--ca-cert", &ca]).await;
    assert!(
        !ready_within(&sky, 3).await,
        "no client certificate → not ready"
    );
    let r = dns::query(sky.dns, NAME, RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(dns::rcode(&r), ResponseCode::ServFail);
    sky.stop().await;
}

#[tokio::test]
async fn username_and_password() {
    let etcd = EtcdProcess::start().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    common::put(&mut c, KEY, r#"{"host":"10.254.162.44"}"#).await;
    c.user_add("root", "s3cret", None).await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.auth_enable().await.unwrap();

    let sky = common::start_skydns(
        &etcd.endpoint(),
        "kube.local",
        None,
        &["--username", "root", "--password", "s3cret"],
    )
    .await;
    assert!(ready_within(&sky, 10).await, "ready with credentials");
    let r = dns::query(sky.dns, NAME, RecordType::A, Transport::Tcp)
        .await
        .unwrap();
    assert_eq!(dns::answers(&r), vec!["A 10.254.162.44"]);
    sky.stop().await;

    let sky = common::start_skydns(
        &etcd.endpoint(),
        "kube.local",
        None,
        &["--username", "root", "--password", "wrong"],
    )
    .await;
    assert!(!ready_within(&sky, 3).await, "wrong password → not ready");
    sky.stop().await;
    let sky = common::start_skydns(&etcd.endpoint(), "kube.local", None, &[]).await;
    assert!(!ready_within(&sky, 3).await, "no credentials → not ready");
    sky.stop().await;
}
