//! A fast encoder for the replies skydns composes: header, questions, and records of the types
//! the answer path produces (A, AAAA, CNAME, NS, PTR, MX, SRV, TXT, SOA) plus an option-less
//! OPT. Names are compressed as hickory-proto compresses them (owner names and the names inside
//! CNAME, NS, PTR, MX and SOA data; SRV targets never, per RFC 2782), but matching suffixes
//! against the bytes already written instead of allocating a copy of every suffix. Anything
//! else (other types, EDNS options, signatures) returns `None` and the caller falls back to
//! hickory-proto's encoder, so forwarded answers keep every type.

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{Name, RData, Record};

/// Name positions remembered for compression (hickory-proto keeps 64 as well).
const MAX_TARGETS: usize = 64;
/// Compression pointers can only address the first 16 KiB.
const MAX_POINTER: usize = 0x3FFF;
/// A name has at most 127 labels.
const MAX_LABELS: usize = 128;
/// Names compressed per message, as in hickory-proto: bounds the work an adversarial message
/// (say, a forwarded answer with hundreds of deep names) can cause.
const MAX_COMPRESSED_NAMES: usize = 120;

/// Encode `msg`, or `None` when it holds something this encoder does not cover.
pub fn encode(msg: &Message) -> Option<Vec<u8>> {
    if msg.signature.is_some() {
        return None;
    }
    if let Some(edns) = &msg.edns {
        if !edns.options().options.is_empty() {
            return None;
        }
    }
    let mut w = Writer {
        buf: Vec::with_capacity(512),
        targets: [(0, 0); MAX_TARGETS],
        target_count: 0,
        compressed: 0,
    };
    let m = &msg.metadata;
    let additional_count = msg.additionals.len() + usize::from(msg.edns.is_some());
    w.u16(m.id);
    w.buf.push(
        if m.message_type == MessageType::Response {
            0x80
        } else {
            0
        } | (u8::from(m.op_code) & 0x0f) << 3
            | u8::from(m.authoritative) << 2
            | u8::from(m.truncation) << 1
            | u8::from(m.recursion_desired),
    );
    w.buf.push(
        u8::from(m.recursion_available) << 7
            | u8::from(m.authentic_data) << 5
            | u8::from(m.checking_disabled) << 4
            | m.response_code.low(),
    );
    for count in [
        msg.queries.len(),
        msg.answers.len(),
        msg.authorities.len(),
        additional_count,
    ] {
        w.u16(u16::try_from(count).ok()?);
    }
    for q in &msg.queries {
        w.name(q.name(), true)?;
        w.u16(q.query_type().into());
        w.u16(q.query_class().into());
    }
    for r in msg
        .answers
        .iter()
        .chain(&msg.authorities)
        .chain(&msg.additionals)
    {
        w.record(r)?;
    }
    if let Some(edns) = &msg.edns {
        w.buf.push(0); // root owner
        w.u16(41); // OPT
        w.u16(edns.max_payload().max(512));
        let ttl = u32::from(m.response_code.high()) << 24
            | u32::from(edns.version()) << 16
            | u32::from(u16::from(*edns.flags()));
        w.u32(ttl);
        w.u16(0); // no options
    }
    (w.buf.len() <= usize::from(u16::MAX)).then_some(w.buf)
}

