//! Sends one Frust event to every local Socket.IO client, each through its own bounded queue.
//!
//! socketioxide's room broadcast reports a full queue without saying whose, so the edge emits per
//! socket: the payload is serialized to JSON once and copied verbatim for each recipient. A
//! socket whose queue is full has stopped keeping up: it is counted once, and told to disconnect
//! as soon as its queue has room for that; if it never drains, Engine.IO's heartbeat (which
//! cannot be queued either) closes it. Either way its queue stays bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError, SocketIo};

/// How often a slow socket's disconnect is retried, and for how long.
const DISCONNECT_RETRY: Duration = Duration::from_millis(200);
const DISCONNECT_ATTEMPTS: u32 = 300;

/// What one broadcast did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub delivered: u64,
    /// Sockets whose queue was full (they missed this message).
    pub full: u64,
    /// Of those, the ones found slow for the first time (now being disconnected).
    pub newly_slow: u64,
}

/// Marks a socket that fell behind, so it is counted and disconnected once.
#[derive(Clone, Default)]
struct SlowConsumer(Arc<AtomicBool>);

/// Emits `event` with `data` to every socket of the default namespace.
pub fn to_all<T: Serialize + ?Sized>(io: &SocketIo, event: &str, data: &T) -> Outcome {
    let mut outcome = Outcome::default();
    // After a drain closed the namespace there is nobody left to tell.
    let Some(ns) = io.of("/") else {
        return outcome;
    };
    let payload = match serde_json::value::to_raw_value(data) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, event, "fan-out payload does not serialize");
            return outcome;
        }
    };
    for socket in ns.sockets() {
        match socket.emit(event, &*payload as &RawValue) {
            Ok(()) => outcome.delivered += 1,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                outcome.full += 1;
                if mark_slow(&socket) {
                    outcome.newly_slow += 1;
                    spawn_disconnect(socket);
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
