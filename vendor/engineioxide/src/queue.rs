//! The packets waiting to be sent to one client (switchyard patch 1, see PATCHES.md).
//!
//! It replaces a `tokio::sync::mpsc` channel and a `watch` channel. tokio allocates a channel's
//! first block of 32 slots when the channel is made; a slot holds a `PacketBuf` (~170 B), so
//! every socket held ~5.6 KB for a queue that an idle socket leaves empty. This queue holds
//! nothing while empty: its buffer is allocated by the first packet and given back once the
//! transport has taken every packet. The bound, the permits and the errors are the channel's.
//!
//! One receiver at a time: the transports take packets only while they hold the socket's
//! `internal_rx` lock, as they did with the channel's receiver.

use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::Mutex,
    task::{Context, Poll, Waker},
};

use engineioxide_core::PacketBuf;
use tokio::sync::{
    Notify,
    mpsc::error::{SendError, TrySendError},
};

pub(crate) struct PacketQueue {
    capacity: usize,
    state: Mutex<State>,
    /// Woken when a place frees or the queue closes: a sender waiting for room, `closed()`.
    changed: Notify,
}

#[derive(Default)]
struct State {
    packets: VecDeque<PacketBuf>,
    /// Places held by permits that were not used yet.
    reserved: usize,
    /// The latest volatile packets: a newer one replaces them (a `watch` channel's value).
    volatile: Option<Box<PacketBuf>>,
    closed: bool,
    receiver: Option<Waker>,
}

impl State {
    fn is_full(&self, capacity: usize) -> bool {
        self.packets.len() + self.reserved >= capacity
    }

    /// The waker of the receiver, to wake once the lock is released.
    fn take_receiver(&mut self) -> Option<Waker> {
        self.receiver.take()
    }
}

/// One place in the queue, held until a packet is sent with it or it is dropped.
pub(crate) struct QueuePermit<'a> {
    queue: &'a PacketQueue,
}

impl QueuePermit<'_> {
    pub(crate) fn send(self, packets: PacketBuf) {
        let waker = {
            let mut state = self.queue.lock();
            state.reserved -= 1;
            // A closed queue drops the packet, as a channel whose receiver is gone does.
            if !state.closed {
                state.packets.push_back(packets);
            }
            state.take_receiver()
        };
        std::mem::forget(self);
        wake(waker);
    }
}

impl Drop for QueuePermit<'_> {
    fn drop(&mut self) {
        let was_full = {
            let mut state = self.queue.lock();
            let was_full = state.is_full(self.queue.capacity);
            state.reserved -= 1;
            was_full
        };
        if was_full {
            self.queue.changed.notify_waiters();
        }
    }
}

impl PacketQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        // A channel of capacity 0 panics; so does this queue, for the same configuration error.
        assert!(capacity > 0, "the socket's buffer size must be at least 1");
        Self {
            capacity,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it: every change is one
        // statement.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // The channel's own error, so that its callers do not change.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, packets: PacketBuf) -> Result<(), TrySendError<PacketBuf>> {
        let waker = {
            let mut state = self.lock();
            if state.closed {
                return Err(TrySendError::Closed(packets));
            }
            if state.is_full(self.capacity) {
                return Err(TrySendError::Full(packets));
            }
            state.packets.push_back(packets);
            state.take_receiver()
        };
        wake(waker);
        Ok(())
    }

    pub(crate) fn try_reserve(&self) -> Result<QueuePermit<'_>, TrySendError<()>> {
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        if state.is_full(self.capacity) {
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(QueuePermit { queue: self })
    }

    /// Sends once there is room, like `mpsc::Sender::send`.
    pub(crate) async fn send(&self, packets: PacketBuf) -> Result<(), SendError<PacketBuf>> {
        let mut packets = packets;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a place freed in between is not missed.
            changed.as_mut().enable();
            match self.try_send(packets) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(p)) => return Err(SendError(p)),
                Err(TrySendError::Full(p)) => packets = p,
            }
            changed.await;
        }
    }

    /// Replaces the volatile packets waiting to be sent. False once the queue is closed.
    pub(crate) fn send_volatile(&self, packets: PacketBuf) -> bool {
        let waker = {
            let mut state = self.lock();
            if state.closed {
                return false;
            }
            state.volatile = Some(Box::new(packets));
            state.take_receiver()
        };
        wake(waker);
        true
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Resolves once the queue is closed.
    pub(crate) async fn closed(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_closed() {
                return;
            }
            changed.await;
        }
    }

    /// No packet can be sent from now on; the ones already queued can still be received.
    pub(crate) fn close(&self) {
        let waker = {
            let mut state = self.lock();
            state.closed = true;
            state.volatile = None;
            state.take_receiver()
        };
        self.changed.notify_waiters();
        wake(waker);
    }

    /// The next buffered packets; `None` once the queue is closed and empty. Only the holder of
    /// the socket's `internal_rx` lock receives.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<PacketBuf>> {
        let mut state = self.lock();
        match self.pop(&mut state) {
            Some(packets) => Poll::Ready(Some(packets)),
            None if state.closed => Poll::Ready(None),
            None => {
                register(&mut state.receiver, cx);
                Poll::Pending
            }
        }
    }

    // The transports poll; the test harness's sockets await.
    #[cfg_attr(not(feature = "__test_harness"), allow(dead_code))]
    pub(crate) async fn recv(&self) -> Option<PacketBuf> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub(crate) fn try_recv(&self) -> Option<PacketBuf> {
        let mut state = self.lock();
        self.pop(&mut state)
    }

    /// The latest volatile packets, if any were sent since the last call.
    pub(crate) fn poll_volatile(&self, cx: &mut Context<'_>) -> Poll<PacketBuf> {
        let mut state = self.lock();
        match state.volatile.take() {
            Some(packets) => Poll::Ready(*packets),
            None => {
                register(&mut state.receiver, cx);
                Poll::Pending
            }
        }
    }

    fn pop(&self, state: &mut State) -> Option<PacketBuf> {
        let was_full = state.is_full(self.capacity);
        let packets = state.packets.pop_front()?;
        if state.packets.is_empty() {
            // An idle socket keeps no buffer.
            state.packets = VecDeque::new();
        }
        if was_full {
            self.changed.notify_waiters();
        }
        Some(packets)
    }
}

