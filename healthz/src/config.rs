//! Command-line configuration: clap flags with `HEALTHZ_*` environment fallbacks, the duration
//! and URL parsers they need, and `validate()` for the checks clap cannot express.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;
use hickory_proto::rr::Name;

/// Flags of the `healthz` program (successor of exechealthz).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "healthz",
    version,
    about = "Health endpoint for the kube-dns pod: probes skydns over DNS and kube2sky's /readiness"
)]
pub struct Config {
    /// TCP port serving /healthz, /healthz/{skydns,kube2sky} and /metrics.
    #[arg(long, env = "HEALTHZ_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to bind the HTTP port on (0.0.0.0 so the kubelet can reach it via the pod IP).
    #[arg(long, env = "HEALTHZ_ADDRESS", default_value = "0.0.0.0")]
    pub address: IpAddr,

    /// DNS server (skydns) to probe, `host:port`; a host name is resolved on every probe.
    #[arg(long, env = "HEALTHZ_DNS_ADDR", default_value = "127.0.0.1:53")]
    pub dns_addr: String,

    /// Cluster domain, used for the default probe name.
    #[arg(long, env = "HEALTHZ_DOMAIN", default_value = "cluster.local")]
    pub domain: String,

    /// Name resolved (type A) by the DNS probe [default: kubernetes.default.svc.<domain>].
    #[arg(long, env = "HEALTHZ_PROBE_NAME")]
    pub probe_name: Option<String>,

    /// kube2sky readiness URL (plain http://), probed with GET, 200 expected.
    #[arg(
        long,
        env = "HEALTHZ_KUBE2SKY_URL",
        default_value = "http://127.0.0.1:8081/readiness"
    )]
    pub kube2sky_url: String,

    /// How often each probe runs (e.g. `2s`, `500ms`).
    #[arg(long, env = "HEALTHZ_PERIOD", default_value = "2s", value_parser = runtime::duration::parse)]
    pub period: Duration,

    /// A probe not finished after this long is a failure.
    #[arg(long, env = "HEALTHZ_TIMEOUT", default_value = "1s", value_parser = runtime::duration::parse)]
    pub timeout: Duration,

    /// A successful result older than this no longer counts (the probe loop is stuck).
    #[arg(long, env = "HEALTHZ_MAX_AGE", default_value = "30s", value_parser = runtime::duration::parse)]
    pub max_age: Duration,

    /// Do not probe skydns.
    #[arg(long, env = "HEALTHZ_NO_SKYDNS")]
    pub no_skydns: bool,

    /// Do not probe kube2sky.
    #[arg(long, env = "HEALTHZ_NO_KUBE2SKY")]
    pub no_kube2sky: bool,
}

/// A flag combination `validate()` rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl Config {
    /// Checks clap cannot do: positive durations that fit together, a parseable probe name,
    /// DNS address and kube2sky URL, and at least one enabled probe.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.no_skydns && self.no_kube2sky {
            return Err(bad(
                "--no-skydns and --no-kube2sky together leave nothing to probe",
            ));
        }
        if self.period.is_zero() {
            return Err(bad("--period must be greater than zero"));
        }
        if self.timeout.is_zero() {
            return Err(bad("--timeout must be greater than zero"));
        }
        if self.max_age <= self.period {
            return Err(bad(format!(
                "--max-age ({:?}) must be longer than --period ({:?}), or every result would be stale",
                self.max_age, self.period
            )));
        }
        if !self.no_skydns {
            split_host_port(&self.dns_addr)
                .map_err(|e| bad(format!("--dns-addr {:?}: {e}", self.dns_addr)))?;
            let name = self.probe_name();
            Name::from_ascii(&name)
                .map_err(|e| bad(format!("probe name {name:?} is not a DNS name: {e}")))?;
        }
        if !self.no_kube2sky {
            HttpTarget::parse(&self.kube2sky_url)
                .map_err(|e| bad(format!("--kube2sky-url {:?}: {e}", self.kube2sky_url)))?;
        }
        Ok(())
    }

    /// The name the DNS probe resolves, fully qualified (trailing dot).
    pub fn probe_name(&self) -> String {
        let name = match &self.probe_name {
            Some(n) => n.trim().to_string(),
            None => format!(
                "kubernetes.default.svc.{}",
                self.domain.trim().trim_matches('.')
            ),
        };
        if name.ends_with('.') {
            name
        } else {
            format!("{name}.")
        }
    }

    /// Names of the enabled probes, in a stable order.
    pub fn enabled_probes(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if !self.no_skydns {
            v.push(crate::probe::SKYDNS);
        }
        if !self.no_kube2sky {
            v.push(crate::probe::KUBE2SKY);
        }
        v
    }
}