struct Writer {
    buf: Vec<u8>,
    /// Label starts already written out, candidates for pointers: offset, and the wire length
    /// (without the root) of the name from there on, so only equal lengths are compared.
    targets: [(u16, u8); MAX_TARGETS],
    target_count: usize,
    /// Names compressed so far.
    compressed: usize,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn record(&mut self, r: &Record) -> Option<()> {
        self.name(&r.name, true)?;
        self.u16(r.record_type().into());
        self.u16(r.dns_class.into());
        self.u32(r.ttl);
        let length_at = self.buf.len();
        self.u16(0);
        match &r.data {
            RData::A(a) => self.buf.extend_from_slice(&a.0.octets()),
            RData::AAAA(a) => self.buf.extend_from_slice(&a.0.octets()),
            RData::CNAME(n) => self.name(&n.0, true)?,
            RData::NS(n) => self.name(&n.0, true)?,
            RData::PTR(n) => self.name(&n.0, true)?,
            RData::MX(mx) => {
                self.u16(mx.preference);
                self.name(&mx.exchange, true)?;
            }
            RData::SRV(srv) => {
                self.u16(srv.priority);
                self.u16(srv.weight);
                self.u16(srv.port);
                self.name(&srv.target, false)?;
            }
            RData::TXT(txt) => {
                for s in txt.txt_data.iter() {
                    self.buf.push(u8::try_from(s.len()).ok()?);
                    self.buf.extend_from_slice(s);
                }
            }
            RData::SOA(soa) => {
                self.name(&soa.mname, true)?;
                self.name(&soa.rname, true)?;
                self.u32(soa.serial);
                self.u32(soa.refresh as u32);
                self.u32(soa.retry as u32);
                self.u32(soa.expire as u32);
                self.u32(soa.minimum);
            }
            _ => return None,
        }
        let length = u16::try_from(self.buf.len() - length_at - 2).ok()?;
        self.buf[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
        Some(())
    }

    /// Write `name`: its labels up to the longest suffix already written, then a pointer to that
    /// suffix (when `compress`), else every label and the root.
    fn name(&mut self, name: &Name, compress: bool) -> Option<()> {
        // The name in wire form (without the root) and where each label starts in it.
        let mut wire = [0u8; 256];
        let mut starts = [0u8; MAX_LABELS];
        let (mut len, mut count) = (0usize, 0usize);
        for label in name.iter() {
            // 255 bytes at most with the root label.
            if label.len() > 63 || count == MAX_LABELS || len + 1 + label.len() > 254 {
                return None;
            }
            starts[count] = len as u8;
            count += 1;
            wire[len] = label.len() as u8;
            wire[len + 1..len + 1 + label.len()].copy_from_slice(label);
            len += 1 + label.len();
        }
        let (wire, starts) = (&wire[..len], &starts[..count]);
        let compress = compress && self.compressed < MAX_COMPRESSED_NAMES;
        if compress {
            self.compressed += 1;
        }
        // The longest suffix already written, if compressing.
        let known = compress
            .then(|| {
                starts.iter().enumerate().find_map(|(i, &start)| {
                    self.find(&wire[usize::from(start)..]).map(|at| (i, at))
                })
            })
            .flatten();
        let written = known.map_or(count, |(i, _)| i);
        // The labels written out are targets for later names (even those of a name written in
        // full, an SRV target).
        let base = self.buf.len();
        for &start in &starts[..written] {
            let at = base + usize::from(start);
            if at <= MAX_POINTER && self.target_count < MAX_TARGETS {
                self.targets[self.target_count] = (at as u16, (len - usize::from(start)) as u8);
                self.target_count += 1;
            }
        }
        match known {
            Some((i, at)) => {
                self.buf.extend_from_slice(&wire[..usize::from(starts[i])]);
                self.buf.extend_from_slice(&(0xC000 | at).to_be_bytes());
            }
            None => {
                self.buf.extend_from_slice(wire);
                self.buf.push(0);
            }
        }
        Some(())
    }

    /// The offset of a written name equal (byte for byte) to `suffix` (wire form, no root).
    fn find(&self, suffix: &[u8]) -> Option<u16> {
        self.targets[..self.target_count]
            .iter()
            .find(|&&(at, len)| {
                usize::from(len) == suffix.len() && self.written_equals(usize::from(at), suffix)
            })
            .map(|&(at, _)| at)
    }

    /// Whether the name written at `at` (following pointers) is exactly `suffix` + root.
    fn written_equals(&self, mut at: usize, mut suffix: &[u8]) -> bool {
        let buf = &self.buf;
        let mut hops = 0;
        loop {
            // Follow pointers (always backwards; bounded anyway).
            let len = loop {
                let Some(&len) = buf.get(at) else {
                    return false;
                };
                if len & 0xC0 != 0xC0 {
                    break usize::from(len);
                }
                let Some(&low) = buf.get(at + 1) else {
                    return false;
                };
                hops += 1;
                if hops > MAX_LABELS {
                    return false;
                }
                at = usize::from(len & 0x3F) << 8 | usize::from(low);
            };
            if suffix.is_empty() {
                return len == 0;
            }
            // The length byte, then the label (labels are short: a plain loop beats memcmp).
            if suffix[0] as usize != len || suffix.len() < 1 + len || buf.len() < at + 1 + len {
                return false;
            }
            if !buf[at + 1..at + 1 + len]
                .iter()
                .zip(&suffix[1..1 + len])
                .all(|(a, b)| a == b)
            {
                return false;
            }
            at += 1 + len;
            suffix = &suffix[1 + len..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
    use hickory_proto::rr::RecordType;

    /// Case kept, as names from etcd keep it.
    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn sample() -> Message {
        let mut m = Message::new(0xbeef, MessageType::Response, OpCode::Query);
        m.metadata.authoritative = true;
        m.metadata.recursion_desired = true;
        m.metadata.response_code = ResponseCode::NXDomain;
        m.queries.push(Query::query(
            n("_http._tcp.web.default.svc.cluster.local."),
            RecordType::SRV,
        ));
        let owner = n("web.default.svc.cluster.local.");
        m.answers.push(Record::from_rdata(
            owner.clone(),
            30,
            RData::A(A::new(10, 0, 0, 1)),
        ));
        m.answers.push(Record::from_rdata(
            n("_http._tcp.web.default.svc.cluster.local."),
            30,
            RData::SRV(SRV::new(10, 100, 80, owner.clone())),
        ));
        m.answers.push(Record::from_rdata(
            n("Alias.default.svc.cluster.local."),
            30,
            RData::CNAME(CNAME(n("www.example.com."))),
        ));
        m.answers.push(Record::from_rdata(
            owner.clone(),
            30,
            RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
        ));
        m.answers.push(Record::from_rdata(
            owner.clone(),
            30,
            RData::TXT(TXT::new(vec!["hello".into(), String::new()])),
        ));
        m.answers.push(Record::from_rdata(
            owner.clone(),
            30,
            RData::MX(MX::new(10, n("mail.cluster.local."))),
        ));
        m.answers.push(Record::from_rdata(
            n("1.0.0.10.in-addr.arpa."),
            30,
            RData::PTR(PTR(owner.clone())),
        ));
        m.authorities.push(Record::from_rdata(
            n("cluster.local."),
            30,
            RData::SOA(SOA::new(
                n("ns.dns.cluster.local."),
                n("hostmaster.cluster.local."),
                7,
                28800,
                7200,
                604800,
                30,
            )),
        ));
        m.additionals.push(Record::from_rdata(
            n("ns.dns.cluster.local."),
            30,
            RData::NS(NS(n("ns.dns.cluster.local."))),
        ));
        m
    }

    #[test]
    fn decodes_to_the_same_message_as_hickory_and_is_no_larger() {
        let mut m = sample();
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(true);
        m.set_edns(edns);
        for rcode in [
            ResponseCode::NoError,
            ResponseCode::NXDomain,
            ResponseCode::BADVERS,
        ] {
            m.metadata.response_code = rcode;
            let ours = encode(&m).expect("covered");
            let theirs = m.to_vec().unwrap();
            assert_eq!(
                Message::from_vec(&ours).unwrap(),
                Message::from_vec(&theirs).unwrap()
            );
            let decoded = Message::from_vec(&ours).unwrap().metadata.response_code;
            assert_eq!(u16::from(decoded), u16::from(rcode));
            assert!(
                ours.len() <= theirs.len(),
                "{} > {}",
                ours.len(),
                theirs.len()
            );
        }
        // Compression is what makes it small: `cluster` is written in the question and in the SRV
        // target (never compressed); every other name under it points back.
        let plain = encode(&sample()).unwrap();
        assert_eq!(plain.windows(8).filter(|w| w == b"\x07cluster").count(), 2);
    }

    #[test]
    fn srv_targets_are_never_compressed() {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        let target = n("web.default.svc.cluster.local.");
        m.answers.push(Record::from_rdata(
            target.clone(),
            30,
            RData::A(A::new(10, 0, 0, 1)),
        ));
        m.answers.push(Record::from_rdata(
            n("_http._tcp.web.default.svc.cluster.local."),
            30,
            RData::SRV(SRV::new(0, 100, 80, target)),
        ));
        let bytes = encode(&m).unwrap();
        let tail = &bytes[bytes.len() - 31..];
        assert_eq!(&tail[..4], b"\x03web");
        assert_eq!(tail[30], 0, "target written out in full, root-terminated");
    }

    #[test]
    fn uncovered_content_falls_back() {
        let mut m = sample();
        m.answers.push(Record::from_rdata(
            n("x.cluster.local."),
            30,
            RData::Unknown {
                code: RecordType::Unknown(65280),
                rdata: hickory_proto::rr::rdata::NULL::with(vec![1, 2, 3]),
            },
        ));
        assert!(encode(&m).is_none());
    }

    /// Round trip through hickory-proto's decoder, names compared byte for byte.
    fn round_trips(m: &Message) -> Vec<u8> {
        let bytes = encode(m).expect("covered");
        let back = Message::from_vec(&bytes).expect("decodes");
        assert_eq!(&back, m);
        let names =
            |m: &Message| -> Vec<String> { m.answers.iter().map(|r| r.name.to_ascii()).collect() };
        assert_eq!(names(&back), names(m));
        bytes
    }

    #[test]
    fn names_past_16_kib_are_not_pointer_targets() {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        let strings: Vec<String> = (0..70).map(|_| "x".repeat(255)).collect();
        m.answers.push(Record::from_rdata(
            n("big.cluster.local."),
            30,
            RData::TXT(TXT::new(strings)),
        ));
        // Both written after offset 0x3FFF: the second cannot point at the first.
        for _ in 0..2 {
            m.answers.push(Record::from_rdata(
                n("late.name.example."),
                30,
                RData::A(A::new(10, 0, 0, 9)),
            ));
        }
        let bytes = round_trips(&m);
        assert!(bytes.len() > 0x4000);
        assert_eq!(bytes.windows(5).filter(|w| w == b"\x04late").count(), 2);
    }

    #[test]
    fn deep_names_and_many_records_stay_exact_and_bounded() {
        // 127-label names fill the candidate table; 200 records pass the compression limit.
        let deep = |last: &str| {
            let mut s = "a.".repeat(126);
            s.push_str(last);
            s.push('.');
            n(&s)
        };
        let mut m = Message::new(2, MessageType::Response, OpCode::Query);
        m.queries.push(Query::query(deep("b"), RecordType::A));
        for i in 0..200u32 {
            // Every owner could point at the question; an odd few cannot (the table is full).
            let owner = if i % 50 == 0 { deep("c") } else { deep("b") };
            m.answers.push(Record::from_rdata(
                owner,
                30,
                RData::A(A(std::net::Ipv4Addr::from(i))),
            ));
        }
        let bytes = round_trips(&m);
        assert!(bytes.len() <= m.to_vec().unwrap().len());
        // Past the 120th compressed name, names are written in full (80 of them here).
        let full = deep("c").len() + 1;
        assert!(bytes.len() > 70 * full, "{} bytes", bytes.len());
    }

    #[test]
    fn name_matching_is_exact_and_follows_pointers() {
        let mut w = Writer {
            buf: vec![0; 12],
            targets: [(0, 0); MAX_TARGETS],
            target_count: 0,
            compressed: 0,
        };
        w.name(&n("a.b.c."), true).unwrap();
        w.name(&n("x.b.c."), true).unwrap();
        let before = w.buf.len();
        w.name(&n("y.x.b.c."), true).unwrap();
        assert_eq!(w.buf.len() - before, 2 + 2, "one label and a pointer");
        let before = w.buf.len();
        w.name(&n("B.c."), true).unwrap();
        assert_eq!(
            w.buf.len() - before,
            2 + 2,
            "case kept: own label, then pointer to c."
        );
        assert!(
            !w.written_equals(12, b"\x01a\x01b"),
            "a prefix is not the name"
        );
        assert!(w.written_equals(12, b"\x01a\x01b\x01c"));
    }
}
