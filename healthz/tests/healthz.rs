//! Integration tests: `healthz::run` on a real socket against an in-test DNS responder and an
//! in-test readiness server (no skydns or kube2sky needed), plus the built binary's exit codes.

mod support;

use std::time::Duration;

use healthz::probe::{DnsProbe, Probe};
use support::{
    parse_metrics, probe_value, FakeDns, FakeReadiness, HangingHttp, Healthz, Mode, MAX_AGE,
};
use test_support::eventually;

const SETTLE: Duration = Duration::from_secs(5);

/// Poll `path` until it returns `code` with a body satisfying `check`; returns the body.
async fn until(
    h: &Healthz,
    path: &str,
    code: u16,
    within: Duration,
    check: impl Fn(&str) -> bool,
) -> String {
    eventually(within, &format!("{path} → {code}"), || async {
        let (c, body) = h.get(path).await;
        (c == code && check(&body)).then_some(body)
    })
    .await
}

#[tokio::test]
async fn ok_then_503_naming_skydns_when_dns_stops_then_ok_again() {
    let mut dns = FakeDns::start(Mode::Answer).await;
    let ready = FakeReadiness::start(true).await;
    let h = Healthz::for_fakes(&dns, &ready).await;

    let body = until(&h, "/healthz", 200, SETTLE, |_| true).await;
    assert_eq!(body, "ok\n");

    dns.stop().await;
    let body = until(&h, "/healthz", 503, MAX_AGE, |_| true).await;
    assert!(body.starts_with("skydns: "), "names the probe: {body}");
    assert!(
        body.contains("kubernetes.default.svc.cluster.local. A @127.0.0.1:"),
        "names what was asked: {body}"
    );
    assert!(
        body.contains("refused") || body.contains("no answer within"),
        "gives the reason: {body}"
    );
    assert!(!body.contains("kube2sky"), "kube2sky is fine: {body}");
    assert_eq!(h.get("/healthz/kube2sky").await.0, 200);
    assert_eq!(h.get("/healthz/skydns").await.0, 503);

    dns.restart().await;
    until(&h, "/healthz", 200, SETTLE, |b| b == "ok\n").await;
}

#[tokio::test]
async fn kube2sky_not_ready_is_named_with_status() {
    let dns = FakeDns::start(Mode::Answer).await;
    let ready = FakeReadiness::start(false).await;
    let h = Healthz::for_fakes(&dns, &ready).await;

    let body = until(&h, "/healthz", 503, SETTLE, |b| b.contains("status 503")).await;
    assert!(body.contains("kube2sky: GET http://127.0.0.1:"), "{body}");
    assert!(body.contains("status 503"), "{body}");
    assert!(
        body.contains("not ready"),
        "body of the readiness reply: {body}"
    );
    until(&h, "/healthz/skydns", 200, SETTLE, |_| true).await;

    ready.ready.set(true);
    until(&h, "/healthz", 200, SETTLE, |_| true).await;
}

#[tokio::test]
async fn hanging_dns_is_a_failure_after_timeout_and_endpoint_stays_prompt() {
    let dns = FakeDns::start(Mode::Answer).await;
    let ready = FakeReadiness::start(true).await;
    let h = Healthz::for_fakes(&dns, &ready).await;
    until(&h, "/healthz", 200, SETTLE, |_| true).await;

    dns.set_mode(Mode::Silent);
    let before = dns.received();
    let body = eventually(MAX_AGE * 2, "503 after the probe timeout", || async {
        // Every request must answer quickly even while a probe is waiting on the silent server.
        let (code, body) = tokio::time::timeout(Duration::from_millis(500), h.get("/healthz"))
            .await
            .expect("/healthz answered within 500 ms while the DNS probe hangs");
        (code == 503).then_some(body)
    })
    .await;
    assert!(body.contains("skydns: "), "{body}");
    assert!(body.contains("no answer within 300ms"), "{body}");
    assert!(
        dns.received() > before,
        "the responder did receive the queries"
    );

    dns.set_mode(Mode::Answer);
    until(&h, "/healthz", 200, SETTLE, |_| true).await;
}