fn register(slot: &mut Option<Waker>, cx: &mut Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engineioxide_core::Packet;
    use smallvec::smallvec;
    use std::{sync::Arc, time::Duration};

    fn ping() -> PacketBuf {
        smallvec![Packet::Ping]
    }

    #[test]
    fn an_empty_queue_holds_no_buffer() {
        let queue = PacketQueue::new(4);
        queue.try_send(ping()).unwrap();
        queue.try_send(ping()).unwrap();
        assert!(queue.lock().packets.capacity() > 0);
        assert!(queue.try_recv().is_some());
        assert!(queue.try_recv().is_some());
        assert_eq!(queue.lock().packets.capacity(), 0);
    }

    #[test]
    fn the_bound_counts_reserved_places() {
        let queue = PacketQueue::new(2);
        let permit = queue.try_reserve().unwrap();
        queue.try_send(ping()).unwrap();
        assert!(matches!(queue.try_send(ping()), Err(TrySendError::Full(_))));
        assert!(matches!(queue.try_reserve(), Err(TrySendError::Full(()))));
        drop(permit);
        queue.try_reserve().unwrap().send(ping());
        assert!(queue.try_recv().is_some());
        assert!(queue.try_recv().is_some());
        assert!(queue.try_recv().is_none());
    }

    #[test]
    fn a_closed_queue_refuses_and_still_yields_what_it_holds() {
        let queue = PacketQueue::new(4);
        queue.try_send(ping()).unwrap();
        queue.close();
        assert!(queue.is_closed());
        assert!(matches!(
            queue.try_send(ping()),
            Err(TrySendError::Closed(_))
        ));
        assert!(matches!(queue.try_reserve(), Err(TrySendError::Closed(()))));
        assert!(!queue.send_volatile(ping()));
        assert!(queue.try_recv().is_some());
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(queue.poll_recv(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn a_newer_volatile_packet_replaces_the_older() {
        let queue = PacketQueue::new(4);
        assert!(queue.send_volatile(smallvec![Packet::Ping]));
        assert!(queue.send_volatile(smallvec![Packet::Pong]));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        match queue.poll_volatile(&mut cx) {
            Poll::Ready(p) => assert_eq!(p[0], Packet::Pong),
            Poll::Pending => panic!("a volatile packet is waiting"),
        }
        assert!(queue.poll_volatile(&mut cx).is_pending());
    }

    #[tokio::test]
    async fn the_receiver_wakes_on_a_packet_and_on_close() {
        let queue = Arc::new(PacketQueue::new(4));
        let receiver = tokio::spawn({
            let queue = queue.clone();
            async move { (queue.recv().await.is_some(), queue.recv().await.is_none()) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        queue.try_send(ping()).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        queue.close();
        assert_eq!(receiver.await.unwrap(), (true, true));
    }

    #[tokio::test]
    async fn a_sender_waits_for_room() {
        let queue = Arc::new(PacketQueue::new(1));
        queue.try_send(ping()).unwrap();
        let sender = tokio::spawn({
            let queue = queue.clone();
            async move { queue.send(ping()).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!sender.is_finished());
        assert!(queue.try_recv().is_some());
        assert!(sender.await.unwrap());
        assert!(queue.try_recv().is_some());
    }

    #[tokio::test]
    async fn closed_resolves_when_the_queue_closes() {
        let queue = Arc::new(PacketQueue::new(1));
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.closed().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        queue.close();
        waiter.await.unwrap();
    }
}
