//! Test certificates made with the `openssl` command. [`generate`]: a CA, a server certificate for
//! 127.0.0.1 and a client certificate (etcd tests). [`TestCa`]: CAs issuing EC or RSA server
//! and client certificates, valid or expired, with keys in the formats k3s and kubeadm write
//! (API server tests). All PEM files in a directory the caller owns.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// Paths of the generated PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA certificate that signed both.
    pub ca: PathBuf,
    /// Server certificate (SAN IP:127.0.0.1, DNS:localhost).
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// Client certificate (CN `client`).
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// etcd arguments serving TLS with client-certificate authentication.
    pub fn etcd_args(&self) -> Vec<String> {
        vec![
            format!("--cert-file={}", self.server_cert.display()),
            format!("--key-file={}", self.server_key.display()),
            format!("--trusted-ca-file={}", self.ca.display()),
            "--client-cert-auth=true".to_string(),
        ]
    }
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("run openssl (install Debian's openssl)")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Generate a CA, a server certificate (SAN IP:127.0.0.1, DNS:localhost) and a client
/// certificate (CN `client`) in `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<TlsFiles> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ],
    )?;
    for (name, cn, ext) in [
        (
            "server",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        ),
        ("client", "client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext)?;
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        )?;
    }
    Ok(TlsFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    })
}

/// Key type of a generated certificate. The key files are written in the formats the two
/// common issuers use: EC P-256 as SEC1 `EC PRIVATE KEY` (k3s), RSA 2048 as PKCS#1
/// `RSA PRIVATE KEY` (kubeadm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// EC P-256, key as SEC1 `EC PRIVATE KEY`.
    Ec,
    /// RSA 2048, key as PKCS#1 `RSA PRIVATE KEY`.
    Rsa,
}

/// A certificate and its key (PEM files).
#[derive(Debug, Clone)]
pub struct CertPair {
    /// Certificate file (PEM).
    pub cert: PathBuf,
    /// Key file (PEM).
    pub key: PathBuf,
}

impl CertPair {
    /// The certificate's PEM text.
    pub fn cert_pem(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(&self.cert).with_context(|| format!("read {}", self.cert.display()))
    }

    /// The key's PEM text.
    pub fn key_pem(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(&self.key).with_context(|| format!("read {}", self.key.display()))
    }
}

/// A test certificate authority in a directory the caller owns; issues server and client
/// certificates (valid for two days, or already expired).
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
    name: String,
    /// The CA certificate (PEM).
    pub cert: PathBuf,
    key: PathBuf,
}

/// Where a certificate may be used.
enum Usage<'a> {
    /// Server certificate for these names (`IP:…` / `DNS:…` entries).
    Server(&'a [&'a str]),
    /// Client certificate with this subject (`/CN=…/O=…`).
    Client(&'a str),
}

impl TestCa {
    /// A new CA named `name` (files `<name>-ca.pem`, `<name>-ca.key` in `dir`).
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<TestCa> {
        let key = gen_key(dir, &format!("{name}-ca"), KeyKind::Ec)?;
        let cert = dir.join(format!("{name}-ca.pem"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                path_str(&key)?,
                "-out",
                path_str(&cert)?,
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}-ca@1700000000"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            ],
        )?;
        Ok(TestCa {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            cert,
            key,
        })
    }

    /// The CA certificate's PEM text.
    pub fn cert_pem(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(&self.cert).with_context(|| format!("read {}", self.cert.display()))
    }

    /// A server certificate for `sans` (e.g. `["IP:127.0.0.1", "DNS:k3s"]`).
    pub fn server(&self, file: &str, sans: &[&str], kind: KeyKind) -> anyhow::Result<CertPair> {
        self.issue(file, kind, Usage::Server(sans), None)
    }

    /// A client certificate with subject `subject` (e.g. `/O=system:masters/CN=system:admin`,
    /// as k3s issues it for its admin kubeconfig).
    pub fn client(&self, file: &str, subject: &str, kind: KeyKind) -> anyhow::Result<CertPair> {
        self.issue(file, kind, Usage::Client(subject), None)
    }

    /// A client certificate that expired in 2020 (valid 2020-01-01 to 2020-01-02).
    pub fn expired_client(
        &self,
        file: &str,
        subject: &str,
        kind: KeyKind,
    ) -> anyhow::Result<CertPair> {
        self.issue(
            file,
            kind,
            Usage::Client(subject),
            Some(("20200101000000Z", "20200102000000Z")),
        )
    }

