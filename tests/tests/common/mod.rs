//! The whole stack in-process: a real etcd, the Kubernetes test API server, kube2sky and skydns
//! (each through its library `run`, on port-0 sockets), and a fake upstream nameserver; healthz
//! beside them on demand.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use test_support::upstream::{bind_pair, FakeUpstream, Mode};
use test_support::{EtcdProcess, TestApiServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(crate) const ZONE: &str = "cluster.local";

pub(crate) struct Program {
    pub http: SocketAddr,
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Program {
    pub(crate) fn new(
        http: SocketAddr,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    ) -> Self {
        Program {
            http,
            shutdown,
            task,
        }
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

pub(crate) struct Stack {
    pub etcd: EtcdProcess,
    pub api: TestApiServer,
    pub upstream: FakeUpstream,
    pub dns: SocketAddr,
    pub skydns: Program,
    pub kube2sky: Option<Program>,
}

/// Start kube2sky against `etcd` and `api` with extra flags.
pub(crate) async fn start_kube2sky(etcd: &str, api: &str, args: &[&str]) -> Program {
    let mut argv: Vec<String> = vec![
        "kube2sky".into(),
        "--domain".into(),
        ZONE.into(),
        "--etcd-server".into(),
        etcd.into(),
        "--kube-master-url".into(),
        api.into(),
        "--write-interval".into(),
        "20ms".into(),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    let config = kube2sky::Config::try_parse_from(&argv)
        .expect("kube2sky flags")
        .validate()
        .expect("valid kube2sky flags");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(kube2sky::run(config, listener, shutdown.clone()));
    Program {
        http,
        shutdown,
        task,
    }
}

/// Start skydns for the zone against `etcd`, forwarding to `upstream`.
pub(crate) async fn start_skydns(etcd: &str, upstream: SocketAddr) -> (SocketAddr, Program) {
    let argv = [
        "skydns",
        "--lameduck",
        "0",
        "--machines",
        etcd,
        "--domain",
        ZONE,
        "--nameservers",
        &upstream.to_string(),
        "--rtimeout",
        "500ms",
    ];
    let settings = skydns::Config::try_parse_from(argv)
        .expect("flags")
        .validate()
        .expect("valid");
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
    (
        dns,
        Program {
            http: http_addr,
            shutdown,
            task,
        },
    )
}

impl Stack {
    /// etcd + API server + upstream + skydns + kube2sky, waiting until both are ready.
    pub(crate) async fn start(kube2sky_args: &[&str]) -> Stack {
        test_support::init_test_tracing();
        let etcd = EtcdProcess::start().await.expect("etcd");
        let api = TestApiServer::start().await.expect("api server");
        let upstream = FakeUpstream::start(Mode::Answer).await.expect("upstream");
        upstream.add_a("www.example.com", "203.0.113.10".parse().expect("ip"), 300);
        let (dns, skydns) = start_skydns(&etcd.endpoint(), upstream.addr()).await;
        let kube2sky = start_kube2sky(&etcd.endpoint(), &api.url(), kube2sky_args).await;
        let stack = Stack {
            etcd,
            api,
            upstream,
            dns,
            skydns,
            kube2sky: Some(kube2sky),
        };
        stack.wait_ready().await;
        stack
    }

    pub(crate) async fn wait_ready(&self) {
        let k = self.kube2sky.as_ref().map(|p| p.http);
        let s = self.skydns.http;
        test_support::eventually(
            Duration::from_secs(30),
            "kube2sky and skydns ready",
            || async move {
                let sky = http_get(s, "/readiness").await.0 == 200;
                let k2s = match k {
                    Some(k) => http_get(k, "/readiness").await.0 == 200,
                    None => true,
                };
                (sky && k2s).then_some(())
            },
        )
        .await;
    }

    pub(crate) async fn restart_kube2sky(&mut self, args: &[&str]) {
        if let Some(p) = self.kube2sky.take() {
            p.stop().await;
        }
        self.kube2sky = Some(start_kube2sky(&self.etcd.endpoint(), &self.api.url(), args).await);
    }

    pub(crate) async fn stop(self) {
        if let Some(p) = self.kube2sky {
            p.stop().await;
        }
        self.skydns.stop().await;
    }

    /// Every key under `/skydns/` with its value, sorted.
    pub(crate) async fn etcd_dump(&self) -> Vec<(String, String)> {
        let mut c = self.etcd.client().await.expect("etcd client");
        let resp = c
            .get(
                "/skydns/",
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .expect("etcd get");
        let mut out: Vec<(String, String)> = resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).to_string(),
                    String::from_utf8_lossy(kv.value()).to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

/// Start healthz probing skydns at `dns` and kube2sky at `kube2sky` every 100 ms (max age 1 s).
pub(crate) async fn start_healthz(
    dns: SocketAddr,
    kube2sky: SocketAddr,
) -> (SocketAddr, CancellationToken) {
    let argv = [
        "healthz".to_string(),
        "--dns-addr".into(),
        dns.to_string(),
        "--domain".into(),
        ZONE.into(),
        "--kube2sky-url".into(),
        format!("http://{kube2sky}/readiness"),
        "--period".into(),
        "100ms".into(),
        "--timeout".into(),
        "300ms".into(),
        "--max-age".into(),
        "1s".into(),
    ];
    let settings = healthz::Config::try_parse_from(argv)
        .expect("healthz flags")
        .validate()
        .expect("valid healthz flags");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(healthz::run(settings, listener, shutdown.clone()));
    (addr, shutdown)
}

pub(crate) use test_support::http::get as http_get;
