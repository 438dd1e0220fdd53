//! Command-line flags (the classic kube2sky names), each with a `KUBE2SKY_*` environment
//! fallback (durations in `service_kit::duration`'s syntax), and their validation into the
//! [`Settings`] `run` takes. `validate` runs before anything binds, so a bad flag ends the
//! process with exit code 2 and a message naming the flag.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::error::ConfigError;

/// Default etcd endpoint when neither the flag nor `KUBE2SKY_ETCD_SERVER`/`ETCD_SERVER` is set.
pub const DEFAULT_ETCD_SERVER: &str = "http://127.0.0.1:2379";
/// etcd's default `--max-txn-ops`.
pub const ETCD_MAX_TXN_OPS: usize = 128;

/// kube2sky's configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube2sky",
    version,
    about = "Mirrors Kubernetes Services, EndpointSlices and Pods into SkyDNS records in etcd"
)]
pub struct Config {
    /// Cluster DNS zone the records are written under.
    #[arg(long, env = "KUBE2SKY_DOMAIN", default_value = "cluster.local")]
    pub domain: String,

    /// etcd client URLs, comma separated [env: KUBE2SKY_ETCD_SERVER, then ETCD_SERVER]
    /// [default: http://127.0.0.1:2379]
    #[arg(
        long = "etcd-server",
        env = "KUBE2SKY_ETCD_SERVER",
        value_delimiter = ','
    )]
    pub etcd_server: Vec<String>,

    /// etcd key prefix of all SkyDNS records.
    #[arg(long, env = "KUBE2SKY_ETCD_PREFIX", default_value = "/skydns")]
    pub etcd_prefix: String,

    /// Timeout of one etcd request (a read page or a write transaction).
    #[arg(long, env = "KUBE2SKY_ETCD_MUTATION_TIMEOUT", default_value = "10s", value_parser = service_kit::duration::parse)]
    pub etcd_mutation_timeout: Duration,

    /// Most operations per etcd transaction (etcd's `--max-txn-ops`, 128 by default).
    #[arg(long, env = "KUBE2SKY_ETCD_MAX_TXN_OPS", default_value_t = ETCD_MAX_TXN_OPS)]
    pub etcd_max_txn_ops: usize,

    /// CA certificate (PEM) that signed etcd's server certificate (enables TLS).
    #[arg(long, env = "KUBE2SKY_ETCD_CAFILE")]
    pub etcd_cafile: Option<String>,

    /// Client certificate (PEM) presented to etcd.
    #[arg(long, env = "KUBE2SKY_ETCD_CERTFILE")]
    pub etcd_certfile: Option<String>,

    /// Key (PEM) of the client certificate.
    #[arg(long, env = "KUBE2SKY_ETCD_KEYFILE")]
    pub etcd_keyfile: Option<String>,

    /// etcd username (with --etcd-password).
    #[arg(long, env = "KUBE2SKY_ETCD_USERNAME")]
    pub etcd_username: Option<String>,

    /// etcd password (with --etcd-username).
    #[arg(long, env = "KUBE2SKY_ETCD_PASSWORD")]
    pub etcd_password: Option<String>,

    /// Kubernetes API server URL (plain, no credentials). Neither this nor --kubecfg-file:
    /// in-cluster service account, then $KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "KUBE2SKY_KUBE_MASTER_URL")]
    pub kube_master_url: Option<String>,

    /// kubeconfig file (its server is overridden by --kube-master-url when both are given).
    #[arg(long, env = "KUBE2SKY_KUBECFG_FILE")]
    pub kubecfg_file: Option<PathBuf>,

    /// Port serving /readiness, /healthz and /metrics.
    #[arg(long, env = "KUBE2SKY_HEALTHZ_PORT", default_value_t = 8081)]
    pub healthz_port: u16,

    /// Address the healthz port binds to.
    #[arg(long, env = "KUBE2SKY_HEALTHZ_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub healthz_bind_address: IpAddr,

    /// TTL of the records written (seconds).
    #[arg(long, env = "KUBE2SKY_TTL", default_value_t = 30)]
    pub ttl: u32,

    /// Write pod records `a-b-c-d.<ns>.pod.<domain>` (watches Pods).
    #[arg(long, env = "KUBE2SKY_POD_RECORDS", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub pod_records: bool,

    /// Watch legacy v1 Endpoints instead of discovery.k8s.io/v1 EndpointSlices.
    #[arg(long, env = "KUBE2SKY_LEGACY_ENDPOINTS", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub legacy_endpoints: bool,

    /// A change after a quiet spell is written at once; during churn, writes go out at most
    /// once per this interval with everything that changed meanwhile.
    #[arg(long, env = "KUBE2SKY_WRITE_INTERVAL", default_value = "20ms", value_parser = service_kit::duration::parse)]
    pub write_interval: Duration,

    /// Re-read the owned trees and repair drift this often (0 disables; errors, leadership
    /// changes and a replaced etcd always trigger one).
    #[arg(long, env = "KUBE2SKY_RECONCILE_INTERVAL", default_value = "5m", value_parser = service_kit::duration::parse)]
    pub reconcile_interval: Duration,

    /// Run as one of several replicas: only the elected leader writes.
    #[arg(long, env = "KUBE2SKY_LEADER_ELECT", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,

    /// Lease TTL of the leader; a dead leader is replaced after at most this long.
    #[arg(long, env = "KUBE2SKY_LEADER_ELECT_TTL", default_value = "10s", value_parser = service_kit::duration::parse)]
    pub leader_elect_ttl: Duration,

    /// etcd election name [default: /kube2sky/leader/<domain>].
    #[arg(long, env = "KUBE2SKY_LEADER_ELECT_NAME")]
    pub leader_elect_name: Option<String>,

    /// This replica's identity in the election [default: $HOSTNAME, else kube2sky-<pid>].
    #[arg(long, env = "KUBE2SKY_LEADER_ELECT_ID")]
    pub leader_elect_id: Option<String>,
}

