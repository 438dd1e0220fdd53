//! skydns runs as an unprivileged user holding only CAP_NET_BIND_SERVICE and serves port 53;
//! without the capability it refuses to start (exit 1, a message naming the address). Uses
//! util-linux `setpriv` to drop to nobody (65534) and `dig` to ask; needs root to set that up,
//! so it skips (with a note) when not root or when `setpriv` is missing.
//!
//! Two ways to hand over the capability are checked: ambient capabilities (what a process
//! supervisor or `setpriv` gives), and a file capability on the binary (what the Dockerfile
//! does with `setcap cap_net_bind_service=+ep`), with nothing inherited.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::EtcdProcess;

const NAME: &str = "mysql-service.default.svc.kube.local";
const KEY: &str = "/skydns/local/kube/svc/default/mysql-service";
const IP: &str = "10.254.162.44";
const NOBODY: &str = "65534";

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Why this test cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(str::to_string));
    if uid.as_deref() != Some("0") {
        return Some(format!("not root (uid {uid:?})"));
    }
    let setpriv = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !setpriv.is_ok_and(|s| s.success()) {
        return Some("setpriv (util-linux) not found".into());
    }
    let dig = Command::new("dig").arg("-v").output();
    if dig.is_err() {
        return Some("dig not found".into());
    }
    None
}

/// A loopback address whose port 53 is free over UDP and TCP: 127.0.0.1 if possible, else
/// one of 127.0.53.1–60 (all of 127/8 is loopback on Linux).
fn free_port_53() -> Ipv4Addr {
    let candidates =
        std::iter::once(Ipv4Addr::LOCALHOST).chain((1..=60).map(|n| Ipv4Addr::new(127, 0, 53, n)));
    for ip in candidates {
        let addr = SocketAddr::from((ip, 53));
        if UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok() {
            return ip;
        }
    }
    panic!("no loopback address with port 53 free");
}

/// The binary, copied where the unprivileged user can read and run it (the target dir may be
/// under a private home).
fn copy_binary(dir: &Path, name: &str) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let to = dir.join(name);
    std::fs::copy(env!("CARGO_BIN_EXE_skydns"), &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    to
}

fn setpriv(caps: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .args(caps);
    c
}

const WITH_AMBIENT: &[&str] = &[
    "--inh-caps=-all,+net_bind_service",
    "--ambient-caps=-all,+net_bind_service",
    "--bounding-set=-all,+net_bind_service",
];
const WITHOUT: &[&str] = &[
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-all",
];
/// Nothing inherited: only a file capability on the binary can grant the bind.
const FILE_CAP_ONLY: &[&str] = &[
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-all,+net_bind_service",
];

fn skydns_args(cmd: &mut Command, bin: &Path, ip: Ipv4Addr, http: u16, etcd: &str) {
    cmd.arg(bin)
        .args(["--addr", &format!("{ip}:53")])
        .args(["--metrics-addr", &format!("127.0.0.1:{http}")])
        .args(["--domain", "kube.local", "--machines", etcd, "--no-rec"]);
}

fn dig(ip: Ipv4Addr, extra: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{ip}"))
        .args(["-p", "53", NAME, "A", "+short", "+time=1", "+tries=1"])
        .args(extra)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A field of /proc/<pid>/status.
fn proc_status(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Start skydns through `setpriv` and check it serves port 53 over UDP and TCP as nobody
/// with no capability but NET_BIND_SERVICE.
async fn serves_as_nobody(bin: &Path, caps: &[&str], etcd: &str, what: &str) {
    let ip = free_port_53();
    let http = test_support::free_port();
    let mut cmd = setpriv(caps);
    skydns_args(&mut cmd, bin, ip, http, etcd);
    let child = Killed(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn setpriv"),
    );
    let pid = child.0.id();
    let answer = test_support::eventually(Duration::from_secs(10), what, || async {
        let out = tokio::task::spawn_blocking(move || dig(ip, &[]))
            .await
            .ok()?;
        (out == IP).then_some(out)
    })
    .await;
    assert_eq!(answer, IP);
    let tcp = tokio::task::spawn_blocking(move || dig(ip, &["+tcp"]))
        .await
        .unwrap();
    assert_eq!(tcp, IP, "{what}: TCP");
    // setpriv execs skydns in place: the pid is skydns, running as nobody with one capability.
    assert!(proc_status(pid, "Name:").starts_with("skydns"), "{what}");
    let uids = proc_status(pid, "Uid:");
    assert!(
        uids.split_whitespace().all(|u| u == NOBODY),
        "{what}: uids {uids}"
    );
    // CAP_NET_BIND_SERVICE is bit 10.
    assert_eq!(
        proc_status(pid, "CapEff:"),
        "0000000000000400",
        "{what}: effective capabilities"
    );
    assert_eq!(proc_status(pid, "CapBnd:"), "0000000000000400", "{what}");
    drop(child);
}

#[tokio::test]
async fn serves_port_53_as_nobody_with_only_net_bind_service() {
    if let Some(why) = cannot_run() {
        eprintln!("SKIPPED serves_port_53_as_nobody_with_only_net_bind_service: {why}");
        return;
    }
    let etcd = EtcdProcess::start().await.unwrap();
    let mut c = etcd.client().await.unwrap();
    c.put(KEY, format!(r#"{{"host":"{IP}","ttl":30}}"#), None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // 1. Ambient capability only (setpriv / a supervisor).
    let bin = copy_binary(dir.path(), "skydns");
    serves_as_nobody(
        &bin,
        WITH_AMBIENT,
        &etcd.endpoint(),
        "ambient NET_BIND_SERVICE",
    )
    .await;

    // 2. No capability at all: exit 1 before serving, saying what it could not bind.
    let ip = free_port_53();
    let http = test_support::free_port();
    let mut cmd = setpriv(WITHOUT);
    skydns_args(&mut cmd, &bin, ip, http, &etcd.endpoint());
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn setpriv");
    let mut child = Killed(child);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "skydns without the capability did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(
        stderr.contains("cannot bind")
            && stderr.contains(&format!("{ip}:53"))
            && stderr.contains("Permission denied"),
        "a clear message: {stderr}"
    );

    // 3. A file capability on the binary (the Dockerfile's `setcap`), nothing inherited.
    let has_setcap = Command::new("setcap")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !has_setcap {
        eprintln!("SKIPPED the file-capability case: setcap (libcap2-bin) not found");
        return;
    }
    let capped = copy_binary(dir.path(), "skydns-capped");
    let set = Command::new("setcap")
        .args(["cap_net_bind_service=+ep"])
        .arg(&capped)
        .output()
        .unwrap();
    if !set.status.success() {
        eprintln!(
            "SKIPPED the file-capability case: setcap failed here: {}",
            String::from_utf8_lossy(&set.stderr)
        );
        return;
    }
    serves_as_nobody(
        &capped,
        FILE_CAP_ONLY,
        &etcd.endpoint(),
        "file capability (setcap)",
    )
    .await;
}
