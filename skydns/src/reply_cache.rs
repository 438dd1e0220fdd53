//! A cache of encoded authoritative replies, keyed by the query packet as received (minus its
//! id) and the transport, and tagged with the index generation they were computed from: any
//! change to the index makes every older entry a miss, so a cached reply is always exactly what
//! the query path would compute now. Bounded: each shard is cleared when it fills.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use hickory_proto::op::ResponseCode;

use crate::forward::Transport;
use crate::metrics::System;

const SHARDS: usize = 16;

/// What a hit returns besides the bytes (for metrics).
#[derive(Debug, Clone, Copy)]
pub struct ReplyMeta {
    pub system: System,
    pub rcode: ResponseCode,
    pub truncated: bool,
}

struct Entry {
    generation: u64,
    bytes: Box<[u8]>,
    meta: ReplyMeta,
}

type Shard = HashMap<Box<[u8]>, Entry>;

/// The sharded cache.
pub struct ReplyCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
}

impl ReplyCache {
    /// A cache of about `capacity` entries; `None` when 0 (off).
    pub fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| ReplyCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: RandomState::new(),
        })
    }

    fn key(transport: Transport, packet: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(packet.len() - 1);
        key.push(transport as u8);
        key.extend_from_slice(&packet[2..]);
        key
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// The reply for `packet` (len ≥ 12) computed at `generation`, with the packet's id.
    pub fn get(
        &self,
        transport: Transport,
        packet: &[u8],
        generation: u64,
    ) -> Option<(Vec<u8>, ReplyMeta)> {
        let key = Self::key(transport, packet);
        let shard = self.shard(&key).lock().ok()?;
        let entry = shard.get(key.as_slice())?;
        if entry.generation != generation {
            return None;
        }
        let mut bytes = entry.bytes.to_vec();
        bytes[0] = packet[0];
        bytes[1] = packet[1];
        Some((bytes, entry.meta))
    }

    /// Remember the reply to `packet`.
    pub fn put(
        &self,
        transport: Transport,
        packet: &[u8],
        generation: u64,
        reply: &[u8],
        meta: ReplyMeta,
    ) {
        if reply.len() < 12 {
            return;
        }
        let key = Self::key(transport, packet);
        let Ok(mut shard) = self.shard(&key).lock() else {
            return;
        };
        if shard.len() >= self.per_shard {
            // Crude but bounded; stale generations make up most of a full shard anyway.
            shard.clear();
        }
        shard.insert(
            key.into_boxed_slice(),
            Entry {
                generation,
                bytes: reply.into(),
                meta,
            },
        );
    }
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
    fn hit_patches_the_id_and_generation_invalidates() {
        let c = ReplyCache::new(100).unwrap();
        let q1 = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'f', b'o', b'o', 0];
        let mut q2 = q1;
        q2[0] = 9;
        q2[1] = 9;
        let reply = [0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
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
    }

    #[test]
    fn bounded() {
        let c = ReplyCache::new(32).unwrap();
        for i in 0..10_000u32 {
            let mut q = vec![0u8; 12];
            q.extend_from_slice(&i.to_be_bytes());
            c.put(Transport::Udp, &q, 1, &[0u8; 12], meta());
        }
        let total: usize = c.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= 32 + SHARDS, "{total}");
    }
}
