//! End to end with the built `skydns` binary, `etcdctl` and `dig`, exactly as the README's
//! first example: put a record with etcdctl, ask dig over UDP and TCP.

use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::EtcdProcess;

/// dig against 127.0.0.1:`port`.
fn local_dig(port: u16, args: &[&str]) -> String {
    test_support::dns::dig(([127, 0, 0, 1], port).into(), args)
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn etcdctl_put_then_dig_answers_over_udp_and_tcp() {
    let etcd = EtcdProcess::start().await.unwrap();
    let put = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint()])
        .args([
            "put",
            "/skydns/local/kube/svc/default/mysql-service",
            r#"{"host":"10.254.162.44","ttl":30}"#,
        ])
        .output()
        .expect("run etcdctl (install etcd-client)");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );

    let port = test_support::free_port();
    let http = test_support::free_port();
    let _sky = Child(
        Command::new(env!("CARGO_BIN_EXE_skydns"))
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{http}")])
            .args([
                "--domain",
                "kube.local",
                "--machines",
                &etcd.endpoint(),
                "--no-rec",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn skydns"),
    );
    let udp = test_support::eventually(Duration::from_secs(10), "dig answer", || async {
        let out = local_dig(
            port,
            &[
                "mysql-service.default.svc.kube.local",
                "A",
                "+noall",
                "+answer",
            ],
        );
        out.contains("10.254.162.44").then_some(out)
    })
    .await;
    let fields: Vec<&str> = udp.split_whitespace().collect();
    assert_eq!(
        fields,
        vec![
            "mysql-service.default.svc.kube.local.",
            "30",
            "IN",
            "A",
            "10.254.162.44"
        ],
        "{udp}"
    );
    let tcp = local_dig(
        port,
        &[
            "+tcp",
            "mysql-service.default.svc.kube.local",
            "A",
            "+noall",
            "+answer",
        ],
    );
    assert_eq!(tcp.split_whitespace().collect::<Vec<_>>(), fields, "{tcp}");
    // A miss is NXDOMAIN with the SOA, over both transports.
    for extra in [&[][..], &["+tcp"][..]] {
        let mut args = vec!["nope.default.svc.kube.local", "A"];
        args.extend_from_slice(extra);
        let out = local_dig(port, &args);
        assert!(out.contains("status: NXDOMAIN"), "{out}");
        assert!(
            out.contains("SOA\tns.dns.kube.local. hostmaster.kube.local."),
            "{out}"
        );
    }
    let out = local_dig(port, &["mysql-service.default.svc.kube.local", "AAAA"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("ANSWER: 0"),
        "NODATA: {out}"
    );
}

#[test]
fn bad_flags_exit_2_before_binding() {
    for args in [
        &["--addr", "not-an-address"][..],
        &["--domain", "bad..domain"][..],
        &["--machines", "localhost:2379"][..],
        &["--rtimeout", "forever"][..],
        &["--no-such-flag"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_skydns"))
            .args(args)
            .args(["--nameservers", "127.0.0.1"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?}: a message says why");
    }
}

#[test]
fn a_taken_port_is_named_in_the_error() {
    // The metrics port is taken; the DNS port is free.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = taken.local_addr().unwrap();
    // A port free for both UDP and TCP (a UDP-only pick can land on a TCP port another test
    // holds, and the bind error would then name the DNS address).
    let dns = loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        if std::net::TcpListener::bind(addr).is_ok() {
            break addr;
        }
    };
    let out = Command::new(env!("CARGO_BIN_EXE_skydns"))
        .args([
            "--addr",
            &dns.to_string(),
            "--metrics-addr",
            &metrics.to_string(),
        ])
        .args(["--nameservers", "127.0.0.1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("HTTP --metrics-addr {metrics}"))
            && !stderr.contains(&dns.to_string()),
        "names the taken address only: {stderr}"
    );
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let port = test_support::free_port();
    let http = test_support::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_skydns"))
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--metrics-addr",
            &format!("127.0.0.1:{http}"),
        ])
        .args(["--machines", "http://127.0.0.1:9", "--no-rec"])
        // The real signal path through the lameduck: exit 0 once it is over.
        .args(["--lameduck", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let sent = std::time::Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("{status:?}: {err}");
            }
            assert!(
                sent.elapsed() >= Duration::from_millis(900),
                "exited before the lameduck"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "skydns did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