/// Validated settings: what [`crate::run`] needs, every flag checked once and the derived
/// defaults filled in (`--etcd-server` from `ETCD_SERVER`, the election name and id).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cluster DNS zone, without the trailing dot (`--domain`, checked to be a DNS name).
    pub domain: String,
    /// etcd endpoints, trimmed, at least one.
    pub etcd_server: Vec<String>,
    /// Key prefix of all records, as given (`--etcd-prefix`, checked by `msg::Prefix::parse`).
    pub etcd_prefix: String,
    /// etcd TLS files and credentials (pairs checked, files readable).
    pub etcd_security: service_kit::EtcdSecurity,
    /// Timeout of one etcd request (`--etcd-mutation-timeout`, at least 100ms).
    pub etcd_mutation_timeout: Duration,
    /// Most operations per etcd transaction (`--etcd-max-txn-ops`, 1..=131072).
    pub etcd_max_txn_ops: usize,
    /// `--kube-master-url`, parsed.
    pub kube_master_url: Option<axum::http::Uri>,
    /// `--kubecfg-file` (an existing file).
    pub kubecfg_file: Option<PathBuf>,
    /// Where the healthz port binds (`--healthz-bind-address`, `--healthz-port`).
    pub healthz_listen: SocketAddr,
    /// TTL of the records written, in seconds (`--ttl`, at least 1).
    pub ttl: u32,
    /// Whether pods are watched and their records written (`--pod-records`).
    pub pod_records: bool,
    /// Watch v1 Endpoints instead of EndpointSlices (`--legacy-endpoints`).
    pub legacy_endpoints: bool,
    /// Shortest spacing of writes during churn (`--write-interval`, at most 60s).
    pub write_interval: Duration,
    /// Period of full reconciles (`--reconcile-interval`; zero: only when triggered).
    pub reconcile_interval: Duration,
    /// Whether replicas elect a leader that alone writes (`--leader-elect`).
    pub leader_elect: bool,
    /// The election, used with `--leader-elect`.
    pub election: ElectionSettings,
}

/// `--leader-elect-ttl`, `--leader-elect-name` (or its default), `--leader-elect-id` (or its
/// default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionSettings {
    /// Lease TTL of the leader (`--leader-elect-ttl`, at least 2s).
    pub ttl: Duration,
    /// An etcd key prefix outside the records.
    pub name: String,
    /// This replica's identity.
    pub id: String,
}

