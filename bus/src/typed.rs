//! The typed layer over the raw port: publish, subscribe, consume and ask by [`Topic`], so no role
//! encodes or decodes by hand. Adapters stay byte-level; this is the one place payloads are
//! turned into values.
//!
//! Policies, one each:
//! - encoding cannot fail ([`Payload::to_bytes`] panics on the impossible);
//! - a message that does not decode is a poison message: counted in
//!   `switchyard_rejects_total{api="bus",reason="decode"}` and logged (throttled), then dropped
//!   from a subscription or a gather; a durable delivery is handed to its reader as
//!   [`Decoded::body`] `Err`, so it can still be dead-lettered (workers) or skipped in order
//!   (aggregator) and acked.

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use switchyard_schema::envelope::{EnvelopeError, Payload};
use switchyard_schema::log_throttle;
use switchyard_schema::topics::{short_type_name, Durable, Rpc, Topic};

use crate::{Bus, BusError, ConsumerSpec, Delivery, PendingAck, Replier};

/// A durable delivery and its body; `Err` is a poison message (already counted and logged) that
/// the reader still acks.
pub struct Decoded<T> {
    pub body: Result<T, EnvelopeError>,
    pub delivery: Delivery,
}

/// A body already encoded for `T`'s topics: for a caller that needs its size first (held
/// bytes) or sends it more than once (retries). Cheap to clone.
pub struct Encoded<T> {
    bytes: Bytes,
    payload: PhantomData<fn() -> T>,
}

impl<T: Payload> Encoded<T> {
    pub fn of(body: &T) -> Self {
        Self {
            bytes: Bytes::from(body.to_bytes()),
            payload: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl<T> Clone for Encoded<T> {
    fn clone(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            payload: PhantomData,
        }
    }
}

impl<T: Payload> From<&T> for Encoded<T> {
    fn from(body: &T) -> Self {
        Self::of(body)
    }
}

/// A request to answer with an `R`.
pub struct Request<Q, R> {
    pub body: Q,
    replier: Box<dyn Replier>,
    answer: PhantomData<fn(R)>,
}

impl<Q, R: Payload> Request<Q, R> {
    pub async fn reply(self, answer: &R) -> Result<(), BusError> {
        self.replier.reply(Bytes::from(answer.to_bytes())).await
    }
}

#[async_trait]
pub trait TypedBus {
    /// Fire-and-forget publish of `body` on `topic`.
    async fn publish_to<T: Payload>(
        &self,
        topic: &Topic<T>,
        body: impl Into<Encoded<T>> + Send,
    ) -> Result<(), BusError>;

    /// Appends `body` to the durable stream owning `topic` ([`Bus::publish_durable`]).
    async fn publish_durable_to<T: Payload>(
        &self,
        topic: &Topic<T>,
        msg_id: &str,
        body: impl Into<Encoded<T>> + Send,
    ) -> Result<(), BusError>;

    /// [`Bus::publish_durable_send`] of `body` on `topic`.
    async fn publish_durable_send_to<T: Payload>(
        &self,
        topic: &Topic<T>,
        msg_id: &str,
        body: impl Into<Encoded<T>> + Send,
    ) -> Result<PendingAck, BusError>;

    /// Every message on `topic` (a pattern may hold wildcards), decoded; poison is dropped.
    async fn subscribe_to<T: Payload>(
        &self,
        topic: &Topic<T>,
    ) -> Result<BoxStream<'static, T>, BusError>;

    /// Reads the durable consumer `name` of the messages on `topic` ([`Bus::consume`]).
    async fn consume_from<T: Payload>(
        &self,
        topic: &Topic<T>,
        name: &str,
        max_in_flight: usize,
    ) -> Result<BoxStream<'static, Decoded<T>>, BusError>;

    /// Reads a whole stream from `from` on ([`Bus::replay`]).
    async fn replay_from<T: Payload>(
        &self,
        stream: Durable<T>,
        from: u64,
    ) -> Result<BoxStream<'static, Decoded<T>>, BusError>;

    /// The requests on `rpc`, to answer; one that does not decode is dropped unanswered.
    async fn serve<Q: Payload, R: Payload>(
        &self,
        rpc: &Rpc<Q, R>,
    ) -> Result<BoxStream<'static, Request<Q, R>>, BusError>;

    /// Asks one responder of `rpc` ([`Bus::request`]).
    async fn request_to<Q: Payload, R: Payload>(
        &self,
        rpc: &Rpc<Q, R>,
        body: &Q,
        timeout: Duration,
    ) -> Result<R, BusError>;

    /// Asks every responder of `rpc` ([`Bus::gather`]); answers that do not decode are dropped.
    async fn gather_from<Q: Payload, R: Payload>(
        &self,
        rpc: &Rpc<Q, R>,
        body: &Q,
        wait: Duration,
    ) -> Result<Vec<R>, BusError>;
}

#[async_trait]
impl<B: Bus + ?Sized> TypedBus for B {
    async fn publish_to<T: Payload>(
        &self,
        topic: &Topic<T>,
        body: impl Into<Encoded<T>> + Send,
    ) -> Result<(), BusError> {
        self.publish(topic.subject(), body.into().bytes).await
    }

    async fn publish_durable_to<T: Payload>(
        &self,
        topic: &Topic<T>,
        msg_id: &str,
        body: impl Into<Encoded<T>> + Send,
    ) -> Result<(), BusError> {
        self.publish_durable(topic.subject(), msg_id, body.into().bytes)
            .await
    }

    async fn publish_durable_send_to<T: Payload>(
        &self,
        topic: &Topic<T>,
        msg_id: &str,
        body: impl Into<Encoded<T>> + Send,
    ) -> Result<PendingAck, BusError> {
        self.publish_durable_send(topic.subject(), msg_id, body.into().bytes)
            .await
    }

    async fn subscribe_to<T: Payload>(
        &self,
        topic: &Topic<T>,
    ) -> Result<BoxStream<'static, T>, BusError> {
        let messages = self.subscribe(topic.subject()).await?;
        Ok(messages
            .filter_map(|m| async move { decode(&m.subject, &m.payload).ok() })
            .boxed())
    }

    async fn consume_from<T: Payload>(
        &self,
        topic: &Topic<T>,
        name: &str,
        max_in_flight: usize,
    ) -> Result<BoxStream<'static, Decoded<T>>, BusError> {
        let stream = topic
            .stream()
            .ok_or_else(|| BusError::NotDurable(topic.subject().to_owned()))?;
        let spec = ConsumerSpec {
            stream: stream.name(),
            name,
            filter: topic.subject(),
            max_in_flight,
        };
        Ok(self.consume(&spec).await?.map(decoded).boxed())
    }

