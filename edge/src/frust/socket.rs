//! Socket.IO handlers: one session per socket. Inbound packets are validated here; anything
//! invalid is counted and dropped without touching the bus, the store or the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use switchyard_bus::TypedBus;
use switchyard_schema::envelope::{FrustOut, Inbound, Presence};
use switchyard_schema::frust::{self, ClickIn, EventIn, Invalid};
use switchyard_schema::new_packet_id;
use switchyard_schema::topics::{self, Topic};
use tracing::Instrument;

use super::inbox::{Inbox, Next, Pushed, Refused};
use super::shards::Member;
use super::FrustEdge;
use crate::limits::{ConnectionLimiter, Verdict};
use crate::not_accepted::NotAccepted;
use crate::occupancy::{Full, Slot};
use crate::refusals;

/// Packets one socket may have waiting. A socket's packets are published one after another,
/// so through a JetStream election (up to the 30 s publish budget) they pile up here: room
/// for a client at the per-connection rate limit (50/s) for the whole budget. Each queued
/// packet also holds [`QUEUED_CHARGE`] of the edge's held-bytes budget, which bounds the edge.
const SESSION_QUEUE: usize = 1536;
/// What one queued packet counts against the edge's held bytes (a validated Frust packet is a
/// few hundred bytes at most: a flat charge spares measuring each).
const QUEUED_CHARGE: usize = 512;

/// Queued boxed: a waiting packet then takes a pointer of the inbox's buffer.
type Queued = Box<Packet>;

/// Per-socket state: the name it goes by and how many clicks it sent.
struct Session {
    id: String,
    name: Mutex<Option<String>>,
    clicks: AtomicU64,
}

#[derive(Clone, Copy)]
enum Kind {
    Auth,
    Click,
    Event,
}

/// What a socket sent, validated, queued in its session's inbox in arrival order. `ack` answers
/// a client that asked for an acknowledgement (and does nothing otherwise).
struct Packet {
    /// Validated before queueing: a queue of raw `Value`s would hold up to 16× each payload's
    /// bytes per slot (a JSON array of zeros), a few hundred bytes once parsed.
    parsed: Result<Parsed, String>,
    ack: AckSender,
    /// Its share of the edge's held bytes, from arrival until the stream answered.
    _hold: crate::held::Hold,
}

enum Parsed {
    Auth(Option<String>),
    Click(ClickIn),
    Event(EventIn),
}

/// Validates one packet's payload; `Err` is the reason for the acknowledgement (and counted).
fn parse(kind: Kind, data: Option<Value>) -> Result<Parsed, String> {
    match kind {
        Kind::Auth => data
            .ok_or(Invalid::NotAString("name"))
            .and_then(|v| frust::parse_auth(&v))
            .map(Parsed::Auth)
            .map_err(|e| reject("auth", &e)),
        Kind::Click => data
            .ok_or(Invalid::NotAnObject)
            .and_then(|v| ClickIn::parse(&v))
            .map(Parsed::Click)
            .map_err(|e| reject("click", &e)),
        Kind::Event => data
            .ok_or(Invalid::NotAnObject)
            .and_then(|v| EventIn::parse(&v))
            .map(Parsed::Event)
            .map_err(|e| reject("event", &e)),
    }
}

/// The acknowledgement: `ok` once the packet is durably accepted, or why it was not.
/// `unconfirmed` marks a failure whose outcome is unknown (the bus never answered): the
/// packet may still be stored and shown; it will not be stored twice.
#[derive(serde::Serialize, Default)]
struct Ack {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unconfirmed: bool,
}

impl Ack {
    fn refused(error: &str) -> Self {
        Self {
            ok: false,
            error: Some(error.to_owned()),
            unconfirmed: false,
        }
    }
}

/// Why a packet was not accepted, for its acknowledgement.
enum Refusal {
    Invalid(String),
    NotAccepted(NotAccepted),
}

impl From<Refusal> for Ack {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Invalid(why) => Ack::refused(&why),
            Refusal::NotAccepted(NotAccepted::Unavailable) => {
                Ack::refused("not accepted: the message bus is unavailable; try again")
            }
            Refusal::NotAccepted(NotAccepted::Overloaded) => Ack::refused(
                "not accepted: this edge holds too many packets the stream has not confirmed; \
                 try again",
            ),
            Refusal::NotAccepted(NotAccepted::Unconfirmed) => Ack {
                unconfirmed: true,
                ..Ack::refused(
                    "not confirmed: the message bus did not answer; it may still be stored",
                )
            },
        }
    }
}