impl Config {
    /// Check every flag and fill in derived defaults (`--etcd-server` from `ETCD_SERVER`).
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let etcd_server: Vec<String> = if self.etcd_server.iter().all(|s| s.trim().is_empty()) {
            std::env::var("ETCD_SERVER")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_ETCD_SERVER.to_string())
                .split(',')
                .map(str::to_string)
                .collect()
        } else {
            self.etcd_server.clone()
        };
        let etcd_server: Vec<String> = etcd_server
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for url in &etcd_server {
            check_url("--etcd-server", url)?;
        }

        let domain = self.domain.trim_end_matches('.');
        if domain.is_empty() || domain.len() > 200 || !domain.split('.').all(is_dns_label) {
            return Err(invalid(
                "--domain",
                format!("{:?} is not a DNS name", self.domain),
            ));
        }
        let prefix = msg::Prefix::parse(&self.etcd_prefix)
            .map_err(|e| invalid("--etcd-prefix", e.to_string()))?;
        let prefix = prefix.as_str();
        let kube_master_url = match &self.kube_master_url {
            Some(url) => Some(check_url("--kube-master-url", url)?),
            None => None,
        };
        if let Some(path) = &self.kubecfg_file {
            if !path.is_file() {
                return Err(invalid(
                    "--kubecfg-file",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        if self.ttl == 0 {
            return Err(invalid("--ttl", "must be at least 1 second".into()));
        }
        if !(1..=ETCD_MAX_TXN_OPS * 1024).contains(&self.etcd_max_txn_ops) {
            return Err(invalid(
                "--etcd-max-txn-ops",
                "must be between 1 and 131072".into(),
            ));
        }
        if self.etcd_mutation_timeout < Duration::from_millis(100) {
            return Err(invalid(
                "--etcd-mutation-timeout",
                "must be at least 100ms".into(),
            ));
        }
        if self.write_interval > Duration::from_secs(60) {
            return Err(invalid("--write-interval", "must be at most 60s".into()));
        }
        if self.leader_elect_ttl < Duration::from_secs(2) {
            return Err(invalid("--leader-elect-ttl", "must be at least 2s".into()));
        }
        if let Some(name) = &self.leader_elect_name {
            if name.trim().is_empty() || name.starts_with(&format!("/{prefix}/")) {
                return Err(invalid(
                    "--leader-elect-name",
                    "must be non-empty and outside the record prefix".into(),
                ));
            }
        }
        let etcd_security = self.etcd_security()?;
        for (flag, path) in [
            ("--etcd-cafile", &etcd_security.ca_cert),
            ("--etcd-certfile", &etcd_security.cert),
            ("--etcd-keyfile", &etcd_security.key),
        ] {
            if let Some(p) = path {
                if !std::path::Path::new(p).is_file() {
                    return Err(invalid(flag, format!("{p} is not a readable file")));
                }
            }
        }
        Ok(Settings {
            domain: self.domain.clone(),
            etcd_server,
            etcd_prefix: self.etcd_prefix.clone(),
            etcd_security,
            etcd_mutation_timeout: self.etcd_mutation_timeout,
            etcd_max_txn_ops: self.etcd_max_txn_ops,
            kube_master_url,
            kubecfg_file: self.kubecfg_file.clone(),
            healthz_listen: SocketAddr::new(self.healthz_bind_address, self.healthz_port),
            ttl: self.ttl,
            pod_records: self.pod_records,
            legacy_endpoints: self.legacy_endpoints,
            write_interval: self.write_interval,
            reconcile_interval: self.reconcile_interval,
            leader_elect: self.leader_elect,
            election: ElectionSettings {
                ttl: self.leader_elect_ttl,
                name: self.election_name(),
                id: self.election_id(),
            },
        })
    }

    /// TLS and credentials for etcd, from `--etcd-cafile/certfile/keyfile/username/password`.
    fn etcd_security(&self) -> Result<service_kit::EtcdSecurity, ConfigError> {
        service_kit::EtcdSecurity::new(
            self.etcd_cafile.clone(),
            self.etcd_certfile.clone(),
            self.etcd_keyfile.clone(),
            self.etcd_username.clone(),
            self.etcd_password.clone(),
        )
        .map_err(|e| match e {
            service_kit::etcd::EtcdSecurityError::HalfAuth => {
                invalid("--etcd-username/--etcd-password", e.to_string())
            }
            _ => invalid("--etcd-certfile/--etcd-keyfile", e.to_string()),
        })
    }

    /// The election name (an etcd key prefix outside the records).
    fn election_name(&self) -> String {
        self.leader_elect_name.clone().unwrap_or_else(|| {
            format!(
                "/kube2sky/leader/{}",
                self.domain.trim_end_matches('.').to_ascii_lowercase()
            )
        })
    }

    /// This replica's identity in the election.
    fn election_id(&self) -> String {
        self.leader_elect_id
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("kube2sky-{}", std::process::id()))
    }
}

fn invalid(flag: &'static str, reason: String) -> ConfigError {
    ConfigError { flag, reason }
}

fn check_url(flag: &'static str, url: &str) -> Result<axum::http::Uri, ConfigError> {
    let scheme_ok = url
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty());
    match url.parse::<axum::http::Uri>() {
        Ok(uri) if scheme_ok => Ok(uri),
        _ => Err(invalid(
            flag,
            format!("{url:?} is not an http:// or https:// URL"),
        )),
    }
}

