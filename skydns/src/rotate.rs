//! Answer rotation (`--round-robin`, SkyDNS `-round-robin`, CoreDNS `loadbalance`): multi-record
//! A/AAAA answers come out in a different order from one reply to the next, so clients that
//! take the first address spread over a headless service's endpoints.
//!
//! Done on the encoded reply, so the reply cache keeps serving (and hitting) the same entry: the
//! answer section is walked, and a run of consecutive A (or AAAA) records with the same owner
//! bytes and the same length is rotated as whole byte ranges. Every slot of such a run holds the
//! same owner bytes at the same offsets, so any compression pointer into the run still lands on
//! the same name; only TTLs and addresses move (neither is ever a pointer target). Anything
//! else (mixed types, differing owners, a packet this walker cannot follow) is left as it is.

/// Rotate the A/AAAA run of `reply`'s answer section left by `by` (mod its length). Returns
/// whether anything moved.
pub fn rotate(reply: &mut [u8], by: usize) -> bool {
    let Some((start, len, n)) = find_run(reply) else {
        return false;
    };
    let k = by % n;
    if k == 0 {
        return false;
    }
    reply[start..start + len * n].rotate_left(k * len);
    true
}

/// Answer records in `reply` (0 when it is too short to say).
pub fn answer_count(reply: &[u8]) -> u16 {
    if reply.len() < 12 {
        return 0;
    }
    u16::from_be_bytes([reply[6], reply[7]])
}

/// The longest run of at least two consecutive same-owner, same-size A or AAAA records in the
/// answer section: (offset of its first record, bytes per record, records).
fn find_run(p: &[u8]) -> Option<(usize, usize, usize)> {
    let qd = u16::from_be_bytes([*p.get(4)?, *p.get(5)?]);
    let an = answer_count(p);
    if an < 2 {
        return None;
    }
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(p, at)? + 4;
    }
    let mut best: Option<(usize, usize, usize)> = None;
    // The run being grown: (start, record length, owner length, rtype, count).
    let mut cur: Option<(usize, usize, usize, u16, usize)> = None;
    for _ in 0..an {
        let owner_end = skip_name(p, at)?;
        let fixed = p.get(owner_end..owner_end + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let end = owner_end + 10 + rdlen;
        if end > p.len() {
            return None;
        }
        let address = (rtype == 1 && rdlen == 4) || (rtype == 28 && rdlen == 16);
        let (owner_len, rec_len) = (owner_end - at, end - at);
        cur = match cur {
            Some((start, len, olen, ty, count))
                if address
                    && ty == rtype
                    && len == rec_len
                    && olen == owner_len
                    && p[start..start + olen] == p[at..owner_end] =>
            {
                Some((start, len, olen, ty, count + 1))
            }
            _ if address => Some((at, rec_len, owner_len, rtype, 1)),
            _ => None,
        };
        if let Some((start, len, _, _, count)) = cur {
            if count >= 2 && best.is_none_or(|b| count > b.2) {
                best = Some((start, len, count));
            }
        }
        at = end;
    }
    best
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(p: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *p.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += 1 + len as usize,
            0xc0 => {
                p.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};

    fn reply(extra_cname: bool, n: u8) -> Message {
        let name = Name::from_ascii("web.default.svc.kube.local.").unwrap();
        let target = Name::from_ascii("t.default.svc.kube.local.").unwrap();
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name.clone(), RecordType::A));
        let owner = if extra_cname {
            m.answers.push(Record::from_rdata(
                name.clone(),
                30,
                RData::CNAME(rdata::CNAME(target.clone())),
            ));
            target
        } else {
            name
        };
        for i in 0..n {
            m.answers.push(Record::from_rdata(
                owner.clone(),
                30,
                RData::A(rdata::A::new(10, 0, 0, i)),
            ));
        }
        m
    }

    fn order(bytes: &[u8]) -> Vec<String> {
        Message::from_vec(bytes)
            .unwrap()
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect()
    }

    #[test]
    fn rotates_address_runs_only() {
        for cname in [false, true] {
            for encoded in [
                crate::encoder::encode(&reply(cname, 5)).unwrap(),
                reply(cname, 5).to_vec().unwrap(),
            ] {
                let before = order(&encoded);
                let mut b = encoded.clone();
                assert!(rotate(&mut b, 2));
                let after = order(&b);
                let skip = usize::from(cname);
                assert_eq!(after[..skip], before[..skip]);
                let mut expect = before[skip..].to_vec();
                expect.rotate_left(2);
                assert_eq!(after[skip..], expect[..]);
                let mut b = encoded.clone();
                assert!(!rotate(&mut b, 5), "a full turn moves nothing");
                assert_eq!(b, encoded);
            }
        }
        let mut one = crate::encoder::encode(&reply(false, 1)).unwrap();
        assert!(!rotate(&mut one, 1));
        assert!(!rotate(&mut [0u8; 5], 1));
        let mut junk = crate::encoder::encode(&reply(false, 5)).unwrap();
        let cut = junk.len() - 3;
        assert!(!rotate(&mut junk[..cut], 1), "a cut packet is left alone");
    }
}
