//! Command-line configuration: clap flags with `HEALTHZ_*` environment fallbacks (durations in
//! `service_kit::duration`'s syntax), and `validate()`, which checks what clap cannot and builds the
//! [`Settings`] `run` takes: the probes, parsed once.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::probe::{DnsProbe, HttpProbe, SetupError, KUBE2SKY, SKYDNS};
use clap::Parser;

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
    #[arg(long, env = "HEALTHZ_PERIOD", default_value = "2s", value_parser = service_kit::duration::parse)]
    pub period: Duration,

    /// A probe not finished after this long is a failure.
    #[arg(long, env = "HEALTHZ_TIMEOUT", default_value = "1s", value_parser = service_kit::duration::parse)]
    pub timeout: Duration,

    /// A successful result older than this no longer counts (the probe loop is stuck).
    #[arg(long, env = "HEALTHZ_MAX_AGE", default_value = "30s", value_parser = service_kit::duration::parse)]
    pub max_age: Duration,

    /// Do not probe skydns.
    #[arg(long, env = "HEALTHZ_NO_SKYDNS")]
    pub no_skydns: bool,

    /// Do not probe kube2sky.
    #[arg(long, env = "HEALTHZ_NO_KUBE2SKY")]
    pub no_kube2sky: bool,
}

/// A flag combination `validate()` rejects (the message names the flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Validated settings: what [`crate::run`] needs, each flag checked once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the HTTP port binds (`--address`, `--port`).
    pub listen: SocketAddr,
    /// The DNS probe of skydns, unless `--no-skydns`.
    pub skydns: Option<DnsProbe>,
    /// The readiness probe of kube2sky, unless `--no-kube2sky`.
    pub kube2sky: Option<HttpProbe>,
    /// How often each probe runs (`--period`, above zero).
    pub period: Duration,
    /// A run not finished within this is a failure (`--timeout`, above zero).
    pub timeout: Duration,
    /// A success older than this no longer counts (`--max-age`, longer than `period`).
    pub max_age: Duration,
}

impl Settings {
    /// Names of the enabled probes, in a stable order.
    pub fn enabled_probes(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.skydns.is_some() {
            v.push(SKYDNS);
        }
        if self.kube2sky.is_some() {
            v.push(KUBE2SKY);
        }
        v
    }
}

impl Config {
    /// Checks clap cannot do: positive durations that fit together, a parseable probe name,
    /// DNS address and kube2sky URL, and at least one enabled probe.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
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
        let skydns = if self.no_skydns {
            None
        } else {
            let name = self.probe_name();
            Some(DnsProbe::new(&self.dns_addr, &name).map_err(|e| match e {
                SetupError::Name { source, .. } => {
                    bad(format!("probe name {name:?} is not a DNS name: {source}"))
                }
                e => bad(format!("--dns-addr {:?}: {e}", self.dns_addr)),
            })?)
        };
        let kube2sky = if self.no_kube2sky {
            None
        } else {
            Some(
                HttpProbe::new(KUBE2SKY, &self.kube2sky_url)
                    .map_err(|e| bad(format!("--kube2sky-url {:?}: {e}", self.kube2sky_url)))?,
            )
        };
        Ok(Settings {
            listen: SocketAddr::new(self.address, self.port),
            skydns,
            kube2sky,
            period: self.period,
            timeout: self.timeout,
            max_age: self.max_age,
        })
    }

    /// The name the DNS probe resolves, fully qualified (trailing dot).
    pub fn probe_name(&self) -> String {
        let name = match &self.probe_name {
            Some(n) => n.trim().to_string(),
            None => msg::Zone::new(msg::Prefix::default(), self.domain.trim())
                .service_fqdn("default", "kubernetes"),
        };
        if name.ends_with('.') {
            name
        } else {
            format!("{name}.")
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
        assert_eq!(
            c.validate().unwrap().enabled_probes(),
            vec!["skydns", "kube2sky"]
        );
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
            service_kit::duration::parse("2s").unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(
            service_kit::duration::parse("100ms").unwrap(),
            Duration::from_millis(100)
        );
        assert_eq!(
            service_kit::duration::parse("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            service_kit::duration::parse("1m").unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            service_kit::duration::parse("3").unwrap(),
            Duration::from_secs(3)
        );
        assert!(service_kit::duration::parse("fast").is_err());
        assert!(service_kit::duration::parse("3 days").is_err());
        assert!(service_kit::duration::parse("-1s").is_err());
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
}
