//! What one HTTP connection is doing, for its timeouts: a request in flight (no timeout here:
//! bodies have their own), idle between requests (the idle timeout), or reading a request head
//! (the header timeout, from the head's first byte). A new connection must deliver its first
//! head within the header timeout of being accepted.
//!
//! hyper's own `header_read_timeout` starts as soon as a connection goes idle, so it would cut
//! keep-alive at the header timeout; this follows Go's net/http instead (idle until the first
//! byte, then a header deadline).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Which deadline a connection missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// A request head (or a new connection's first one) took too long.
    Header,
    /// Kept alive without a request for too long.
    Idle,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing expired: look again at this instant.
    CheckAt(Instant),
    Expired(Timeout),
}

pub struct Activity {
    opened: Instant,
    /// Requests whose response has not been sent completely.
    in_flight: AtomicU32,
    served_any: AtomicBool,
    /// Milliseconds since `opened` (+1, so 0 means "never"): when the last response ended.
    idle_since: AtomicU64,
    /// Milliseconds since `opened` (+1): the first byte of the next head, read while idle.
    head_started: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            served_any: AtomicBool::new(false),
            idle_since: AtomicU64::new(1),
            head_started: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64 + 1
    }

    fn instant(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms.saturating_sub(1))
    }

    /// Bytes arrived on the connection.
    pub fn read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            let _ = self.head_started.compare_exchange(
                0,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// A request head was read; the returned guard is dropped once its response is sent.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served_any.store(true, Ordering::Release);
        self.head_started.store(0, Ordering::Release);
        InFlight(self.clone())
    }

    pub fn verdict(&self, header: Duration, idle: Duration) -> Verdict {
        let now = self.now_ms();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Verdict::CheckAt(self.instant(now + header.min(idle).as_millis() as u64));
        }
        let head = self.head_started.load(Ordering::Acquire);
        let (deadline, timeout) = if head != 0 {
            (head + header.as_millis() as u64, Timeout::Header)
        } else if !self.served_any.load(Ordering::Acquire) {
            let opened = self.idle_since.load(Ordering::Acquire);
            (opened + header.as_millis() as u64, Timeout::Header)
        } else {
            let since = self.idle_since.load(Ordering::Acquire);
            (since + idle.as_millis() as u64, Timeout::Idle)
        };
        if now >= deadline {
            Verdict::Expired(timeout)
        } else {
            Verdict::CheckAt(self.instant(deadline))
        }
    }
}

/// A request in flight on its connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        // Idle from now; bytes read while in flight belong to a pipelined head, not a new one.
        activity
            .idle_since
            .store(activity.now_ms(), Ordering::Release);
        activity.head_started.store(0, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    fn advance(ms: u64) -> impl std::future::Future<Output = ()> {
        tokio::time::advance(Duration::from_millis(ms))
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_sends_gets_the_header_timeout() {
        let a = Activity::new();
        advance(9_999).await;
        assert!(matches!(a.verdict(HEADER, IDLE), Verdict::CheckAt(_)));
        advance(2).await;
        assert_eq!(a.verdict(HEADER, IDLE), Verdict::Expired(Timeout::Header));
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_idles_for_the_idle_timeout_then_a_dripped_head_for_the_header_timeout() {
        let a = Activity::new();
        a.read();
        let request = a.request_started();
        advance(30_000).await;
        assert!(
            matches!(a.verdict(HEADER, IDLE), Verdict::CheckAt(_)),
            "in flight: no timeout"
        );
        drop(request);
        advance(59_000).await;
        assert!(matches!(a.verdict(HEADER, IDLE), Verdict::CheckAt(_)));
        a.read(); // the first byte of the next head
        advance(9_000).await;
        assert!(matches!(a.verdict(HEADER, IDLE), Verdict::CheckAt(_)));
        a.read(); // dripping more does not extend it
        advance(1_001).await;
        assert_eq!(a.verdict(HEADER, IDLE), Verdict::Expired(Timeout::Header));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_expires() {
        let a = Activity::new();
        drop(a.request_started());
        advance(60_001).await;
        assert_eq!(a.verdict(HEADER, IDLE), Verdict::Expired(Timeout::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_check_is_the_deadline() {
        let a = Activity::new();
        let start = Instant::now();
        assert_eq!(a.verdict(HEADER, IDLE), Verdict::CheckAt(start + HEADER));
    }
}
