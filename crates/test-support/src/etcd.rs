//! A real etcd server (Debian's `etcd-server`) on free loopback ports with a temporary data dir,
//! killed when dropped. Tests can stop it, start it again on the same ports, or wipe its data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// One single-member etcd cluster owned by a test.
pub struct EtcdProcess {
    child: Option<Child>,
    dir: tempfile::TempDir,
    data_generation: u32,
    client_port: u16,
    peer_port: u16,
    extra_args: Vec<String>,
    tls: Option<crate::tls::TlsFiles>,
    /// Username and password [`EtcdProcess::client`] authenticates with (once auth is on).
    credentials: Option<(String, String)>,
}

impl EtcdProcess {
    /// Start etcd and wait until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_args(Vec::new()).await
    }

    /// Start etcd with extra command-line arguments (TLS, auth, …).
    pub async fn start_with_args(extra_args: Vec<String>) -> anyhow::Result<Self> {
        Self::launch(extra_args, None).await
    }

    /// Start etcd serving TLS with client-certificate authentication (certificates from
    /// [`crate::tls::generate`]); [`EtcdProcess::client`] then presents the client certificate.
    pub async fn start_tls(files: crate::tls::TlsFiles) -> anyhow::Result<Self> {
        Self::launch(files.etcd_args(), Some(files)).await
    }

    async fn launch(
        extra_args: Vec<String>,
        tls: Option<crate::tls::TlsFiles>,
    ) -> anyhow::Result<Self> {
        let mut etcd = Self::unstarted(extra_args, tls)?;
        etcd.spawn()?;
        etcd.wait_ready().await?;
        Ok(etcd)
    }

    fn unstarted(
        extra_args: Vec<String>,
        tls: Option<crate::tls::TlsFiles>,
    ) -> anyhow::Result<Self> {
        Ok(EtcdProcess {
            child: None,
            dir: tempfile::tempdir().context("temp dir for etcd")?,
            data_generation: 0,
            client_port: crate::free_port(),
            peer_port: crate::free_port(),
            extra_args,
            tls,
            credentials: None,
        })
    }

    /// Ports and a data directory for an etcd that is not running yet (its endpoint can be
    /// handed to a program first); [`EtcdProcess::restart`] starts it.
    pub fn reserve(extra_args: Vec<String>) -> anyhow::Result<Self> {
        Self::unstarted(extra_args, None)
    }

    /// From now on [`EtcdProcess::client`] (and the readiness check of `restart`)
    /// authenticates as `user` (for a server with authentication enabled).
    pub fn set_credentials(&mut self, user: &str, password: &str) {
        self.credentials = Some((user.to_string(), password.to_string()));
    }

    /// `http://127.0.0.1:<port>` (or `https://` when started with TLS arguments).
    pub fn endpoint(&self) -> String {
        let scheme = if self.extra_args.iter().any(|a| a.contains("cert-file")) {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The temporary directory (data dirs live below it; tests may put certificates here).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("data{}", self.data_generation))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--log-level=error")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn etcd (install Debian's etcd-server)")?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let addr = format!("127.0.0.1:{}", self.client_port);
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                // Port open; a health read confirms the member serves requests.
                if let Ok(mut c) = self.client().await {
                    if c.get("health-probe", None).await.is_ok() {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        bail!("etcd did not become ready on {addr}: {log}")
    }

    /// A fresh etcd client connected to this server.
    pub async fn client(&self) -> anyhow::Result<etcd_client::Client> {
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        if let Some(files) = &self.tls {
            let tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(
                    &files.ca,
                )?))
                .identity(etcd_client::Identity::from_pem(
                    std::fs::read(&files.client_cert)?,
                    std::fs::read(&files.client_key)?,
                ));
            opts = opts.with_tls(tls);
        }
        if let Some((user, password)) = &self.credentials {
            opts = opts.with_user(user.clone(), password.clone());
        }
        Ok(etcd_client::Client::connect([self.endpoint()], Some(opts)).await?)
    }

    /// Kill the server (SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same ports with the same data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()?;
        self.wait_ready().await
    }

    /// Restart on the same ports with an empty data directory (all keys gone, revision reset).
    pub async fn restart_empty(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.data_generation += 1;
        self.spawn()?;
        self.wait_ready().await
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One member of an [`EtcdCluster`].
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A real multi-member etcd cluster (Debian's `etcd-server`) on free loopback ports with fast
/// elections (50 ms heartbeats, 500 ms election timeout). Members can be SIGKILLed and started
/// again on their data, or SIGSTOPped and continued. Killed when dropped.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    initial_cluster: String,
}

impl EtcdCluster {
    /// Start `n` members and wait until each one serves requests.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temp dir for etcd cluster")?;
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: crate::free_port(),
                peer_port: crate::free_port(),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            dir,
            members,
            initial_cluster,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_ready(i).await?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let token = format!("test-{}", self.dir.path().display());
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let data = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))?;
        let child = Command::new("etcd")
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={token}"))
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn etcd (install Debian's etcd-server)")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    async fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        for _ in 0..500 {
            if let Ok(mut c) = self.member_client(i).await {
                // A linearizable read: the member is part of a cluster with a leader.
                if c.get("health-probe", None).await.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("{}.log", self.members[i].name)),
        )
        .unwrap_or_default();
        bail!("etcd member {i} did not become ready: {log}")
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Every member's client URL, comma separated (the form the flags take).
    pub fn endpoint_list(&self) -> String {
        self.endpoints().join(",")
    }

    fn options() -> etcd_client::ConnectOptions {
        etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(3))
    }

    /// A client of member `i` only.
    pub async fn member_client(&self, i: usize) -> anyhow::Result<etcd_client::Client> {
        Ok(etcd_client::Client::connect([self.endpoint(i)], Some(Self::options())).await?)
    }

    /// A client of the running members.
    pub async fn client(&self) -> anyhow::Result<etcd_client::Client> {
        let running: Vec<String> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .map(|i| self.endpoint(i))
            .collect();
        Ok(etcd_client::Client::connect(running, Some(Self::options())).await?)
    }

    /// The index of the current leader, as the running members report it.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                ids.push(None);
                continue;
            }
            let mut c = self.member_client(i).await?;
            match c.status().await {
                Ok(s) => {
                    ids.push(s.header().map(|h| h.member_id()));
                    if s.leader() != 0 {
                        leader = Some(s.leader());
                    }
                }
                Err(_) => ids.push(None),
            }
        }
        let leader = leader.context("no member reports a leader")?;
        ids.iter()
            .position(|id| *id == Some(leader))
            .context("the leader is not a running member")
    }

    /// Wait until a leader is elected and return its index.
    pub async fn wait_leader(&self) -> anyhow::Result<usize> {
        for _ in 0..250 {
            if let Ok(i) = self.leader().await {
                return Ok(i);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("no etcd leader elected")
    }

    /// SIGKILL member `i` (its data stays).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start member `i` again on its data and wait until it serves requests.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_ready(i).await
    }

    fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let child = self.members[i]
            .child
            .as_ref()
            .context("member not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .context("run kill")?;
        if !status.success() {
            bail!("kill -{signal} failed");
        }
        Ok(())
    }

    /// SIGSTOP member `i`: it holds its connections but answers nothing (a partition).
    pub fn pause(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "STOP")
    }

    /// SIGCONT member `i`.
    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "CONT")
    }

    /// Every key under `prefix` with its value as member `i` holds it locally (a serializable
    /// read: what that member has applied, without asking the leader).
    pub async fn local_dump(
        &self,
        i: usize,
        prefix: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        let mut c = self.member_client(i).await?;
        let resp = c
            .get(
                prefix,
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_serializable(),
                ),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                )
            })
            .collect())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            // A stopped process must be continued to die promptly after SIGKILL.
            let _ = self.resume(i);
            self.kill(i);
        }
    }
}

/// Every key under `/skydns/` with its value, as the tests compare etcd's contents; `None` when
/// etcd does not answer.
pub async fn dump(
    client: &mut etcd_client::Client,
) -> Option<std::collections::BTreeMap<String, String>> {
    let resp = client
        .get(
            "/skydns/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .ok()?;
    Some(
        resp.kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                )
            })
            .collect(),
    )
}
