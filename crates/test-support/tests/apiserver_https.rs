//! The test API server's writes (POST, PUT, DELETE) and its HTTPS mode with authentication,
//! driven by curl as an outside client would: client certificates (EC and RSA) verified
//! against the client CA, bearer tokens (rotated at run time), 401 for everything else but the
//! health paths, and a TLS handshake failure for an expired or foreign client certificate.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use test_support::apiserver::{Options, ServerTls};
use test_support::tls::{CertPair, KeyKind, TestCa};
use test_support::TestApiServer;

/// `(http status, body)` of `curl args… url`; status 0 when no HTTP answer came (TLS failure).
async fn curl(args: Vec<String>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    })
    .await
    .expect("curl task")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn reason(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn service(name: &str, ip: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80}]},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_put_delete_over_plain_http() {
    let api = TestApiServer::start().await.expect("start");
    let url = |path: &str| format!("{}{path}", api.url());
    let collection = url("/api/v1/namespaces/default/services");
    let named = url("/api/v1/namespaces/default/services/web");
    let post = |body: String| {
        vec![
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            body,
            collection.clone(),
        ]
    };

    let (code, body) = curl(post(service("web", "10.43.0.20"))).await;
    assert_eq!(code, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(created["metadata"]["namespace"], "default");
    assert!(created["metadata"]["resourceVersion"].is_string());
    let (code, body) = curl(post(service("web", "10.43.0.20"))).await;
    assert_eq!((code, reason(&body)), (409, "AlreadyExists".into()));

    let (code, body) = curl(vec![
        "-X".into(),
        "PUT".into(),
        "--data-binary".into(),
        service("web", "10.43.0.21"),
        named.clone(),
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(vec![named.clone()]).await;
    assert_eq!(code, 200);
    let got: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(got["spec"]["clusterIP"], "10.43.0.21");

    // Mismatches and junk are 4xx, never a panic.
    for (method, target, body, want) in [
        ("PUT", named.clone(), service("other", "10.43.0.1"), 400),
        (
            "PUT",
            url("/api/v1/namespaces/default/services/nope"),
            service("nope", "10.43.0.1"),
            404,
        ),
        ("POST", collection.clone(), "not json".to_string(), 400),
        ("POST", collection.clone(), "[1]".to_string(), 400),
        (
            "POST",
            collection.clone(),
            r#"{"metadata":{}}"#.to_string(),
            422,
        ),
        (
            "POST",
            collection.clone(),
            r#"{"kind":"Pod","metadata":{"name":"x"}}"#.to_string(),
            400,
        ),
        (
            "POST",
            url("/api/v1/services"),
            service("x", "10.43.0.1"),
            405,
        ),
    ] {
        let (code, resp) = curl(vec![
            "-X".into(),
            method.into(),
            "--data-binary".into(),
            body.clone(),
            target.clone(),
        ])
        .await;
        assert_eq!(code, want, "{method} {target} {body}: {resp}");
    }

    let (code, _) = curl(vec!["-X".into(), "DELETE".into(), named.clone()]).await;
    assert_eq!(code, 200);
    let (code, body) = curl(vec!["-X".into(), "DELETE".into(), named.clone()]).await;
    assert_eq!((code, reason(&body)), (404, "NotFound".into()));
    let (code, _) = curl(vec![named]).await;
    assert_eq!(code, 404);
}

struct Pki {
    _dir: tempfile::TempDir,
    ca: TestCa,
    ec: CertPair,
    rsa: CertPair,
    expired: CertPair,
    foreign: CertPair,
}

fn pki() -> (Pki, ServerTls) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "cluster").expect("CA");
    let other = TestCa::new(dir.path(), "other").expect("CA");
    let server = ca
        .server("server", &["IP:127.0.0.1", "DNS:localhost"], KeyKind::Rsa)
        .expect("server");
    let subject = "/O=system:masters/CN=system:admin";
    let pki = Pki {
        ec: ca.client("ec", subject, KeyKind::Ec).expect("EC client"),
        rsa: ca.client("rsa", subject, KeyKind::Rsa).expect("RSA client"),
        expired: ca
            .expired_client("expired", subject, KeyKind::Ec)
            .expect("expired"),
        foreign: other
            .client("foreign", subject, KeyKind::Ec)
            .expect("foreign"),
        ca,
        _dir: dir,
    };
    let tls = ServerTls {
        cert: server.cert,
        key: server.key,
        client_ca: Some(pki.ca.cert.clone()),
    };
    (pki, tls)
}

fn with_cert(ca: &Path, pair: &CertPair, url: String) -> Vec<String> {
    vec![
        "--cacert".into(),
        s(ca),
        "--cert".into(),
        s(&pair.cert),
        "--key".into(),
        s(&pair.key),
        url,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_demands_a_client_certificate_or_token() {
    let (pki, tls) = pki();
    let api = TestApiServer::start_with(Options {
        addr: None,
        tls: Some(tls),
        tokens: vec!["token-a".into()],
    })
    .await
    .expect("start");
    assert!(api.url().starts_with("https://127.0.0.1:"));
    let list = format!("{}/api/v1/services", api.url());
    let ca = pki.ca.cert.clone();

    for pair in [&pki.ec, &pki.rsa] {
        let (code, body) = curl(with_cert(&ca, pair, list.clone())).await;
        assert_eq!(
            code,
            200,
            "client certificate {}: {body}",
            pair.cert.display()
        );
    }
    let bearer = |t: &str| {
        vec![
            "--cacert".into(),
            s(&ca),
            "-H".into(),
            format!("Authorization: Bearer {t}"),
            list.clone(),
        ]
    };
    assert_eq!(curl(bearer("token-a")).await.0, 200);
    let (code, body) = curl(bearer("token-b")).await;
    assert_eq!((code, reason(&body)), (401, "Unauthorized".into()));
    let (code, body) = curl(vec!["--cacert".into(), s(&ca), list.clone()]).await;
    assert_eq!((code, reason(&body)), (401, "Unauthorized".into()));
    // Health needs no credentials, as on a real server.
    let (code, body) = curl(vec![
        "--cacert".into(),
        s(&ca),
        format!("{}/readyz", api.url()),
    ])
    .await;
    assert_eq!((code, body.as_str()), (200, "ok"));

    // Rotation: both tokens for a while, then only the new one.
    api.set_tokens(&["token-a", "token-b"]);
    assert_eq!(curl(bearer("token-b")).await.0, 200);
    api.set_tokens(&["token-b"]);
    assert_eq!(curl(bearer("token-a")).await.0, 401);
    assert_eq!(curl(bearer("token-b")).await.0, 200);

    // Expired and foreign certificates fail the handshake: no HTTP answer at all.
    for pair in [&pki.expired, &pki.foreign] {
        let (code, body) = curl(with_cert(&ca, pair, list.clone())).await;
        assert_eq!(
            code,
            0,
            "{} must fail the handshake: {body}",
            pair.cert.display()
        );
    }
    // A client that does not trust the server's CA refuses it.
    let (code, _) = curl(vec!["--cacert".into(), s(&pki.foreign.cert), list.clone()]).await;
    assert_eq!(code, 0);

    let served = api.authenticated_requests();
    assert!(
        served.iter().any(|r| r == "x509 GET /api/v1/services"),
        "{served:?}"
    );
    assert!(served
        .iter()
        .any(|r| r == "token:token-a GET /api/v1/services"));
    assert!(served
        .iter()
        .any(|r| r == "token:token-b GET /api/v1/services"));
    assert!(served.iter().any(|r| r == "anonymous GET /readyz"));
    assert_eq!(
        api.unauthorized_requests()
            .iter()
            .filter(|r| *r == "GET /api/v1/services")
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_client_ca_or_tokens_is_open() {
    let (pki, mut tls) = pki();
    tls.client_ca = None;
    let api = TestApiServer::start_with(Options {
        addr: None,
        tls: Some(tls),
        tokens: Vec::new(),
    })
    .await
    .expect("start");
    let (code, body) = curl(vec![
        "--cacert".into(),
        s(&pki.ca.cert),
        format!("{}/api/v1/namespaces", api.url()),
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        api.authenticated_requests(),
        vec!["anonymous GET /api/v1/namespaces".to_string()]
    );
}
