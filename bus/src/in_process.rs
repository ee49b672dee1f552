//! The embedded adapter: the same semantics as the NATS adapter inside one process. Durable
//! streams are bounded queues (publishers wait when workers fall behind; nothing is dropped);
//! pub/sub drops for a subscriber whose buffer is full, as core NATS does for slow consumers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use parking_lot::Mutex;
use switchyard_schema::subjects::{stream_of, subject_matches, STREAM_DEAD};
use switchyard_schema::topics::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::{Acker, Bus, BusError, ConsumerSpec, Delivery, Message, Replier};

const STREAM_CAPACITY: usize = 65_536;
const SUBSCRIBER_CAPACITY: usize = 65_536;

struct Queued {
    subject: String,
    payload: Bytes,
    seq: u64,
}

/// One durable consumer: a bounded queue of what its filter selects, shared by every
/// process-local reader that uses the same consumer name.
struct ConsumerQueue {
    stream: &'static str,
    filter: String,
    tx: mpsc::Sender<Queued>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>,
}

struct Subscriber {
    pattern: String,
    tx: mpsc::Sender<Message>,
}

#[derive(Clone, Default)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    consumers: Mutex<HashMap<String, Arc<ConsumerQueue>>>,
    sequences: Mutex<HashMap<&'static str, u64>>,
    subscribers: Mutex<Vec<Subscriber>>,
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn consumer(&self, stream: &'static str, name: &str, filter: &str) -> Arc<ConsumerQueue> {
        self.inner
            .consumers
            .lock()
            .entry(format!("{stream}/{name}"))
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
                Arc::new(ConsumerQueue {
                    stream,
                    filter: filter.to_owned(),
                    tx,
                    rx: Arc::new(tokio::sync::Mutex::new(rx)),
                })
            })
            .clone()
    }

    fn next_seq(&self, stream: &'static str) -> u64 {
        let mut seqs = self.inner.sequences.lock();
        let seq = seqs.entry(stream).or_insert(0);
        *seq += 1;
        *seq
    }

    fn deliver(&self, subject: &str, payload: Bytes, mut reply: Reply) -> usize {
        let mut subs = self.inner.subscribers.lock();
        subs.retain(|s| !s.tx.is_closed());
        let mut delivered = 0;
        for sub in subs.iter().filter(|s| subject_matches(&s.pattern, subject)) {
            let msg = Message {
                subject: subject.to_owned(),
                payload: payload.clone(),
                reply: reply.next(),
            };
            match sub.tx.try_send(msg) {
                Ok(()) => delivered += 1,
                Err(_) => metrics::counter!("switchyard_bus_dropped_total").increment(1),
            }
        }
        delivered
    }
}

/// Who may answer a published message.
enum Reply {
    None,
    /// A request: the first subscriber only.
    First(Option<Box<dyn Replier>>),
    /// A gather: every subscriber, into one queue.
    Each(mpsc::UnboundedSender<Bytes>),
}

impl Reply {
    fn next(&mut self) -> Option<Box<dyn Replier>> {
        match self {
            Reply::None => None,
            Reply::First(first) => first.take(),
            Reply::Each(tx) => Some(Box::new(QueueReplier(tx.clone()))),
        }
    }
}

struct NoopAcker;

#[async_trait]
impl Acker for NoopAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }
}

struct QueueReplier(mpsc::UnboundedSender<Bytes>);

#[async_trait]
impl Replier for QueueReplier {
    async fn reply(self: Box<Self>, payload: Bytes) -> Result<(), BusError> {
        self.0.send(payload).map_err(|_| BusError::Closed)
    }
}

struct OneshotReplier(oneshot::Sender<Bytes>);

