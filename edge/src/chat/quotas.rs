//! Chat REST quotas (GCRA, `governor`): requests per client IP (checked before the token, so a
//! flood of bad tokens is bounded too), requests per user, and rooms each user may create per
//! interval. Over a quota the caller learns how long to wait (`Retry-After`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::limits::Rate;

/// Rooms one user may create: `count` at once, refilled evenly over `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomCreateQuota {
    pub count: u32,
    pub per: Duration,
}

/// The REST side of the chat limits (see the README's chat limits table).
#[derive(Debug, Clone)]
pub struct RestLimits {
    pub per_ip: Rate,
    pub per_user: Rate,
    pub room_creates: RoomCreateQuota,
    /// Members one room may have.
    pub max_room_members: usize,
    /// Rooms one user may be a member of.
    pub max_rooms_per_user: usize,
}

impl Default for RestLimits {
    fn default() -> Self {
        Self {
            per_ip: Rate {
                per_second: 50,
                burst: 200,
            },
            per_user: Rate {
                per_second: 10,
                burst: 50,
            },
            room_creates: RoomCreateQuota {
                count: 20,
                per: Duration::from_secs(3600),
            },
            max_room_members: 1000,
            max_rooms_per_user: 500,
        }
    }
}

impl RestLimits {
    /// Refuses values that would not limit anything, or would refuse everything.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [("per-IP", self.per_ip), ("per-user", self.per_user)] {
            if rate.per_second == 0 || rate.burst == 0 {
                return Err(format!(
                    "chat REST {name} rate and burst must be at least 1 (got {} / {})",
                    rate.per_second, rate.burst
                ));
            }
        }
        if self.room_creates.count == 0 {
            return Err("chat room creations per interval must be at least 1".into());
        }
        if self.room_creates.per < Duration::from_secs(1) {
            return Err("the chat room creation interval must be at least 1 second".into());
        }
        if self.max_room_members == 0 || self.max_rooms_per_user == 0 {
            return Err("chat room member and rooms-per-user caps must be at least 1".into());
        }
        Ok(())
    }
}

fn per_second(rate: Rate) -> Quota {
    let n = |v: u32| NonZeroU32::new(v).expect("validated: at least 1");
    Quota::per_second(n(rate.per_second)).allow_burst(n(rate.burst))
}

fn room_creates(q: RoomCreateQuota) -> Quota {
    let count = NonZeroU32::new(q.count).expect("validated: at least 1");
    Quota::with_period(q.per / q.count)
        .expect("validated: a non-zero interval")
        .allow_burst(count)
}

pub struct RestQuotas {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_user: DefaultKeyedRateLimiter<String>,
    room_creates: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RestQuotas {
    /// `limits` must have passed [`RestLimits::validate`].
    pub fn new(limits: &RestLimits) -> Arc<Self> {
        let quotas = Arc::new(Self {
            per_ip: RateLimiter::keyed(per_second(limits.per_ip)),
            per_user: RateLimiter::keyed(per_second(limits.per_user)),
            room_creates: RateLimiter::keyed(room_creates(limits.room_creates)),
            clock: DefaultClock::default(),
        });
        // Forget callers whose budget is full again, so the keyed state stays proportional
        // to recent callers (a user's room quota refills over the whole interval).
        let weak = Arc::downgrade(&quotas);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                let Some(quotas) = weak.upgrade() else { return };
                quotas.per_ip.retain_recent();
                quotas.per_user.retain_recent();
                quotas.room_creates.retain_recent();
            }
        });
        quotas
    }

    /// `Err(wait)` when `ip` is over its request rate.
    pub fn ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.per_ip
            .check_key(&ip)
            .map_err(|n| n.wait_time_from(self.clock.now()))
    }

    pub fn user(&self, user: &str) -> Result<(), Duration> {
        self.per_user
            .check_key(&user.to_owned())
            .map_err(|n| n.wait_time_from(self.clock.now()))
    }

    /// Takes one room creation from `user`'s quota.
    pub fn create_room(&self, user: &str) -> Result<(), Duration> {
        self.room_creates
            .check_key(&user.to_owned())
            .map_err(|n| n.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_quota_counts_its_own_key() {
        let limits = RestLimits {
            per_ip: Rate {
                per_second: 1,
                burst: 2,
            },
            per_user: Rate {
                per_second: 1,
                burst: 1,
            },
            room_creates: RoomCreateQuota {
                count: 2,
                per: Duration::from_secs(3600),
            },
            ..Default::default()
        };
        limits.validate().unwrap();
        let q = RestQuotas::new(&limits);
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        assert!(q.ip(ip).is_ok() && q.ip(ip).is_ok());
        assert!(q.ip(ip).is_err(), "burst of 2 used up");
        assert!(q.ip("10.1.1.2".parse().unwrap()).is_ok(), "another IP");
        assert!(q.user("ann").is_ok());
        assert!(q.user("ann").is_err());
        assert!(q.user("bob").is_ok());
        assert!(q.create_room("ann").is_ok() && q.create_room("ann").is_ok());
        let wait = q.create_room("ann").unwrap_err();
        assert!(
            wait > Duration::from_secs(1000) && wait <= Duration::from_secs(1800),
            "one room per 30 min refills: wait {wait:?}"
        );
    }

    #[test]
    fn zero_values_are_refused_not_clamped() {
        let mut l = RestLimits::default();
        assert!(l.validate().is_ok());
        l.per_user.burst = 0;
        assert!(l.validate().unwrap_err().contains("per-user"));
        let l = RestLimits {
            room_creates: RoomCreateQuota {
                count: 5,
                per: Duration::from_millis(10),
            },
            ..Default::default()
        };
        assert!(l.validate().is_err());
        let l = RestLimits {
            max_room_members: 0,
            ..Default::default()
        };
        assert!(l.validate().is_err());
    }
}
