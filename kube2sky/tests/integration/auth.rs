//! kube2sky's real ways into an API server, against the test API server serving HTTPS and
//! demanding credentials (a client certificate signed by its client CA, or a known bearer
//! token; anything else is 401):
//!
//! - a kubeconfig with an inlined CA, client certificate and key, EC as k3s issues them and RSA
//!   as kubeadm does;
//! - a kubeconfig with a bearer token;
//! - in-cluster service-account credentials (`KUBERNETES_SERVICE_HOST/PORT`, the token and
//!   `ca.crt` under `/var/run/secrets/kubernetes.io/serviceaccount`), including a token rotated
//!   on disk and the old one revoked;
//! - a CA that did not sign the server's certificate, an expired client certificate and a
//!   revoked token: never ready (readiness 503), nothing written, and the log says why.
//!
//! Each runs the built binary (its own process, its real log), with the API server's view of
//! who authenticated as evidence.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::apiserver::{kubeconfig, Options, ServerTls};
use test_support::tls::{KeyKind, TestCa};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_kube2sky");
const KEY: &str = "/skydns/local/cluster/svc/default/kubernetes";
const VALUE: &str = r#"{"host":"10.43.0.1","priority":10,"weight":10,"ttl":30}"#;

/// One kube2sky process with its log in a file.
struct Proc {
    child: Child,
    healthz: std::net::SocketAddr,
    log: PathBuf,
}

