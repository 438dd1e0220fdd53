//! Per-zone upstreams as operators give them: the kube-dns ConfigMap format read from a
//! directory (`--config-dir`, where a mounted ConfigMap puts one file per key:
//! `stubDomains` = JSON object zone → [`ip` | `ip:port`], `upstreamNameservers` = JSON list),
//! and the `--stub-domain ZONE=ADDR[,ADDR…]` flag. Parsing only; the reload loop is in
//! [`super::watch_config_dir`].

use std::net::SocketAddr;
use std::path::Path;

use hickory_proto::rr::Name;

/// File names inside the config directory (the ConfigMap's keys).
pub const STUB_DOMAINS_FILE: &str = "stubDomains";
/// The upstream list's file (a JSON list of addresses).
pub const UPSTREAM_NAMESERVERS_FILE: &str = "upstreamNameservers";
/// Most addresses one zone (or the upstream list) may name.
const MAX_ADDRESSES: usize = 16;
/// Most stub domains.
const MAX_ZONES: usize = 1000;
/// Largest config file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// What the config directory says (absent files: nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// Zones and their upstreams, from `stubDomains`.
    pub stub_domains: Vec<(Name, Vec<SocketAddr>)>,
    /// Replaces `--nameservers` when present.
    pub upstream_nameservers: Option<Vec<SocketAddr>>,
}

/// A config file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct FileError {
    /// The file's path.
    pub file: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Read the config directory. Files are read through symlinks (a ConfigMap volume's `..data`
/// swap replaces them atomically).
pub fn read_dir(dir: &Path) -> Result<FileConfig, FileError> {
    let read = |name: &str| -> Result<Option<String>, FileError> {
        let path = dir.join(name);
        let err = |problem: String| FileError {
            file: path.display().to_string(),
            problem,
        };
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                return Err(err(format!("larger than {MAX_FILE_BYTES} bytes")))
            }
            Ok(_) => {}
        }
        std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| err(e.to_string()))
    };
    let at = |name: &str, problem: String| FileError {
        file: dir.join(name).display().to_string(),
        problem,
    };
    let mut config = FileConfig::default();
    if let Some(text) = read(STUB_DOMAINS_FILE)? {
        config.stub_domains = parse_stub_domains(&text).map_err(|p| at(STUB_DOMAINS_FILE, p))?;
    }
    if let Some(text) = read(UPSTREAM_NAMESERVERS_FILE)? {
        config.upstream_nameservers =
            Some(parse_upstream_nameservers(&text).map_err(|p| at(UPSTREAM_NAMESERVERS_FILE, p))?);
    }
    Ok(config)
}

/// `{"acme.local": ["1.2.3.4", "1.2.3.5:5353"], …}`; an empty file means none.
pub fn parse_stub_domains(text: &str) -> Result<Vec<(Name, Vec<SocketAddr>)>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| format!("not a JSON object of zone → addresses: {e}"))?;
    if map.len() > MAX_ZONES {
        return Err(format!("more than {MAX_ZONES} zones"));
    }
    let mut out = Vec::with_capacity(map.len());
    for (zone, addrs) in map {
        let name = parse_zone(&zone)?;
        let list = addresses(&addrs).map_err(|p| format!("zone {zone:?}: {p}"))?;
        out.push((name, list));
    }
    Ok(out)
}

/// `["8.8.8.8", "1.1.1.1:53"]`; an empty file means none.
pub fn parse_upstream_nameservers(text: &str) -> Result<Vec<SocketAddr>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON list of addresses: {e}"))?;
    addresses(&value)
}

/// `ZONE=ADDR[,ADDR…]` (the `--stub-domain` flag).
pub fn parse_stub_flag(value: &str) -> Result<(Name, Vec<SocketAddr>), String> {
    let (zone, list) = value
        .split_once('=')
        .ok_or_else(|| "expected ZONE=ADDR[,ADDR…]".to_string())?;
    let name = parse_zone(zone.trim())?;
    let addrs: Vec<SocketAddr> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_address(s).ok_or_else(|| format!("{s:?} is not ip or ip:port")))
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() || addrs.len() > MAX_ADDRESSES {
        return Err(format!("give 1 to {MAX_ADDRESSES} addresses"));
    }
    Ok((name, addrs))
}

