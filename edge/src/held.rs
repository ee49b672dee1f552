//! Inbound packets an edge holds until the durable stream confirms them. Through a JetStream
//! election a publish is retried for up to the publish budget (30 s by default), so packets pile
//! up: each connection holds at most its session queue, and the whole edge at most this many
//! bytes. Past it a packet is refused at once (`held_full`), with a clear ack error.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub struct Held {
    budget: Arc<Semaphore>,
    max_bytes: usize,
}

/// Bytes held for one packet; released when dropped (the stream answered, either way).
pub struct Hold {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
}

impl Drop for Hold {
    fn drop(&mut self) {
        metrics::gauge!("switchyard_held_bytes").decrement(self.bytes as f64);
    }
}

impl Held {
    pub fn new(max_bytes: usize) -> Self {
        let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            budget: Arc::new(Semaphore::new(max_bytes)),
            max_bytes,
        }
    }

    /// Holds `bytes` for a packet, or `None` when the edge holds its maximum already.
    pub fn try_hold(&self, api: &'static str, bytes: usize) -> Option<Hold> {
        let bytes = bytes.clamp(1, self.max_bytes);
        match self.budget.clone().try_acquire_many_owned(bytes as u32) {
            Ok(permit) => {
                metrics::gauge!("switchyard_held_bytes").increment(bytes as f64);
                Some(Hold {
                    _permit: permit,
                    bytes,
                })
            }
            Err(_) => {
                metrics::counter!("switchyard_rejects_total", "api" => api, "reason" => "held_full")
                    .increment(1);
                self.log_refusal(api);
                None
            }
        }
    }

    /// One line per interval however many are refused (the edge's one log throttle).
    fn log_refusal(&self, api: &'static str) {
        if let Some(since_last) = crate::refusals::due(api, "held_full") {
            tracing::warn!(
                api,
                max_bytes = self.max_bytes,
                more_since_last_line = since_last,
                "refusing inbound packets: this edge holds SWITCHYARD_HELD_BYTES of packets the \
                 stream has not confirmed (NATS slow or electing); more are refused until it answers"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_the_budget_and_releases_on_drop() {
        let held = Held::new(100);
        let a = held.try_hold("frust", 60).expect("room");
        assert!(held.try_hold("frust", 50).is_none(), "over the budget");
        let b = held.try_hold("frust", 40).expect("exactly the rest");
        drop(a);
        assert!(held.try_hold("frust", 60).is_some(), "released on drop");
        drop(b);
    }
}
