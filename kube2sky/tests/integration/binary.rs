//! The built `kube2sky` binary: exit codes, flags, signals.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_kube2sky");

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    for (flag, name) in [
        ("--ttl=0", "--ttl"),
        ("--etcd-server=localhost:2379", "--etcd-server"),
        ("--domain=no spaces", "--domain"),
        ("--no-such-flag", "--no-such-flag"),
    ] {
        let out = Command::new(BIN)
            .args([flag, "--healthz-port=1"])
            .env_remove("KUBE2SKY_TTL")
            .output()
            .expect("run kube2sky");
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name), "{flag}: {stderr}");
    }
    let help = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run kube2sky");
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--domain",
        "--etcd-server",
        "--kube-master-url",
        "--kubecfg-file",
        "--healthz-port",
        "--ttl",
        "--pod-records",
        "--leader-elect",
        "KUBE2SKY_DOMAIN",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_readiness_and_exits_0_on_sigterm() {
    let (etcd, api, mut c) = cluster().await;
    api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &["10.96.0.1"],
        &[port("https", 443, "TCP")],
    ));
    let port = test_support::free_port();
    let mut child = Command::new(BIN)
        .env("KUBE2SKY_ETCD_SERVER", etcd.endpoint())
        .env("KUBE2SKY_KUBE_MASTER_URL", api.url())
        .env("KUBE2SKY_HEALTHZ_PORT", port.to_string())
        .env("KUBE2SKY_HEALTHZ_BIND_ADDRESS", "127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kube2sky");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    eventually(SETTLE, "binary ready", || async {
        (http_get(addr, "/readiness").await.0 == 200).then_some(())
    })
    .await;
    let want = records(&[
        (&format!("{SVC}/default/kubernetes"), &a("10.96.0.1")),
        (
            &format!("{SVC}/default/kubernetes/_tcp/_https"),
            &srv("kubernetes.default.svc.cluster.local.", 443),
        ),
        (
            "/skydns/arpa/in-addr/10/96/0/1",
            &ptr(&["kubernetes.default.svc.cluster.local."]),
        ),
    ]);
    expect_exactly(&mut c, &want).await;
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "kube2sky_watch_events_total",
        "kube2sky_etcd_writes_total",
        "kube2sky_objects",
        "kube2sky_records",
        "kube2sky_last_sync_timestamp_seconds",
        "kube2sky_leader",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}");
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kube2sky did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    // Records stay in etcd after a shutdown (the next start reconciles them).
    expect_exactly(&mut c, &want).await;
}