#[tokio::test]
async fn hanging_kube2sky_is_a_failure_after_timeout() {
    let dns = FakeDns::start(Mode::Answer).await;
    let hang = HangingHttp::start().await;
    let url = format!("http://{}/readiness", hang.addr);
    let dns_addr = dns.addr.to_string();
    let h = Healthz::start(&["--dns-addr", &dns_addr, "--kube2sky-url", &url]).await;
    let body = until(&h, "/healthz", 503, SETTLE, |b| b.contains("no answer")).await;
    assert!(body.contains("kube2sky: GET http://127.0.0.1:"), "{body}");
    assert!(!body.contains("skydns"), "{body}");
}

#[tokio::test]
async fn dns_error_answers_give_clear_reasons() {
    let dns = FakeDns::start(Mode::NxDomain).await;
    let probe = DnsProbe::new(
        &dns.addr.to_string(),
        "kubernetes.default.svc.cluster.local",
    )
    .unwrap();
    for (mode, want) in [
        (Mode::NxDomain, "NXDOMAIN"),
        (Mode::ServFail, "SERVFAIL"),
        (Mode::NoData, "NODATA"),
        (Mode::WrongId, "does not match query id"),
    ] {
        dns.set_mode(mode);
        let err = probe.probe().await.unwrap_err().to_string();
        assert!(err.contains(want), "{mode:?}: {err}");
        assert!(
            err.starts_with("kubernetes.default.svc.cluster.local. A @127.0.0.1:"),
            "{err}"
        );
    }
    dns.set_mode(Mode::Answer);
    probe.probe().await.unwrap();

    // And through the endpoint.
    dns.set_mode(Mode::NxDomain);
    let ready = FakeReadiness::start(true).await;
    let h = Healthz::for_fakes(&dns, &ready).await;
    let body = until(&h, "/healthz/skydns", 503, SETTLE, |b| {
        b.contains("NXDOMAIN")
    })
    .await;
    assert!(body.starts_with("skydns: "), "{body}");
}

#[tokio::test]
async fn json_form() {
    let dns = FakeDns::start(Mode::Answer).await;
    let ready = FakeReadiness::start(false).await;
    let h = Healthz::for_fakes(&dns, &ready).await;
    until(&h, "/healthz/skydns", 200, SETTLE, |_| true).await;
    until(&h, "/healthz/kube2sky", 503, SETTLE, |b| {
        b.contains("status 503")
    })
    .await;

    let (code, v) = h.get_json("/healthz").await;
    assert_eq!(code, 503);
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert_eq!(v["max_age_seconds"], 1.0, "{v}");
    assert_eq!(v["probes"]["skydns"]["healthy"], true, "{v}");
    assert!(v["probes"]["skydns"]["reason"].is_null(), "{v}");
    assert!(
        v["probes"]["skydns"]["latency_seconds"].as_f64().is_some(),
        "{v}"
    );
    assert_eq!(v["probes"]["kube2sky"]["healthy"], false, "{v}");
    assert!(
        v["probes"]["kube2sky"]["reason"]
            .as_str()
            .unwrap()
            .contains("status 503"),
        "{v}"
    );
    assert!(
        v["probes"]["kube2sky"]["consecutive_failures"]
            .as_u64()
            .unwrap()
            >= 1,
        "{v}"
    );

    let (code, v) = h.get_json("/healthz/skydns").await;
    assert_eq!(
        (code, &v["status"], &v["probe"]),
        (200, &"ok".into(), &"skydns".into()),
        "{v}"
    );

    ready.ready.set(true);
    let v = eventually(SETTLE, "JSON ok", || async {
        let (code, v) = h.get_json("/healthz").await;
        (code == 200).then_some(v)
    })
    .await;
    assert_eq!(v["status"], "ok", "{v}");
}

