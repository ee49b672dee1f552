//! This edge's chat connections, by user. Delivery never waits on a client: each connection
//! has a bounded queue, and one that is full is a slow consumer and gets disconnected.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;

use super::close;
use super::outbox::{Outbox, Refused};

/// A user's connections here: one or two as a rule, so a vector sized to fit, not a map.
type Connections = Vec<(String, Arc<Outbox>)>;

#[derive(Default)]
pub struct Registry {
    by_user: Mutex<HashMap<String, Connections>>,
}

impl Registry {
    pub fn add(&self, user: &str, connection: &str, outbox: Arc<Outbox>) {
        let mut by_user = self.by_user.lock();
        let conns = by_user
            .entry(user.to_owned())
            .or_insert_with(|| Vec::with_capacity(1));
        conns.retain(|(c, _)| c != connection);
        conns.push((connection.to_owned(), outbox));
    }

    pub fn remove(&self, user: &str, connection: &str) {
        let mut by_user = self.by_user.lock();
        if let Some(conns) = by_user.get_mut(user) {
            conns.retain(|(c, _)| c != connection);
            if conns.is_empty() {
                by_user.remove(user);
            } else {
                conns.shrink_to_fit();
            }
        }
    }

    /// Every (user, connection) on this edge, for presence heartbeats.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        self.by_user
            .lock()
            .iter()
            .flat_map(|(user, conns)| conns.iter().map(|(c, _)| (user.clone(), c.clone())))
            .collect()
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.by_user.lock().contains_key(user)
    }

    /// Asks every connection to close (drain): clients see 1013 "try again" and reconnect.
    pub fn close_all(&self) {
        for conns in self.by_user.lock().values() {
            for (_, outbox) in conns {
                outbox.kick(close::TRY_AGAIN);
            }
        }
    }

    /// Closes every connection of `user` with `code`; returns how many there were.
    pub fn disconnect_user(&self, user: &str, code: u16) -> u64 {
        let by_user = self.by_user.lock();
        let conns = by_user.get(user).map_or(&[][..], Vec::as_slice);
        for (_, outbox) in conns {
            outbox.kick(code);
        }
        conns.len() as u64
    }

    /// Queues `text` on every connection of `user`; returns how many took it.
    pub fn deliver(&self, user: &str, text: &Utf8Bytes) -> u64 {
        let by_user = self.by_user.lock();
        let Some(conns) = by_user.get(user) else {
            return 0;
        };
        let mut delivered = 0;
        for (_, outbox) in conns {
            match outbox.try_send(text.clone()) {
                Ok(()) => delivered += 1,
                Err(Refused::Full) => {
                    if outbox.kick(close::TRY_AGAIN) {
                        metrics::counter!("switchyard_slow_consumer_disconnects_total", "api" => "chat")
                            .increment(1);
                    }
                }
                Err(Refused::Closed) => {}
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
        let slow = Arc::new(Outbox::new(1));
        let fast = Arc::new(Outbox::new(8));
        r.add("ann", "1", slow.clone());
        r.add("ann", "2", fast.clone());
        let text = Utf8Bytes::from("x");
        assert_eq!(r.deliver("ann", &text), 2);
        assert_eq!(r.deliver("ann", &text), 1);
        assert!(slow.is_kicked());
        assert!(!fast.is_kicked());
        assert_eq!(fast.pop().unwrap().as_str(), "x");
        assert_eq!(r.snapshot().len(), 2);
        // The server API's disconnect reaches both; the slow one keeps its first reason.
        assert_eq!(r.disconnect_user("ann", close::DISCONNECTED), 2);
        assert!(fast.is_kicked());
        assert_eq!(r.disconnect_user("bob", close::DISCONNECTED), 0);
        r.remove("ann", "1");
        assert!(r.has_user("ann"));
        r.remove("ann", "2");
        assert!(!r.has_user("ann"));
    }
}
