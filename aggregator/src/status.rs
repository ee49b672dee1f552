//! Pacing of `status` {user_count}: one broadcast per window at most, the window stretched with
//! the audience, because one broadcast costs one packet per online user.

use std::time::Duration;

use switchyard_schema::frust::Status;
use tokio::time::Instant;

use crate::presence::Sessions;

/// Online users the base window is sized for.
const USERS_PER_BASE_WINDOW: u32 = 1000;

/// The status window for `online` users: `base × max(1, online / 1000)`, at most `max`.
///
/// A broadcast to N users costs N packets, so stretching the window in proportion to N caps
/// status traffic at 1000 packets per base window (10,000/s at 100 ms) whatever the audience,
/// while deployments of up to 1000 users keep the base window. Past the cap (20,000 users at
/// 100 ms / 2 s) staleness stays bounded instead and traffic grows as online / max.
pub fn status_window(base: Duration, max: Duration, online: usize) -> Duration {
    let online = u32::try_from(online).unwrap_or(u32::MAX);
    let scaled = base
        .checked_mul(online)
        .map_or(Duration::MAX, |d| d / USERS_PER_BASE_WINDOW);
    scaled.clamp(base, max.max(base))
}

/// When the next `status` is due: one window after the previous one, the window sized for the
/// audience it would go to. Always armed, so the last change is always broadcast.
pub struct StatusPacer {
    base: Duration,
    max: Duration,
    last: Instant,
}

impl StatusPacer {
    pub fn new(base: Duration, max: Duration, now: Instant) -> Self {
        Self {
            base,
            max,
            last: now,
        }
    }

    pub fn due(&self, online: usize) -> Instant {
        let window = status_window(self.base, self.max, online);
        // An absurd configured window would overflow `Instant`: a day is as good as never.
        self.last
            .checked_add(window)
            .unwrap_or(self.last + Duration::from_secs(86_400))
    }

