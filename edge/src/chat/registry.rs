//! This edge's chat connections, by user. Delivery never waits on a client: each connection
//! has a bounded queue, and one that is full is a slow consumer and gets disconnected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::close;

#[derive(Clone)]
pub struct ConnectionHandle {
    pub tx: mpsc::Sender<Utf8Bytes>,
    /// Cancelled to make the connection close itself.
    pub kick: CancellationToken,
    /// The close code the connection sends when it ends.
    pub close_code: Arc<AtomicU16>,
}

impl ConnectionHandle {
    /// Makes the connection close itself with `code` (the first kick's code wins).
    pub fn kick(&self, code: u16) {
        if !self.kick.is_cancelled() {
            self.close_code.store(code, Ordering::SeqCst);
            self.kick.cancel();
        }
    }
}

#[derive(Default)]
pub struct Registry {
    by_user: Mutex<HashMap<String, HashMap<String, ConnectionHandle>>>,
}

impl Registry {
    pub fn add(&self, user: &str, connection: &str, handle: ConnectionHandle) {
        self.by_user
            .lock()
            .entry(user.to_owned())
            .or_default()
            .insert(connection.to_owned(), handle);
    }

    pub fn remove(&self, user: &str, connection: &str) {
        let mut by_user = self.by_user.lock();
        if let Some(conns) = by_user.get_mut(user) {
            conns.remove(connection);
            if conns.is_empty() {
                by_user.remove(user);
            }
        }
    }

    /// Every (user, connection) on this edge, for presence heartbeats.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        self.by_user
            .lock()
            .iter()
            .flat_map(|(user, conns)| conns.keys().map(|c| (user.clone(), c.clone())))
            .collect()
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.by_user.lock().contains_key(user)
    }

    /// Asks every connection to close (drain): clients see 1013 "try again" and reconnect.
    pub fn close_all(&self) {
        for conns in self.by_user.lock().values() {
            for handle in conns.values() {
                handle.kick(close::TRY_AGAIN);
            }
        }
    }

    /// Closes every connection of `user` with `code`; returns how many there were.
    pub fn disconnect_user(&self, user: &str, code: u16) -> u64 {
        let by_user = self.by_user.lock();
        let conns = by_user.get(user).map(|c| c.values()).into_iter().flatten();
        conns.map(|handle| handle.kick(code)).count() as u64
    }

    /// Queues `text` on every connection of `user`; returns how many took it.
    pub fn deliver(&self, user: &str, text: &Utf8Bytes) -> u64 {
        let by_user = self.by_user.lock();
        let Some(conns) = by_user.get(user) else {
            return 0;
        };
        let mut delivered = 0;
        for handle in conns.values() {
            match handle.tx.try_send(text.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !handle.kick.is_cancelled() {
                        metrics::counter!("switchyard_slow_consumer_disconnects_total", "api" => "chat")
                            .increment(1);
                        handle.kick(close::TRY_AGAIN);
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_kicks_only_that_connection() {
        let r = Registry::default();
        let (slow_tx, _slow_rx) = mpsc::channel(1);
        let (fast_tx, mut fast_rx) = mpsc::channel(8);
        let handle = |tx| ConnectionHandle {
            tx,
            kick: CancellationToken::new(),
            close_code: Arc::new(AtomicU16::new(close::NORMAL)),
        };
        let (slow, fast) = (handle(slow_tx), handle(fast_tx));
        r.add("ann", "1", slow.clone());
        r.add("ann", "2", fast.clone());
        let text = Utf8Bytes::from("x");
        assert_eq!(r.deliver("ann", &text), 2);
        assert_eq!(r.deliver("ann", &text), 1);
        assert!(slow.kick.is_cancelled());
        assert_eq!(slow.close_code.load(Ordering::SeqCst), close::TRY_AGAIN);
        assert!(!fast.kick.is_cancelled());
        assert_eq!(fast_rx.try_recv().unwrap().as_str(), "x");
        // The server API's disconnect reaches both; the slow one keeps its first reason.
        assert_eq!(r.disconnect_user("ann", close::DISCONNECTED), 2);
        assert_eq!(fast.close_code.load(Ordering::SeqCst), close::DISCONNECTED);
        assert_eq!(slow.close_code.load(Ordering::SeqCst), close::TRY_AGAIN);
        assert_eq!(r.disconnect_user("bob", close::DISCONNECTED), 0);
        r.remove("ann", "1");
        r.remove("ann", "2");
        assert!(!r.has_user("ann"));
    }
}
