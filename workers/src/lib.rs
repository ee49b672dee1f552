//! Worker role: reads inbound packets from the durable IN stream, persists them idempotently,
//! records the fact for the aggregator, publishes the fan-out, then acknowledges.
//!
//! Frust packets persist concurrently (so the store can batch them) but complete in stream
//! order, so fan-out and facts are sent in the order packets were accepted in. The stream's
//! confirmation of a fact is awaited off that path, so sending does not wait a round trip per
//! packet; a delivery is acked once its fact is stored. Chat messages go one at a time: the
//! store's order of a room is then the order live delivery used.

pub mod telemetry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use switchyard_bus::{Bus, BusError, Decoded, Delivery, Encoded, TypedBus};
use switchyard_schema::backoff::Backoff;
use switchyard_schema::chat::ServerPacket;
use switchyard_schema::envelope::{
    ChatOut, ChatTarget, DeadLetter, Fact, FrustFanout, FrustOut, Inbound,
};
use switchyard_schema::frust::{event_toast, milestone_toast, Click, Event};
use switchyard_schema::subjects::CHAT_PARTITIONS;
use switchyard_schema::topics::{self, Topic};
use switchyard_store::{
    Placement, Store, StoreResult, StoredChatMessage, StoredClick, StoredEvent,
};
use tokio_util::sync::CancellationToken;

/// How many Frust packets may be persisting at once per worker, and how many may wait for the
/// stream to confirm their fact.
const FRUST_IN_FLIGHT: usize = 256;
/// Frust deliveries not yet acked, across all workers: room for every stage of a few workers
/// (fetched ahead, persisting, awaiting confirmation).
const FRUST_UNACKED: usize = 4 * FRUST_IN_FLIGHT;
/// With shutdown requested, a worker stops once its stream has been idle this long.
const DRAIN_IDLE: Duration = Duration::from_millis(300);
/// With shutdown requested, a worker takes new deliveries for at most this long.
const DRAIN_INTAKE: Duration = Duration::from_secs(1);
/// Default for [`Worker::with_persist_attempts`].
pub const DEFAULT_PERSIST_ATTEMPTS: u32 = 10;

pub struct Worker {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    persist_attempts: u32,
}

/// What a delivery that was not persisted (undecodable, dead-lettered) placed.
const NOT_STORED: Placement = Placement {
    newly_stored: false,
    position: None,
};

/// What persisting one delivery produced.
struct Persisted {
    delivery: Delivery,
    packet: Option<Inbound>,
    placed: Placement,
}