    /// A server certificate for `sans` that expired in 2020.
    pub fn expired_server(
        &self,
        file: &str,
        sans: &[&str],
        kind: KeyKind,
    ) -> anyhow::Result<CertPair> {
        self.issue(
            file,
            kind,
            Usage::Server(sans),
            Some(("20200101000000Z", "20200102000000Z")),
        )
    }

    fn issue(
        &self,
        file: &str,
        kind: KeyKind,
        usage: Usage<'_>,
        validity: Option<(&str, &str)>,
    ) -> anyhow::Result<CertPair> {
        let dir = &self.dir;
        let key = gen_key(dir, file, kind)?;
        let (subject, ext) = match usage {
            Usage::Server(sans) => (
                format!("/CN={}", sans.first().map_or("server", |s| s.split_once(':').map_or(*s, |(_, v)| v))),
                format!(
                    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName={}\n",
                    sans.join(",")
                ),
            ),
            Usage::Client(subject) => (
                subject.to_string(),
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n".to_string(),
            ),
        };
        let ext_file = dir.join(format!("{file}.ext"));
        std::fs::write(&ext_file, ext)?;
        let csr = dir.join(format!("{file}.csr"));
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                path_str(&key)?,
                "-out",
                path_str(&csr)?,
                "-subj",
                &subject,
            ],
        )?;
        let cert = dir.join(format!("{file}.pem"));
        match validity {
            None => openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    path_str(&csr)?,
                    "-CA",
                    path_str(&self.cert)?,
                    "-CAkey",
                    path_str(&self.key)?,
                    "-CAcreateserial",
                    "-out",
                    path_str(&cert)?,
                    "-days",
                    "2",
                    "-extfile",
                    path_str(&ext_file)?,
                ],
            )?,
            Some((start, end)) => {
                // `openssl x509` (3.0) cannot backdate; `openssl ca` can.
                let db = dir.join(format!("{}-ca-db", self.name));
                std::fs::create_dir_all(&db)?;
                let index = db.join("index.txt");
                if !index.exists() {
                    std::fs::write(&index, "")?;
                    std::fs::write(db.join("serial"), "1000\n")?;
                }
                let cnf = db.join("ca.cnf");
                std::fs::write(
                    &cnf,
                    format!(
                        "[ca]\ndefault_ca = d\n[d]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\nserial = {db}/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\nemail_in_dn = no\n[p]\ncommonName = supplied\norganizationName = optional\n",
                        db = db.display()
                    ),
                )?;
                openssl(
                    dir,
                    &[
                        "ca",
                        "-batch",
                        "-notext",
                        "-config",
                        path_str(&cnf)?,
                        "-cert",
                        path_str(&self.cert)?,
                        "-keyfile",
                        path_str(&self.key)?,
                        "-in",
                        path_str(&csr)?,
                        "-out",
                        path_str(&cert)?,
                        "-startdate",
                        start,
                        "-enddate",
                        end,
                        "-extfile",
                        path_str(&ext_file)?,
                    ],
                )?;
            }
        }
        Ok(CertPair { cert, key })
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("non-UTF-8 path {}", p.display()))
}

/// A new private key `<file>.key` in the issuer's usual format (see [`KeyKind`]).
fn gen_key(dir: &Path, file: &str, kind: KeyKind) -> anyhow::Result<PathBuf> {
    let pkcs8 = dir.join(format!("{file}.p8"));
    let key = dir.join(format!("{file}.key"));
    match kind {
        KeyKind::Ec => {
            openssl(
                dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    path_str(&pkcs8)?,
                ],
            )?;
            openssl(
                dir,
                &["ec", "-in", path_str(&pkcs8)?, "-out", path_str(&key)?],
            )?;
        }
        KeyKind::Rsa => {
            openssl(
                dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    path_str(&pkcs8)?,
                ],
            )?;
            openssl(
                dir,
                &[
                    "rsa",
                    "-traditional",
                    "-in",
                    path_str(&pkcs8)?,
                    "-out",
                    path_str(&key)?,
                ],
            )?;
        }
    }
    let _ = std::fs::remove_file(&pkcs8);
    Ok(key)
}
