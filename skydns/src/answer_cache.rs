//! A cache of encoded authoritative replies, keyed by the query packet as received (minus its
//! id) and the transport, and tagged with the index generation they were computed from: any
//! change to the index makes every older entry a miss, so a cached reply is always exactly what
//! the query path would compute now.
//!
//! Built for the query path: a lookup hashes the packet in place (no allocation); a key is only
//! admitted on its second sighting (a one-slot-per-bucket doorkeeper), so the stream of one-off
//! names a pod's search path produces does not flush the names that repeat; when a shard is full
//! — in entries or in bytes — its oldest entries are evicted.
//!
//! Hand-written rather than a cache crate: a hit must cost no allocation besides the reply
//! itself and no hashing beyond one pass over the packet, and the doorkeeper keeps one-off
//! names out; the benchmark (docs/benchmarks.md) puts a hit at ≈ 3k instructions, a quarter of
//! computing the answer.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use hashbrown::HashTable;
use hickory_proto::op::ResponseCode;

use crate::forward::Transport;
use crate::metrics::System;

const SHARDS: usize = 16;
/// Doorkeeper slots per shard.
const DOORKEEPER: usize = 8192;

/// What a hit returns besides the bytes (for metrics).
#[derive(Debug, Clone, Copy)]
pub struct ReplyMeta {
    /// Which part of the server made the reply (the `system` label).
    pub system: System,
    /// The reply's response code.
    pub rcode: ResponseCode,
    /// Whether the reply was truncated (TC set).
    pub truncated: bool,
}

struct Entry {
    hash: u64,
    transport: Transport,
    /// The query without its id.
    key: Box<[u8]>,
    generation: u64,
    bytes: Box<[u8]>,
    meta: ReplyMeta,
}

struct Shard {
    table: HashTable<Entry>,
    /// Insertion order, for evicting the oldest entry.
    order: VecDeque<u64>,
    /// Hashes seen once (admission on the second sighting).
    seen: Box<[u64]>,
    /// Bytes held by the entries of this shard (see [`entry_bytes`]).
    bytes: usize,
}

/// What one entry holds in memory: its struct, the query key and the reply.
fn entry_bytes(key_len: usize, reply_len: usize) -> usize {
    std::mem::size_of::<Entry>() + key_len + reply_len
}

/// The sharded cache.
pub struct AnswerCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    bytes_per_shard: usize,
    hasher: RandomState,
}

impl AnswerCache {
    /// A cache of about `capacity` entries and at most about `bytes` bytes (each of the
    /// shards holds its share of both); `None` when either is 0 (off).
    pub fn new(capacity: usize, bytes: usize) -> Option<Self> {
        (capacity > 0 && bytes > 0).then(|| AnswerCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        table: HashTable::new(),
                        order: VecDeque::new(),
                        seen: vec![0u64; DOORKEEPER].into_boxed_slice(),
                        bytes: 0,
                    })
                })
                .collect(),
            per_shard: capacity.div_ceil(SHARDS),
            bytes_per_shard: bytes.div_ceil(SHARDS),
            hasher: RandomState::new(),
        })
    }

    fn hash(&self, transport: Transport, packet: &[u8]) -> u64 {
        self.hasher.hash_one((transport as u8, &packet[2..]))
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[(hash as usize) % SHARDS]
    }

    /// The reply for `packet` (len ≥ 12) computed at `generation`, with the packet's id.
    pub fn get(
        &self,
        transport: Transport,
        packet: &[u8],
        generation: u64,
    ) -> Option<(Vec<u8>, ReplyMeta)> {
        let hash = self.hash(transport, packet);
        let shard = self.shard(hash).lock().ok()?;
        let entry = shard
            .table
            .find(hash, |e| matches(e, hash, transport, packet))?;
        if entry.generation != generation {
            return None;
        }
        let mut bytes = entry.bytes.to_vec();
        bytes[0] = packet[0];
        bytes[1] = packet[1];
        Some((bytes, entry.meta))
    }

    /// Remember the reply to `packet` (admitted from its second sighting on).
    pub fn put(
        &self,
        transport: Transport,
        packet: &[u8],
        generation: u64,
        reply: &[u8],
        meta: ReplyMeta,
    ) {
        if reply.len() < 12 || packet.len() < 12 {
            return;
        }
        let hash = self.hash(transport, packet);
        let Ok(mut guard) = self.shard(hash).lock() else {
            return;
        };
        let shard = &mut *guard;
        if let Some(e) = shard
            .table
            .find_mut(hash, |e| matches(e, hash, transport, packet))
        {
            let (old, new) = (e.bytes.len(), reply.len());
            if shard.bytes - old + new <= self.bytes_per_shard {
                e.generation = generation;
                e.bytes = reply.into();
                e.meta = meta;
                shard.bytes = shard.bytes - old + new;
                return;
            }
            // The new reply does not fit beside the rest: drop the entry and insert afresh.
            let size = entry_bytes(e.key.len(), old);
            if let Ok(e) = shard.table.find_entry(hash, |e| e.hash == hash) {
                e.remove();
                shard.bytes -= size;
            }
        }
        let slot = ((hash >> 32) as usize) % DOORKEEPER;
        if shard.seen[slot] != hash {
            shard.seen[slot] = hash;
            return;
        }
        let size = entry_bytes(packet.len() - 2, reply.len());
        if size > self.bytes_per_shard {
            return;
        }
        while shard.table.len() >= self.per_shard || shard.bytes + size > self.bytes_per_shard {
            let Some(old) = shard.order.pop_front() else {
                break;
            };
            if let Ok(e) = shard.table.find_entry(old, |e| e.hash == old) {
                let (gone, _) = e.remove();
                shard.bytes -= entry_bytes(gone.key.len(), gone.bytes.len());
            }
        }
        shard.table.insert_unique(
            hash,
            Entry {
                hash,
                transport,
                key: packet[2..].into(),
                generation,
                bytes: reply.into(),
                meta,
            },
            |e| e.hash,
        );
        shard.order.push_back(hash);
        shard.bytes += size;
    }

    /// Bytes held by every entry, as counted against the bound.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.bytes))
            .sum()
    }
}