    async fn replay_from<T: Payload>(
        &self,
        stream: Durable<T>,
        from: u64,
    ) -> Result<BoxStream<'static, Decoded<T>>, BusError> {
        Ok(self
            .replay(stream.stream.name(), from)
            .await?
            .map(decoded)
            .boxed())
    }

    async fn serve<Q: Payload, R: Payload>(
        &self,
        rpc: &Rpc<Q, R>,
    ) -> Result<BoxStream<'static, Request<Q, R>>, BusError> {
        let messages = self.subscribe(rpc.subject()).await?;
        Ok(messages
            .filter_map(|m| async move {
                let replier = m.reply?;
                let body = decode(&m.subject, &m.payload).ok()?;
                Some(Request {
                    body,
                    replier,
                    answer: PhantomData,
                })
            })
            .boxed())
    }

    async fn request_to<Q: Payload, R: Payload>(
        &self,
        rpc: &Rpc<Q, R>,
        body: &Q,
        timeout: Duration,
    ) -> Result<R, BusError> {
        let answer = self
            .request(rpc.subject(), Bytes::from(body.to_bytes()), timeout)
            .await?;
        decode(rpc.subject(), &answer).map_err(|source| BusError::Undecodable {
            subject: rpc.subject().to_owned(),
            source,
        })
    }

    async fn gather_from<Q: Payload, R: Payload>(
        &self,
        rpc: &Rpc<Q, R>,
        body: &Q,
        wait: Duration,
    ) -> Result<Vec<R>, BusError> {
        let answers = self
            .gather(rpc.subject(), Bytes::from(body.to_bytes()), wait)
            .await?;
        Ok(answers
            .iter()
            .filter_map(|a| decode(rpc.subject(), a).ok())
            .collect())
    }
}

fn decoded<T: Payload>(delivery: Delivery) -> Decoded<T> {
    Decoded {
        body: decode(&delivery.subject, &delivery.payload),
        delivery,
    }
}

/// Decodes one message, counting and logging (throttled) a poison message.
fn decode<T: Payload>(subject: &str, payload: &[u8]) -> Result<T, EnvelopeError> {
    T::from_bytes(payload).inspect_err(|error| {
        metrics::counter!("switchyard_rejects_total", "api" => "bus", "reason" => "decode")
            .increment(1);
        if let Some(more) = log_throttle::due("bus decode", short_type_name::<T>()) {
            tracing::warn!(
                %error,
                subject,
                payload = short_type_name::<T>(),
                more_since_last_line = more,
                "undecodable bus message"
            );
        }
    })
}
