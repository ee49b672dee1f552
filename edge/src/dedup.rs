//! Remembers the most recent fan-out ids this edge delivered, so a redelivered packet (a worker
//! died after persisting it, before acking) is shown to clients once. Bounded: oldest ids go.
//!
//! It keeps a 64-bit keyed hash of each id, not the id: 16 bytes an entry instead of two
//! copies of a 26-byte string (the window of 65,536 ids costs ~1.3 MiB, not ~9 MiB). Two ids
//! share a hash with probability ~2^-64, and the key is random per process, so no one can
//! aim for it; the cost of a collision would be one fan-out not shown live.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;

use parking_lot::Mutex;

pub struct RecentIds {
    inner: Mutex<(HashSet<u64>, VecDeque<u64>)>,
    capacity: usize,
    key: RandomState,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new((
                HashSet::with_capacity(capacity),
                VecDeque::with_capacity(capacity),
            )),
            capacity,
            key: RandomState::new(),
        }
    }

    /// True the first time an id is seen (within the window), false for a repeat.
    pub fn first_time(&self, id: &str) -> bool {
        let hash = self.key.hash_one(id);
        let mut guard = self.inner.lock();
        let (seen, order) = &mut *guard;
        if !seen.insert(hash) {
            return false;
        }
        if order.len() == self.capacity {
            if let Some(oldest) = order.pop_front() {
                seen.remove(&oldest);
            }
        }
        order.push_back(hash);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_caught_within_the_window() {
        let ids = RecentIds::new(2);
        assert!(ids.first_time("a"));
        assert!(!ids.first_time("a"));
        assert!(ids.first_time("b"));
        assert!(ids.first_time("c")); // "a" falls out of the window
        assert!(ids.first_time("a"));
        assert!(!ids.first_time("c"));
    }
}