fn matches(e: &Entry, hash: u64, transport: Transport, packet: &[u8]) -> bool {
    e.hash == hash && e.transport == transport && *e.key == packet[2..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ReplyMeta {
        ReplyMeta {
            system: System::Auth,
            rcode: ResponseCode::NoError,
            truncated: false,
        }
    }

    #[test]
    fn second_sighting_is_cached_hits_patch_the_id_and_generation_invalidates() {
        let c = AnswerCache::new(100, 1 << 20).unwrap();
        let q1 = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'f', b'o', b'o', 0];
        let mut q2 = q1;
        q2[0] = 9;
        q2[1] = 9;
        let reply = [0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        c.put(Transport::Udp, &q1, 7, &reply, meta());
        assert!(
            c.get(Transport::Udp, &q2, 7).is_none(),
            "first sighting only remembered"
        );
        c.put(Transport::Udp, &q1, 7, &reply, meta());
        let (bytes, _) = c.get(Transport::Udp, &q2, 7).unwrap();
        assert_eq!(&bytes[..2], &[9, 9]);
        assert_eq!(&bytes[2..], &reply[2..]);
        assert!(
            c.get(Transport::Udp, &q2, 8).is_none(),
            "newer index generation"
        );
        assert!(c.get(Transport::Tcp, &q2, 7).is_none(), "other transport");
        let mut other = q1;
        other[13] = b'g';
        assert!(c.get(Transport::Udp, &other, 7).is_none(), "other question");
        // A newer generation replaces the entry in place.
        let reply2 = [0, 1, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0];
        c.put(Transport::Udp, &q1, 8, &reply2, meta());
        assert_eq!(c.get(Transport::Udp, &q1, 8).unwrap().0[3], 0x83);
    }

    #[test]
    fn bounded_and_oldest_evicted() {
        let c = AnswerCache::new(32, 1 << 20).unwrap();
        let q = |i: u32| {
            let mut q = vec![0u8; 12];
            q.extend_from_slice(&i.to_be_bytes());
            q
        };
        for i in 0..10_000u32 {
            c.put(Transport::Udp, &q(i), 1, &[0u8; 12], meta());
            c.put(Transport::Udp, &q(i), 1, &[0u8; 12], meta());
        }
        let total: usize = c.shards.iter().map(|s| s.lock().unwrap().table.len()).sum();
        assert!(total <= 32 + SHARDS, "{total}");
        assert!(c.get(Transport::Udp, &q(9_999), 1).is_some(), "newest kept");
        assert!(c.get(Transport::Udp, &q(0), 1).is_none(), "oldest evicted");
    }

    #[test]
    fn bounded_in_bytes_whatever_the_reply_size() {
        // 50,000 entries allowed, 1 MiB: a flood of 60 KiB TCP replies stays within the bytes.
        let c = AnswerCache::new(50_000, 1 << 20).unwrap();
        let big = vec![0u8; 60 * 1024];
        for i in 0..2_000u32 {
            let mut q = vec![0u8; 12];
            q.extend_from_slice(&i.to_be_bytes());
            c.put(Transport::Tcp, &q, 1, &big, meta());
            c.put(Transport::Tcp, &q, 1, &big, meta());
        }
        let held: usize = c
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap()
                    .table
                    .iter()
                    .map(|e| e.bytes.len())
                    .sum::<usize>()
            })
            .sum();
        assert!(held <= (1 << 20) + SHARDS * 64, "{held} reply bytes held");
        assert!(held > 0, "large replies are still cached");
        assert_eq!(c.bytes(), {
            let n: usize = c.shards.iter().map(|s| s.lock().unwrap().table.len()).sum();
            n * entry_bytes(16 - 2, big.len())
        });
        // Replacing an entry in place keeps the count exact.
        let q = [0u8; 16];
        c.put(Transport::Udp, &q, 1, &[0u8; 12], meta());
        c.put(Transport::Udp, &q, 1, &[0u8; 12], meta());
        let before = c.bytes();
        c.put(Transport::Udp, &q, 2, &[0u8; 40], meta());
        assert!(c.bytes() <= before + 28);
    }
}
