//! The bus port: how roles talk without knowing about each other. Two kinds of traffic:
//! durable streams (inbound packets, persisted facts) read through shared consumers with acks,
//! and plain pub/sub (fan-out, presence) plus request/reply (queries between roles).

mod in_process;
mod nats;
pub mod telemetry;
mod typed;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub use in_process::InProcessBus;
pub use nats::{
    probe as probe_nats, NatsBus, NatsOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DUPLICATE_WINDOW,
    DEFAULT_PUBLISH_BUDGET,
};
pub use typed::{Decoded, Encoded, Request, TypedBus};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("subject `{0}` belongs to no durable stream")]
    NotDurable(String),
    #[error("no responder for `{0}`")]
    NoResponder(String),
    #[error("request to `{0}` timed out")]
    Timeout(String),
    #[error("bus is closed")]
    Closed,
    /// The backend failed; the source is kept (its text is in the message too).
    #[error("bus backend: {0}")]
    Backend(#[source] BoxError),
    /// A durable publish got no answer: it may or may not have been stored.
    #[error("not confirmed (may still be stored): {0}")]
    Unconfirmed(#[source] BoxError),
    /// An answer that does not decode as the type its subject carries.
    #[error("undecodable answer on `{subject}`: {source}")]
    Undecodable {
        subject: String,
        #[source]
        source: switchyard_schema::envelope::EnvelopeError,
    },
    /// No server answered within the connect timeout; the message names the URLs and why.
    #[error("{0}")]
    Unreachable(String),
}

/// The cause of a [`BusError`]: the backend's own error, or a plain message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A backend error with what was being done when it happened: `{what}: {source}`.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct InContext {
    what: String,
    #[source]
    source: BoxError,
}

impl InContext {
    pub fn boxed(what: impl Into<String>, source: impl Into<BoxError>) -> BoxError {
        Box::new(Self {
            what: what.into(),
            source: source.into(),
        })
    }
}

/// The outcome of a durable publish already sent: resolves once the stream stored it, with what
/// [`Bus::publish_durable`] would have returned.
pub type PendingAck = BoxFuture<'static, Result<(), BusError>>;

/// A durable consumer of a stream.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSpec<'a> {
    pub stream: &'a str,
    /// Durable name, shared by every reader that splits this work.
    pub name: &'a str,
    /// Subject filter within the stream (`*`, `>` wildcards).
    pub filter: &'a str,
    /// Deliveries handed out and not yet acknowledged, across all readers. 1 gives strict
    /// order (one chat partition); more gives throughput.
    pub max_in_flight: usize,
}

/// Acknowledges one durable delivery; until acked it may be redelivered (cluster mode).
#[async_trait]
pub trait Acker: Send {
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
}

/// One message read from a durable stream.
pub struct Delivery {
    pub subject: String,
    pub payload: Bytes,
    /// Position in the stream; the aggregator checkpoints on it.
    pub seq: u64,
    pub acker: Box<dyn Acker>,
}

impl Delivery {
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }
}

/// Sends the answer to a request.
#[async_trait]
pub trait Replier: Send {
    async fn reply(self: Box<Self>, payload: Bytes) -> Result<(), BusError>;
}

/// One message from a plain subscription; `reply` is set when the sender awaits an answer.
pub struct Message {
    pub subject: String,
    pub payload: Bytes,
    pub reply: Option<Box<dyn Replier>>,
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Appends to the durable stream owning `subject`; returns once the stream has it.
    /// `msg_id` deduplicates retries of the same packet.
    async fn publish_durable(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<(), BusError>;

    /// [`Bus::publish_durable`] in two steps, so a caller can send more while the stream
    /// confirms: returns once the message is on its way (sends of one caller reach the stream
    /// in call order), and the [`PendingAck`] resolves once it is stored. A failed first attempt
    /// is retried, with the same msg id, before the [`PendingAck`] reports an error.
    async fn publish_durable_send(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<PendingAck, BusError> {
        self.publish_durable(subject, msg_id, payload).await?;
        Ok(Box::pin(futures::future::ready(Ok(()))))
    }

    /// Reads a durable consumer (created if absent). Readers with the same consumer name,
    /// in any process, share the work: each delivery goes to one of them.
    async fn consume(
        &self,
        spec: &ConsumerSpec<'_>,
    ) -> Result<BoxStream<'static, Delivery>, BusError>;

    /// Reads `stream` from sequence `from` on, in sequence order, each message once: for a
    /// reader that keeps its own position (the aggregator's checkpoint) instead of acking.
    /// Acks are no-ops. A jump in `seq` means nothing is stored in between (aged out or
    /// removed); the stream re-opens by itself after node loss, where it left off.
    async fn replay(
        &self,
        stream: &str,
        from: u64,
    ) -> Result<BoxStream<'static, Delivery>, BusError>;

    /// Deletes one message of a stream (a dead letter that was re-driven).
    async fn remove(&self, stream: &str, seq: u64) -> Result<(), BusError>;

    /// Fire-and-forget publish to every current subscriber.
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError>;

    /// Subscribes to a subject pattern (`*` and `>` wildcards).
    async fn subscribe(&self, pattern: &str) -> Result<BoxStream<'static, Message>, BusError>;

    /// Sends a request and waits for the first reply.
    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, BusError>;

    /// Scatter-gather: sends a request to every subscriber of `subject` and returns the replies
    /// that arrived within `wait` (each edge answers for itself). Ends sooner once every
    /// subscriber answered, where the adapter can know how many there are.
    async fn gather(
        &self,
        subject: &str,
        payload: Bytes,
        wait: Duration,
    ) -> Result<Vec<Bytes>, BusError>;

    /// Waits until everything published so far has left this process (before it exits).
    async fn flush(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// Why durable publishes cannot succeed right now, in one line (`None`: they can). A probe
    /// for readiness: it may take a round trip, so call it every few seconds, not per packet.
    async fn unready(&self) -> Option<String> {
        None
    }
}
