//! Name ↔ key: lower-case the name, reverse its labels, join them with `/` under the prefix.
//!
//! `mysql-service.default.svc.kube.local.` ↔ `/skydns/local/kube/svc/default/mysql-service`.
//! A *path* is the part of a key after the prefix (`local/kube/svc/default/mysql-service`).

/// The etcd key prefix, held normalised without slashes (`skydns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

/// Why a configured prefix cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a key prefix like /skydns (non-empty segments of printable ASCII, no spaces)"
)]
pub struct PrefixError(pub String);

impl Prefix {
    /// The one validator both programs use for `--path-prefix`/`--etcd-prefix`: one or more
    /// non-empty `/`-separated segments of printable ASCII without spaces (`/skydns`,
    /// `skydns/`, `/dns/prod`); leading and trailing slashes are ignored.
    pub fn parse(prefix: &str) -> Result<Self, PrefixError> {
        let bare = prefix.trim_matches('/');
        let ok = !bare.is_empty()
            && bare
                .split('/')
                .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_graphic()));
        if ok {
            Ok(Prefix(bare.to_string()))
        } else {
            Err(PrefixError(prefix.to_string()))
        }
    }

    /// Normalise `skydns`, `/skydns`, `/skydns/` alike (unchecked: see [`Prefix::parse`]).
    pub fn new(prefix: &str) -> Self {
        Prefix(prefix.trim_matches('/').to_string())
    }

    /// The prefix as configured (`skydns`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key range all records live under (`/skydns/`).
    pub fn root(&self) -> String {
        format!("/{}/", self.0)
    }

    /// The full key of a path (`local/kube` → `/skydns/local/kube`).
    pub fn key_of_path(&self, path: &str) -> String {
        format!("/{}/{}", self.0, path)
    }

    /// The path a reader indexes a full key under: [`Prefix::path_of_key`] lower-cased (keys
    /// are lower-case by contract; anything else is normalised so lookups find it) and without
    /// a trailing `/`.
    pub fn lookup_path_of_key(&self, key: &str) -> Option<String> {
        let path = self.path_of_key(key)?;
        Some(path.to_ascii_lowercase().trim_end_matches('/').to_string())
    }

    /// The path of a full key, if the key lies under this prefix.
    pub fn path_of_key<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix('/')?
            .strip_prefix(self.0.as_str())?
            .strip_prefix('/')
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix::new("skydns")
    }
}

/// The first key after every key that starts with `prefix` (the exclusive end of an etcd range
/// read or watch of the prefix): the last byte below 0x7f incremented, anything after it
/// dropped. Keys are ASCII (see [`Prefix`]); `/skydns/` → `/skydns0`.
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            break;
        }
    }
    String::from_utf8(bytes).unwrap_or_default()
}

