//! Typed topics: every bus subject paired with the one payload type that travels on it, so a
//! subject's publishers and readers are found by grepping its name here (`topics::OUT_FRUST`),
//! and the bus's typed layer encodes and decodes for them. The raw subject strings stay in
//! [`crate::subjects`] (the adapters' and wire's view); roles use these.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use crate::envelope::{
    ChatOut, ChatPresence, ControlReply, ControlRequest, DeadLetter, Empty, Fact, FrustFanout,
    Inbound, OnlineUsers, Payload, Presence, RoomChanged,
};
use crate::subjects::{self as raw, subject_matches};

/// A durable stream of the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Packets accepted at an edge and not yet persisted.
    In,
    /// What the workers persisted, in the order the aggregator applies it.
    Facts,
    /// Inbound packets the workers could not persist, with why.
    Dead,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::In, Stream::Facts, Stream::Dead];

    /// Its name in JetStream (and in the raw port).
    pub const fn name(self) -> &'static str {
        match self {
            Stream::In => raw::STREAM_IN,
            Stream::Facts => raw::STREAM_FACTS,
            Stream::Dead => raw::STREAM_DEAD,
        }
    }

    /// The subjects it owns; `>` in a consumer filter means all of them.
    pub const fn subjects(self) -> &'static str {
        match self {
            Stream::In => "in.>",
            Stream::Facts => "facts.>",
            Stream::Dead => "dead.>",
        }
    }

    /// The stream called `name`, if there is one.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The stream owning `subject`, if any.
    pub fn of(subject: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| subject_matches(s.subjects(), subject))
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A subject (or a subscription pattern) and the type every message on it carries.
pub struct Topic<T> {
    subject: Cow<'static, str>,
    payload: PhantomData<fn() -> T>,
}

impl<T: Payload> Topic<T> {
    const fn fixed(subject: &'static str) -> Self {
        Self {
            subject: Cow::Borrowed(subject),
            payload: PhantomData,
        }
    }

    fn owned(subject: String) -> Self {
        Self {
            subject: Cow::Owned(subject),
            payload: PhantomData,
        }
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The durable stream it belongs to (`None`: plain pub/sub).
    pub fn stream(&self) -> Option<Stream> {
        Stream::of(&self.subject)
    }
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Self {
            subject: self.subject.clone(),
            payload: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({} : {})", self.subject, short_type_name::<T>())
    }
}

/// A durable stream read whole (a replay): every message on it is a `T`.
#[derive(Debug)]
pub struct Durable<T> {
    pub stream: Stream,
    payload: PhantomData<fn() -> T>,
}

impl<T> Clone for Durable<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Durable<T> {}

impl<T> Durable<T> {
    const fn of(stream: Stream) -> Self {
        Self {
            stream,
            payload: PhantomData,
        }
    }
}

/// A request/reply subject: a `Q` asks, each responder answers with an `R`.
#[derive(Debug)]
pub struct Rpc<Q, R> {
    subject: &'static str,
    payload: PhantomData<fn() -> (Q, R)>,
}

impl<Q, R> Rpc<Q, R> {
    const fn fixed(subject: &'static str) -> Self {
        Self {
            subject,
            payload: PhantomData,
        }
    }

    pub fn subject(&self) -> &'static str {
        self.subject
    }
}

// ---- inbound (stream IN), edge → workers ----

pub const IN: Durable<Inbound> = Durable::of(Stream::In);
pub const IN_FRUST_CLICK: Topic<Inbound> = Topic::fixed(raw::IN_FRUST_CLICK);
/// Events, ephemeral ones included.
pub const IN_FRUST_EVENT: Topic<Inbound> = Topic::fixed(raw::IN_FRUST_EVENT);
/// Every inbound Frust subject (the workers' Frust consumer).
pub const IN_FRUST_ALL: Topic<Inbound> = Topic::fixed(raw::IN_FRUST_ALL);

/// The inbound subject for a message into `room_id` (its room's partition).
pub fn in_chat_message(room_id: &str) -> Topic<Inbound> {
    Topic::owned(raw::in_chat_message(room_id))
}

/// Every inbound subject of chat partition `partition` (that partition's worker consumer).
pub fn in_chat_partition_all(partition: u32) -> Topic<Inbound> {
    Topic::owned(raw::in_chat_subject(partition, ">"))
}

// ---- facts (stream FACTS), workers → aggregator ----

pub const FACTS: Durable<Fact> = Durable::of(Stream::Facts);
pub const FACTS_FRUST: Topic<Fact> = Topic::fixed(raw::FACTS_FRUST);
pub const FACTS_CHAT: Topic<Fact> = Topic::fixed(raw::FACTS_CHAT);

// ---- dead letters (stream DEAD), workers → operator ----

pub const DEAD: Durable<DeadLetter> = Durable::of(Stream::Dead);

