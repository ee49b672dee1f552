//! The one log throttle of every crate: a condition that repeats (a refused flood, NATS
//! unreachable) is logged at most once per interval and key, with how many times it happened
//! since the last line, so it leaves one clear line instead of hundreds.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// At most one log line per key within this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Since the last line of a key: when it was written and how many came after it.
struct Logged {
    at: Instant,
    suppressed: u64,
}

type Key = (&'static str, &'static str);

fn logged() -> &'static Mutex<HashMap<Key, Logged>> {
    static LOGGED: OnceLock<Mutex<HashMap<Key, Logged>>> = OnceLock::new();
    LOGGED.get_or_init(Default::default)
}

/// Is a line for (`area`, `reason`) due? `Some(n)`: yes, and `n` more happened since the last
/// line; `None`: one was written within `LOG_INTERVAL` (this one is counted for the next).
pub fn due(area: &'static str, reason: &'static str) -> Option<u64> {
    let mut logged = logged().lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match logged.get_mut(&(area, reason)) {
        Some(last) if now.duration_since(last.at) < LOG_INTERVAL => {
            last.suppressed += 1;
            None
        }
        Some(last) => {
            let suppressed = last.suppressed;
            *last = Logged {
                at: now,
                suppressed: 0,
            };
            Some(suppressed)
        }
        None => {
            logged.insert(
                (area, reason),
                Logged {
                    at: now,
                    suppressed: 0,
                },
            );
            Some(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_per_interval() {
        assert_eq!(due("test", "flood"), Some(0));
        for _ in 0..999 {
            assert_eq!(due("test", "flood"), None);
        }
        let logged = logged().lock().unwrap();
        assert_eq!(
            logged[&("test", "flood")].suppressed,
            999,
            "one line, the rest counted for the next"
        );
    }
}