/// Split `host:port` (IPv6 as `[::1]:53`); the port is required.
pub fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in address".to_string())?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| "missing :port".to_string())?;
        (host, port)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| "missing :port (expected host:port)".to_string())?
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    if host.contains(':') && !s.starts_with('[') {
        return Err("IPv6 addresses must be written as [addr]:port".into());
    }
    let port: u16 = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
    Ok((host.to_string(), port))
}

/// A parsed `http://host[:port][/path]` URL (no TLS, no credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpTarget {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| "only plain http:// URLs are supported".to_string())?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".into());
        }
        if authority.is_empty() {
            return Err("missing host".into());
        }
        let has_port = if authority.starts_with('[') {
            authority.contains("]:")
        } else {
            authority.contains(':')
        };
        let (host, port) = if has_port {
            split_host_port(authority)?
        } else {
            (
                authority
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                80,
            )
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the path must not contain spaces or control characters".into());
        }
        Ok(Self { host, port, path })
    }

    /// The `Host:` header value.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("healthz").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.dns_addr, "127.0.0.1:53");
        assert_eq!(c.domain, "cluster.local");
        assert_eq!(c.kube2sky_url, "http://127.0.0.1:8081/readiness");
        assert_eq!(c.period, Duration::from_secs(2));
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.max_age, Duration::from_secs(30));
        assert_eq!(c.probe_name(), "kubernetes.default.svc.cluster.local.");
        assert_eq!(c.enabled_probes(), vec!["skydns", "kube2sky"]);
        c.validate().unwrap();
    }

    #[test]
    fn every_flag_has_a_healthz_env_fallback() {
        for arg in Config::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let env = arg.get_env().unwrap_or_else(|| panic!("--{id} has no env"));
            assert!(
                env.to_string_lossy().starts_with("HEALTHZ_"),
                "--{id} env {env:?}"
            );
        }
    }

    #[test]
    fn probe_name_follows_domain_with_or_without_dot() {
        let c = parse(&["--domain", "example.org."]).unwrap();
        assert_eq!(c.probe_name(), "kubernetes.default.svc.example.org.");
        let c = parse(&["--probe-name", "foo.bar"]).unwrap();
        assert_eq!(c.probe_name(), "foo.bar.");
    }

    #[test]
    fn durations() {
        assert_eq!(
            runtime::duration::parse("2s").unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(
            runtime::duration::parse("100ms").unwrap(),
            Duration::from_millis(100)
        );
        assert_eq!(
            runtime::duration::parse("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            runtime::duration::parse("1m").unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            runtime::duration::parse("3").unwrap(),
            Duration::from_secs(3)
        );
        assert!(runtime::duration::parse("fast").is_err());
        assert!(runtime::duration::parse("3 days").is_err());
        assert!(runtime::duration::parse("-1s").is_err());
    }

    #[test]
    fn validate_rejects_bad_combinations() {
        let cases: &[(&[&str], &str)] = &[
            (&["--no-skydns", "--no-kube2sky"], "nothing to probe"),
            (&["--period", "0s"], "--period"),
            (&["--timeout", "0ms"], "--timeout"),
            (&["--period", "30s", "--max-age", "30s"], "--max-age"),
            (&["--dns-addr", "127.0.0.1"], "--dns-addr"),
            (&["--dns-addr", "::1:53"], "--dns-addr"),
            (&["--kube2sky-url", "https://x/readiness"], "--kube2sky-url"),
            (&["--kube2sky-url", "http://:80/"], "--kube2sky-url"),
            (&["--probe-name", "a..b"], "probe name"),
        ];
        for (args, want) in cases {
            let err = parse(args).unwrap().validate().unwrap_err();
            assert!(err.0.contains(want), "{args:?}: {err}");
        }
        // Disabled probes are not validated.
        parse(&["--no-skydns", "--dns-addr", "nope"])
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn clap_rejects_unknown_flags_and_bad_values() {
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--port", "70000"]).is_err());
        assert!(parse(&["--period", "soon"]).is_err());
    }

    #[test]
    fn http_targets() {
        let t = HttpTarget::parse("http://127.0.0.1:8081/readiness").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8081, "/readiness")
        );
        assert_eq!(t.host_header(), "127.0.0.1:8081");
        let t = HttpTarget::parse("http://kube2sky").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        assert_eq!(t.host_header(), "kube2sky");
        let t = HttpTarget::parse("http://[::1]:8081/r?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8081));
        assert_eq!(t.host_header(), "[::1]:8081");
        assert_eq!(t.path, "/r?x=1");
        assert!(HttpTarget::parse("http://u:p@host/").is_err());
        assert!(HttpTarget::parse("ftp://host/").is_err());
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            split_host_port("skydns:53").unwrap(),
            ("skydns".to_string(), 53)
        );
        assert_eq!(
            split_host_port("[::1]:1053").unwrap(),
            ("::1".to_string(), 1053)
        );
        assert!(split_host_port(":53").is_err());
        assert!(split_host_port("host:x").is_err());
    }
}
