//! The test API server as a program, standing in for k3s in the compose stack test
//! (`tests/compose/docker-compose.test.yml`): HTTPS with a client CA, as k3s serves, a seeded
//! `default/kubernetes` Service, and a k3s-shaped kubeconfig (CA, client certificate and key
//! inlined) written once the port is bound.
//!
//! ```text
//! test-apiserver --listen 0.0.0.0:6443 --tls-dir /certs --kubeconfig-out /output/kubeconfig.yaml
//! ```
//!
//! `--tls-dir` holds `ca.pem` (signs the server and client certificates), `server.pem`,
//! `server.key`, `client.pem` and `client.key`. Objects are created with POST/PUT/DELETE
//! (see `test_support::apiserver`). Runs until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use test_support::apiserver::{kubeconfig, Options, ServerTls};
use test_support::objects::{port, service_cluster_ip};
use test_support::TestApiServer;

struct Args {
    listen: SocketAddr,
    tls_dir: PathBuf,
    kubeconfig_out: Option<PathBuf>,
    kubeconfig_server: String,
    kubernetes_ip: String,
}

fn parse() -> anyhow::Result<Args> {
    let mut args = Args {
        listen: SocketAddr::from(([0, 0, 0, 0], 6443)),
        tls_dir: PathBuf::from("/certs"),
        kubeconfig_out: None,
        kubeconfig_server: "https://127.0.0.1:6443".into(),
        kubernetes_ip: "10.43.0.1".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || match inline.clone() {
            Some(v) => Ok(v),
            None => it.next().with_context(|| format!("{name} needs a value")),
        };
        match name.as_str() {
            "--listen" => args.listen = value()?.parse().context("--listen")?,
            "--tls-dir" => args.tls_dir = value()?.into(),
            "--kubeconfig-out" => args.kubeconfig_out = Some(value()?.into()),
            "--kubeconfig-server" => args.kubeconfig_server = value()?,
            "--kubernetes-ip" => args.kubernetes_ip = value()?,
            other => bail!("unknown flag {other} (see the source's doc comment)"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let dir = &args.tls_dir;
    let api = TestApiServer::start_with(Options {
        addr: Some(args.listen),
        tls: Some(ServerTls {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: Some(dir.join("ca.pem")),
        }),
        tokens: Vec::new(),
    })
    .await?;
    // What every cluster has: the API server's own Service, and the namespaces.
    api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &[&args.kubernetes_ip],
        &[port("https", 443, "TCP")],
    ));
    for ns in ["default", "kube-system"] {
        api.apply(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns},
        }));
    }
    if let Some(out) = &args.kubeconfig_out {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .with_context(|| format!("read {}", dir.join(f).display()))
        };
        let text = kubeconfig::with_client_cert(
            &args.kubeconfig_server,
            &read("ca.pem")?,
            &read("client.pem")?,
            &read("client.key")?,
        );
        let tmp = out.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("write {}", out.display()))?;
    }
    println!("test-apiserver: serving https on {}", args.listen);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    api.shutdown().await;
    Ok(())
}
