//! The accepted TCP stream as hyper (and, after an upgrade, the websocket) reads it: reads are
//! reported to the connection's `Activity`, limited to a byte rate (a token bucket: websocket
//! ping frames and Engine.IO pings never reach a packet limiter, so the byte rate is what bounds
//! them), and the connection's place under the caps is held for as long as the socket lives.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use switchyard_edge::occupancy::Slot;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::activity::Activity;

/// Sustained bytes per second and burst of the read limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRate {
    pub per_second: u64,
    pub burst: u64,
}

pub struct WatchedIo {
    tcp: TcpStream,
    activity: Arc<Activity>,
    bucket: Bucket,
    _slot: Slot,
}

impl WatchedIo {
    pub fn new(tcp: TcpStream, activity: Arc<Activity>, rate: ByteRate, slot: Slot) -> Self {
        metrics::gauge!("switchyard_tcp_connections").increment(1.0);
        Self {
            tcp,
            activity,
            bucket: Bucket::new(rate),
            _slot: slot,
        }
    }
}

impl Drop for WatchedIo {
    fn drop(&mut self) {
        metrics::gauge!("switchyard_tcp_connections").decrement(1.0);
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let allowed = ready!(this.bucket.poll_budget(cx));
        let mut limited = buf.take(allowed);
        ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        // SAFETY: the first `n` bytes of `buf`'s unfilled part were just filled through `limited`.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        if n > 0 {
            this.bucket.spend(n as u64);
            this.activity.read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Token bucket of read bytes. The timer exists only while a connection is held back.
struct Bucket {
    rate: ByteRate,
    tokens: f64,
    refilled: Instant,
    wait: Option<Pin<Box<Sleep>>>,
}

/// A held-back connection resumes once this much is available (no byte-sized reads).
const RESUME_AT: u64 = 1024;

impl Bucket {
    fn new(rate: ByteRate) -> Self {
        Self {
            rate,
            tokens: rate.burst as f64,
            refilled: Instant::now(),
            wait: None,
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens =
            (self.tokens + elapsed * self.rate.per_second as f64).min(self.rate.burst as f64);
    }

    /// How many bytes may be read now; pending (with a timer) while the bucket refills.
    fn poll_budget(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        if self.wait.is_none() && self.tokens >= 1.0 {
            return Poll::Ready(self.tokens as usize);
        }
        self.refill();
        let resume = RESUME_AT.min(self.rate.burst) as f64;
        if self.tokens >= resume {
            self.wait = None;
            return Poll::Ready(self.tokens as usize);
        }
        if self.wait.is_none() {
            metrics::counter!("switchyard_read_throttled_total").increment(1);
        }
        let missing = (resume - self.tokens) / self.rate.per_second as f64;
        let at = Instant::now() + Duration::from_secs_f64(missing).max(Duration::from_millis(1));
        let wait = self
            .wait
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        wait.as_mut().reset(at);
        match wait.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.refill();
                self.wait = None;
                Poll::Ready((self.tokens as usize).max(1))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn spend(&mut self, n: u64) {
        self.tokens -= n as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test(start_paused = true)]
    async fn the_burst_passes_then_reads_wait_for_the_rate() {
        let mut bucket = Bucket::new(ByteRate {
            per_second: 10_000,
            burst: 50_000,
        });
        let got = poll_fn(|cx| bucket.poll_budget(cx)).await;
        assert_eq!(got, 50_000);
        bucket.spend(50_000);
        let started = Instant::now();
        let got = poll_fn(|cx| bucket.poll_budget(cx)).await;
        assert!(got >= 1024, "resumes with a useful amount, got {got}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited <= Duration::from_millis(110),
            "1 KiB at 10 KB/s is ~102 ms, waited {waited:?}"
        );
    }
}
