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