#[async_trait]
impl Replier for OneshotReplier {
    async fn reply(self: Box<Self>, payload: Bytes) -> Result<(), BusError> {
        self.0.send(payload).map_err(|_| BusError::Closed)
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish_durable(
        &self,
        subject: &str,
        _msg_id: &str,
        payload: Bytes,
    ) -> Result<(), BusError> {
        let stream = stream_of(subject).ok_or_else(|| BusError::NotDurable(subject.into()))?;
        let targets: Vec<Arc<ConsumerQueue>> = self
            .inner
            .consumers
            .lock()
            .values()
            .filter(|c| c.stream == stream && subject_matches(&c.filter, subject))
            .cloned()
            .collect();
        if targets.is_empty() {
            if stream == STREAM_DEAD {
                // Nobody reads dead letters in one process (no CLI can reach it): the worker
                // has logged and counted the letter; its stream would die with us anyway.
                return Ok(());
            }
            // Consumers are created before edges accept traffic; this is a wiring bug.
            return Err(BusError::Backend(
                format!("no consumer for `{subject}`").into(),
            ));
        }
        let seq = self.next_seq(stream);
        for target in targets {
            let queued = Queued {
                subject: subject.to_owned(),
                payload: payload.clone(),
                seq,
            };
            // A reader that went away (a dropped replay) misses nothing it wanted.
            let _ = target.tx.send(queued).await;
        }
        Ok(())
    }

    async fn consume(
        &self,
        spec: &ConsumerSpec<'_>,
    ) -> Result<BoxStream<'static, Delivery>, BusError> {
        // In one process the reader's own pipeline bounds what is in flight.
        let stream = known_stream(spec.stream)?;
        let rx = self.consumer(stream, spec.name, spec.filter).rx.clone();
        let lag = metrics::gauge!("switchyard_consumer_lag", "consumer" => spec.name.to_owned());
        Ok(futures::stream::unfold(rx, move |rx| {
            let lag = lag.clone();
            async move {
                let mut queue = rx.lock().await;
                let next = queue.recv().await?;
                // What is still queued behind this delivery: the consumer's backlog.
                lag.set(queue.len() as f64);
                drop(queue);
                let delivery = Delivery {
                    subject: next.subject,
                    payload: next.payload,
                    seq: next.seq,
                    acker: Box::new(NoopAcker),
                };
                Some((delivery, rx))
            }
        })
        .boxed())
    }

    /// The in-process streams keep no history: a replay reads what is published from now on
    /// (everything, since the streams start with the process), skipping sequences before `from`.
    async fn replay(
        &self,
        stream: &str,
        from: u64,
    ) -> Result<BoxStream<'static, Delivery>, BusError> {
        let stream = known_stream(stream)?;
        let name = format!("replay-{}", self.next_seq("replay readers"));
        let spec = ConsumerSpec {
            stream,
            name: &name,
            filter: ">",
            max_in_flight: 1,
        };
        let deliveries = self.consume(&spec).await?;
        // A dropped replay stops receiving (a queue nobody reads would stall publishers).
        let guard = ReplayGuard {
            inner: self.inner.clone(),
            key: format!("{stream}/{name}"),
        };
        Ok(deliveries
            .filter(move |d| {
                let _ = &guard;
                std::future::ready(d.seq >= from)
            })
            .boxed())
    }

    async fn remove(&self, stream: &str, _seq: u64) -> Result<(), BusError> {
        known_stream(stream)?;
        Err(BusError::Backend(
            "the in-process bus keeps no stream history to remove from".into(),
        ))
    }

    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        self.deliver(subject, payload, Reply::None);
        Ok(())
    }

    async fn subscribe(&self, pattern: &str) -> Result<BoxStream<'static, Message>, BusError> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        self.inner.subscribers.lock().push(Subscriber {
            pattern: pattern.to_owned(),
            tx,
        });
        Ok(tokio_stream_from(rx))
    }

    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, BusError> {
        let (tx, rx) = oneshot::channel();
        let reply = Reply::First(Some(Box::new(OneshotReplier(tx))));
        if self.deliver(subject, payload, reply) == 0 {
            return Err(BusError::NoResponder(subject.into()));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => Err(BusError::NoResponder(subject.into())),
            Err(_) => Err(BusError::Timeout(subject.into())),
        }
    }

    async fn gather(
        &self,
        subject: &str,
        payload: Bytes,
        wait: Duration,
    ) -> Result<Vec<Bytes>, BusError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let asked = self.deliver(subject, payload, Reply::Each(tx));
        let mut replies = Vec::with_capacity(asked);
        let deadline = tokio::time::Instant::now() + wait;
        while replies.len() < asked {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(reply)) => replies.push(reply),
                // Every replier was dropped unanswered, or the time is up.
                Ok(None) | Err(_) => break,
            }
        }
        Ok(replies)
    }
}

/// Unregisters a replay's queue when the replay is dropped.
struct ReplayGuard {
    inner: Arc<Inner>,
    key: String,
}

impl Drop for ReplayGuard {
    fn drop(&mut self) {
        self.inner.consumers.lock().remove(&self.key);
    }
}

