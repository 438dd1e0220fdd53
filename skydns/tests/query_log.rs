//! `--log-queries` and the SERVFAIL cause log, with the built binary (its stdout is what an
//! operator reads with `kubectl logs`), a real etcd and dig: one line per query in CoreDNS
//! `log`'s common format when on, none when off; forwarding failures logged once per cause
//! within the rate limit, however many queries failed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use test_support::upstream::{FakeUpstream, Mode};
use test_support::EtcdProcess;

/// The one record these tests ask for.
const WEB: (&str, &str) = (
    "/skydns/local/kube/svc/default/web",
    r#"{"host":"10.5.0.1"}"#,
);

/// The server, its stdout lines collected as they come.
/// dig against 127.0.0.1:`port`.
fn local_dig(port: u16, args: &[&str]) -> String {
    test_support::dns::dig(([127, 0, 0, 1], port).into(), args)
}

struct Server {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(etcd: &EtcdProcess, upstream: &FakeUpstream, extra: &[&str]) -> Server {
        let port = test_support::free_port();
        let http = test_support::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_skydns"))
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{http}")])
            .args(["--domain", "kube.local", "--machines", &etcd.endpoint()])
            .args(["--nameservers", &upstream.addr().to_string()])
            .args([
                "--rtimeout",
                "300ms",
                "--lameduck",
                "0",
                "--serve-stale",
                "0",
            ])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn skydns");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Server { child, lines, port }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

async fn wait_answering(port: u16) {
    test_support::eventually(Duration::from_secs(10), "answering", || async {
        let out = local_dig(port, &["web.default.svc.kube.local", "A"]);
        out.contains("10.5.0.1").then_some(())
    })
    .await;
}

#[tokio::test]
async fn one_line_per_query_in_coredns_format_only_when_asked() {
    let etcd = common::etcd_with(&[WEB]).await;
    let upstream = FakeUpstream::start(Mode::Answer).await.unwrap();

    let on = Server::start(&etcd, &upstream, &["--log-queries"]);
    wait_answering(on.port).await;
    let before = on.lines().len();
    local_dig(
        on.port,
        &[
            "web.default.svc.kube.local",
            "A",
            "+bufsize=1232",
            "+dnssec",
        ],
    );
    local_dig(
        on.port,
        &["+tcp", "+noedns", "nope.default.svc.kube.local", "AAAA"],
    );
    let lines = test_support::eventually(Duration::from_secs(5), "log lines", || async {
        let new: Vec<String> = on.lines()[before..]
            .iter()
            .filter(|l| l.contains(" - "))
            .cloned()
            .collect();
        (new.len() >= 2).then_some(new)
    })
    .await;
    // `127.0.0.1:PORT - ID "A IN web.default.svc.kube.local. udp SIZE true 1232" NOERROR
    // qr,aa,rd SIZE DURATIONs`
    let udp: Vec<&str> = lines[0].split_whitespace().collect();
    assert!(udp[0].starts_with("127.0.0.1:"), "{}", lines[0]);
    assert_eq!(udp[1], "-");
    assert!(udp[2].parse::<u16>().is_ok(), "id: {}", lines[0]);
    assert_eq!(
        &udp[3..6],
        ["\"A", "IN", "web.default.svc.kube.local."],
        "{}",
        lines[0]
    );
    assert_eq!(udp[6], "udp");
    assert!(udp[7].parse::<usize>().is_ok());
    assert_eq!(&udp[8..10], ["true", "1232\""], "{}", lines[0]);
    assert_eq!(udp[10], "NOERROR");
    assert!(udp[11].starts_with("qr,aa"), "{}", lines[0]);
    assert!(udp[12].parse::<usize>().is_ok());
    assert!(udp[13].ends_with('s') && udp[13].trim_end_matches('s').parse::<f64>().is_ok());
    let tcp: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &tcp[3..7],
        ["\"AAAA", "IN", "nope.default.svc.kube.local.", "tcp"]
    );
    assert_eq!(&tcp[8..11], ["false", "512\"", "NXDOMAIN"], "{}", lines[1]);
    drop(on);

    let off = Server::start(&etcd, &upstream, &[]);
    wait_answering(off.port).await;
    local_dig(off.port, &["web.default.svc.kube.local", "A"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logged: Vec<String> = off
        .lines()
        .into_iter()
        .filter(|l| l.contains("web.default.svc.kube.local"))
        .collect();
    assert!(logged.is_empty(), "no query lines when off: {logged:?}");
}

#[tokio::test]
async fn servfail_causes_are_logged_once_within_the_rate_limit() {
    let etcd = common::etcd_with(&[WEB]).await;
    let upstream = FakeUpstream::start(Mode::Silent).await.unwrap();
    let server = Server::start(&etcd, &upstream, &[]);
    wait_answering(server.port).await;
    for i in 0..5 {
        let out = local_dig(server.port, &[&format!("n{i}.example.org"), "A"]);
        assert!(out.contains("status: SERVFAIL"), "{out}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logged: Vec<String> = server
        .lines()
        .into_iter()
        .filter(|l| l.contains("SERVFAIL"))
        .collect();
    assert_eq!(logged.len(), 1, "one line for five timeouts: {logged:?}");
    assert!(
        logged[0].contains("cause=") && logged[0].contains("timed out"),
        "the cause is named: {}",
        logged[0]
    );
    assert!(logged[0].contains("n0.example.org"), "{}", logged[0]);
}