impl Worker {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn Store>) -> Self {
        Self {
            bus,
            store,
            persist_attempts: DEFAULT_PERSIST_ATTEMPTS,
        }
    }

    /// A packet that fails to persist this many times while the store otherwise answers is a
    /// poison packet: it goes to the dead-letter stream and its partition moves on.
    pub fn with_persist_attempts(mut self, attempts: u32) -> Self {
        self.persist_attempts = attempts.max(1);
        self
    }

    /// Runs until `shutdown` is cancelled and the streams have drained.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let mut pipelines = vec![tokio::spawn(this.clone().pipeline(
            topics::IN_FRUST_ALL,
            "workers-frust".to_owned(),
            FRUST_IN_FLIGHT,
            FRUST_UNACKED,
            shutdown.clone(),
        ))];
        // One consumer per chat partition, one message in flight each: a room's messages are
        // persisted and fanned out strictly in order, partitions in parallel.
        for p in 0..CHAT_PARTITIONS {
            pipelines.push(tokio::spawn(this.clone().pipeline(
                topics::in_chat_partition_all(p),
                format!("workers-chat-{p}"),
                1,
                1,
                shutdown.clone(),
            )));
        }
        for p in pipelines {
            p.await??;
        }
        tracing::info!("worker drained and stopped");
        Ok(())
    }

    /// Persists up to `in_flight` deliveries at once, sends their facts and fan-out in order,
    /// and acks each once its fact is confirmed (up to `in_flight` confirmations outstanding).
    async fn pipeline(
        self: Arc<Self>,
        inbound: Topic<Inbound>,
        consumer: String,
        in_flight: usize,
        unacked: usize,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let deliveries = self.bus.consume_from(&inbound, &consumer, unacked).await?;
        let persisting = {
            let this = self.clone();
            until_drained(deliveries, shutdown).map(move |d| {
                let this = this.clone();
                async move { this.persist(d).await }
            })
        };
        let mut persisted = persisting.buffered(in_flight);
        // Acks may complete in any order: only sending needs stream order.
        let mut confirming = FuturesUnordered::new();
        loop {
            tokio::select! {
                p = persisted.next(), if confirming.len() < in_flight => match p {
                    Some(p) => {
                        let confirm = self.publish(p).await;
                        confirming.push(confirm);
                    }
                    None => break,
                },
                Some(()) = confirming.next() => {}
            }
        }
        // Drained: every delivery taken is acked before returning.
        while confirming.next().await.is_some() {}
        Ok(())
    }

    async fn persist(&self, decoded: Decoded<Inbound>) -> Persisted {
        let Decoded { body, delivery } = decoded;
        let packet = match body {
            Ok(p) => p,
            Err(e) => {
                // A packet no version of us can read would block the stream forever (the
                // typed bus has counted it).
                self.dead_letter(Letter::of(&delivery, None), &e.to_string(), 0)
                    .await;
                return Persisted {
                    delivery,
                    packet: None,
                    placed: NOT_STORED,
                };
            }
        };
        let started = Instant::now();
        let placed = match self.persist_or_give_up(&packet).await {
            Ok(placed) => placed,
            Err((error, attempts)) => {
                self.dead_letter(Letter::of(&delivery, Some(packet.id())), &error, attempts)
                    .await;
                return Persisted {
                    delivery,
                    packet: None,
                    placed: NOT_STORED,
                };
            }
        };
        metrics::histogram!("switchyard_persist_seconds", "api" => packet.api())
            .record(started.elapsed());
        Persisted {
            delivery,
            packet: Some(packet),
            placed,
        }
    }

    /// Persists with capped backoff. Gives up (with the last error and the attempts made) only
    /// once the packet failed `persist_attempts` times while the store answers other requests:
    /// a store that is down for everyone is waited for, however long.
    async fn persist_or_give_up(&self, packet: &Inbound) -> Result<Placement, (String, u32)> {
        let mut attempts = 0;
        loop {
            let error = match self.store_packet(packet).await {
                Ok(placed) => return Ok(placed),
                Err(e) => e.to_string(),
            };
            attempts += 1;
            metrics::counter!("switchyard_worker_retries_total").increment(1);
            if attempts >= self.persist_attempts && self.store.totals().await.is_ok() {
                return Err((error, attempts));
            }
            let backoff = RETRY_BACKOFF.delay(attempts);
            tracing::warn!(
                error,
                attempts,
                ?backoff,
                id = packet.id(),
                "persist failed; retrying"
            );
            tokio::time::sleep(backoff).await;
        }
    }

    /// Moves a packet the workers cannot persist to the DEAD stream, with why.
    async fn dead_letter(&self, letter: Letter, error: &str, attempts: u32) {
        let Letter {
            subject,
            id,
            payload,
            seq,
        } = letter;
        tracing::error!(
            error,
            attempts,
            id,
            subject,
            "poison packet moved to the dead-letter stream (`switchyard dead-letters list`)"
        );
        metrics::counter!("switchyard_dead_letters_total", "subject" => subject.clone())
            .increment(1);
        // Deduplicated per inbound message: a redelivery of the same poison makes one letter.
        let msg_id = match &id {
            Some(id) => format!("dead-{id}"),
            None => format!("dead-seq-{seq}"),
        };
        let dead = topics::dead_letter_of(&subject);
        let letter = Encoded::of(&DeadLetter {
            subject,
            id,
            payload: payload.to_vec(),
            error: error.to_owned(),
            attempts,
            failed_at_ms: now_ms(),
        });
        retry_forever(|| self.bus.publish_durable_to(&dead, &msg_id, letter.clone())).await;
    }

    async fn store_packet(&self, packet: &Inbound) -> StoreResult<Placement> {
        let unplaced = |newly_stored| Placement {
            newly_stored,
            position: None,
        };
        match packet {
            Inbound::FrustClick { id, click, .. } => self
                .store
                .insert_click(&StoredClick {
                    id: id.clone(),
                    click: click.clone(),
                })
                .await
                .map(unplaced),
            Inbound::FrustEvent { id, event, .. } => self
                .store
                .insert_event(&StoredEvent {
                    id: id.clone(),
                    event: event.clone(),
                })
                .await
                .map(unplaced),
            // A tally row, so a recount from the stored rows (embedded mode, at every start)
            // keeps counting it; never listed.
            Inbound::FrustEphemeral { id, event, .. } => self
                .store
                .insert_ephemeral_event(&StoredEvent {
                    id: id.clone(),
                    event: event.clone(),
                })
                .await
                .map(unplaced),
            Inbound::ChatMessage {
                message,
                sent_at_ms,
            } => {
                self.store
                    .insert_chat_message(&StoredChatMessage {
                        message: message.clone(),
                        sent_at_ms: *sent_at_ms,
                    })
                    .await
            }
        }
    }

    /// Sends the fact and the fan-out; the returned future acks the delivery once the fact is
    /// stored.
    async fn publish(&self, p: Persisted) -> BoxFuture<'static, ()> {
        let Persisted {
            delivery,
            packet,
            placed,
        } = p;
        let Some(packet) = packet else {
            return ack(delivery).boxed();
        };
        // The fact is published even for a redelivery: the earlier attempt may have died
        // before it; the bus deduplicates on the packet id.
        let (facts, fact) = fact_of(&packet);
        let fact = Encoded::of(&fact);
        let id = packet.id().to_owned();
        let confirmed =
            retry_forever(|| self.bus.publish_durable_send_to(&facts, &id, fact.clone())).await;
        // Fan-out is at least once: a redelivered packet may not have been shown before
        // this worker's predecessor died. Edges drop repeats by packet id.
        if !placed.newly_stored {
            metrics::counter!("switchyard_redelivered_total").increment(1);
        }
        if let Err(e) = self.fan_out(&packet, placed.position).await {
            tracing::warn!(error = %e, "fan-out publish failed");
        }
        let bus = self.bus.clone();
        async move {
            if let Err(e) = confirmed.await {
                tracing::warn!(error = %e, "fact not confirmed; publishing it again");
                metrics::counter!("switchyard_worker_retries_total").increment(1);
                retry_forever(|| bus.publish_durable_to(&facts, &id, fact.clone())).await;
            }
            ack(delivery).await
        }
        .boxed()
    }
}

