//! One log line per limit and interval, however hard a flood hits it: a site asks
//! `allow(limit)` before logging and learns how many lines it held back since its last one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often one limit may log.
const INTERVAL: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct ThrottledLog {
    /// Per limit name: when it last logged and what it held back since.
    sites: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl ThrottledLog {
    /// `Some(lines held back since the last one)` when `limit` may log now.
    pub fn allow(&self, limit: &'static str) -> Option<u64> {
        let mut sites = self.sites.lock();
        match sites.get_mut(limit) {
            Some((last, held)) if last.elapsed() < INTERVAL => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                *last = Instant::now();
                Some(std::mem::take(held))
            }
            None => {
                sites.insert(limit, (Instant::now(), 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_and_limit_and_counts_the_rest() {
        let log = ThrottledLog::default();
        assert_eq!(log.allow("a"), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.allow("a"), None);
        }
        assert_eq!(log.allow("b"), Some(0), "another limit logs on its own");
        log.sites.lock().get_mut("a").unwrap().0 = Instant::now() - INTERVAL;
        assert_eq!(log.allow("a"), Some(1000));
    }
}
