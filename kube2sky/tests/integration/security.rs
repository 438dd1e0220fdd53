//! kube2sky against a real etcd that demands TLS client certificates, and one that demands a
//! username and password: with the right flags it writes the records and becomes ready; without
//! them it never does.

use std::time::Duration;

use test_support::objects::{port, service_cluster_ip};
use test_support::{EtcdProcess, TestApiServer};

use crate::common::Kube2sky;

const KEY: &str = "/skydns/local/cluster/svc/default/kubernetes";

async fn ready_within(k: &Kube2sky, secs: u64) -> bool {
    tokio::time::timeout(Duration::from_secs(secs), async {
        while !k.is_ready().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok()
}

async fn value(client: &mut etcd_client::Client) -> Option<String> {
    let r = client.get(KEY, None).await.ok()?;
    r.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).to_string())
}

#[tokio::test]
async fn tls_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let files = test_support::tls::generate(dir.path()).unwrap();
    let etcd = EtcdProcess::start_tls(files.clone()).await.unwrap();
    let api = TestApiServer::start().await.unwrap();
    api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &["10.96.0.1"],
        &[port("https", 443, "TCP")],
    ));
    let (ca, cert, key) = (
        format!("--etcd-cafile={}", files.ca.display()),
        format!("--etcd-certfile={}", files.client_cert.display()),
        format!("--etcd-keyfile={}", files.client_key.display()),
    );

    // CA only, no client certificate: etcd refuses; never ready, nothing written.
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[&ca]).await;
    assert!(
        !ready_within(&k, 3).await,
        "not ready without a client certificate"
    );
    k.kill().await;
    let mut client = etcd.client().await.unwrap();
    assert_eq!(value(&mut client).await, None);

    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[&ca, &cert, &key]).await;
    assert!(ready_within(&k, 15).await, "ready over TLS");
    assert_eq!(
        value(&mut client).await.as_deref(),
        Some(r#"{"host":"10.96.0.1","priority":10,"weight":10,"ttl":30}"#)
    );
    k.stop().await.unwrap();
}

#[tokio::test]
async fn username_and_password() {
    let etcd = EtcdProcess::start().await.unwrap();
    let mut client = etcd.client().await.unwrap();
    client.user_add("root", "s3cret", None).await.unwrap();
    client.user_grant_role("root", "root").await.unwrap();
    client.auth_enable().await.unwrap();
    let api = TestApiServer::start().await.unwrap();
    api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &["10.96.0.1"],
        &[port("https", 443, "TCP")],
    ));

    let k = Kube2sky::start(
        &etcd.endpoint(),
        &api.url(),
        &["--etcd-username=root", "--etcd-password=wrong"],
    )
    .await;
    assert!(!ready_within(&k, 3).await, "wrong password → not ready");
    k.kill().await;

    let k = Kube2sky::start(
        &etcd.endpoint(),
        &api.url(),
        &["--etcd-username=root", "--etcd-password=s3cret"],
    )
    .await;
    assert!(ready_within(&k, 15).await, "ready with credentials");
    let opts = etcd_client::ConnectOptions::new().with_user("root", "s3cret");
    let mut authed = etcd_client::Client::connect([etcd.endpoint()], Some(opts))
        .await
        .unwrap();
    assert!(
        value(&mut authed).await.is_some(),
        "records written with credentials"
    );
    k.stop().await.unwrap();
}

#[test]
fn half_configured_security_is_rejected() {
    use clap::Parser;
    for args in [
        &["kube2sky", "--etcd-certfile=/etc/hostname"][..],
        &["kube2sky", "--etcd-username=root"][..],
        &["kube2sky", "--etcd-cafile=/no/such/file"][..],
    ] {
        let c = kube2sky::Config::try_parse_from(args).unwrap();
        assert!(c.validate().is_err(), "{args:?}");
    }
}

/// With `--etcd-username` the client authenticates while connecting; etcd being down at that
/// moment must not end kube2sky: it waits, retries with backoff, and writes once etcd (with
/// authentication on) is up. A restart of etcd (which invalidates its simple tokens) is
/// survived too: the token is refreshed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password_with_etcd_down_at_start_waits_and_retries() {
    // Prepare an etcd with authentication enabled, then stop it before kube2sky starts.
    let mut etcd = EtcdProcess::start().await.unwrap();
    {
        let mut client = etcd.client().await.unwrap();
        client.user_add("root", "s3cret", None).await.unwrap();
        client.user_grant_role("root", "root").await.unwrap();
        client.auth_enable().await.unwrap();
    }
    etcd.set_credentials("root", "s3cret");
    etcd.stop();
    let api = TestApiServer::start().await.unwrap();
    api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &["10.96.0.1"],
        &[port("https", 443, "TCP")],
    ));
    let k = Kube2sky::start(
        &etcd.endpoint(),
        &api.url(),
        &["--etcd-username=root", "--etcd-password=s3cret"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(k.is_running(), "kube2sky must wait for etcd, not exit");
    assert!(!k.is_ready().await, "not ready while etcd is down");
    assert!(
        k.metric_sum("kube2sky_etcd_errors_total").await >= 1.0,
        "failed connection attempts are counted"
    );

    etcd.restart().await.unwrap();
    assert!(ready_within(&k, 15).await, "ready once etcd is up");
    let mut authed = etcd.client().await.unwrap();
    assert_eq!(
        value(&mut authed).await.as_deref(),
        Some(r#"{"host":"10.96.0.1","priority":10,"weight":10,"ttl":30}"#)
    );

    // etcd restarts: its simple tokens are gone; kube2sky authenticates again and writes.
    etcd.restart().await.unwrap();
    api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &["10.96.0.2"],
        &[port("https", 443, "TCP")],
    ));
    let mut authed = etcd.client().await.unwrap();
    test_support::eventually(
        Duration::from_secs(15),
        "new value after etcd restart",
        || {
            let mut c = authed.clone();
            async move {
                (value(&mut c).await.as_deref()
                    == Some(r#"{"host":"10.96.0.2","priority":10,"weight":10,"ttl":30}"#))
                .then_some(())
            }
        },
    )
    .await;
    assert!(k.is_running());
    authed.auth_disable().await.ok();
    k.stop().await.unwrap();
}
