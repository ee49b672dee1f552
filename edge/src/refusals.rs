//! Refused connections and sessions: every refusal is counted in
//! `switchyard_rejects_total{api, reason}`, but logged at most once per interval and reason, so
//! a flood leaves one clear line (with how many were refused since the last) instead of one per
//! connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// At most one log line per reason within this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Since the last line of a reason: when it was written and how many came after it.
struct Logged {
    at: Instant,
    suppressed: u64,
}

type Key = (&'static str, &'static str);

fn logged() -> &'static Mutex<HashMap<Key, Logged>> {
    static LOGGED: OnceLock<Mutex<HashMap<Key, Logged>>> = OnceLock::new();
    LOGGED.get_or_init(Default::default)
}

/// Counts one refusal of `client` and logs it if no line for the same reason was written within
/// `LOG_INTERVAL`. `what` says what was refused and why, for the log line.
pub fn refused(api: &'static str, reason: &'static str, client: IpAddr, what: &str) {
    metrics::counter!("switchyard_rejects_total", "api" => api, "reason" => reason).increment(1);
    log(api, reason, client, what);
}

/// The log line of `refused`, for refusals counted elsewhere.
pub fn log(api: &'static str, reason: &'static str, client: IpAddr, what: &str) {
    if let Some(since_last) = due(api, reason) {
        tracing::warn!(
            api,
            reason,
            %client,
            more_since_last_line = since_last,
            "refused: {what} (logged at most every {} s per reason; counted in \
             switchyard_rejects_total)",
            LOG_INTERVAL.as_secs()
        );
    }
}

/// Is a line for (`api`, `reason`) due? `Some(n)`: yes, and `n` more happened since the last
/// line; `None`: one was written within `LOG_INTERVAL` (this one is counted for the next).
pub fn due(api: &'static str, reason: &'static str) -> Option<u64> {
    let mut logged = logged().lock();
    let now = Instant::now();
    match logged.get_mut(&(api, reason)) {
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
                (api, reason),
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
        let logged = logged().lock();
        assert_eq!(
            logged[&("test", "flood")].suppressed,
            999,
            "one line, the rest counted for the next"
        );
    }
}
