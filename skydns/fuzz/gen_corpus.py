#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (no dependencies): real DNS query packets for
`packet` (every shape the handler distinguishes, plus malformed ones) and etcd values for
`value`. Run from skydns/fuzz: `python3 gen_corpus.py`. Deterministic; re-running rewrites the
same files."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "SRV": 33, "OPT": 41, "AXFR": 252, "ANY": 255, "UNKNOWN": 65000}


def name(n):
    out = b""
    for label in n.rstrip(".").split("."):
        if label:
            raw = label.encode()
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def opt(payload=1232, version=0, flags=0, options=b""):
    return b"\0" + struct.pack(">HHBBHH", 41, payload, 0, version, flags, len(options)) + options


def query(qname, qtype="A", qid=0x1234, flags=0x0100, edns=None, qclass=1, qdcount=None,
          extra_questions=b"", answers=b"", ancount=0):
    questions = name(qname) + struct.pack(">HH", TYPES.get(qtype, qtype) if isinstance(qtype, str) else qtype, qclass)
    questions += extra_questions
    qd = 1 if qdcount is None else qdcount
    ar = 1 if edns is not None else 0
    header = struct.pack(">HHHHHH", qid, flags, qd, ancount, 0, ar)
    return header + questions + answers + (edns if edns is not None else b"")


S = "default.svc.kube.local."
PACKETS = {
    "a": query("mysql." + S),
    "a-edns": query("mysql." + S, edns=opt(1232)),
    "a-edns4096-do": query("mysql." + S, edns=opt(4096, flags=0x8000)),
    "a-edns0-payload": query("mysql." + S, edns=opt(0)),
    "a-edns65535": query("mysql." + S, edns=opt(65535)),
    "a-mixed-case": query("MySQL.Default.SVC.kube.LOCAL."),
    "aaaa-dual": query("dual." + S, "AAAA", edns=opt()),
    "a-dual": query("dual." + S, "A"),
    "srv-port": query("_mysql._tcp.mysql." + S, "SRV"),
    "srv-service": query("mysql." + S, "SRV", edns=opt()),
    "srv-headless": query("web." + S, "SRV"),
    "txt-10k-udp": query("txt." + S, "TXT"),
    "txt-10k-edns": query("txt." + S, "TXT", edns=opt(4096)),
    "txt-version": query("dns-version.kube.local.", "TXT"),
    "ptr-v4": query("44.162.254.10.in-addr.arpa.", "PTR"),
    "ptr-v6": query(".".join(reversed("fd000000000000000000000000000015")) + ".ip6.arpa.", "PTR"),
    "any": query("mysql." + S, "ANY"),
    "axfr": query("kube.local.", "AXFR"),
    "badvers": query("mysql." + S, edns=opt(1232, version=1)),
    "opcode-status": query("mysql." + S, flags=(2 << 11)),
    "opcode-notify": query("kube.local.", "SOA", flags=(4 << 11)),
    "opcode-update": query("kube.local.", "SOA", flags=(5 << 11)),
    "cname-alias": query("alias." + S),
    "cname-loop": query("loop-a." + S, edns=opt()),
    "cname-chain": query("chain-0." + S),
    "cname-out-of-zone": query("ext." + S),
    "forward": query("www.example.com."),
    "big-udp": query("big." + S),
    "big-edns": query("big." + S, edns=opt(1232)),
    "soa-apex": query("kube.local.", "SOA"),
    "ns-apex": query("kube.local.", "NS"),
    "mx": query("mail.kube.local.", "MX"),
    "wildcard": query("*.gen.kube.local.", "A"),
    "wildcard-any-srv": query("x.any.gen.kube.local.", "SRV"),
    "directory": query("gen.kube.local.", "TXT"),
    "nodata-svc": query("svc.kube.local."),
    "nxdomain": query("nope." + S),
    "pod": query("10-244-1-5.default.pod.kube.local."),
    "class-chaos": query("version.bind.", "TXT", qclass=3),
    "unknown-type": query("mysql." + S, "UNKNOWN"),
    "edns-options": query("mysql." + S, edns=opt(1232, flags=0x4000, options=struct.pack(">HH", 65001, 2) + b"\xab\xcd" + struct.pack(">HH", 10, 8) + b"cookie!!")),
    "slash-label": query("a/b." + S),
    "long-name": query(".".join(["a" * 63] * 3 + ["b" * 52]) + ".kube.local."),
    "two-questions": query("mysql." + S, qdcount=2, extra_questions=name("dual." + S) + struct.pack(">HH", 1, 1)),
    "zero-questions": struct.pack(">HHHHHH", 7, 0x0100, 0, 0, 0, 0),
    "with-answer": query("mysql." + S, ancount=1, answers=b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + bytes([10, 0, 0, 1])),
    "pointer-loop": struct.pack(">HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack(">HH", 1, 1),
    "truncated-question": query("mysql." + S)[:20],
    "response-qr": query("mysql." + S, flags=0x8100),
    "garbage": bytes((i * 37 + 11) % 256 for i in range(64)),
}

VALUES = {
    "service": b'{"host":"10.254.162.44","priority":10,"weight":10,"ttl":30}',
    "srv": b'{"host":"mysql.default.svc.kube.local.","port":3306,"priority":10,"weight":10,"ttl":30}',
    "array": b'[{"host":"10.0.0.2","ttl":30},{"host":"fd00::2","ttl":30}]',
    "ptr": b'[{"host":"a.default.svc.cluster.local."},{"host":"b.default.svc.cluster.local."}]',
    "txt": b'{"text":"1.1.0"}',
    "mail": b'{"host":"10.1.1.1","mail":true,"priority":5,"targetstrip":1,"group":"g"}',
    "unknown-field": b'{"host":"1.2.3.4","extra":{"x":[1,2,3]}}',
    "bad-json": b'{"host":"10.0.0.1"',
    "host-int": b'{"host":5}',
    "port-str": b'{"port":"x"}',
    "ttl-neg": b'{"ttl":-1}',
    "empty-array": b"[]",
    "string": b'"10.0.0.5"',
    "nested": b"[" * 200 + b"]" * 200,
    "spaces": b'{"host":"bad host name"}',
    "escapes": b'{"host":"a.b.","text":"\\u0000\\n\\"\\\\\\ud83d\\ude00"}',
    "not-utf8": b'\xff\xfe{"host":"1.2.3.4"}',
}


def write(directory, items):
    os.makedirs(directory, exist_ok=True)
    for i, (label, data) in enumerate(items.items()):
        with open(os.path.join(directory, f"seed-{i:02d}-{label}"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write(os.path.join(HERE, "corpus", "packet"), PACKETS)
    write(os.path.join(HERE, "corpus", "value"), VALUES)
    print(f"{len(PACKETS)} packets, {len(VALUES)} values")