impl Worker {
    /// Publishes what clients see of a stored packet, if anything.
    async fn fan_out(&self, packet: &Inbound, position: Option<i64>) -> Result<(), BusError> {
        match fan_out_of(packet, position) {
            Some(FanOut::Frust(fanout)) => self.bus.publish_to(&topics::OUT_FRUST, &fanout).await,
            Some(FanOut::Chat(room, out)) => self.bus.publish_to(&room, &out).await,
            None => Ok(()),
        }
    }
}

/// What a dead letter keeps of a delivery (a `Delivery` itself cannot be held across awaits
/// by reference: its acker is not `Sync`).
struct Letter {
    subject: String,
    id: Option<String>,
    payload: Bytes,
    seq: u64,
}

impl Letter {
    fn of(delivery: &Delivery, id: Option<&str>) -> Self {
        Self {
            subject: delivery.subject.clone(),
            id: id.map(str::to_owned),
            payload: delivery.payload.clone(),
            seq: delivery.seq,
        }
    }
}

async fn ack(delivery: Delivery) {
    if let Err(e) = delivery.ack().await {
        tracing::warn!(error = %e, "ack failed; the packet will be redelivered");
    }
}

/// The stream, ending once shutdown is requested and then either no delivery arrived for
/// `DRAIN_IDLE` or `DRAIN_INTAKE` passed: under steady load the stream is never idle, and a
/// drain must end in bounded time. What this worker fetched but did not take is redelivered
/// to another worker after the ack wait.
fn until_drained<T: Send + 'static>(
    deliveries: futures::stream::BoxStream<'static, T>,
    shutdown: CancellationToken,
) -> futures::stream::BoxStream<'static, T> {
    let intake_ends: Option<tokio::time::Instant> = None;
    futures::stream::unfold(
        (deliveries, shutdown, intake_ends),
        |(mut deliveries, shutdown, mut intake_ends)| async move {
            let next = match intake_ends {
                None => tokio::select! {
                    d = deliveries.next() => d,
                    _ = shutdown.cancelled() => {
                        intake_ends = Some(tokio::time::Instant::now() + DRAIN_INTAKE);
                        tokio::time::timeout(DRAIN_IDLE, deliveries.next()).await.ok().flatten()
                    }
                },
                Some(end) => {
                    let idle = tokio::time::Instant::now() + DRAIN_IDLE;
                    tokio::time::timeout_at(idle.min(end), deliveries.next())
                        .await
                        .ok()
                        .flatten()
                }
            };
            next.map(|d| (d, (deliveries, shutdown, intake_ends)))
        },
    )
    .boxed()
}