impl Proc {
    /// `program` (kube2sky, or a wrapper that ends by exec'ing it with the remaining args).
    fn start(dir: &Path, program: &[&str], args: &[String], env: &[(&str, String)]) -> Proc {
        let port = test_support::free_port();
        let log = dir.join(format!("kube2sky-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(program[0]);
        cmd.args(&program[1..])
            .args(args)
            .arg(format!("--healthz-port={port}"))
            .arg("--healthz-bind-address=127.0.0.1")
            .arg("--write-interval=20ms")
            .arg("--etcd-mutation-timeout=2s")
            .env("RUST_LOG", "kube2sky=info,kube=warn,kube_client=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file);
        for var in [
            "KUBECONFIG",
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
            "KUBE2SKY_KUBE_MASTER_URL",
            "KUBE2SKY_KUBECFG_FILE",
        ] {
            cmd.env_remove(var);
        }
        // No ~/.kube/config fallback from the machine running the tests.
        cmd.env("HOME", dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start kube2sky");
        Proc {
            child,
            healthz: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        }
    }

    async fn readiness(&self) -> u16 {
        test_support::http::get(self.healthz, "/readiness").await.0
    }

    async fn ready_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.readiness().await == 200 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn value(etcd: &EtcdProcess, key: &str) -> Option<String> {
    let mut client = etcd.client().await.ok()?;
    let r = client.get(key, None).await.ok()?;
    r.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).to_string())
}

/// An HTTPS test API server with client CA `ca`, server certificate from `server_ca` (for
/// 127.0.0.1), `tokens`, and the `default/kubernetes` Service.
async fn https_api(
    server_ca: &TestCa,
    client_ca: &TestCa,
    server_kind: KeyKind,
    tokens: &[&str],
) -> TestApiServer {
    let server = server_ca
        .server("server", &["IP:127.0.0.1", "DNS:localhost"], server_kind)
        .expect("server certificate");
    let api = TestApiServer::start_with(Options {
        addr: None,
        tls: Some(ServerTls {
            cert: server.cert,
            key: server.key,
            client_ca: Some(client_ca.cert.clone()),
        }),
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
    })
    .await
    .expect("HTTPS test API server");
    api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &["10.43.0.1"],
        &[port("https", 443, "TCP")],
    ));
    api
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn kubecfg_flag(path: &Path) -> String {
    format!("--kubecfg-file={}", path.display())
}

/// Write `kubeconfig` into `dir` and start kube2sky with it against `etcd`.
fn with_kubeconfig(dir: &Path, etcd: &EtcdProcess, kubeconfig: &str) -> Proc {
    let cfg = write(dir, "kubeconfig.yaml", kubeconfig);
    Proc::start(
        dir,
        &[BIN],
        &[
            format!("--etcd-server={}", etcd.endpoint()),
            kubecfg_flag(&cfg),
        ],
        &[],
    )
}

/// Served (authenticated) resource requests, i.e. more than health checks.
fn resource_requests(api: &TestApiServer) -> Vec<String> {
    api.authenticated_requests()
        .into_iter()
        .filter(|r| r.contains(" /api/") || r.contains(" /apis/"))
        .collect()
}

/// kubeconfig with an inlined client certificate (`kind`), against a server certificate of the
/// same kind: ready, the record written, every request authenticated by the certificate.
async fn client_certificate(kind: KeyKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "cluster").expect("CA");
    let api = https_api(&ca, &ca, kind, &[]).await;
    let etcd = EtcdProcess::start().await.expect("etcd");
    let client = ca
        .client("admin", "/O=system:masters/CN=system:admin", kind)
        .expect("client certificate");
    let key_pem = client.key_pem().expect("key");
    let header = match kind {
        KeyKind::Ec => "-----BEGIN EC PRIVATE KEY-----",
        KeyKind::Rsa => "-----BEGIN RSA PRIVATE KEY-----",
    };
    assert!(key_pem.starts_with(header), "key format: {key_pem:.40}");
    let k = with_kubeconfig(
        dir.path(),
        &etcd,
        &kubeconfig::with_client_cert(
            &api.url(),
            &ca.cert_pem().expect("ca"),
            &client.cert_pem().expect("cert"),
            &key_pem,
        ),
    );
    assert!(
        k.ready_within(SETTLE).await,
        "ready with a {kind:?} client certificate; log:\n{}",
        k.log()
    );
    assert_eq!(value(&etcd, KEY).await.as_deref(), Some(VALUE));
    let served = resource_requests(&api);
    assert!(!served.is_empty(), "no API request served");
    assert!(
        served.iter().all(|r| r.starts_with("x509 ")),
        "every request by certificate: {served:?}"
    );
    assert!(api.unauthorized_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_with_ec_client_certificate_as_k3s_issues() {
    client_certificate(KeyKind::Ec).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_with_rsa_client_certificate_as_kubeadm_issues() {
    client_certificate(KeyKind::Rsa).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_with_bearer_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "cluster").expect("CA");
    let api = https_api(&ca, &ca, KeyKind::Ec, &["t0ken-kube2sky"]).await;
    let etcd = EtcdProcess::start().await.expect("etcd");
    let k = with_kubeconfig(
        dir.path(),
        &etcd,
        &kubeconfig::with_token(&api.url(), &ca.cert_pem().expect("ca"), "t0ken-kube2sky"),
    );
    assert!(
        k.ready_within(SETTLE).await,
        "ready with a token; log:\n{}",
        k.log()
    );
    assert_eq!(value(&etcd, KEY).await.as_deref(), Some(VALUE));
    let served = resource_requests(&api);
    assert!(
        !served.is_empty()
            && served
                .iter()
                .all(|r| r.starts_with("token:t0ken-kube2sky ")),
        "every request by the token: {served:?}"
    );
}

/// Credentials that must not work: kube2sky stays unready (503), writes nothing, and logs the
/// failed list (one of `reasons` in the log).
///
/// For TLS failures the log today says only `client error (Connect)` / `(SendRequest)`: the
/// watch error is logged without its source chain, which holds rustls's reason
/// (`invalid peer certificate: UnknownIssuer`, `received fatal alert: CertificateExpired`).
/// When kube2sky logs the chain, tighten these `reasons` to those words.
async fn refused(k: &Proc, etcd: &EtcdProcess, api: &TestApiServer, reasons: &[&str]) {
    assert!(
        !k.ready_within(Duration::from_secs(6)).await,
        "must not become ready; log:\n{}",
        k.log()
    );
    assert_eq!(
        k.readiness().await,
        503,
        "readiness answers 503 while unready"
    );
    assert_eq!(value(etcd, KEY).await, None, "nothing written");
    assert!(
        resource_requests(api).is_empty(),
        "no request served: {:?}",
        resource_requests(api)
    );
    let log = k.log();
    assert!(
        reasons.iter().any(|r| log.contains(r)),
        "the log should say why (one of {reasons:?}):\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = TestCa::new(dir.path(), "cluster").expect("CA");
    let other = TestCa::new(dir.path(), "other").expect("CA");
    let api = https_api(&real, &real, KeyKind::Ec, &[]).await;
    let etcd = EtcdProcess::start().await.expect("etcd");
    let client = real
        .client("admin", "/O=system:masters/CN=system:admin", KeyKind::Ec)
        .expect("client certificate");
    // The kubeconfig trusts `other`, which did not sign the server's certificate.
    let k = with_kubeconfig(
        dir.path(),
        &etcd,
        &kubeconfig::with_client_cert(
            &api.url(),
            &other.cert_pem().expect("ca"),
            &client.cert_pem().expect("cert"),
            &client.key_pem().expect("key"),
        ),
    );
    refused(
        &k,
        &etcd,
        &api,
        &[
            "UnknownIssuer",
            "invalid peer certificate",
            "client error (Connect)",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_certificate_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "cluster").expect("CA");
    let api = https_api(&ca, &ca, KeyKind::Ec, &[]).await;
    let etcd = EtcdProcess::start().await.expect("etcd");
    let client = ca
        .expired_client("admin", "/O=system:masters/CN=system:admin", KeyKind::Ec)
        .expect("expired client certificate");
    let k = with_kubeconfig(
        dir.path(),
        &etcd,
        &kubeconfig::with_client_cert(
            &api.url(),
            &ca.cert_pem().expect("ca"),
            &client.cert_pem().expect("cert"),
            &client.key_pem().expect("key"),
        ),
    );
    // The server rejects the certificate in the handshake (an alert reaches the client).
    refused(
        &k,
        &etcd,
        &api,
        &[
            "CertificateExpired",
            "certificate expired",
            "client error (SendRequest)",
            "client error (Connect)",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "cluster").expect("CA");
    let api = https_api(&ca, &ca, KeyKind::Ec, &["the-valid-one"]).await;
    let etcd = EtcdProcess::start().await.expect("etcd");
    let k = with_kubeconfig(
        dir.path(),
        &etcd,
        &kubeconfig::with_token(&api.url(), &ca.cert_pem().expect("ca"), "revoked"),
    );
    refused(&k, &etcd, &api, &["401", "Unauthorized"]).await;
    assert!(
        !api.unauthorized_requests().is_empty(),
        "the server saw 401s"
    );
}

/// Whether this process may make a private mount namespace (root and `unshare`), which the
/// in-cluster test needs: kube-rs reads the service account from a fixed path.
fn can_unshare() -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn write_atomically(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_service_account_with_token_rotation() {
    if let Err(why) = can_unshare() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED in_cluster_service_account_with_token_rotation: needs a private mount \
             namespace (root and unshare) to place the service account at its fixed path: {why}"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "cluster").expect("CA");
    let api = https_api(&ca, &ca, KeyKind::Ec, &["sa-token-1"]).await;
    let etcd = EtcdProcess::start().await.expect("etcd");
    let sa = dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).expect("mkdir");
    write_atomically(&sa, "token", "sa-token-1");
    write_atomically(&sa, "ca.crt", &ca.cert_pem().expect("ca"));
    write_atomically(&sa, "namespace", "kube-system");
    // A private mount namespace with a tmpfs over /run (/var/run), in which
    // /var/run/secrets/kubernetes.io/serviceaccount points at our directory; then kube2sky.
    let script = r#"set -e
run=$(readlink -f /var/run)
mount -t tmpfs -o size=1m,mode=755 kube2sky-test "$run"
mkdir -p "$run/secrets/kubernetes.io"
ln -s "$SA_DIR" "$run/secrets/kubernetes.io/serviceaccount"
exec "$@""#;
    let k = Proc::start(
        dir.path(),
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            BIN,
        ],
        &[format!("--etcd-server={}", etcd.endpoint())],
        &[
            ("SA_DIR", sa.display().to_string()),
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_string()),
            ("KUBERNETES_SERVICE_PORT", api.port().to_string()),
        ],
    );
    assert!(
        k.ready_within(SETTLE).await,
        "ready in-cluster; log:\n{}",
        k.log()
    );
    assert_eq!(value(&etcd, KEY).await.as_deref(), Some(VALUE));
    let served = resource_requests(&api);
    assert!(
        served.iter().all(|r| r.starts_with("token:sa-token-1 ")),
        "by the mounted token: {served:?}"
    );

    // The kubelet rotates the projected token: the new one is on disk, both are valid for a
    // while. kube-rs re-reads the file once its copy is about a minute old; new connections
    // (forced here by dropping the watches) then carry the new token.
    write_atomically(&sa, "token", "sa-token-2");
    api.set_tokens(&["sa-token-1", "sa-token-2"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if resource_requests(&api)
            .iter()
            .any(|r| r.starts_with("token:sa-token-2 "))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated token was never used; log:\n{}",
            k.log()
        );
        api.drop_watches();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // The old token is revoked; kube2sky keeps working with the new one.
    api.set_tokens(&["sa-token-2"]);
    api.drop_watches();
    api.apply(service_cluster_ip(
        "default",
        "after-rotation",
        &["10.43.0.99"],
        &[port("http", 80, "TCP")],
    ));
    eventually(SETTLE, "a Service added after the rotation", || async {
        value(&etcd, "/skydns/local/cluster/svc/default/after-rotation")
            .await
            .filter(|v| v.contains("10.43.0.99"))
    })
    .await;
    assert_eq!(k.readiness().await, 200, "still ready after the rotation");
}
