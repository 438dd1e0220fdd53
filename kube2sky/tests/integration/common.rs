//! Harness: a real etcd, the test API server, and kube2sky running in-process through
//! `kube2sky::run`; helpers to read etcd and the healthz port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use test_support::objects::*;
pub(crate) use test_support::{eventually, EtcdProcess, TestApiServer};

/// Generous bound for anything to show up in etcd.
pub(crate) const SETTLE: Duration = Duration::from_secs(20);

/// Key prefix of the default zone's services.
pub(crate) const SVC: &str = "/skydns/local/cluster/svc";
pub(crate) const POD: &str = "/skydns/local/cluster/pod";
pub(crate) const VERSION_KEY: &str = "/skydns/local/cluster/dns-version";
pub(crate) const VERSION: &str = r#"{"text":"1.1.0"}"#;

/// One kube2sky running in-process.
pub(crate) struct Kube2sky {
    pub healthz: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Kube2sky {
    /// Start kube2sky against `etcd` and `api` with fast test timings plus `extra` flags.
    pub(crate) async fn start(etcd: &str, api: &str, extra: &[&str]) -> Kube2sky {
        test_support::init_test_tracing();
        let mut args = vec![
            "kube2sky".to_string(),
            format!("--etcd-server={etcd}"),
            format!("--kube-master-url={api}"),
        ];
        // Fast test timings unless the test sets them.
        for default in ["--write-interval=20ms", "--etcd-mutation-timeout=2s"] {
            let flag = default.split('=').next().unwrap_or_default();
            if !extra.iter().any(|e| e.starts_with(flag)) {
                args.push(default.to_string());
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = kube2sky::Config::try_parse_from(args)
            .expect("flags parse")
            .validate()
            .expect("flags valid");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let healthz = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(kube2sky::run(config, listener, shutdown.clone()));
        Kube2sky {
            healthz,
            shutdown,
            handle,
        }
    }

    /// Graceful stop (SIGTERM equivalent); returns what `run` returned.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("kube2sky stops within 10 s")
            .expect("kube2sky task not panicked")
    }

    /// Crash: drop everything at once (no resign, no cleanup).
    pub(crate) async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }

    /// Whether `run` is still running (it must never exit on its own).
    pub(crate) fn is_running(&self) -> bool {
        !self.handle.is_finished()
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.healthz, path).await
    }

    pub(crate) async fn is_ready(&self) -> bool {
        self.get("/readiness").await.0 == 200
    }

    pub(crate) async fn wait_ready(&self) {
        eventually(SETTLE, "kube2sky ready", || async {
            self.is_ready().await.then_some(())
        })
        .await;
    }

    /// The value of one metric line (`name{labels}` exactly as exposed), 0 when absent.
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics").await;
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Kube2sky {
    /// The sum of every series of a metric family (`name` or `name{...}`).
    pub(crate) async fn metric_sum(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics").await;
        body.lines()
            .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

pub(crate) use test_support::http::get as http_get;

pub(crate) use test_support::etcd::dump;

/// Wait until etcd holds exactly `expected` under `/skydns/`; on timeout, show the difference.
pub(crate) async fn expect_exactly(
    client: &mut etcd_client::Client,
    expected: &BTreeMap<String, String>,
) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let got = dump(client).await.unwrap_or_default();
        if &got == expected {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<_> = expected
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(v))
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, v)| expected.get(*k) != Some(v))
                .collect();
            panic!("etcd does not hold the expected records\nmissing or different: {missing:#?}\nunexpected: {extra:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Build an expected map; always includes `dns-version`.
pub(crate) fn records(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.insert(VERSION_KEY.into(), VERSION.into());
    m
}

/// `{"host":"<ip>","priority":10,"weight":10,"ttl":30}`
pub(crate) fn a(ip: &str) -> String {
    format!(r#"{{"host":"{ip}","priority":10,"weight":10,"ttl":30}}"#)
}

/// An array of address records.
pub(crate) fn arr(ips: &[&str]) -> String {
    format!(
        "[{}]",
        ips.iter().map(|ip| a(ip)).collect::<Vec<_>>().join(",")
    )
}

/// `{"host":"<target>","port":P,"priority":10,"weight":10,"ttl":30}`
pub(crate) fn srv(target: &str, port: u16) -> String {
    format!(r#"{{"host":"{target}","port":{port},"priority":10,"weight":10,"ttl":30}}"#)
}

/// `{"host":"<name>"}` or an array of them.
pub(crate) fn ptr(names: &[&str]) -> String {
    let one = |n: &str| format!(r#"{{"host":"{n}"}}"#);
    if names.len() == 1 {
        one(names[0])
    } else {
        format!(
            "[{}]",
            names.iter().map(|n| one(n)).collect::<Vec<_>>().join(",")
        )
    }
}

/// Start etcd, the API server, and an etcd client.
pub(crate) async fn cluster() -> (EtcdProcess, TestApiServer, etcd_client::Client) {
    let etcd = EtcdProcess::start().await.expect("etcd starts");
    let api = TestApiServer::start().await.expect("API server starts");
    let client = etcd.client().await.expect("etcd client");
    (etcd, api, client)
}
