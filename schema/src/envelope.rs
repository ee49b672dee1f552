//! What travels on the bus: versioned MessagePack envelopes. Decoding rejects unknown versions so
//! a mixed-version cluster fails loudly instead of misreading.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::chat::ChatMessage;
use crate::frust::{Click, Event, Message, OnlineUser, Stats, Status};

pub const ENVELOPE_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("cannot encode envelope: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot decode envelope: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("envelope version {0} is not supported (this build speaks {ENVELOPE_VERSION})")]
    Version(u8),
    #[error("payload is not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u8,
    body: T,
}

pub fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, EnvelopeError> {
    Ok(rmp_serde::to_vec_named(&Envelope {
        v: ENVELOPE_VERSION,
        body,
    })?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EnvelopeError> {
    let env: Envelope<T> = rmp_serde::from_slice(bytes)?;
    if env.v != ENVELOPE_VERSION {
        return Err(EnvelopeError::Version(env.v));
    }
    Ok(env.body)
}

/// How a topic's payload travels: the wire form of each type that a [`crate::topics`] entry
/// carries. Encoding cannot fail: these are plain data types, and rmp-serde writing into a `Vec`
/// fails only for a `Serialize` impl that errors (none here; every type is round-tripped in the
/// tests), so a failure is a bug and panics instead of being handled at every publisher.
pub trait Payload: Sized + Send + Sync + 'static {
    fn to_bytes(&self) -> Vec<u8>;
    fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError>;
}

/// The payload types that travel as versioned MessagePack envelopes.
macro_rules! enveloped {
    ($($ty:ty),* $(,)?) => {$(
        impl Payload for $ty {
            fn to_bytes(&self) -> Vec<u8> {
                encode(self).expect("bus envelopes always encode")
            }
            fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
                decode(bytes)
            }
        }
    )*};
}

enveloped!(
    Inbound,
    DeadLetter,
    Fact,
    FrustFanout,
    Presence,
    ChatOut,
    ChatPresence,
    ControlRequest,
    ControlReply,
    OnlineUsers,
);

/// A request without a body (`rpc.frust.online`): empty on the wire, whatever arrives is
/// accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Empty;

impl Payload for Empty {
    fn to_bytes(&self) -> Vec<u8> {
        Vec::new()
    }
    fn from_bytes(_: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(Empty)
    }
}

/// A room whose membership changed (`chat.room.changed`): its id as raw UTF-8, no envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomChanged(pub String);

impl Payload for RoomChanged {
    fn to_bytes(&self) -> Vec<u8> {
        self.0.as_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(RoomChanged(std::str::from_utf8(bytes)?.to_owned()))
    }
}

/// A packet accepted at an edge, on its way to the workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Inbound {
    FrustClick {
        id: String,
        session: String,
        click: Click,
        /// The session's click count including this one (drives milestone toasts).
        session_clicks: u64,
    },
    FrustEvent {
        id: String,
        session: String,
        event: Event,
    },
    /// An event whose name is configured ephemeral: shown, counted in the totals and hours
    /// (the original counted them before its "ephemeral" check), but kept out of the events
    /// list, the per-user counts and the toasts.
    FrustEphemeral {
        id: String,
        session: String,
        event: Event,
    },
    /// A chat message; its id is the packet id.
    ChatMessage {
        message: ChatMessage,
        sent_at_ms: i64,
    },
}

impl Inbound {
    pub fn id(&self) -> &str {
        match self {
            Inbound::FrustClick { id, .. }
            | Inbound::FrustEvent { id, .. }
            | Inbound::FrustEphemeral { id, .. } => id,
            Inbound::ChatMessage { message, .. } => &message.id,
        }
    }

    /// The API it came from (the `api` label of the metrics).
    pub fn api(&self) -> &'static str {
        match self {
            Inbound::FrustClick { .. }
            | Inbound::FrustEvent { .. }
            | Inbound::FrustEphemeral { .. } => "frust",
            Inbound::ChatMessage { .. } => "chat",
        }
    }
}

/// An inbound packet the workers gave up on (it failed to persist, or could not be read), kept
/// on the DEAD stream with why, so an operator can inspect it and send it through again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The inbound subject it was read from (and is re-driven to).
    pub subject: String,
    /// The packet id (`Nats-Msg-Id`), when the packet could be read.
    pub id: Option<String>,
    /// The inbound envelope exactly as it was published (dead letters are rare: no compact
    /// byte encoding needed).
    pub payload: Vec<u8>,
    pub error: String,
    pub attempts: u32,
    /// Unix milliseconds.
    pub failed_at_ms: i64,
}

/// What the workers persisted; the aggregator counts these, in stream order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fact {
    FrustClick {
        id: String,
        session: String,
        user: String,
        timestamp: i64,
    },
    FrustEvent {
        id: String,
        session: String,
        user: String,
        timestamp: i64,
    },
    /// An ephemeral event: counts in the totals, the hour and the session, not for the user.
    FrustEphemeral {
        id: String,
        session: String,
        timestamp: i64,
    },
    ChatMessage {
        id: String,
        room_id: String,
    },
}

