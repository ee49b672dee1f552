//! Remembers the most recent fan-out ids this edge delivered, so a redelivered packet (a worker
//! died after persisting it, before acking) is shown to clients once. Bounded: oldest ids go.

use std::collections::{HashSet, VecDeque};

use parking_lot::Mutex;

pub struct RecentIds {
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new((
                HashSet::with_capacity(capacity),
                VecDeque::with_capacity(capacity),
            )),
            capacity,
        }
    }

    /// True the first time an id is seen (within the window), false for a repeat.
    pub fn first_time(&self, id: &str) -> bool {
        let mut guard = self.inner.lock();
        let (seen, order) = &mut *guard;
        if seen.contains(id) {
            return false;
        }
        if order.len() == self.capacity {
            if let Some(oldest) = order.pop_front() {
                seen.remove(&oldest);
            }
        }
        seen.insert(id.to_owned());
        order.push_back(id.to_owned());
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
