//! What the index holds for a path: the records at the exact key, the SkyDNS directory union
//! below it (outside the Kubernetes trees; `_` labels only for SRV), `*`/`any` wildcards, and
//! SkyDNS `group` filtering of the result. Every scan is bounded by [`MAX_SCAN_KEYS`].

use std::sync::Arc;

use hickory_proto::rr::RecordType;
use msg::layout::{ranges_below_except, Tree, KUBE_ROOT_LABELS};

use super::{ZoneParams, MAX_SCAN_KEYS};
use crate::index::{Entry, Rec, Snapshot};

/// Collect at most [`MAX_SCAN_KEYS`] items of a scan, noting in `limited` when more were left.
pub(super) fn bounded<'a, I>(it: I, limited: &mut bool) -> Vec<(&'a Arc<str>, &'a Entry)>
where
    I: Iterator<Item = (&'a Arc<str>, &'a Entry)>,
{
    let mut out = Vec::new();
    for item in it {
        if out.len() == MAX_SCAN_KEYS {
            *limited = true;
            break;
        }
        out.push(item);
    }
    out
}

/// Every key below `base` except the keys `base/<label>` and everything below them, for each
/// of `excluded` (sorted). Walks only the ranges `msg` gives for that.
fn below_except<'a>(
    snap: &'a Snapshot,
    base: &str,
    excluded: &[&str],
) -> impl Iterator<Item = (&'a Arc<str>, &'a Entry)> + 'a {
    ranges_below_except(base, excluded)
        .into_iter()
        .flat_map(move |(lo, hi)| snap.range(&lo, hi.as_deref()))
}

/// How a name exists in the index.
pub(super) enum Found<'a> {
    /// Records (with the path each came from).
    Records(Vec<(&'a Arc<str>, &'a Rec)>),
    /// The name exists but holds nothing for any type (empty non-terminal).
    Empty,
    /// The name does not exist.
    Missing,
    /// Not in our zone or reverse trees.
    NotOurs,
}

fn is_wild(label: &str) -> bool {
    label == "*" || label == "any"
}
/// Find what the index holds for `path` (per records.md §4 steps 1–4). Scans are bounded by
/// [`MAX_SCAN_KEYS`] (`limited` set when one stops early).
pub(super) fn find<'a>(
    snap: &'a Snapshot,
    params: &ZoneParams,
    path: &str,
    tree: Tree,
    qtype: RecordType,
    limited: &mut bool,
) -> Found<'a> {
    match tree {
        Tree::Outside => Found::NotOurs,
        Tree::Apex | Tree::KubeRoot | Tree::Kube => {
            if let Some((k, entry)) = snap.get_key_value(path) {
                Found::Records(entry.iter().map(|r| (k, r)).collect())
            } else if tree != Tree::Kube || snap.has_below(path) {
                Found::Empty
            } else {
                Found::Missing
            }
        }
        Tree::Generic => {
            if path.split('/').any(is_wild) {
                return find_wildcard(snap, params, path, qtype, limited);
            }
            if let Some((k, entry)) = snap.get_key_value(path) {
                return Found::Records(group(entry.iter().map(|r| (k, r)).collect()));
            }
            if !snap.has_below(path) {
                return Found::Missing;
            }
            let mut records = Vec::new();
            for (k, entry) in bounded(snap.below(path), limited) {
                let rest = &k[path.len() + 1..];
                if qtype != RecordType::SRV && rest.split('/').any(|l| l.starts_with('_')) {
                    continue;
                }
                records.extend(entry.iter().map(|r| (k, r)));
            }
            if records.is_empty() {
                Found::Empty
            } else {
                Found::Records(group(records))
            }
        }
    }
}

/// Wildcard query (`*` or `any` labels match any single label): union of matching keys and
/// everything below them. Scans only below the longest wildcard-free leading path, and never
/// into the Kubernetes trees: a wildcard right below the apex matches neither `svc` nor `pod`.
fn find_wildcard<'a>(
    snap: &'a Snapshot,
    params: &ZoneParams,
    path: &str,
    qtype: RecordType,
    limited: &mut bool,
) -> Found<'a> {
    let pattern: Vec<&str> = path.split('/').collect();
    let fixed = pattern.iter().take_while(|l| !is_wild(l)).count();
    let base = pattern[..fixed].join("/");
    let candidates: Box<dyn Iterator<Item = (&'a Arc<str>, &'a Entry)> + 'a> =
        if base == params.zone.path() {
            Box::new(below_except(snap, &base, &KUBE_ROOT_LABELS))
        } else {
            Box::new(snap.below(&base))
        };
    let mut records = Vec::new();
    for (k, entry) in bounded(candidates, limited) {
        let labels: Vec<&str> = k.split('/').collect();
        if labels.len() < pattern.len() {
            continue;
        }
        let matches = pattern
            .iter()
            .zip(labels.iter())
            .all(|(p, l)| is_wild(p) || p == l);
        if !matches {
            continue;
        }
        // Below the fixed part, `_` labels are only reached by SRV queries or by naming them.
        let hidden = labels[fixed..]
            .iter()
            .enumerate()
            .any(|(i, l)| l.starts_with('_') && pattern.get(fixed + i) != Some(l));
        if qtype != RecordType::SRV && hidden {
            continue;
        }
        records.extend(entry.iter().map(|r| (k, r)));
    }
    if records.is_empty() {
        Found::Missing
    } else {
        Found::Records(group(records))
    }
}

/// SkyDNS `group`: the shortest keys of a result that carry a group name it; then only the
/// records of that group, and those with no group, are kept. When records at that shortest
/// depth disagree on the group, or a shorter key has none, everything is kept.
fn group<'a>(records: Vec<(&'a Arc<str>, &'a Rec)>) -> Vec<(&'a Arc<str>, &'a Rec)> {
    let Some(first) = records.first() else {
        return records;
    };
    let depth = |k: &str| k.bytes().filter(|&b| b == b'/').count();
    let mut chosen: &str = &first.1.group;
    let mut shortest = depth(first.0);
    for (k, r) in &records {
        let d = depth(k);
        if d < shortest {
            if r.group.is_empty() {
                break;
            }
            shortest = d;
            chosen = &r.group;
        }
    }
    if chosen.is_empty() {
        return records;
    }
    let disagree = records
        .iter()
        .any(|(k, r)| !r.group.is_empty() && depth(k) == shortest && *r.group != *chosen);
    if disagree {
        return records;
    }
    let chosen = chosen.to_string();
    records
        .into_iter()
        .filter(|(_, r)| r.group.is_empty() || *r.group == *chosen)
        .collect()
}