/// Retries a store or bus operation with capped backoff: an inbound packet is never dropped
/// because a dependency hiccupped.
async fn retry_forever<T, E: std::fmt::Display, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempts = 0;
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                attempts += 1;
                let backoff = RETRY_BACKOFF.delay(attempts);
                tracing::warn!(error = %e, ?backoff, "retrying after failure");
                metrics::counter!("switchyard_worker_retries_total").increment(1);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Pauses between retries of a store or bus operation: 10 ms doubling up to 2 s.
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(2));

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The fact the aggregator counts, and the subject it goes to.
fn fact_of(packet: &Inbound) -> (Topic<Fact>, Fact) {
    match packet {
        Inbound::FrustClick {
            id, session, click, ..
        } => (
            topics::FACTS_FRUST,
            Fact::FrustClick {
                id: id.clone(),
                session: session.clone(),
                user: click.user.clone(),
                timestamp: click.timestamp,
            },
        ),
        Inbound::FrustEvent { id, session, event } => (
            topics::FACTS_FRUST,
            Fact::FrustEvent {
                id: id.clone(),
                session: session.clone(),
                user: event.user.clone(),
                timestamp: event.timestamp,
            },
        ),
        Inbound::FrustEphemeral { id, session, event } => (
            topics::FACTS_FRUST,
            Fact::FrustEphemeral {
                id: id.clone(),
                session: session.clone(),
                timestamp: event.timestamp,
            },
        ),
        Inbound::ChatMessage { message, .. } => (
            topics::FACTS_CHAT,
            Fact::ChatMessage {
                id: message.id.clone(),
                room_id: message.room_id.clone(),
            },
        ),
    }
}

/// What clients see once a packet is stored, in the original backend's order, and where.
/// A chat message carries its room position; one without (its id is another room's message,
/// so nothing was stored) is shown to no one.
fn fan_out_of(packet: &Inbound, position: Option<i64>) -> Option<FanOut> {
    let frust = |outs: Vec<FrustOut>| {
        Some(FanOut::Frust(FrustFanout {
            dedup: Some(packet.id().to_owned()),
            outs,
        }))
    };
    match packet {
        Inbound::FrustClick {
            click,
            session_clicks,
            ..
        } => {
            let Click { user, .. } = click;
            let mut out = vec![FrustOut::Click(click.clone())];
            out.extend(milestone_toast(user, *session_clicks).map(FrustOut::Message));
            frust(out)
        }
        Inbound::FrustEvent { event, .. } => {
            let Event { user, name, .. } = event;
            frust(vec![
                FrustOut::Event(event.clone()),
                FrustOut::Message(event_toast(user, name)),
            ])
        }
        // Shown as it happened, without the toast (the original's behaviour).
        Inbound::FrustEphemeral { event, .. } => frust(vec![FrustOut::Event(event.clone())]),
        Inbound::ChatMessage { message, .. } => {
            let out = ChatOut {
                target: ChatTarget::Room {
                    room_id: message.room_id.clone(),
                    except_user: None,
                },
                json: ServerPacket::MessageReceive(message.clone()).to_json(),
                dedup: Some(message.id.clone()),
                position: Some(position?),
            };
            Some(FanOut::Chat(topics::out_chat_room(&message.room_id), out))
        }
    }
}

/// A packet's fan-out and where it goes.
enum FanOut {
    Frust(FrustFanout),
    Chat(Topic<ChatOut>, ChatOut),
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_bus::Acker;

    struct NoAck;

    #[async_trait::async_trait]
    impl Acker for NoAck {
        async fn ack(self: Box<Self>) -> Result<(), BusError> {
            Ok(())
        }
    }

    /// A stream that is never idle: a delivery every 50 ms, forever.
    fn steady_load() -> futures::stream::BoxStream<'static, Delivery> {
        futures::stream::unfold(0u64, |seq| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let d = Delivery {
                subject: "in.frust.click".into(),
                payload: Bytes::new(),
                seq,
                acker: Box::new(NoAck),
            };
            Some((d, seq + 1))
        })
        .boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_under_steady_load_stops_taking_deliveries() {
        let shutdown = CancellationToken::new();
        let mut stream = until_drained(steady_load(), shutdown.clone());
        for _ in 0..10 {
            stream.next().await.expect("flows before shutdown");
        }
        shutdown.cancel();
        let cancelled_at = tokio::time::Instant::now();
        let mut taken = 0;
        while stream.next().await.is_some() {
            taken += 1;
        }
        // Virtual time: the intake window, not the load, decides when the stream ends.
        assert!(cancelled_at.elapsed() <= DRAIN_INTAKE + Duration::from_millis(60));
        assert!(taken <= 21, "{taken} deliveries taken after shutdown");
    }
}
