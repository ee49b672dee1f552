//! Sends one Frust event to a set of local Socket.IO clients, each through its own bounded queue.
//!
//! socketioxide's room broadcast reports a full queue without saying whose, so the edge emits per
//! socket: the payload is serialized to JSON once (`Prepared`) and copied verbatim for each
//! recipient. A socket whose queue is full has stopped keeping up: it is counted once, and told
//! to disconnect as soon as its queue has room for that; if it never drains, Engine.IO's
//! heartbeat (which cannot be queued either) closes it. Either way its queue stays bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};

/// How often a slow socket's disconnect is retried, and for how long.
const DISCONNECT_RETRY: Duration = Duration::from_millis(200);
const DISCONNECT_ATTEMPTS: u32 = 300;

/// One event, its payload serialized once for every recipient (on every shard).
#[derive(Debug)]
pub struct Prepared {
    event: &'static str,
    payload: Box<RawValue>,
}

impl Prepared {
    pub fn new<T: Serialize + ?Sized>(event: &'static str, data: &T) -> serde_json::Result<Self> {
        Ok(Self {
            event,
            payload: serde_json::value::to_raw_value(data)?,
        })
    }

    pub fn event(&self) -> &'static str {
        self.event
    }
}

/// What one broadcast did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub delivered: u64,
    /// Sockets whose queue was full (they missed this message).
    pub full: u64,
    /// Of those, the ones found slow for the first time (now being disconnected).
    pub newly_slow: u64,
}

impl Outcome {
    /// Records one pass (of one shard: `took` is that shard's time, so the fan-out histogram
    /// gets one sample per shard and message; the counters add up across shards).
    pub fn record(&self, event: &'static str, took: Duration) {
        metrics::histogram!("switchyard_fanout_seconds", "api" => "frust").record(took);
        metrics::counter!("switchyard_packets_out_total", "api" => "frust", "type" => event)
            .increment(self.delivered);
        if self.full > 0 {
            metrics::counter!("switchyard_fanout_errors_total", "api" => "frust")
                .increment(self.full);
        }
        if self.newly_slow > 0 {
            tracing::info!(
                sockets = self.newly_slow,
                "disconnecting slow Socket.IO consumers"
            );
            metrics::counter!("switchyard_slow_consumer_disconnects_total", "api" => "frust")
                .increment(self.newly_slow);
        }
    }
}

/// Marks a socket that fell behind, so it is counted and disconnected once.
#[derive(Clone, Default)]
struct SlowConsumer(Arc<AtomicBool>);

/// Emits `msg` to each of `sockets`, in order.
pub fn to_each(sockets: &[SocketRef], msg: &Prepared) -> Outcome {
    let mut outcome = Outcome::default();
    let payload: &RawValue = &msg.payload;
    for socket in sockets {
        match socket.emit(msg.event, payload) {
            Ok(()) => outcome.delivered += 1,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                outcome.full += 1;
                if mark_slow(socket) {
                    outcome.newly_slow += 1;
                    spawn_disconnect(socket.clone());
                }
            }
            // Closed meanwhile: its disconnect path runs anyway.
            Err(_) => {}
        }
    }
    outcome
}

/// True the first time a socket is found slow.
fn mark_slow(socket: &SocketRef) -> bool {
    let flag = match socket.extensions.get::<SlowConsumer>() {
        Some(flag) => flag,
        None => {
            let flag = SlowConsumer::default();
            socket.extensions.insert(flag.clone());
            flag
        }
    };
    !flag.0.swap(true, Ordering::Relaxed)
}

/// Disconnects with the protocol's own packet (so the client reconnects) once its queue has room.
fn spawn_disconnect(socket: SocketRef) {
    tokio::spawn(async move {
        for _ in 0..DISCONNECT_ATTEMPTS {
            match socket.clone().disconnect() {
                Err(SocketError::InternalChannelFull) => tokio::time::sleep(DISCONNECT_RETRY).await,
                _ => return,
            }
            if !socket.connected() {
                return;
            }
        }
    });
}
