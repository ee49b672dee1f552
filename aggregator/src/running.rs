//! The aggregator's state while it runs, with one method per event its loop waits on: the
//! loop in [`crate::Aggregator::run`] only dispatches.

use std::time::{Duration, Instant};

use switchyard_bus::{Decoded, Request, TypedBus};
use switchyard_schema::chat::ServerPacket;
use switchyard_schema::envelope::{
    ChatOut, ChatPresence, ChatTarget, Empty, Fact, FrustFanout, FrustOut, OnlineUsers, Presence,
};
use switchyard_schema::{topics, Clock};

use crate::chat_presence::ChatPresenceMap;
use crate::counters::Counters;
use crate::facts::{self, FactReader, Place};
use crate::presence::Sessions;
use crate::status::StatusPacer;
use crate::{telemetry, Aggregator};

/// Facts applied before the counters are flushed, at most.
const MAX_FLUSH: usize = 2048;
/// A drain ends once no fact arrived for this long.
const DRAIN_IDLE: Duration = Duration::from_millis(300);

pub(crate) struct Running<'a> {
    agg: &'a Aggregator,
    clock: Clock,
    counters: Counters,
    sessions: Sessions,
    chat_online: ChatPresenceMap,
    status: StatusPacer,
    /// Strictly in sequence from the checkpoint: what is counted is a prefix of the stream.
    pub(crate) facts: FactReader,
    /// An absolute deadline: if another event wins the moment it passes, the next pass still
    /// sees it due (a per-pass relative sleep would skip the hour).
    pub(crate) next_hour: tokio::time::Instant,
    /// Set when a drain starts; pushed back whenever a fact arrives. Kept here, not made per
    /// loop pass, so frequent ticks cannot keep postponing it.
    pub(crate) drain_deadline: Option<tokio::time::Instant>,
}

impl<'a> Running<'a> {
    /// Loads the counters and opens the facts stream right after their checkpoint.
    pub(crate) async fn open(agg: &'a Aggregator) -> anyhow::Result<Self> {
        let counters = Counters::load(&*agg.store).await?;
        let facts = FactReader::open(agg.bus.clone(), counters.applied_seq() + 1).await?;
        let clock = agg.config.clock;
        Ok(Self {
            agg,
            clock,
            counters,
            sessions: Sessions::default(),
            chat_online: ChatPresenceMap::default(),
            status: StatusPacer::new(
                agg.config.status_window,
                agg.config.status_window_max,
                tokio::time::Instant::now(),
            ),
            facts,
            next_hour: hour_deadline(&clock),
            drain_deadline: None,
        })
    }

    pub(crate) fn start_drain(&mut self) {
        self.drain_deadline = Some(tokio::time::Instant::now() + DRAIN_IDLE);
    }

    /// Applies `first` and whatever else is ready; a fact during a drain postpones its end.
    pub(crate) async fn on_facts(&mut self, first: Decoded<Fact>) -> anyhow::Result<()> {
        self.apply_batch(first).await?;
        if let Some(deadline) = self.drain_deadline.as_mut() {
            *deadline = tokio::time::Instant::now() + DRAIN_IDLE;
        }
        Ok(())
    }

    pub(crate) fn on_presence(&mut self, p: Presence) {
        self.sessions.apply(p, Instant::now());
    }

    pub(crate) fn on_chat_presence(&mut self, p: ChatPresence) {
        for user in self.chat_online.apply(p, Instant::now()) {
            self.agg.announce_chat_leave(user);
        }
    }

    pub(crate) async fn on_online_query(&mut self, query: Request<Empty, OnlineUsers>) {
        let online = OnlineUsers(self.sessions.online_users());
        let _ = query.reply(&online).await;
    }

    pub(crate) fn on_expiry_tick(&mut self) {
        let now = Instant::now();
        let timeout = self.agg.config.edge_timeout;
        self.sessions.expire(now, timeout);
        for user in self.chat_online.expire(now, timeout) {
            self.agg.announce_chat_leave(user);
        }
        // Presence changes between ticks show up within a tick (≤ 1 s).
        report_presence(&self.sessions, &self.chat_online);
    }

    /// When the pending `status` change is due, for the audience online now.
    pub(crate) fn status_due(&self) -> tokio::time::Instant {
        self.status.due(self.sessions.online_count())
    }

    pub(crate) async fn on_status_due(&mut self) {
        let now = tokio::time::Instant::now();
        if let Some(s) = self.status.take(&mut self.sessions, now) {
            self.agg.broadcast(&FrustOut::Status(s)).await;
        }
    }

    pub(crate) async fn on_hour(&mut self) {
        // A little past the boundary, so the stats are surely of the new hour (each client
        // resets its hour count on them).
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = self.clock.now();
        let day = switchyard_schema::clock::day_start(now);
        // An import may have run meanwhile (its counters live beside these).
        match self.agg.store.imported_counts(day).await {
            Ok(imported) => {
                let stats = self.counters.stats(now, &imported);
                self.agg.broadcast(&FrustOut::Stats(stats)).await;
            }
            Err(e) => tracing::error!(error = %e, "cannot read imported counts: no hourly stats"),
        }
        self.next_hour = hour_deadline(&self.clock);
    }

    /// Applies `first` and whatever else is ready, in sequence, then saves once. Stops at a
    /// gap: what came before it is saved, and the reader re-opens at the first unapplied fact.
    async fn apply_batch(&mut self, first: Decoded<Fact>) -> anyhow::Result<()> {
        let store = &*self.agg.store;
        let deliveries = self.facts.ready(first, MAX_FLUSH);
        let mut batch = facts::Batch::read(deliveries, store).await?;
        let mut gap = false;
        for (seq, fact) in std::mem::take(&mut batch.facts) {
            match self.facts.place(seq, self.counters.applied_seq()) {
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
                    self.sessions.count(&fact);
                    self.counters.apply(&fact, seq);
                }
                Ok(fact) => {
                    tracing::warn!(
                        seq,
                        id = facts::counted_id(&fact),
                        "late duplicate fact: counted before, not again"
                    );
                    metrics::counter!("switchyard_aggregator_duplicate_facts_total").increment(1);
                    self.counters.skip(seq);
                }
                Err(e) => {
                    tracing::error!(error = %e, seq, "undecodable fact skipped");
                    self.counters.skip(seq);
                }
            }
        }
        self.counters.flush(store).await?;
        if gap {
            self.facts.reopen(self.counters.applied_seq() + 1).await?;
        }
        Ok(())
    }
}

impl Aggregator {
    /// Tells the members of `user`'s rooms that the user left (off the loop: it reads the store).
    fn announce_chat_leave(&self, user: String) {
        let (bus, store) = (self.bus.clone(), self.store.clone());
        self.chat_leaves.spawn(async move {
            let recipients = match store.room_mates(&user).await {
                Ok(mates) => mates,
                Err(e) => return tracing::error!(error = %e, "cannot read rooms for chat-leave"),
            };
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

fn hour_deadline(clock: &Clock) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_millis(clock.ms_until_next_hour())
}

/// The online and alive-edge gauges from the presence maps.
fn report_presence(sessions: &Sessions, chat: &ChatPresenceMap) {
    let edges: std::collections::HashSet<&String> = sessions.edges().chain(chat.edges()).collect();
    telemetry::online(sessions.online_count(), chat.online_users(), edges.len());
}
