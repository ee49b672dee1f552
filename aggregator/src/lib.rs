//! Aggregator role: applies persisted facts to exact counters (saved with the stream sequence
//! they include), keeps who is online, and publishes `status` (coalesced) and hourly `stats`.

mod chat_presence;
mod counters;
mod facts;
mod presence;
mod running;
mod status;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use switchyard_bus::{Bus, TypedBus};
use switchyard_schema::topics;
use switchyard_schema::Clock;
use switchyard_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use counters::Counters;
use running::Running;
pub use status::status_window;

/// Once a drain starts, at most this long is spent on it. Counters are saved with the sequence
/// they include after every batch, so stopping anywhere loses nothing (a restart replays from
/// the checkpoint); a drain must not wait for a NATS node that is away (a re-opening replay, a
/// publish while reconnecting) until the process's whole drain timeout is gone.
const DRAIN_MAX: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    pub clock: Clock,
    /// How long `status` changes are gathered before one broadcast (connect storms), up to
    /// 1000 online users; longer in proportion beyond (see [`status_window`]).
    pub status_window: Duration,
    /// The longest the status window grows.
    pub status_window_max: Duration,
    /// Recount from stored rows at start: for a bus whose streams die with the process.
    pub rebuild_on_start: bool,
    /// An edge silent (no heartbeat) for this long is dead: its users go offline.
    pub edge_timeout: Duration,
}

pub struct Aggregator {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    config: AggregatorConfig,
    /// Chat-leave announcements in flight (they read the store off the loop): a drain waits
    /// for them, so the store is not closed under them.
    chat_leaves: TaskTracker,
}

impl Aggregator {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn Store>, config: AggregatorConfig) -> Self {
        Self {
            bus,
            store,
            config,
            chat_leaves: TaskTracker::new(),
        }
    }

    /// Runs until `shutdown` is cancelled and the facts stream has drained.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        if self.config.rebuild_on_start {
            self.store.rebuild_counters().await?;
        }
        let mut state = Running::open(&self).await?;
        let mut presence = self.bus.subscribe_to(&topics::PRESENCE_FRUST).await?;
        let mut queries = self.bus.serve(&topics::RPC_FRUST_ONLINE).await?;
        let mut chat_presence = self.bus.subscribe_to(&topics::PRESENCE_CHAT).await?;
        let mut expiry_tick =
            tokio::time::interval(Duration::from_secs(1).min(self.config.edge_timeout / 3));

        let work = async {
            loop {
                // Recomputed every pass: the window follows the audience as it grows or shrinks.
                let status_due = state.status_due();
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled(), if state.drain_deadline.is_none() => state.start_drain(),
                    fact = state.facts.next() => match fact {
                        Some(first) => state.on_facts(first).await?,
                        None => break,
                    },
                    p = presence.next() => if let Some(p) = p {
                        state.on_presence(p);
                    },
                    p = chat_presence.next() => if let Some(p) = p {
                        state.on_chat_presence(p);
                    },
                    query = queries.next() => if let Some(query) = query {
                        state.on_online_query(query).await;
                    },
                    _ = expiry_tick.tick() => state.on_expiry_tick(),
                    _ = tokio::time::sleep_until(status_due) => state.on_status_due().await,
                    _ = tokio::time::sleep_until(state.next_hour) => state.on_hour().await,
                    _ = sleep_until(state.drain_deadline) => break,
                }
            }
            self.chat_leaves.close();
            self.chat_leaves.wait().await;
            anyhow::Ok(())
        };
        let cut_short = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_MAX).await;
        };
        tokio::select! {
            done = work => done?,
            _ = cut_short => {
                tracing::warn!(?DRAIN_MAX, "aggregator drain cut short; the checkpoint is saved");
                return Ok(());
            }
        }
        tracing::info!("aggregator drained and stopped");
        Ok(())
    }
}

/// Sleeps until the deadline, or forever when there is none.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