fn addresses(value: &serde_json::Value) -> Result<Vec<SocketAddr>, String> {
    let list = value
        .as_array()
        .ok_or_else(|| "expected a list of addresses".to_string())?;
    if list.is_empty() || list.len() > MAX_ADDRESSES {
        return Err(format!("give 1 to {MAX_ADDRESSES} addresses"));
    }
    list.iter()
        .map(|v| {
            let s = v.as_str().ok_or_else(|| format!("{v} is not a string"))?;
            parse_address(s).ok_or_else(|| format!("{s:?} is not ip or ip:port"))
        })
        .collect()
}

/// `ip`, `ip:port`, `[v6]:port` (port 53 by default).
pub fn parse_address(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    s.trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// A zone name: labels of letters, digits, `-` and `_`, 1–63 characters, 253 in all.
fn parse_zone(zone: &str) -> Result<Name, String> {
    let bare = zone.trim_end_matches('.');
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        return Err(format!("{zone:?} is not a domain name"));
    }
    Name::from_ascii(format!("{}.", bare.to_ascii_lowercase()))
        .map_err(|e| format!("{zone:?} is not a domain name: {e}"))
}

/// Refuse what must never be forwarded: a stub zone at or inside the cluster zone, or an
/// address that is our own listen address.
pub fn check(
    stubs: &[(Name, Vec<SocketAddr>)],
    upstreams: &[SocketAddr],
    cluster: &Name,
    own: SocketAddr,
) -> Result<(), String> {
    for (zone, _) in stubs {
        if cluster.zone_of(zone) {
            return Err(format!(
                "zone {zone} is inside the cluster zone {cluster}, which is never forwarded"
            ));
        }
    }
    let all = stubs.iter().flat_map(|(_, a)| a.iter()).chain(upstreams);
    for addr in all {
        if is_own(*addr, own) {
            return Err(format!(
                "{addr} is our own listen address (a forwarding loop)"
            ));
        }
    }
    Ok(())
}

/// Whether `addr` reaches the server listening on `own`.
pub fn is_own(addr: SocketAddr, own: SocketAddr) -> bool {
    addr == own
        || (addr.port() == own.port()
            && own.ip().is_unspecified()
            && (addr.ip().is_loopback() || addr.ip().is_unspecified()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_dns_configmap_format() {
        let s = parse_stub_domains(
            r#"{"acme.local": ["1.2.3.4"], "Dev.Acme.Local.": ["1.2.3.5:5353", "[fd00::1]:53"]}"#,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert!(s
            .iter()
            .any(|(z, a)| z.to_ascii() == "dev.acme.local." && a.len() == 2));
        assert_eq!(
            parse_upstream_nameservers(r#"["8.8.8.8", "1.1.1.1:5353"]"#).unwrap(),
            vec![
                "8.8.8.8:53".parse().unwrap(),
                "1.1.1.1:5353".parse().unwrap()
            ]
        );
        assert!(parse_stub_domains("").unwrap().is_empty());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, want) in [
            ("{", "not a JSON object"),
            (r#"["1.2.3.4"]"#, "not a JSON object"),
            (r#"{"a..b": ["1.2.3.4"]}"#, "not a domain name"),
            (r#"{"acme": ["nope"]}"#, "not ip or ip:port"),
            (r#"{"acme": []}"#, "1 to 16"),
            (r#"{"acme": [5]}"#, "not a string"),
        ] {
            let e = parse_stub_domains(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(parse_upstream_nameservers("{}")
            .unwrap_err()
            .contains("list"));
        assert!(parse_stub_flag("acme.local")
            .unwrap_err()
            .contains("ZONE=ADDR"));
        assert_eq!(
            parse_stub_flag("acme.local=10.0.0.1,10.0.0.2:5353")
                .unwrap()
                .1
                .len(),
            2
        );
    }

    #[test]
    fn never_the_cluster_zone_or_ourselves() {
        let cluster = Name::from_ascii("cluster.local.").unwrap();
        let own: SocketAddr = "0.0.0.0:53".parse().unwrap();
        let stub = |z: &str| {
            vec![(
                Name::from_ascii(z).unwrap(),
                vec!["10.0.0.1:53".parse().unwrap()],
            )]
        };
        assert!(check(&stub("svc.cluster.local."), &[], &cluster, own).is_err());
        assert!(check(&stub("cluster.local."), &[], &cluster, own).is_err());
        assert!(check(&stub("acme.local."), &[], &cluster, own).is_ok());
        assert!(check(&[], &["127.0.0.1:53".parse().unwrap()], &cluster, own).is_err());
        assert!(check(&[], &["127.0.0.1:5353".parse().unwrap()], &cluster, own).is_ok());
    }
}