/// Something every Frust client should receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrustOut {
    Click(Click),
    Event(Event),
    Stats(Stats),
    Status(Status),
    Message(Message),
}

impl FrustOut {
    /// The Socket.IO event name this is emitted as.
    pub fn event_name(&self) -> &'static str {
        match self {
            FrustOut::Click(_) => "click",
            FrustOut::Event(_) => "event",
            FrustOut::Stats(_) => "stats",
            FrustOut::Status(_) => "status",
            FrustOut::Message(_) => "message",
        }
    }
}

/// What travels on `out.frust`: everything one source event shows to clients. Fan-out of
/// persisted packets is at least once (a redelivered packet is shown again); `dedup` (the
/// packet id) lets every edge show it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrustFanout {
    pub dedup: Option<String>,
    pub outs: Vec<FrustOut>,
}

impl FrustFanout {
    /// A one-off broadcast with nothing to deduplicate (toasts, stats, status).
    pub fn once(out: FrustOut) -> Self {
        Self {
            dedup: None,
            outs: vec![out],
        }
    }
}

/// A change in who is connected, from an edge to the aggregator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    Joined {
        session: String,
        edge: String,
    },
    Renamed {
        session: String,
        name: Option<String>,
    },
    Left {
        session: String,
    },
    /// Every few seconds: the edge's whole session list (id, name). It keeps the edge alive in
    /// the aggregator's eyes and rebuilds presence after an aggregator restart.
    Heartbeat {
        edge: String,
        sessions: Vec<(String, Option<String>)>,
    },
}

/// Who a chat fan-out message is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatTarget {
    /// Every connection of every member of the room, except those of `except_user`.
    Room {
        room_id: String,
        except_user: Option<String>,
    },
    /// Every connection of these users, once each.
    Users(Vec<String>),
}

/// A chat packet to deliver; `json` is serialized once by the publisher for all recipients.
/// `dedup` (a message id) makes at-least-once fan-out show once per edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatOut {
    pub target: ChatTarget,
    pub json: String,
    pub dedup: Option<String>,
    /// A room message's position in its room's history (the store's, strictly increasing in
    /// history order): edges deliver a room in this order, whatever route fan-out took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

/// A chat connection opening or closing, from an edge to the aggregator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatPresence {
    Connected {
        user: String,
        connection: String,
        edge: String,
    },
    Disconnected {
        user: String,
        connection: String,
    },
    /// Every few seconds: the edge's whole list of (user, connection).
    Heartbeat {
        edge: String,
        connections: Vec<(String, String)>,
    },
}

/// What the server API asks every edge (on `control.edges`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// The edge's connections, both APIs; only those of `user` (a chat user id or a Frust
    /// name) when set.
    ListConnections { user: Option<String> },
    /// Close the Frust session with this id (as in presence), wherever it is.
    DisconnectFrustSession { session: String },
    /// Close every `/chat` connection of this user.
    DisconnectChatUser { user: String },
}

/// One edge's answer to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    Connections(EdgeConnections),
    /// How many connections this edge closed.
    Disconnected {
        edge: String,
        closed: u64,
    },
}

/// The connections of one edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeConnections {
    pub edge: String,
    /// Frust sessions: (session id, the name it authenticated with).
    pub frust: Vec<(String, Option<String>)>,
    /// `/chat` connections: (user, connection id).
    pub chat: Vec<(String, String)>,
    /// How many matched, listed or not: a list is cut to keep the answer under the bus's
    /// message size.
    pub frust_matched: u64,
    pub chat_matched: u64,
}

impl EdgeConnections {
    /// Whether both lists hold every connection that matched.
    pub fn is_complete(&self) -> bool {
        self.frust.len() as u64 == self.frust_matched && self.chat.len() as u64 == self.chat_matched
    }
}

/// Reply to `rpc.frust.online`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUsers(pub Vec<OnlineUser>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_version() {
        let p = Inbound::FrustEvent {
            id: "x".into(),
            session: "s".into(),
            event: Event {
                user: "u".into(),
                name: "n".into(),
                timestamp: 5,
            },
        };
        let bytes = encode(&p).unwrap();
        assert_eq!(decode::<Inbound>(&bytes).unwrap(), p);

        let future = rmp_serde::to_vec_named(&Envelope { v: 9, body: &p }).unwrap();
        assert!(matches!(
            decode::<Inbound>(&future),
            Err(EnvelopeError::Version(9))
        ));
        assert!(decode::<Inbound>(b"garbage").is_err());
    }

    #[test]
    fn payloads_keep_their_wire_form() {
        let fanout = FrustFanout::once(FrustOut::Status(crate::frust::Status { user_count: 3 }));
        assert_eq!(fanout.to_bytes(), encode(&fanout).unwrap());
        assert_eq!(FrustFanout::from_bytes(&fanout.to_bytes()).unwrap(), fanout);
        assert!(Empty.to_bytes().is_empty());
        assert_eq!(RoomChanged("r1".into()).to_bytes(), b"r1");
        assert_eq!(
            RoomChanged::from_bytes(b"r1").unwrap(),
            RoomChanged("r1".into())
        );
        assert!(RoomChanged::from_bytes(&[0xff]).is_err());
    }
}