pub fn register(edge: &Arc<FrustEdge>) {
    // The handshake was admitted already (rate and session caps, `admission`); a v5 client
    // joins the namespace later, when the edge may have filled up. Refusing in a middleware
    // sends the client a `connect_error` instead of a connect.
    let admit = {
        let edge = edge.clone();
        move |s: SocketRef| {
            let ip = client_ip(&edge.limits, &s);
            let verdict = edge
                .session_slots
                .has_room(ip)
                .map_err(|_| "too many sessions: try again later");
            std::future::ready(verdict)
        }
    };
    let (edge, io) = (edge.clone(), edge.io.clone());
    // Socket.IO spawns the future a handler returns, but calls the handler itself in arrival
    // order: doing the work in the closure body (and returning a ready future) keeps order.
    let connect = move |s: SocketRef| {
        on_connect(&edge, s);
        std::future::ready(())
    };
    io.ns("/", connect.with(admit));
}

fn client_ip(limits: &crate::limits::Limits, s: &SocketRef) -> std::net::IpAddr {
    let parts = s.req_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    limits.client_ip(peer, &parts.headers)
}

/// Registers the handlers before anything can await, so a packet sent right after connecting
/// is never missed. Handlers only enqueue: the session's inbox applies its packets in order.
fn on_connect(edge: &Arc<FrustEdge>, s: SocketRef) {
    let ip = client_ip(&edge.limits, &s);
    // Held by the session: the place is given back when the session ends.
    let slot = match edge.session_slots.try_hold(Some(ip)) {
        Ok(slot) => slot,
        Err(full) => {
            // Others took the last places since the middleware looked.
            let reason = match full {
                Full::Total => "max_sessions",
                Full::Client => "max_sessions_per_ip",
            };
            refusals::refused("frust", reason, ip, "a Socket.IO session over the cap");
            let _ = s.disconnect();
            return;
        }
    };
    let limiter = Arc::new(edge.limits.connection(ip));
    // In the fan-out from now on. The session owns the membership, and it ends on a disconnect
    // or a drain, so no socket stays registered past its session.
    let member = edge.sockets.join(s.clone());
    let live = Arc::new(LiveSession {
        edge: edge.clone(),
        session: Session {
            id: new_packet_id(),
            name: Mutex::new(None),
            clicks: AtomicU64::new(0),
        },
        inbox: Inbox::running(SESSION_QUEUE),
        held: Mutex::new(Some((member, slot))),
        span: tracing::info_span!("frust_session", sid = %s.id, %ip),
    });
    for (event, kind) in [
        ("auth", Kind::Auth),
        ("click", Kind::Click),
        ("event", Kind::Event),
    ] {
        let (live, limiter, held) = (live.clone(), limiter.clone(), edge.held.clone());
        s.on(
            event,
            move |s: SocketRef, ack: AckSender, TryData::<Value>(data)| {
                count_in(event);
                if let Some(ack) = admitted(&limiter, s, ack) {
                    match held.try_hold("frust", QUEUED_CHARGE) {
                        Some(hold) => {
                            let packet = Packet {
                                parsed: parse(kind, data.ok()),
                                ack,
                                _hold: hold,
                            };
                            live.enqueue(Box::new(packet));
                        }
                        None => {
                            let _ =
                                ack.send(&Ack::from(Refusal::NotAccepted(NotAccepted::Overloaded)));
                        }
                    }
                }
                std::future::ready(())
            },
        );
    }
    s.on_fallback(move |s: SocketRef, ack: AckSender, Event(name): Event| {
        if admitted(&limiter, s, ack).is_some() {
            tracing::debug!(event = %name, "unknown event ignored");
            metrics::counter!("switchyard_rejects_total", "api" => "frust", "reason" => "unknown_event")
                .increment(1);
        }
        std::future::ready(())
    });
    {
        let live = live.clone();
        s.on_disconnect(move || {
            live.end();
            std::future::ready(())
        });
    }
    edge.local_sockets.fetch_add(1, Ordering::Relaxed);
    let local = super::LocalSession {
        name: None,
        sid: s.id,
        live: live.clone(),
    };
    edge.sessions.lock().insert(live.session.id.clone(), local);
    metrics::gauge!("switchyard_connections", "api" => "frust").increment(1.0);
    metrics::counter!("switchyard_connections_total", "api" => "frust", "protocol" => protocol_label(&s))
        .increment(1);
    live.spawn(Some(s));
}

