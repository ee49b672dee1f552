//! The heartbeat of a session that opened on websocket, kept by the session's one task
//! (switchyard patch 2, see PATCHES.md) instead of a task of its own. It follows
//! `Socket::heartbeat_job` step by step; sessions that open on polling keep that job, which
//! goes on after an upgrade.

use std::time::Duration;

use engineioxide_core::{Packet, ProtocolVersion};
use smallvec::smallvec;
use tokio::time::Instant;

use crate::{errors::Error, queue::PacketQueue};

pub(crate) struct Heartbeat {
    protocol: ProtocolVersion,
    interval: Duration,
    timeout: Duration,
    /// When the session's timer fires next.
    deadline: Instant,
    /// v4: the ping sent last is not answered yet; the next one is due then.
    awaiting_pong: Option<Instant>,
}

impl Heartbeat {
    pub(crate) fn new(protocol: ProtocolVersion, interval: Duration, timeout: Duration) -> Self {
        let mut heartbeat = Self {
            protocol,
            interval,
            timeout,
            // The heartbeat job pings as soon as it starts (v4).
            deadline: Instant::now(),
            awaiting_pong: None,
        };
        if heartbeat.client_pings() {
            heartbeat.deadline += interval + timeout;
        }
        heartbeat
    }

    /// v3: the client pings and the server answers; v4 the other way round. Without the `v3`
    /// feature every session follows v4, as the heartbeat job does.
    fn client_pings(&self) -> bool {
        cfg!(feature = "v3") && self.protocol == ProtocolVersion::V3
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The timer reached [`Heartbeat::deadline`].
    pub(crate) fn on_timer(&mut self, queue: &PacketQueue) -> Result<(), Error> {
        match self.awaiting_pong {
            None if !self.client_pings() => {
                queue
                    .try_send(smallvec![Packet::Ping])
                    .map_err(|_| Error::HeartbeatTimeout)?;
                // Pings keep their rhythm whatever the pong's delay (a `tokio::time::interval`).
                self.awaiting_pong = Some(self.deadline + self.interval);
                self.deadline = Instant::now() + self.timeout;
                Ok(())
            }
            _ => Err(Error::HeartbeatTimeout),
        }
    }

    /// A Pong or a Ping arrived from the client.
    pub(crate) fn on_heartbeat(&mut self, queue: &PacketQueue) -> Result<(), Error> {
        if self.client_pings() {
            queue
                .try_send(smallvec![Packet::Pong])
                .map_err(|_| Error::HeartbeatTimeout)?;
            self.deadline = Instant::now() + self.interval + self.timeout;
        } else if let Some(next_ping) = self.awaiting_pong.take() {
            // A pong while none is awaited says the client is alive, and nothing more.
            self.deadline = next_ping;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(25);
    const TIMEOUT: Duration = Duration::from_secs(20);

    #[tokio::test(start_paused = true)]
    async fn v4_pings_at_once_then_every_interval() {
        let queue = PacketQueue::new(8);
        let start = Instant::now();
        let mut heartbeat = Heartbeat::new(ProtocolVersion::V4, INTERVAL, TIMEOUT);
        assert_eq!(heartbeat.deadline(), start);
        heartbeat.on_timer(&queue).unwrap();
        assert_eq!(queue.try_recv().unwrap()[0], Packet::Ping);
        assert_eq!(heartbeat.deadline(), start + TIMEOUT);
        tokio::time::advance(Duration::from_secs(1)).await;
        heartbeat.on_heartbeat(&queue).unwrap();
        assert_eq!(heartbeat.deadline(), start + INTERVAL);
        assert!(queue.try_recv().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn v4_times_out_without_a_pong() {
        let queue = PacketQueue::new(8);
        let mut heartbeat = Heartbeat::new(ProtocolVersion::V4, INTERVAL, TIMEOUT);
        heartbeat.on_timer(&queue).unwrap();
        assert!(matches!(
            heartbeat.on_timer(&queue),
            Err(Error::HeartbeatTimeout)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn v4_an_unasked_pong_changes_nothing() {
        let queue = PacketQueue::new(8);
        let mut heartbeat = Heartbeat::new(ProtocolVersion::V4, INTERVAL, TIMEOUT);
        let deadline = heartbeat.deadline();
        heartbeat.on_heartbeat(&queue).unwrap();
        heartbeat.on_heartbeat(&queue).unwrap();
        assert_eq!(heartbeat.deadline(), deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_is_a_heartbeat_timeout() {
        let queue = PacketQueue::new(1);
        queue.try_send(smallvec![Packet::Noop]).unwrap();
        let mut heartbeat = Heartbeat::new(ProtocolVersion::V4, INTERVAL, TIMEOUT);
        assert!(matches!(
            heartbeat.on_timer(&queue),
            Err(Error::HeartbeatTimeout)
        ));
    }

    #[cfg(feature = "v3")]
    #[tokio::test(start_paused = true)]
    async fn v3_answers_pings_and_times_out_without_them() {
        let queue = PacketQueue::new(8);
        let start = Instant::now();
        let mut heartbeat = Heartbeat::new(ProtocolVersion::V3, INTERVAL, TIMEOUT);
        assert_eq!(heartbeat.deadline(), start + INTERVAL + TIMEOUT);
        tokio::time::advance(Duration::from_secs(5)).await;
        heartbeat.on_heartbeat(&queue).unwrap();
        assert_eq!(queue.try_recv().unwrap()[0], Packet::Pong);
        assert_eq!(
            heartbeat.deadline(),
            start + Duration::from_secs(5) + INTERVAL + TIMEOUT
        );
        assert!(matches!(
            heartbeat.on_timer(&queue),
            Err(Error::HeartbeatTimeout)
        ));
    }
}
