//! Wall clock in integer Unix seconds (UTC), shiftable so tests can start it just before an hour
//! boundary and watch the rollover happen in real time.

use std::time::{SystemTime, UNIX_EPOCH};

pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;

#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// Seconds added to the system time (in milliseconds, so sub-second phase is preserved).
    offset_ms: i64,
}

fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Clock {
    pub fn system() -> Self {
        Self { offset_ms: 0 }
    }

    /// A clock that reads `start` (Unix seconds) now and then advances at real speed.
    pub fn starting_at(start: i64) -> Self {
        Self {
            offset_ms: start * 1000 - system_ms(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        system_ms() + self.offset_ms
    }

    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Milliseconds until the next hour starts, as this clock sees it.
    pub fn ms_until_next_hour(&self) -> u64 {
        let now = self.now_ms();
        let next = (hour_start(now.div_euclid(1000)) + HOUR) * 1000;
        (next - now).max(0) as u64
    }
}

pub fn hour_start(t: i64) -> i64 {
    t - t.rem_euclid(HOUR)
}

pub fn day_start(t: i64) -> i64 {
    t - t.rem_euclid(DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_original_backend() {
        assert_eq!(hour_start(7201), 7200);
        assert_eq!(hour_start(7200), 7200);
        assert_eq!(day_start(86_400 * 3 + 5), 86_400 * 3);
    }

    #[test]
    fn shifted_clock_reads_its_start() {
        let c = Clock::starting_at(1_000_000);
        assert!((c.now() - 1_000_000).abs() <= 1);
        let before_hour = Clock::starting_at(hour_start(1_000_000_000) + HOUR - 2);
        assert!(before_hour.ms_until_next_hour() <= 2_000);
    }
}
