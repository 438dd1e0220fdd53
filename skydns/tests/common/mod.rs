//! Starts skydns in-process (through `skydns::run`) on port-0 sockets against a real etcd.
#![allow(dead_code)]

use std::net::SocketAddr;

use clap::Parser;
use test_support::upstream::bind_pair;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(crate) struct Sky {
    pub dns: SocketAddr,
    pub http: SocketAddr,
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Sky {
    /// A server started by the test itself.
    pub(crate) fn from_parts(
        dns: SocketAddr,
        http: SocketAddr,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    ) -> Sky {
        Sky {
            dns,
            http,
            shutdown,
            task,
        }
    }

    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = (&mut self.task).await;
    }

    /// Wait for `run` to return (after the test cancelled `shutdown` itself).
    pub(crate) async fn join(mut self) -> anyhow::Result<()> {
        (&mut self.task).await.expect("skydns task")
    }
}

/// A test that panics still stops the server, so its UDP threads let the runtime end.
impl Drop for Sky {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Start skydns for `domain` against `etcd`; `args` are extra flags.
pub(crate) async fn start_skydns(
    etcd: &str,
    domain: &str,
    upstream: Option<SocketAddr>,
    args: &[&str],
) -> Sky {
    test_support::init_test_tracing();
    let mut argv = vec![
        "skydns".to_string(),
        "--machines".into(),
        etcd.into(),
        "--domain".into(),
        domain.into(),
        "--rtimeout".into(),
        "500ms".into(),
    ];
    match upstream {
        Some(u) => argv.extend(["--nameservers".to_string(), u.to_string()]),
        None if args.contains(&"--nameservers") => {}
        None => argv.push("--no-rec".into()),
    }
    // No lameduck unless the test asks for one, so stopping stays instant.
    if !args.iter().any(|a| a.starts_with("--lameduck")) {
        argv.extend(["--lameduck".to_string(), "0".into()]);
    }
    argv.extend(args.iter().map(|s| s.to_string()));
    let settings = skydns::Config::try_parse_from(&argv)
        .expect("flags")
        .validate()
        .expect("valid flags");
    let (udp, tcp) = bind_pair().await.expect("bind dns");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let dns = udp.local_addr().expect("addr");
    let http_addr = http.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(skydns::run(
        settings,
        skydns::Listeners { udp, tcp, http },
        shutdown.clone(),
    ));
    Sky {
        dns,
        http: http_addr,
        shutdown,
        task,
    }
}

pub(crate) use test_support::http::get as http_get;

/// A fresh etcd holding `records` (key, value).
pub(crate) async fn etcd_with(records: &[(&str, &str)]) -> test_support::EtcdProcess {
    let etcd = test_support::EtcdProcess::start().await.expect("etcd");
    let mut c = etcd.client().await.expect("etcd client");
    for (key, value) in records {
        put(&mut c, key, value).await;
    }
    etcd
}

/// Put `value` at `key` in etcd.
pub(crate) async fn put(client: &mut etcd_client::Client, key: &str, value: &str) {
    client.put(key, value, None).await.expect("etcd put");
}

/// Wait (up to 10 s) until `/readiness` answers 200.
pub(crate) async fn ready(sky: &Sky) {
    test_support::eventually(std::time::Duration::from_secs(10), "ready", || async {
        (http_get(sky.http, "/readiness").await.0 == 200).then_some(())
    })
    .await;
}

/// The value of an unlabelled metric, 0 when absent.
pub(crate) async fn metric(sky: &Sky, name: &str) -> u64 {
    let (_, body) = http_get(sky.http, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
