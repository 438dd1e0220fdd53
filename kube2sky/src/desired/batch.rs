//! The pending keys (to put, to delete) and the transactions handed to the writer: all puts
//! before any delete, at most `max_ops` operations and `max_bytes` per batch, values too large
//! for etcd kept absent.

use std::sync::Arc;

use super::{Op, State};

impl State {
    /// Set or remove a desired value, marking the key dirty when it changes.
    pub(super) fn set(&mut self, key: String, value: Option<String>) {
        match value {
            Some(v) => match self.desired.get_mut(key.as_str()) {
                Some(current) if **current == *v => {}
                Some(current) => {
                    *current = v.into_boxed_str();
                    self.too_large.remove(key.as_str());
                    self.mark(&key);
                }
                None => {
                    let key: Arc<str> = Arc::from(key);
                    self.desired.insert(key.clone(), v.into_boxed_str());
                    self.mark_shared(key);
                }
            },
            None => {
                if let Some((key, _)) = self.desired.remove_entry(key.as_str()) {
                    self.too_large.remove(&key);
                    self.mark_shared(key);
                }
            }
        }
    }

    /// Whether etcd should hold `key` (it has a desired value that fits).
    pub(super) fn writable(&self, key: &str) -> bool {
        self.desired.contains_key(key) && !self.too_large.contains(key)
    }

    /// Queue a key for writing: a put if it has a desired value, else a delete.
    pub(super) fn mark(&mut self, key: &str) {
        let shared = match self.desired.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        self.mark_shared(shared);
    }

    pub(super) fn mark_shared(&mut self, key: Arc<str>) {
        if self.foreign.contains(&*key) {
            self.dirty_put.remove(&key);
            self.dirty_del.remove(&key);
        } else if self.writable(&key) {
            self.dirty_del.remove(&key);
            self.dirty_put.insert(key);
        } else {
            self.dirty_put.remove(&key);
            self.dirty_del.insert(key);
        }
    }

    /// The next transaction: up to `max_ops` puts (and `max_bytes`), or, once no put is left,
    /// up to `max_ops` deletes. Names that exist before and after are only ever overwritten.
    pub fn take_batch(&mut self, max_ops: usize, max_bytes: usize) -> Vec<Op> {
        let max_ops = max_ops.max(1);
        let mut ops = Vec::new();
        let mut bytes = 0usize;
        while ops.len() < max_ops {
            let Some(key) = self.dirty_put.pop_first() else {
                break;
            };
            let Some(value) = self.desired.get(&key) else {
                self.dirty_del.insert(key);
                continue;
            };
            let size = key.len() + value.len();
            if size > self.max_op_bytes {
                tracing::warn!(%key, bytes = size, "value too large for etcd; the name is removed until it fits");
                self.too_large_total += 1;
                self.too_large.insert(key.clone());
                self.dirty_del.insert(key);
                continue;
            }
            if self.too_large.contains(&key) {
                self.dirty_del.insert(key);
                continue;
            }
            if !ops.is_empty() && bytes + size > max_bytes {
                self.dirty_put.insert(key);
                break;
            }
            bytes += size;
            ops.push(Op::Put {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        if !ops.is_empty() || !self.dirty_put.is_empty() {
            return ops;
        }
        while ops.len() < max_ops {
            let Some(key) = self.dirty_del.pop_first() else {
                break;
            };
            if self.writable(&key) {
                self.dirty_put.insert(key);
                continue;
            }
            if !ops.is_empty() && bytes + key.len() > max_bytes {
                self.dirty_del.insert(key);
                break;
            }
            bytes += key.len();
            ops.push(Op::Delete {
                key: key.to_string(),
            });
        }
        ops
    }

    /// etcd refused a request holding only this put as too large: keep the key absent until
    /// its value changes, and try no value this large again.
    pub fn refused_as_too_large(&mut self, key: &str, size: usize) {
        tracing::warn!(%key, bytes = size, "etcd refused the value as too large; the name is removed until it fits");
        self.max_op_bytes = self.max_op_bytes.min(size.saturating_sub(1)).max(1);
        self.too_large_total += 1;
        let shared = self.shared_key(key);
        self.too_large.insert(shared);
        self.mark(key);
    }

    /// A batch that was not written: queue its keys again (as put or delete per the current
    /// desired state).
    pub fn requeue(&mut self, ops: Vec<Op>) {
        for op in ops {
            let key = match op {
                Op::Put { key, .. } | Op::Delete { key } => key,
            };
            self.mark(&key);
        }
    }
}