    /// At `due`: starts the next window; the status to broadcast if anyone came or went.
    pub fn take(&mut self, sessions: &mut Sessions, now: Instant) -> Option<Status> {
        self.last = now;
        sessions.take_status_change()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use futures::StreamExt;
    use switchyard_bus::{Bus, InProcessBus};
    use switchyard_schema::envelope::{self, FrustFanout, FrustOut, Presence};
    use switchyard_schema::subjects::{OUT_FRUST, PRESENCE_FRUST, RPC_FRUST_ONLINE};
    use switchyard_schema::Clock;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{Aggregator, AggregatorConfig};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn joined(i: usize) -> Presence {
        Presence::Joined {
            session: format!("s{i}"),
            edge: "e".into(),
        }
    }

    #[test]
    fn window_stretches_with_the_audience_up_to_the_max() {
        let w = |online| status_window(ms(100), ms(2000), online);
        assert_eq!(w(0), ms(100));
        assert_eq!(w(1000), ms(100), "small deployments keep the base window");
        assert_eq!(w(1500), ms(150));
        assert_eq!(w(19_000), ms(1900));
        assert_eq!(w(20_000), ms(2000));
        assert_eq!(w(1_000_000), ms(2000));
        assert_eq!(w(usize::MAX), ms(2000), "no overflow");
        assert_eq!(
            status_window(ms(100), ms(10), 5000),
            ms(100),
            "max below base"
        );
        let huge = StatusPacer::new(Duration::MAX, Duration::MAX, Instant::now());
        assert!(huge.due(0) > Instant::now(), "no overflow of the deadline");
        // Below the cap, status packets per second stay at 1000 per base window.
        for online in (1000..=20_000).step_by(250) {
            let per_second = online as f64 / w(online).as_secs_f64();
            assert!(per_second <= 10_000.0 + 1e-6, "{online}: {per_second}/s");
        }
    }

    /// Drives the pacer as the aggregator loop does, in 1 ms steps, `joins(t)` sessions joining
    /// at millisecond t. Returns (ms, user_count) of every broadcast.
    fn simulate(max: Duration, until_ms: u64, joins: impl Fn(u64) -> usize) -> Vec<(u64, u64)> {
        let t0 = Instant::now();
        let mut sessions = Sessions::default();
        let mut pacer = StatusPacer::new(ms(100), max, t0);
        let mut out = Vec::new();
        for t in 0..until_ms {
            let now = t0 + ms(t);
            for _ in 0..joins(t) {
                sessions.apply(joined(sessions.online_count()), now.into_std());
            }
            if now >= pacer.due(sessions.online_count()) {
                if let Some(s) = pacer.take(&mut sessions, now) {
                    out.push((t, s.user_count));
                }
            }
        }
        out
    }

    #[test]
    fn a_burst_yields_one_status_per_window_with_the_final_count() {
        let burst = |t| match t {
            30 => 500,
            150 => 5000,
            _ => 0,
        };
        // 500 users: the base window. Then 5500: due 550 ms after the previous broadcast.
        assert_eq!(simulate(ms(2000), 5000, burst), [(100, 500), (650, 5500)]);
    }

    #[test]
    fn a_connect_storm_costs_at_most_1000_packets_per_base_window() {
        // 20,000 connects over 2 s.
        let storm = |t| if t < 2000 { 10 } else { 0 };
        let adaptive = simulate(ms(2000), 8000, storm);
        let fixed = simulate(ms(100), 8000, storm);
        for sent in [&adaptive, &fixed] {
            assert_eq!(sent.last().unwrap().1, 20_000, "the final count goes out");
        }
        let packets = |sent: &[(u64, u64)]| sent.iter().map(|(_, n)| n).sum::<u64>();
        let last_ms = adaptive.last().unwrap().0;
        assert!(
            packets(&adaptive) <= 1000 * last_ms / 100,
            "{} packets by {last_ms} ms",
            packets(&adaptive)
        );
        for pair in adaptive.windows(2) {
            let (gap, online) = (pair[1].0 - pair[0].0, pair[1].1 as usize);
            assert!(ms(gap) >= status_window(ms(100), ms(2000), online));
        }
        assert!(
            packets(&fixed) > 4 * packets(&adaptive),
            "{adaptive:?} vs {fixed:?}"
        );
    }

    /// The aggregator loop itself: a burst of joins, then quiet.
    #[tokio::test]
    async fn the_loop_broadcasts_the_final_count_of_a_burst() {
        const N: usize = 300;
        let path = std::env::temp_dir().join(format!(
            "switchyard-aggregator-status-{}-{}.sqlite",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let store = switchyard_store::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new());
        let mut out = bus.subscribe(OUT_FRUST).await.unwrap();
        let config = AggregatorConfig {
            clock: Clock::system(),
            status_window: ms(50),
            status_window_max: ms(2000),
            rebuild_on_start: false,
            edge_timeout: Duration::from_secs(60),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(Aggregator::new(bus.clone(), store, config).run(stop.clone()));
        // Answers once it has subscribed to presence (subscribed before queries). "No
        // responder" comes back at once: sleep, or this loop starves the aggregator task.
        for attempt in 0.. {
            assert!(attempt < 500, "the aggregator never answered");
            match bus.request(RPC_FRUST_ONLINE, Bytes::new(), ms(100)).await {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(ms(10)).await,
            }
        }

        for i in 0..N {
            let p = Bytes::from(envelope::encode(&joined(i)).unwrap());
            bus.publish(PRESENCE_FRUST, p).await.unwrap();
        }
        let mut counts = Vec::new();
        // Until one second of quiet: ten times the window for this audience.
        while let Ok(Some(msg)) = tokio::time::timeout(ms(1000), out.next()).await {
            let fanout: FrustFanout = envelope::decode(&msg.payload).unwrap();
            for o in fanout.outs {
                if let FrustOut::Status(s) = o {
                    counts.push(s.user_count);
                }
            }
        }
        stop.cancel();
        task.await.unwrap().unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assert_eq!(counts.last(), Some(&(N as u64)), "{counts:?}");
        // One window, or two when a tick falls inside the burst; the slack is for a slow machine.
        assert!(counts.len() <= 3, "{counts:?}");
    }
}