/// Applies the rate limits to one packet: over them it is refused, and a socket that keeps
/// flooding is disconnected.
fn admitted(limiter: &ConnectionLimiter, s: SocketRef, ack: AckSender) -> Option<AckSender> {
    match limiter.check("frust") {
        Verdict::Allow => Some(ack),
        Verdict::Limit => {
            let _ = ack.send(&Ack::refused("rate limited; slow down"));
            None
        }
        Verdict::Disconnect => {
            tracing::info!(ip = %limiter.ip(), "disconnecting a flooding socket");
            let _ = s.disconnect();
            None
        }
    }
}

/// One socket's session: its state, its inbox, and what it holds until it ends.
pub struct LiveSession {
    edge: Arc<FrustEdge>,
    session: Session,
    inbox: Inbox<Queued>,
    /// Given back when the session ends: its place in the fan-out and among the sessions.
    held: Mutex<Option<(Member, Slot)>>,
    span: tracing::Span,
}

impl LiveSession {
    /// Queues a packet, and starts the task that applies it when none runs.
    fn enqueue(self: &Arc<Self>, packet: Queued) {
        match self.inbox.push(packet) {
            Ok(Pushed::SpawnTask) => self.spawn(None),
            Ok(Pushed::Queued) => {}
            Err(Refused::Full(packet)) => {
                metrics::counter!("switchyard_rejects_total", "api" => "frust", "reason" => "flood")
                    .increment(1);
                let refused = Ack::refused("too many packets in flight; slow down");
                let _ = packet.ack.send(&refused);
            }
            // The edge is draining: the client may send it again to another.
            Err(Refused::Ended(packet)) => {
                let _ = packet
                    .ack
                    .send(&Ack::from(Refusal::NotAccepted(NotAccepted::Unavailable)));
            }
        }
    }

    /// Ends the session once the packets that arrived before are applied (a disconnect, or
    /// the edge's drain: closing the server does not run socketioxide's disconnect handlers).
    pub fn end(self: &Arc<Self>) {
        if let Some(Pushed::SpawnTask) = self.inbox.end() {
            self.spawn(None);
        }
    }

    fn spawn(self: &Arc<Self>, start: Option<SocketRef>) {
        tokio::spawn(self.clone().run(start).instrument(self.span.clone()));
    }

    /// Starts the session (`start`), applies what waits, and ends the session when it is over.
    /// The awaits are boxed: the task keeps only the loop's small state between them.
    async fn run(self: Arc<Self>, start: Option<SocketRef>) {
        if let Some(s) = start {
            Box::pin(self.start(s)).await;
        }
        loop {
            match self.inbox.next() {
                Next::Apply(packet) => Box::pin(handle(&self.edge, &self.session, *packet)).await,
                Next::End => return Box::pin(self.finish()).await,
                Next::Stop => return,
            }
        }
    }

    async fn start(&self, s: SocketRef) {
        let edge = &self.edge;
        match edge.current_stats().await {
            Ok(stats) => {
                let _ = s.emit("stats", &stats);
            }
            Err(e) => tracing::error!(error = %e, "cannot read stats for a new socket"),
        }
        // Holding the socket past this point would keep it alive after it disconnects.
        drop(s);
        edge.presence(&Presence::Joined {
            session: self.session.id.clone(),
            edge: edge.edge_id.clone(),
        })
        .await;
    }

    async fn finish(&self) {
        let edge = &self.edge;
        drop(self.held.lock().take());
        edge.local_sockets.fetch_sub(1, Ordering::Relaxed);
        edge.sessions.lock().remove(&self.session.id);
        metrics::gauge!("switchyard_connections", "api" => "frust").decrement(1.0);
        rename(edge, &self.session, None).await;
        edge.presence(&Presence::Left {
            session: self.session.id.clone(),
        })
        .await;
    }
}

async fn handle(edge: &FrustEdge, session: &Session, packet: Packet) {
    let outcome = match packet.parsed {
        Ok(Parsed::Auth(name)) => {
            rename(edge, session, name).await;
            Ok(())
        }
        Ok(Parsed::Click(click)) => on_click(edge, session, click).await,
        Ok(Parsed::Event(event)) => on_event(edge, session, event).await,
        Err(why) => Err(Refusal::Invalid(why)),
    };
    let ack = match outcome {
        Ok(()) => Ack {
            ok: true,
            ..Ack::default()
        },
        Err(refusal) => Ack::from(refusal),
    };
    let _ = packet.ack.send(&ack);
}

