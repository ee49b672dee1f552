//! Caps on things held open at the same time — TCP connections, Socket.IO sessions — in total
//! and per client (an IPv4 address or an IPv6 /64). A `Slot` is held for as long as the thing
//! it counts lives; dropping it gives the place back.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::limits::client_key;

/// Which cap refused a new holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The edge holds its maximum.
    Total,
    /// This client holds its maximum.
    Client,
}

pub struct Occupancy {
    max_total: usize,
    max_per_client: usize,
    /// The total and the count of every client holding at least one slot (no zero entries).
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    total: usize,
    per_client: HashMap<IpAddr, u32>,
}

impl Occupancy {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_client,
            held: Mutex::default(),
        })
    }

    /// Takes a place for `client`; `None` is counted only in the total (a trusted proxy speaks
    /// for many clients).
    pub fn try_hold(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Slot, Full> {
        let key = client.map(client_key);
        let mut held = self.held.lock();
        if held.total >= self.max_total {
            return Err(Full::Total);
        }
        if let Some(key) = key {
            let count = held.per_client.get(&key).copied().unwrap_or(0);
            if count as usize >= self.max_per_client {
                return Err(Full::Client);
            }
            held.per_client.insert(key, count + 1);
        }
        held.total += 1;
        Ok(Slot {
            occupancy: self.clone(),
            key,
        })
    }

    /// Would `client` get a place now? (A check ahead of `try_hold`, which may still refuse.)
    pub fn has_room(&self, client: IpAddr) -> Result<(), Full> {
        let held = self.held.lock();
        if held.total >= self.max_total {
            return Err(Full::Total);
        }
        let count = held
            .per_client
            .get(&client_key(client))
            .copied()
            .unwrap_or(0);
        if count as usize >= self.max_per_client {
            return Err(Full::Client);
        }
        Ok(())
    }

    pub fn total(&self) -> usize {
        self.held.lock().total
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn max_per_client(&self) -> usize {
        self.max_per_client
    }

    fn release(&self, key: Option<IpAddr>) {
        let mut held = self.held.lock();
        held.total -= 1;
        if let Some(key) = key {
            if let Some(count) = held.per_client.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    held.per_client.remove(&key);
                }
            }
        }
    }
}

/// One place held; given back on drop.
pub struct Slot {
    occupancy: Arc<Occupancy>,
    key: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.occupancy.release(self.key);
    }
}

/// Slots given back a fixed time after they were handed over. They expire in the order they
/// came, so one queue swept by one task does it (56 bytes a slot, not a timer task each).
pub struct Expiring {
    after: Duration,
    queue: Mutex<VecDeque<(Instant, Slot)>>,
}

impl Expiring {
    pub fn new(after: Duration) -> Arc<Self> {
        let expiring = Arc::new(Self {
            after,
            queue: Mutex::default(),
        });
        let weak = Arc::downgrade(&expiring);
        let every = (after / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(expiring) = weak.upgrade() else {
                    return;
                };
                expiring.sweep(Instant::now());
            }
        });
        expiring
    }

    pub fn hold(&self, slot: Slot) {
        self.queue
            .lock()
            .push_back((Instant::now() + self.after, slot));
    }

    fn sweep(&self, now: Instant) {
        let expired: Vec<Slot> = {
            let mut queue = self.queue.lock();
            let due = queue.iter().take_while(|(at, _)| *at <= now).count();
            queue.drain(..due).map(|(_, slot)| slot).collect()
        };
        drop(expired); // given back outside the queue's lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn caps_per_client_and_in_total_and_gives_places_back() {
        let o = Occupancy::new(4, 2);
        let a1 = o.try_hold(ip("1.1.1.1")).unwrap();
        let _a2 = o.try_hold(ip("1.1.1.1")).unwrap();
        assert_eq!(o.try_hold(ip("1.1.1.1")).err(), Some(Full::Client));
        assert_eq!(o.has_room("1.1.1.1".parse().unwrap()), Err(Full::Client));
        let _b = o.try_hold(ip("2.2.2.2")).unwrap();
        let _proxy = o.try_hold(None).unwrap();
        assert_eq!(o.try_hold(ip("3.3.3.3")).err(), Some(Full::Total));
        drop(a1);
        assert_eq!(o.total(), 3);
        assert!(o.try_hold(ip("1.1.1.1")).is_ok(), "a place was given back");
    }

    #[test]
    fn an_ipv6_slash_64_shares_one_count_and_mapped_ipv4_is_ipv4() {
        let o = Occupancy::new(100, 1);
        let _a = o.try_hold(ip("2001:db8::1")).unwrap();
        assert_eq!(o.try_hold(ip("2001:db8::2")).err(), Some(Full::Client));
        assert!(o.try_hold(ip("2001:db8:0:1::1")).is_ok());
        let _v4 = o.try_hold(ip("1.2.3.4")).unwrap();
        assert_eq!(o.try_hold(ip("::ffff:1.2.3.4")).err(), Some(Full::Client));
    }

    #[test]
    fn empty_clients_are_forgotten() {
        let o = Occupancy::new(10, 10);
        let slots: Vec<_> = (0..5)
            .map(|i| o.try_hold(ip(&format!("9.9.9.{i}"))).unwrap())
            .collect();
        drop(slots);
        assert!(o.held.lock().per_client.is_empty());
        assert_eq!(o.total(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn expiring_slots_are_given_back_after_their_time_and_not_before() {
        let o = Occupancy::new(10, 2);
        let young = Expiring::new(Duration::from_secs(10));
        young.hold(o.try_hold(ip("1.1.1.1")).unwrap());
        tokio::time::sleep(Duration::from_secs(5)).await;
        young.hold(o.try_hold(ip("1.1.1.1")).unwrap());
        assert_eq!(o.try_hold(ip("1.1.1.1")).err(), Some(Full::Client));
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        assert_eq!(
            o.total(),
            1,
            "the first expired, the second has 4.5 s to go"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(o.total(), 0);
    }
}
