//! The one retry pause policy: doubling from a first delay up to a cap, each pause with up to
//! half of it again as jitter, so many callers retrying at once do not arrive in step.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The pause before retry number `attempt` (1 for the first retry): `first` doubled per
    /// attempt, at most `max`, plus jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        jittered(self.base(attempt))
    }

    /// The pause without jitter.
    fn base(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// `base` plus up to half of it again.
fn jittered(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = base.as_micros().clamp(2, u128::from(u32::MAX)) as u32 / 2;
    base + Duration::from_micros(u64::from(nanos % spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_the_first_delay_up_to_the_cap() {
        let b = Backoff::new(10 * MS, 2000 * MS);
        let bases: Vec<_> = (1..=10).map(|a| b.base(a)).collect();
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            bases,
            ms(&[10, 20, 40, 80, 160, 320, 640, 1280, 2000, 2000])
        );
        assert_eq!(b.base(u32::MAX), 2000 * MS);
        assert_eq!(b.base(0), 10 * MS, "attempt 0 is taken as the first");
    }

    #[test]
    fn jitter_stays_within_half_the_base() {
        let b = Backoff::new(100 * MS, 100 * MS);
        for attempt in 0..100 {
            let d = b.delay(attempt);
            assert!(d >= 100 * MS && d < 150 * MS, "{d:?}");
        }
    }
}