#[tokio::test]
async fn metrics_parse_and_counters_move() {
    let dns = FakeDns::start(Mode::Answer).await;
    let ready = FakeReadiness::start(true).await;
    let h = Healthz::for_fakes(&dns, &ready).await;
    until(&h, "/healthz", 200, SETTLE, |_| true).await;

    let (code, text) = h.get("/metrics").await;
    assert_eq!(code, 200);
    let samples = parse_metrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let errors0 =
        probe_value(&samples, "healthz_probe_errors_total", "skydns").expect("errors series");
    let runs0 = probe_value(&samples, "healthz_probe_latency_seconds_count", "skydns")
        .expect("latency series");
    assert!(runs0 >= 1.0, "{text}");
    assert_eq!(
        probe_value(&samples, "healthz_probe_healthy", "skydns"),
        Some(1.0),
        "{text}"
    );
    assert!(
        probe_value(&samples, "healthz_probe_errors_total", "kube2sky").is_some(),
        "{text}"
    );
    for name in [
        "kubedns_probe_skydns_errors_total",
        "kubedns_probe_kube2sky_latency_ms_count",
    ] {
        assert!(
            samples.iter().any(|s| s.name == name),
            "{name} missing:\n{text}"
        );
    }

    dns.set_mode(Mode::ServFail);
    eventually(SETTLE, "skydns error counter to move", || async {
        let (_, text) = h.get("/metrics").await;
        let samples = parse_metrics(&text).unwrap();
        let errors = probe_value(&samples, "healthz_probe_errors_total", "skydns")?;
        let runs = probe_value(&samples, "healthz_probe_latency_seconds_count", "skydns")?;
        let healthy = probe_value(&samples, "healthz_probe_healthy", "skydns")?;
        (errors > errors0 && runs > runs0 && healthy == 0.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn disabled_probe_is_not_checked_and_404() {
    let dns = FakeDns::start(Mode::Answer).await;
    let dns_addr = dns.addr.to_string();
    // The kube2sky URL points nowhere, but the probe is off.
    let h = Healthz::start(&[
        "--dns-addr",
        &dns_addr,
        "--kube2sky-url",
        "http://127.0.0.1:1/readiness",
        "--no-kube2sky",
    ])
    .await;
    until(&h, "/healthz", 200, SETTLE, |_| true).await;
    let (code, body) = h.get("/healthz/kube2sky").await;
    assert_eq!(code, 404, "{body}");
    let (_, text) = h.get("/metrics").await;
    let samples = parse_metrics(&text).unwrap();
    assert!(
        probe_value(&samples, "healthz_probe_errors_total", "kube2sky").is_none(),
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_stops_run() {
    let dns = FakeDns::start(Mode::Silent).await;
    let ready = FakeReadiness::start(true).await;
    let mut h = Healthz::for_fakes(&dns, &ready).await;
    until(&h, "/healthz", 503, SETTLE, |_| true).await;
    h.shutdown.cancel();
    let res = tokio::time::timeout(Duration::from_secs(5), &mut h.handle)
        .await
        .expect("run returns after shutdown")
        .unwrap();
    res.unwrap();
}

#[tokio::test]
async fn invalid_config_never_reaches_run() {
    // `run` takes only validated settings; validation names the flag.
    use clap::Parser;
    let config = healthz::Config::try_parse_from(["healthz", "--period", "0s"]).unwrap();
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("--period"), "{err}");
}

mod binary {
    use std::process::{Child, Command, Stdio};

    use super::*;

    const BIN: &str = env!("CARGO_BIN_EXE_healthz");

    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn bad_flags_exit_2_before_binding() {
        // The port is taken: if validation came after binding, the exit code would be 1.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port().to_string();
        for (args, want) in [
            (vec!["--period", "0s"], "--period"),
            (vec!["--max-age", "1s", "--period", "2s"], "--max-age"),
            (
                vec!["--kube2sky-url", "https://x/readiness"],
                "--kube2sky-url",
            ),
            (vec!["--no-such-flag"], "--no-such-flag"),
            (vec!["--timeout", "soon"], "soon"),
        ] {
            let out = Command::new(BIN)
                .args(["--address", "127.0.0.1", "--port", &port])
                .args(&args)
                .env_remove("RUST_LOG")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(want), "{args:?}: {stderr}");
        }
    }

    #[tokio::test]
    async fn serves_and_exits_0_on_sigterm() {
        let dns = FakeDns::start(Mode::Answer).await;
        let port = test_support::free_port();
        let child = Command::new(BIN)
            .args(["--address", "127.0.0.1", "--port", &port.to_string()])
            .args(["--dns-addr", &dns.addr.to_string(), "--no-kube2sky"])
            .args(["--period", "100ms", "--max-age", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = Killed(child);
        let addr = ([127, 0, 0, 1], port).into();
        eventually(SETTLE, "binary /healthz → 200", || async {
            tokio::net::TcpStream::connect(addr).await.ok()?;
            let (code, _) = support::http_get(addr, "/healthz", None).await;
            (code == 200).then_some(())
        })
        .await;
        let status = Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let child = std::sync::Mutex::new(&mut child);
        let code = eventually(SETTLE, "binary exit after SIGTERM", || {
            let exited = child.lock().unwrap().0.try_wait().unwrap();
            async move { exited.map(|s| s.code()) }
        })
        .await;
        assert_eq!(code, Some(0));
    }
}