/// The path of a DNS name: lower-cased labels, reversed, joined with `/`. The root is `""`.
pub fn name_to_path(name: &str) -> String {
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(name.len());
    for (i, label) in name.rsplit('.').enumerate() {
        if i > 0 {
            out.push('/');
        }
        for c in label.chars() {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The path of a name given as its labels in wire order, leftmost first (what a DNS library's
/// label iterator yields): lower-cased, reversed, joined with `/`. `None` when a label is
/// empty, holds `/` or a non-ASCII byte (no key can name it). `hint` is the capacity to
/// reserve (the name's length). This is the query path's mapping: one pass, one allocation.
pub fn labels_to_path<'a, I>(labels: I, hint: usize) -> Option<String>
where
    I: DoubleEndedIterator<Item = &'a [u8]>,
{
    let mut out = Vec::with_capacity(hint);
    for (i, label) in labels.rev().enumerate() {
        if label.is_empty() {
            return None;
        }
        if i > 0 {
            out.push(b'/');
        }
        for &b in label {
            if b == b'/' || !b.is_ascii() {
                return None;
            }
            out.push(b.to_ascii_lowercase());
        }
    }
    String::from_utf8(out).ok()
}

/// The fully qualified DNS name of a path (`local/kube/svc` → `svc.kube.local.`).
pub fn path_to_name(path: &str) -> String {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return ".".to_string();
    }
    let mut out = String::with_capacity(path.len() + 1);
    for label in path.rsplit('/') {
        out.push_str(label);
        out.push('.');
    }
    out
}

/// The etcd key of a DNS name under `prefix`.
pub fn name_to_key(prefix: &Prefix, name: &str) -> String {
    prefix.key_of_path(&name_to_path(name))
}

/// The DNS name of an etcd key under `prefix`, if it lies under it.
pub fn key_to_name(prefix: &Prefix, key: &str) -> Option<String> {
    prefix.path_of_key(key).map(path_to_name)
}

#[cfg(test)]
mod tests {

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("/skydns/"), "/skydns0");
        assert_eq!(
            prefix_end("/skydns/local/cluster/svc/"),
            "/skydns/local/cluster/svc0"
        );
        assert!(*"/skydns/zz" < *prefix_end("/skydns/"));
        assert_eq!(prefix_end("a\u{7f}"), "b");
    }

    use super::*;
    use proptest::prelude::*;

    fn via_labels(name: &str) -> Option<String> {
        let labels: Vec<&[u8]> = name
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !name.trim_end_matches('.').is_empty() || !l.is_empty())
            .map(str::as_bytes)
            .collect();
        labels_to_path(labels.into_iter(), name.len())
    }

    #[test]
    fn prefixes() {
        assert_eq!(Prefix::parse("/skydns/").unwrap(), Prefix::default());
        assert_eq!(Prefix::parse("/dns/prod").unwrap().root(), "/dns/prod/");
        for bad in ["", "/", "//", "/a//b", "/sky dns", "/a\tb", "/é"] {
            assert!(Prefix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_map_like_names() {
        assert_eq!(
            via_labels("MySQL.Default.svc.kube.local.").as_deref(),
            Some("local/kube/svc/default/mysql")
        );
        assert_eq!(via_labels(".").as_deref(), Some(""));
        assert_eq!(labels_to_path([&b"a/b"[..]].into_iter(), 3), None);
        assert_eq!(
            labels_to_path([&b"\xff"[..], &b"x"[..]].into_iter(), 3),
            None
        );
        assert_eq!(labels_to_path([&b""[..], &b"x"[..]].into_iter(), 3), None);
    }

    #[test]
    fn examples_from_the_contract() {
        let p = Prefix::new("/skydns/");
        assert_eq!(
            name_to_key(&p, "mysql-service.default.svc.kube.local."),
            "/skydns/local/kube/svc/default/mysql-service"
        );
        assert_eq!(
            name_to_key(&p, "1.0.0.10.in-addr.arpa."),
            "/skydns/arpa/in-addr/10/0/0/1"
        );
        assert_eq!(
            name_to_key(&p, "MySQL-Service.Default.svc.KUBE.local"),
            "/skydns/local/kube/svc/default/mysql-service"
        );
        assert_eq!(
            key_to_name(&p, "/skydns/local/kube/svc/default/mysql-service").as_deref(),
            Some("mysql-service.default.svc.kube.local.")
        );
        assert_eq!(key_to_name(&p, "/other/local/kube"), None);
        assert_eq!(
            p.lookup_path_of_key("/skydns/Local/Kube/").as_deref(),
            Some("local/kube")
        );
        assert_eq!(key_to_name(&p, "/skydnsx/local"), None);
        assert_eq!(name_to_path("."), "");
        assert_eq!(path_to_name(""), ".");
    }

    proptest! {
        #[test]
        fn round_trip(labels in proptest::collection::vec("[a-z0-9_*-]{1,20}", 1..8)) {
            let p = Prefix::default();
            let name = format!("{}.", labels.join("."));
            let key = name_to_key(&p, &name);
            prop_assert!(key.starts_with("/skydns/"));
            prop_assert_eq!(key_to_name(&p, &key), Some(name.clone()));
            prop_assert_eq!(name_to_path(&path_to_name(&name_to_path(&name))), name_to_path(&name));
            prop_assert_eq!(via_labels(&name), Some(name_to_path(&name)));
        }

        #[test]
        fn a_label_never_escapes_its_segment(
            labels in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..6),
        ) {
            // One path segment per label, lower-cased, in reverse: no label can add a segment
            // (a `/`) and so reach a key the name does not map to.
            let slices: Vec<&[u8]> = labels.iter().map(Vec::as_slice).collect();
            match labels_to_path(slices.iter().copied(), 64) {
                Some(path) if !labels.is_empty() => {
                    let segments: Vec<&str> = path.split('/').collect();
                    prop_assert_eq!(segments.len(), labels.len());
                    for (seg, label) in segments.iter().rev().zip(&labels) {
                        let lower = label.to_ascii_lowercase();
                        prop_assert_eq!(seg.as_bytes(), lower.as_slice());
                    }
                }
                Some(path) => prop_assert_eq!(path, ""),
                None => prop_assert!(labels
                    .iter()
                    .any(|l| l.contains(&b'/') || !l.is_ascii() || l.is_empty())),
            }
        }

        #[test]
        fn case_insensitive(labels in proptest::collection::vec("[a-zA-Z0-9-]{1,20}", 1..8)) {
            let name = labels.join(".");
            prop_assert_eq!(name_to_path(&name), name_to_path(&name.to_ascii_lowercase()));
            prop_assert_eq!(name_to_path(&name), name_to_path(&format!("{name}.")));
        }
    }
}