/// A DNS label: 1–63 ASCII letters, digits or `-`.
pub fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["kube2sky"];
        argv.extend_from_slice(args);
        let c = Config::try_parse_from(argv).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_classic_ones() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.domain, "cluster.local");
        assert_eq!(c.healthz_listen.port(), 8081);
        assert_eq!(c.ttl, 30);
        assert!(c.pod_records);
        assert!(!c.legacy_endpoints);
        assert!(!c.leader_elect);
        assert_eq!(c.etcd_mutation_timeout, Duration::from_secs(10));
        assert_eq!(c.election.ttl, Duration::from_secs(10));
        assert_eq!(c.etcd_max_txn_ops, 128);
        assert_eq!(c.election.name, "/kube2sky/leader/cluster.local");
        // Either the default or whatever ETCD_SERVER says in this environment.
        assert!(!c.etcd_server.is_empty());
    }

    #[test]
    fn flags_parse() {
        let c = parse(&[
            "--domain=kube.local.",
            "--etcd-server=http://a:2379,http://b:2379",
            "--kube-master-url=http://127.0.0.1:8080",
            "--ttl=5",
            "--pod-records=false",
            "--legacy-endpoints",
            "--leader-elect",
            "--leader-elect-ttl=3s",
            "--write-interval=50ms",
        ])
        .unwrap();
        assert_eq!(c.etcd_server, vec!["http://a:2379", "http://b:2379"]);
        assert!(!c.pod_records);
        assert!(c.legacy_endpoints);
        assert!(c.leader_elect);
        assert_eq!(c.election.ttl, Duration::from_secs(3));
        assert_eq!(c.write_interval, Duration::from_millis(50));
        assert_eq!(c.ttl, 5);
    }

    #[test]
    fn bad_flags_are_rejected_with_the_flag_named() {
        for (args, flag) in [
            (&["--domain=bad domain"][..], "--domain"),
            (&["--domain="][..], "--domain"),
            (&["--etcd-server=localhost:2379"][..], "--etcd-server"),
            (&["--kube-master-url=ftp://x"][..], "--kube-master-url"),
            (&["--ttl=0"][..], "--ttl"),
            (&["--etcd-prefix=/"][..], "--etcd-prefix"),
            (&["--leader-elect-ttl=1s"][..], "--leader-elect-ttl"),
            (
                &["--kubecfg-file=/nonexistent/kubeconfig"][..],
                "--kubecfg-file",
            ),
            (
                &["--leader-elect-name=/skydns/x"][..],
                "--leader-elect-name",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        assert!(parse(&["--ttl=abc"]).is_err());
        assert!(parse(&["--write-interval=5 parsecs"]).is_err());
        assert!(parse(&["--no-such-flag"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            service_kit::duration::parse("10s"),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            service_kit::duration::parse("10"),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            service_kit::duration::parse("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            service_kit::duration::parse("2m"),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(
            service_kit::duration::parse("1.5s"),
            Ok(Duration::from_millis(1500))
        );
        assert!(service_kit::duration::parse("").is_err());
        assert!(service_kit::duration::parse("-1s").is_err());
        assert!(service_kit::duration::parse("1d").is_err());
    }
}