/// Where a poison packet read from `inbound_subject` is kept.
pub fn dead_letter_of(inbound_subject: &str) -> Topic<DeadLetter> {
    Topic::owned(format!("{}{inbound_subject}", raw::DEAD_PREFIX))
}

// ---- fan-out, to every edge ----

/// Everything every Frust client sees: worker fan-out, edge toasts, aggregator stats/status.
pub const OUT_FRUST: Topic<FrustFanout> = Topic::fixed(raw::OUT_FRUST);

/// Chat fan-out for one room's members.
pub fn out_chat_room(room_id: &str) -> Topic<ChatOut> {
    Topic::owned(raw::out_chat_room(room_id))
}

/// Chat fan-out addressed to a list of users.
pub const OUT_CHAT_USERS: Topic<ChatOut> = Topic::fixed(raw::OUT_CHAT_USERS);
/// A room's membership changed: edges drop what they cached about it.
pub const CHAT_ROOM_CHANGED: Topic<RoomChanged> = Topic::fixed(raw::CHAT_ROOM_CHANGED);

// ---- presence, edges → aggregator ----

pub const PRESENCE_FRUST: Topic<Presence> = Topic::fixed(raw::PRESENCE_FRUST);
pub const PRESENCE_CHAT: Topic<ChatPresence> = Topic::fixed(raw::PRESENCE_CHAT);

// ---- queries ----

/// The edge's REST asks the aggregator for the online sessions.
pub const RPC_FRUST_ONLINE: Rpc<Empty, OnlineUsers> = Rpc::fixed(raw::RPC_FRUST_ONLINE);
/// The server API asks every edge about its own connections (scatter-gather).
pub const CONTROL_EDGES: Rpc<ControlRequest, ControlReply> = Rpc::fixed(raw::CONTROL_EDGES);

/// One row of the topics table (docs/architecture.md): a subject (`<…>` marks a part filled
/// in per message) and what travels on it (`Q → R` for request/reply).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CatalogEntry {
    pub subject: String,
    pub payload: String,
}

/// Every subject something is published to, with its payload: the source of the topics table.
pub fn catalog() -> Vec<CatalogEntry> {
    fn topic<T: Payload>(t: Topic<T>) -> CatalogEntry {
        CatalogEntry {
            subject: t.subject().to_owned(),
            payload: short_type_name::<T>().to_owned(),
        }
    }
    fn rpc<Q, R>(r: Rpc<Q, R>) -> CatalogEntry {
        CatalogEntry {
            subject: r.subject().to_owned(),
            payload: format!("{} → {}", short_type_name::<Q>(), short_type_name::<R>()),
        }
    }
    vec![
        topic(IN_FRUST_CLICK),
        topic(IN_FRUST_EVENT),
        topic(Topic::<Inbound>::owned(raw::in_chat_subject(
            "<partition>",
            "message",
        ))),
        topic(FACTS_FRUST),
        topic(FACTS_CHAT),
        topic(dead_letter_of("<inbound subject>")),
        topic(OUT_FRUST),
        topic(out_chat_room("<room>")),
        topic(OUT_CHAT_USERS),
        topic(CHAT_ROOM_CHANGED),
        topic(PRESENCE_FRUST),
        topic(PRESENCE_CHAT),
        rpc(RPC_FRUST_ONLINE),
        rpc(CONTROL_EDGES),
    ]
}

/// `Inbound` for `switchyard_schema::envelope::Inbound`.
pub fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_own_their_subjects() {
        assert_eq!(IN_FRUST_CLICK.stream(), Some(Stream::In));
        assert_eq!(in_chat_message("r").stream(), Some(Stream::In));
        assert_eq!(FACTS_CHAT.stream(), Some(Stream::Facts));
        assert_eq!(
            dead_letter_of(raw::IN_FRUST_CLICK).stream(),
            Some(Stream::Dead)
        );
        assert_eq!(OUT_FRUST.stream(), None);
        assert_eq!(Stream::named("FACTS"), Some(Stream::Facts));
        assert_eq!(Stream::named("OUT"), None);
        for stream in Stream::ALL {
            assert_eq!(raw::stream_of(stream.subjects()), Some(stream.name()));
        }
    }

    #[test]
    fn a_chat_message_lands_in_its_partitions_consumer() {
        let partition = raw::chat_partition("room-7");
        assert!(subject_matches(
            in_chat_partition_all(partition).subject(),
            in_chat_message("room-7").subject()
        ));
        assert!(subject_matches(
            IN_FRUST_ALL.subject(),
            IN_FRUST_EVENT.subject()
        ));
    }

    #[test]
    fn the_catalog_names_payload_types() {
        let out = catalog()
            .into_iter()
            .find(|e| e.subject == "out.frust")
            .unwrap();
        assert_eq!(out.payload, "FrustFanout");
        let rpc = catalog()
            .into_iter()
            .find(|e| e.subject == "control.edges")
            .unwrap();
        assert_eq!(rpc.payload, "ControlRequest → ControlReply");
    }
}
