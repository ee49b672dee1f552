//! Aggregator role: applies persisted facts to exact counters (saved with the stream sequence
//! they include), keeps who is online, and publishes `status` (coalesced) and hourly `stats`.

mod chat_presence;
mod counters;
mod facts;
mod presence;
mod status;
pub mod telemetry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchyard_bus::{Bus, Decoded, TypedBus};
use switchyard_schema::chat::ServerPacket;
use switchyard_schema::envelope::{ChatOut, ChatTarget, Fact, FrustFanout, FrustOut, OnlineUsers};
use switchyard_schema::topics;
use switchyard_schema::Clock;
use switchyard_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use chat_presence::ChatPresenceMap;
pub use counters::Counters;
use facts::{FactReader, Place};
use presence::Sessions;
pub use status::status_window;
use status::StatusPacer;

/// Facts applied before the counters are flushed, at most.
const MAX_FLUSH: usize = 2048;
const DRAIN_IDLE: Duration = Duration::from_millis(300);
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
        let mut counters = Counters::load(&*self.store).await?;
        let mut sessions = Sessions::default();
        // Strictly in sequence from the checkpoint: what is counted is a prefix of the stream.
        let mut facts = FactReader::open(self.bus.clone(), counters.applied_seq() + 1).await?;
        let mut presence = self.bus.subscribe_to(&topics::PRESENCE_FRUST).await?;
        let mut queries = self.bus.serve(&topics::RPC_FRUST_ONLINE).await?;
        let mut chat_presence = self.bus.subscribe_to(&topics::PRESENCE_CHAT).await?;
        let mut chat_online = ChatPresenceMap::default();
        let mut status = StatusPacer::new(
            self.config.status_window,
            self.config.status_window_max,
            tokio::time::Instant::now(),
        );
        let clock = self.config.clock;
        // Set when a drain starts; pushed back whenever a fact arrives. Created once, not per
        // loop pass, so frequent ticks cannot keep postponing it.
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        // An absolute deadline: if another branch wins the moment it passes, the next pass
        // still sees it due (a per-pass relative sleep would skip the hour).
        let hour_deadline = |clock: &Clock| {
            tokio::time::Instant::now() + Duration::from_millis(clock.ms_until_next_hour())
        };
        let mut next_hour = hour_deadline(&clock);
        let mut expiry_tick =
            tokio::time::interval(Duration::from_secs(1).min(self.config.edge_timeout / 3));

        let work = async {
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled(), if drain_deadline.is_none() => {
                        drain_deadline = Some(tokio::time::Instant::now() + DRAIN_IDLE);
                    }
                    fact = facts.next() => match fact {
                        Some(first) => {
                            self.apply_batch(first, &mut facts, &mut counters, &mut sessions).await?;
                            if let Some(deadline) = drain_deadline.as_mut() {
                                *deadline = tokio::time::Instant::now() + DRAIN_IDLE;
                            }
                        }
                        None => break,
                    },
                    p = presence.next() => if let Some(p) = p {
                        sessions.apply(p, Instant::now());
                    },
                    p = chat_presence.next() => if let Some(p) = p {
                        for user in chat_online.apply(p, Instant::now()) {
                            self.announce_chat_leave(user);
                        }
                    },
                    query = queries.next() => if let Some(query) = query {
                        let online = OnlineUsers(sessions.online_users());
                        let _ = query.reply(&online).await;
                    },
                    _ = expiry_tick.tick() => {
                        let now = Instant::now();
                        sessions.expire(now, self.config.edge_timeout);
                        for user in chat_online.expire(now, self.config.edge_timeout) {
                            self.announce_chat_leave(user);
                        }
                        // Presence changes between ticks show up within a tick (≤ 1 s).
                        report_presence(&sessions, &chat_online);
                    },
                    // Recomputed every pass: the window follows the audience as it grows or shrinks.
                    _ = tokio::time::sleep_until(status.due(sessions.online_count())) => {
                        let now = tokio::time::Instant::now();
                        if let Some(s) = status.take(&mut sessions, now) {
                            self.broadcast(&FrustOut::Status(s)).await;
                        }
                    },
                    _ = tokio::time::sleep_until(next_hour) => {
                        // A little past the boundary, so the stats are surely of the new hour
                        // (each client resets its hour count on them).
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        let now = clock.now();
                        let day = switchyard_schema::clock::day_start(now);
                        // An import may have run meanwhile (its counters live beside these).
                        match self.store.imported_counts(day).await {
                            Ok(imported) => {
                                let stats = counters.stats(now, &imported);
                                self.broadcast(&FrustOut::Stats(stats)).await;
                            }
                            Err(e) => tracing::error!(error = %e, "cannot read imported counts: no hourly stats"),
                        }
                        next_hour = hour_deadline(&clock);
                    },
                    _ = sleep_until(drain_deadline) => break,
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

    /// Applies `first` and whatever else is ready, in sequence, then saves once. Stops at a
    /// gap: what came before it is saved, and the reader re-opens at the first unapplied fact.
    async fn apply_batch(
        &self,
        first: Decoded<Fact>,
        facts: &mut FactReader,
        counters: &mut Counters,
        sessions: &mut Sessions,
    ) -> anyhow::Result<()> {
        let deliveries = facts.ready(first, MAX_FLUSH);
        let mut batch = facts::Batch::read(deliveries, &*self.store).await?;
        let mut gap = false;
        for (seq, fact) in std::mem::take(&mut batch.facts) {
            match facts.place(seq, counters.applied_seq()) {
                Place::Stale => {
                    metrics::counter!("switchyard_aggregator_stale_facts_total").increment(1);
                    continue;
                }
                Place::Gap => {
                    gap = true;
                    break;
                }
                Place::Next => {}
            }
            match fact {
                Ok(fact) if batch.first_count(&fact, seq) => {
                    sessions.count(&fact);
                    counters.apply(&fact, seq);
                }
                Ok(fact) => {
                    tracing::warn!(
                        seq,
                        id = facts::counted_id(&fact),
                        "late duplicate fact: counted before, not again"
                    );
                    metrics::counter!("switchyard_aggregator_duplicate_facts_total").increment(1);
                    counters.skip(seq);
                }
                Err(e) => {
                    tracing::error!(error = %e, seq, "undecodable fact skipped");
                    counters.skip(seq);
                }
            }
        }
        counters.flush(&*self.store).await?;
        if gap {
            facts.reopen(counters.applied_seq() + 1).await?;
        }
        Ok(())
    }

    /// Tells the members of `user`'s rooms that the user left (off the loop: it reads the store).
    fn announce_chat_leave(&self, user: String) {
        let (bus, store) = (self.bus.clone(), self.store.clone());
        self.chat_leaves.spawn(async move {
            let rooms = match store.rooms_of(&user).await {
                Ok(rooms) => rooms,
                Err(e) => return tracing::error!(error = %e, "cannot read rooms for chat-leave"),
            };
            let mut recipients: Vec<String> = rooms
                .into_iter()
                .flat_map(|r| r.members)
                .filter(|m| *m != user)
                .collect();
            recipients.sort();
            recipients.dedup();
            if recipients.is_empty() {
                return;
            }
            let out = ChatOut {
                target: ChatTarget::Users(recipients),
                json: ServerPacket::ChatLeave {
                    participant_id: user,
                }
                .to_json(),
                dedup: None,
                position: None,
            };
            let _ = bus.publish_to(&topics::OUT_CHAT_USERS, &out).await;
        });
    }

    async fn broadcast(&self, out: &FrustOut) {
        let fanout = FrustFanout::once(out.clone());
        if let Err(e) = self.bus.publish_to(&topics::OUT_FRUST, &fanout).await {
            tracing::warn!(error = %e, "broadcast failed");
        }
    }
}

/// The online and alive-edge gauges from the presence maps.
fn report_presence(sessions: &Sessions, chat: &ChatPresenceMap) {
    let edges: std::collections::HashSet<&String> = sessions.edges().chain(chat.edges()).collect();
    telemetry::online(sessions.online_count(), chat.online_users(), edges.len());
}

/// Sleeps until the deadline, or forever when there is none.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