fn protocol_label(s: &SocketRef) -> &'static str {
    match s.protocol() {
        socketioxide::ProtocolVersion::V4 => "socket.io-v4",
        socketioxide::ProtocolVersion::V5 => "socket.io-v5",
    }
}

fn count_in(kind: &'static str) {
    metrics::counter!("switchyard_packets_in_total", "api" => "frust", "type" => kind).increment(1);
}

/// Counts an invalid packet; returns the reason for the client's acknowledgement.
fn reject(kind: &'static str, why: &Invalid) -> String {
    tracing::debug!(packet = kind, reason = %why, "invalid packet rejected");
    metrics::counter!("switchyard_rejects_total", "api" => "frust", "reason" => "validation")
        .increment(1);
    why.to_string()
}

/// Applies a (possibly implicit) `auth`: toasts join, rename or leave to everyone.
async fn rename(edge: &FrustEdge, session: &Session, name: Option<String>) {
    let old = {
        let mut current = session.name.lock();
        if *current == name {
            return;
        }
        std::mem::replace(&mut *current, name.clone())
    };
    if let Some(entry) = edge.sessions.lock().get_mut(&session.id) {
        entry.name.clone_from(&name);
    }
    if let Some(toast) = frust::name_change_toast(old.as_deref(), name.as_deref()) {
        if let Err(e) = edge.broadcast(&FrustOut::Message(toast)).await {
            tracing::warn!(error = %e, "toast broadcast failed");
        }
    }
    edge.presence(&Presence::Renamed {
        session: session.id.clone(),
        name,
    })
    .await;
}

async fn on_click(edge: &FrustEdge, session: &Session, click: ClickIn) -> Result<(), Refusal> {
    rename(edge, session, Some(click.user.clone())).await;
    let session_clicks = session.clicks.fetch_add(1, Ordering::Relaxed) + 1;
    let packet = Inbound::FrustClick {
        id: new_packet_id(),
        session: session.id.clone(),
        click: frust::Click {
            user: click.user,
            comment: click.comment,
            style: click.style,
            timestamp: edge.clock.now(),
        },
        session_clicks,
    };
    let published = publish_inbound(edge, &topics::IN_FRUST_CLICK, &packet).await;
    if matches!(published, Err(Refusal::NotAccepted(n)) if n.surely_not_stored()) {
        // Not accepted, so not this session's click either.
        session.clicks.fetch_sub(1, Ordering::Relaxed);
    }
    published
}

async fn on_event(edge: &FrustEdge, session: &Session, event: EventIn) -> Result<(), Refusal> {
    rename(edge, session, Some(event.user.clone())).await;
    let event = frust::Event {
        user: event.user,
        name: event.name,
        timestamp: edge.clock.now(),
    };
    let (id, session) = (new_packet_id(), session.id.clone());
    // Ephemeral names go the same durable, exactly-once way as every counted packet: the
    // original counted them in the totals and hours (not per user, no row, no toast).
    let packet = if edge.ephemeral_events.contains(&event.name) {
        Inbound::FrustEphemeral { id, session, event }
    } else {
        Inbound::FrustEvent { id, session, event }
    };
    publish_inbound(edge, &topics::IN_FRUST_EVENT, &packet).await
}

/// Hands a packet to the durable stream; only an acknowledged append counts as accepted.
async fn publish_inbound(
    edge: &FrustEdge,
    topic: &Topic<Inbound>,
    packet: &Inbound,
) -> Result<(), Refusal> {
    let started = std::time::Instant::now();
    // (The packet holds its share of the edge's held bytes since it arrived: QUEUED_CHARGE.)
    match edge
        .bus
        .publish_durable_to(topic, packet.id(), packet)
        .await
    {
        Ok(()) => {
            metrics::histogram!("switchyard_publish_seconds", "api" => "frust")
                .record(started.elapsed());
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, subject = topic.subject(), "inbound publish failed");
            metrics::counter!("switchyard_rejects_total", "api" => "frust", "reason" => "publish")
                .increment(1);
            Err(Refusal::NotAccepted(NotAccepted::of_publish(&e)))
        }
    }
}
