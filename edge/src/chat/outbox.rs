//! A chat connection's bounded send queue and its kick, in one small allocation.
//!
//! tokio's mpsc allocates its first block of 32 slots when the channel is made (~1 KB here, and
//! ~0.5 KB more for the channel and a cancellation token beside it): most of what an idle
//! connection cost. This queue holds nothing until something is queued, gives its memory back
//! once it is drained, and keeps the same bound: a full queue refuses (the registry then kicks
//! the connection as a slow consumer), it never grows past `capacity`.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;

/// Why a packet was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `capacity` packets are waiting: the client is not keeping up.
    Full,
    /// The connection has ended.
    Closed,
}

/// What the connection is told to do next.
#[derive(Debug)]
pub enum Next {
    Send(Utf8Bytes),
    /// Close now with this code (slow consumer, drain, the server API), whatever is queued.
    Kicked(u16),
}

pub struct Outbox {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Utf8Bytes>,
    /// The close code of the first kick.
    kicked: Option<u16>,
    closed: bool,
    waker: Option<Waker>,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    pub fn try_send(&self, text: Utf8Bytes) -> Result<(), Refused> {
        let waker = {
            let mut s = self.state.lock();
            if s.closed {
                return Err(Refused::Closed);
            }
            if s.queue.len() >= self.capacity {
                return Err(Refused::Full);
            }
            s.queue.push_back(text);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Asks the connection to close itself with `code`; true the first time (whose code wins).
    pub fn kick(&self, code: u16) -> bool {
        let (first, waker) = {
            let mut s = self.state.lock();
            let first = s.kicked.is_none();
            s.kicked.get_or_insert(code);
            (first, s.waker.take())
        };
        if let Some(w) = waker {
            w.wake();
        }
        first
    }

    pub fn is_kicked(&self) -> bool {
        self.state.lock().kicked.is_some()
    }

    /// The next thing to do: a kick first, then (if `take`) the oldest queued packet. Pending,
    /// and the task woken on the next kick or packet, while there is neither.
    pub fn poll_next(&self, cx: &mut Context<'_>, take: bool) -> Poll<Next> {
        let mut s = self.state.lock();
        if let Some(code) = s.kicked {
            return Poll::Ready(Next::Kicked(code));
        }
        match if take { s.queue.pop_front() } else { None } {
            Some(text) => {
                // Drained: an idle connection holds no buffer.
                if s.queue.is_empty() && s.queue.capacity() > 0 {
                    s.queue = VecDeque::new();
                }
                Poll::Ready(Next::Send(text))
            }
            None => {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Takes the oldest queued packet, if any (the flush before a normal close).
    pub fn pop(&self) -> Option<Utf8Bytes> {
        self.state.lock().queue.pop_front()
    }

    /// The connection has ended: refuses further packets and drops what is queued.
    pub fn close(&self) {
        let mut s = self.state.lock();
        s.closed = true;
        s.queue = VecDeque::new();
        s.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn bounded_then_drained_then_closed() {
        let q = Outbox::new(2);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(q.poll_next(&mut cx, true).is_pending());
        q.try_send("a".into()).unwrap();
        q.try_send("b".into()).unwrap();
        assert_eq!(q.try_send("c".into()), Err(Refused::Full));
        assert!(
            matches!(q.poll_next(&mut cx, true), Poll::Ready(Next::Send(t)) if t.as_str() == "a")
        );
        q.try_send("c".into()).unwrap();
        assert_eq!(q.pop().unwrap().as_str(), "b");
        assert!(q.kick(4003));
        assert!(!q.kick(1013));
        assert!(matches!(
            q.poll_next(&mut cx, true),
            Poll::Ready(Next::Kicked(4003))
        ));
        q.close();
        assert_eq!(q.try_send("d".into()), Err(Refused::Closed));
        assert!(q.pop().is_none());
    }

    #[test]
    fn a_drained_burst_gives_its_buffer_back() {
        let q = Outbox::new(1024);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            q.try_send("x".into()).unwrap();
        }
        while let Poll::Ready(Next::Send(_)) = q.poll_next(&mut cx, true) {}
        assert_eq!(q.state.lock().queue.capacity(), 0);
    }
}
