//! Repeated records (same owner, type and data) removed, keeping the first: a quadratic scan
//! for the usual handful of records (no allocation), a hash set beyond 16.

use std::collections::HashSet;

use hickory_proto::rr::Record;

/// Remove repeated records (same owner, type and data), keeping the first.
pub(super) fn dedup(records: &mut Vec<Record>) {
    if records.len() < 2 {
        return;
    }
    let keep: Vec<bool> = if records.len() <= 16 {
        (0..records.len())
            .map(|i| !(0..i).any(|j| same(&records[i], &records[j])))
            .collect()
    } else {
        let mut seen = HashSet::with_capacity(records.len());
        records
            .iter()
            .map(|r| seen.insert((r.name.to_lowercase(), &r.data)))
            .collect()
    };
    let mut it = keep.into_iter();
    records.retain(|_| it.next().unwrap_or(true));
}

fn same(a: &Record, b: &Record) -> bool {
    a.data == b.data && a.name.eq_ignore_root_case(&b.name)
}