fn known_stream(name: &str) -> Result<&'static str, BusError> {
    Stream::named(name)
        .map(Stream::name)
        .ok_or_else(|| BusError::NotDurable(name.into()))
}

fn tokio_stream_from<T: Send + 'static>(rx: mpsc::Receiver<T>) -> BoxStream<'static, T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) }).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_schema::subjects::{STREAM_FACTS, STREAM_IN};

    #[tokio::test]
    async fn gather_ends_once_every_subscriber_answered() {
        let bus = InProcessBus::new();
        for name in ["a", "b"] {
            let mut requests = bus.subscribe("control.>").await.unwrap();
            tokio::spawn(async move {
                while let Some(msg) = requests.next().await {
                    let answer = [name.as_bytes(), &msg.payload[..]].concat();
                    let _ = msg.reply.unwrap().reply(Bytes::from(answer)).await;
                }
            });
        }
        // Far longer than the test may take: only the answers can end it.
        let wait = Duration::from_secs(3600);
        let mut answers = bus
            .gather("control.edges", Bytes::from_static(b"?"), wait)
            .await
            .unwrap();
        answers.sort();
        assert_eq!(answers, vec![&b"a?"[..], &b"b?"[..]]);
        // A subscriber that drops the request unanswered ends the wait too.
        let mut mute = bus.subscribe("quiet.mute").await.unwrap();
        tokio::spawn(async move { while mute.next().await.is_some() {} });
        let none = bus.gather("quiet.mute", Bytes::new(), wait).await.unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn durable_streams_keep_order_and_sequence() {
        let bus = InProcessBus::new();
        let spec = |stream, name, filter| ConsumerSpec {
            stream,
            name,
            filter,
            max_in_flight: 1,
        };
        let mut inbound = bus
            .consume(&spec(STREAM_IN, "workers", "in.frust.>"))
            .await
            .unwrap();
        let mut chat = bus
            .consume(&spec(STREAM_IN, "chat", "in.chat.>"))
            .await
            .unwrap();
        let mut facts = bus
            .consume(&spec(STREAM_FACTS, "aggregator", ">"))
            .await
            .unwrap();
        bus.publish_durable("in.chat.3.message", "id", Bytes::from_static(b"c"))
            .await
            .unwrap();
        for i in 0..5u8 {
            bus.publish_durable("in.frust.click", "id", Bytes::from(vec![i]))
                .await
                .unwrap();
        }
        bus.publish_durable("facts.frust", "id", Bytes::from_static(b"f"))
            .await
            .unwrap();
        for i in 0..5u8 {
            let d = inbound.next().await.unwrap();
            assert_eq!(
                (d.payload[0], d.seq),
                (i, i as u64 + 2),
                "stream order and sequence"
            );
            d.ack().await.unwrap();
        }
        let c = chat.next().await.unwrap();
        assert_eq!(
            (&c.payload[..], c.seq),
            (&b"c"[..], 1),
            "filters select by subject"
        );
        assert_eq!(&facts.next().await.unwrap().payload[..], b"f");
        assert!(matches!(
            bus.publish_durable("out.frust", "id", Bytes::new()).await,
            Err(BusError::NotDurable(_))
        ));
    }

    #[tokio::test]
    async fn pubsub_matches_patterns_and_requests_get_one_reply() {
        let bus = InProcessBus::new();
        let mut all_out = bus.subscribe("out.>").await.unwrap();
        let mut frust = bus.subscribe("out.frust").await.unwrap();
        bus.publish("out.frust", Bytes::from_static(b"a"))
            .await
            .unwrap();
        bus.publish("out.chat.room.1", Bytes::from_static(b"b"))
            .await
            .unwrap();
        assert_eq!(&all_out.next().await.unwrap().payload[..], b"a");
        assert_eq!(&all_out.next().await.unwrap().payload[..], b"b");
        assert_eq!(&frust.next().await.unwrap().payload[..], b"a");

        let mut service = bus.subscribe("rpc.echo").await.unwrap();
        let responder = tokio::spawn(async move {
            let msg = service.next().await.unwrap();
            msg.reply.unwrap().reply(msg.payload).await.unwrap();
        });
        let answer = bus
            .request(
                "rpc.echo",
                Bytes::from_static(b"ping"),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        assert_eq!(&answer[..], b"ping");
        responder.await.unwrap();
        assert!(matches!(
            bus.request("rpc.none", Bytes::new(), Duration::from_millis(10))
                .await,
            Err(BusError::NoResponder(_))
        ));
    }
}
