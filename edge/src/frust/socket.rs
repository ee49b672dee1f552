//! Socket.IO handlers: one session per socket. Inbound packets are validated here; anything
//! invalid is counted and dropped without touching the bus, the store or the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use switchyard_schema::envelope::{FrustOut, Inbound, Presence};
use switchyard_schema::frust::{self, ClickIn, EventIn, Invalid};
use switchyard_schema::new_packet_id;
use switchyard_schema::subjects::{IN_FRUST_CLICK, IN_FRUST_EVENT};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{encoded, FrustEdge};

/// Packets one socket may have waiting; past this it is flooding and packets are dropped.
const SESSION_QUEUE: usize = 64;

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

/// What a socket sent, queued for its session task in arrival order. `ack` answers a client
/// that asked for an acknowledgement (and does nothing otherwise).
struct Packet {
    kind: Kind,
    data: Option<Value>,
    ack: AckSender,
}

/// The acknowledgement: `ok` once the packet is durably accepted, or why it was not.
#[derive(serde::Serialize)]
struct Ack {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn register(edge: &Arc<FrustEdge>) {
    let edge = edge.clone();
    // Socket.IO spawns the future a handler returns, but calls the handler itself in arrival
    // order: doing the work in the closure body (and returning a ready future) keeps order.
    edge.io.clone().ns("/", move |s: SocketRef| {
        on_connect(&edge, s);
        std::future::ready(())
    });
}

/// Registers the handlers before anything can await, so a packet sent right after connecting
/// is never missed. Handlers only enqueue: one task per socket applies its packets in order.
fn on_connect(edge: &Arc<FrustEdge>, s: SocketRef) {
    let (tx, rx) = mpsc::channel(SESSION_QUEUE);
    let gone = CancellationToken::new();
    for (event, kind) in [
        ("auth", Kind::Auth),
        ("click", Kind::Click),
        ("event", Kind::Event),
    ] {
        let tx = tx.clone();
        s.on(event, move |ack: AckSender, TryData::<Value>(data)| {
            let packet = Packet {
                kind,
                data: data.ok(),
                ack,
            };
            enqueue(&tx, event, packet);
            std::future::ready(())
        });
    }
    s.on_fallback(|Event(name): Event| {
        tracing::debug!(event = %name, "unknown event ignored");
        metrics::counter!("switchyard_rejects_total", "api" => "frust", "reason" => "unknown_event")
            .increment(1);
        std::future::ready(())
    });
    {
        let gone = gone.clone();
        s.on_disconnect(move || {
            gone.cancel();
            std::future::ready(())
        });
    }
    drop(tx);
    tokio::spawn(run_session(edge.clone(), s, rx, gone));
}

fn enqueue(tx: &mpsc::Sender<Packet>, kind: &'static str, packet: Packet) {
    count_in(kind);
    if let Err(e) = tx.try_send(packet) {
        metrics::counter!("switchyard_rejects_total", "api" => "frust", "reason" => "flood")
            .increment(1);
        let refused = Ack {
            ok: false,
            error: Some("too many packets in flight; slow down".into()),
        };
        let _ = e.into_inner().ack.send(&refused);
    }
}

async fn run_session(
    edge: Arc<FrustEdge>,
    s: SocketRef,
    mut packets: mpsc::Receiver<Packet>,
    gone: CancellationToken,
) {
    let session = Session {
        id: new_packet_id(),
        name: Mutex::new(None),
        clicks: AtomicU64::new(0),
    };
    edge.local_sockets.fetch_add(1, Ordering::Relaxed);
    edge.sessions.lock().insert(session.id.clone(), None);
    metrics::gauge!("switchyard_connections", "api" => "frust").increment(1.0);
    metrics::counter!("switchyard_connections_total", "api" => "frust", "protocol" => protocol_label(&s))
        .increment(1);
    match edge.current_stats().await {
        Ok(stats) => {
            let _ = s.emit("stats", &stats);
        }
        Err(e) => tracing::error!(error = %e, "cannot read stats for a new socket"),
    }
    // Holding the socket past this point would keep it alive after it disconnects.
    drop(s);
    edge.presence(&Presence::Joined {
        session: session.id.clone(),
        edge: edge.edge_id.clone(),
    })
    .await;

    loop {
        let packet = tokio::select! {
            biased;
            p = packets.recv() => p,
            // Apply what the socket sent before it left, then stop.
            _ = gone.cancelled() => packets.try_recv().ok(),
        };
        let Some(packet) = packet else { break };
        handle(&edge, &session, packet).await;
    }

    edge.local_sockets.fetch_sub(1, Ordering::Relaxed);
    edge.sessions.lock().remove(&session.id);
    metrics::gauge!("switchyard_connections", "api" => "frust").decrement(1.0);
    rename(&edge, &session, None).await;
    edge.presence(&Presence::Left {
        session: session.id.clone(),
    })
    .await;
}

async fn handle(edge: &FrustEdge, session: &Session, packet: Packet) {
    let outcome = match packet.kind {
        Kind::Auth => match packet
            .data
            .ok_or(Invalid::NotAString("name"))
            .and_then(|v| frust::parse_auth(&v))
        {
            Ok(name) => {
                rename(edge, session, name).await;
                Ok(())
            }
            Err(e) => Err(reject("auth", &e)),
        },
        Kind::Click => match packet
            .data
            .ok_or(Invalid::NotAnObject)
            .and_then(|v| ClickIn::parse(&v))
        {
            Ok(click) => on_click(edge, session, click).await,
            Err(e) => Err(reject("click", &e)),
        },
        Kind::Event => match packet
            .data
            .ok_or(Invalid::NotAnObject)
            .and_then(|v| EventIn::parse(&v))
        {
            Ok(event) => on_event(edge, session, event).await,
            Err(e) => Err(reject("event", &e)),
        },
    };
    let ack = match outcome {
        Ok(()) => Ack {
            ok: true,
            error: None,
        },
        Err(error) => Ack {
            ok: false,
            error: Some(error),
        },
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
        entry.clone_from(&name);
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

async fn on_click(edge: &FrustEdge, session: &Session, click: ClickIn) -> Result<(), String> {
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
    let published = publish_inbound(edge, IN_FRUST_CLICK, &packet).await;
    if published.is_err() {
        // Not accepted, so not this session's click either.
        session.clicks.fetch_sub(1, Ordering::Relaxed);
    }
    published
}

async fn on_event(edge: &FrustEdge, session: &Session, event: EventIn) -> Result<(), String> {
    rename(edge, session, Some(event.user.clone())).await;
    let event = frust::Event {
        user: event.user,
        name: event.name,
        timestamp: edge.clock.now(),
    };
    if edge.ephemeral_events.contains(&event.name) {
        // Shown to everyone, but neither stored, counted nor toasted.
        return edge.broadcast(&FrustOut::Event(event)).await.map_err(|e| {
            tracing::warn!(error = %e, "ephemeral event broadcast failed");
            "event could not be delivered; try again".to_owned()
        });
    }
    let packet = Inbound::FrustEvent {
        id: new_packet_id(),
        session: session.id.clone(),
        event,
    };
    publish_inbound(edge, IN_FRUST_EVENT, &packet).await
}

/// Hands a packet to the durable stream; only an acknowledged append counts as accepted.
async fn publish_inbound(edge: &FrustEdge, subject: &str, packet: &Inbound) -> Result<(), String> {
    let started = std::time::Instant::now();
    match edge
        .bus
        .publish_durable(subject, packet.id(), encoded(packet))
        .await
    {
        Ok(()) => {
            metrics::histogram!("switchyard_publish_seconds").record(started.elapsed());
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, subject, "inbound publish failed; packet dropped");
            metrics::counter!("switchyard_rejects_total", "api" => "frust", "reason" => "publish")
                .increment(1);
            Err("not accepted: the message bus is unavailable; try again".into())
        }
    }
}
