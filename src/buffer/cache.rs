//! Decision cache: remembers recent decisions by trace id so late spans follow them.
//! On by default and compact: an entry is the 8 random low bytes of the trace id, about
//! 20 bytes with its map slot and FIFO slot, so a million decisions cost about 20 MB; a
//! kept trace's entry also holds the OTEP 235 threshold it was kept with (8 bytes more).

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};

use crate::model::TraceId;

/// Recent ids (with a value each) bounded by count, oldest evicted first.
#[derive(Debug)]
struct Fifo<V> {
    set: HashMap<u64, V>,
    order: VecDeque<u64>,
    cap: usize,
}

impl<V> Fifo<V> {
    fn new(cap: usize) -> Fifo<V> {
        Fifo {
            set: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn insert(&mut self, key: u64, value: V) {
        if self.cap == 0 || self.set.insert(key, value).is_some() {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn remove(&mut self, key: u64) {
        // The FIFO slot stays until it reaches the front; removing it from the set is enough.
        self.set.remove(&key);
    }
}

/// Decisions of one shard.
#[derive(Debug)]
pub struct DecisionCache {
    /// With the threshold each trace was kept with.
    sampled: Fifo<u64>,
    dropped: Fifo<()>,
}

/// The key of a trace id: its low 8 bytes, which W3C requires to be random.
fn key(id: &TraceId) -> u64 {
    u64::from_le_bytes(id[8..16].try_into().expect("8 bytes"))
        ^ u64::from_le_bytes(id[0..8].try_into().expect("8 bytes")).rotate_left(17)
}

impl DecisionCache {
    pub fn new(sampled: usize, dropped: usize) -> DecisionCache {
        DecisionCache {
            sampled: Fifo::new(sampled),
            dropped: Fifo::new(dropped),
        }
    }

    /// `Some(true)` when the trace was kept, `Some(false)` when dropped, `None` when unknown.
    pub fn get(&self, id: &TraceId) -> Option<bool> {
        let k = key(id);
        if self.sampled.set.contains_key(&k) {
            Some(true)
        } else if self.dropped.set.contains_key(&k) {
            Some(false)
        } else {
            None
        }
    }

    /// The OTEP 235 threshold a kept trace was kept with (0 for none, or not known).
    pub fn threshold(&self, id: &TraceId) -> u64 {
        self.sampled.set.get(&key(id)).copied().unwrap_or(0)
    }

    /// `threshold` is the kept trace's (0 for none; ignored when dropped).
    pub fn record(&mut self, id: &TraceId, sampled: bool, threshold: u64) {
        let k = key(id);
        if sampled {
            self.dropped.remove(k);
            self.sampled.insert(k, threshold);
        } else {
            self.dropped.insert(k, ());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> TraceId {
        let mut t = [0u8; 16];
        t[8..].copy_from_slice(&n.to_le_bytes());
        t
    }

    #[test]
    fn remembers_and_evicts_oldest_first() {
        let mut c = DecisionCache::new(2, 3);
        c.record(&id(1), true, 0);
        c.record(&id(2), false, 0);
        assert_eq!(c.get(&id(1)), Some(true));
        assert_eq!(c.get(&id(2)), Some(false));
        assert_eq!(c.get(&id(3)), None);
        c.record(&id(3), true, 7);
        c.record(&id(4), true, 0);
        assert_eq!(c.get(&id(1)), None, "evicted");
        assert_eq!(c.get(&id(4)), Some(true));
        assert_eq!(c.threshold(&id(3)), 7);
        assert_eq!(c.threshold(&id(2)), 0);
    }

    #[test]
    fn a_rescued_trace_moves_from_dropped_to_sampled() {
        let mut c = DecisionCache::new(10, 10);
        c.record(&id(7), false, 0);
        c.record(&id(7), true, 0);
        assert_eq!(c.get(&id(7)), Some(true));
    }

    #[test]
    fn zero_capacity_disables() {
        let mut c = DecisionCache::new(0, 0);
        c.record(&id(1), true, 0);
        assert_eq!(c.get(&id(1)), None);
    }
}
