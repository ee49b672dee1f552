//! Socket.IO handlers: one session per socket. Inbound packets are validated here; anything
//! invalid is counted and dropped without touching the bus, the store or the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use socketioxide::extract::{Event, SocketRef, TryData};
use switchyard_schema::envelope::{FrustOut, Inbound, Presence};
use switchyard_schema::frust::{self, ClickIn, EventIn, Invalid};
use switchyard_schema::new_packet_id;
use switchyard_schema::subjects::{IN_FRUST_CLICK, IN_FRUST_EVENT};

use super::{encoded, FrustEdge};

/// Per-socket state: the name it goes by and how many clicks it sent.
struct Session {
    id: String,
    name: Mutex<Option<String>>,
    clicks: AtomicU64,
}

pub fn register(edge: &Arc<FrustEdge>) {
    let edge = edge.clone();
    edge.io.clone().ns("/", async move |s: SocketRef| {
        on_connect(edge, s).await;
    });
}

async fn on_connect(edge: Arc<FrustEdge>, s: SocketRef) {
    let session = Arc::new(Session {
        id: new_packet_id(),
        name: Mutex::new(None),
        clicks: AtomicU64::new(0),
    });
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
    edge.presence(&Presence::Joined {
        session: session.id.clone(),
        edge: edge.edge_id.clone(),
    })
    .await;

    {
        let (edge, session) = (edge.clone(), session.clone());
        s.on("auth", async move |TryData::<Value>(data)| {
            count_in("auth");
            match data
                .map_err(|_| Invalid::NotAString("name"))
                .and_then(|v| frust::parse_auth(&v))
            {
                Ok(name) => rename(&edge, &session, name).await,
                Err(e) => reject("auth", &e),
            }
        });
    }
    {
        let (edge, session) = (edge.clone(), session.clone());
        s.on("click", async move |TryData::<Value>(data)| {
            count_in("click");
            match data
                .map_err(|_| Invalid::NotAnObject)
                .and_then(|v| ClickIn::parse(&v))
            {
                Ok(click) => on_click(&edge, &session, click).await,
                Err(e) => reject("click", &e),
            }
        });
    }
    {
        let (edge, session) = (edge.clone(), session.clone());
        s.on("event", async move |TryData::<Value>(data)| {
            count_in("event");
            match data
                .map_err(|_| Invalid::NotAnObject)
                .and_then(|v| EventIn::parse(&v))
            {
                Ok(event) => on_event(&edge, &session, event).await,
                Err(e) => reject("event", &e),
            }
        });
    }
    s.on_fallback(async |Event(name): Event| {
        tracing::debug!(event = %name, "unknown event ignored");
        metrics::counter!("switchyard_rejects_total", "api" => "frust", "reason" => "unknown_event")
            .increment(1);
    });
    s.on_disconnect(async move || {
        edge.local_sockets.fetch_sub(1, Ordering::Relaxed);
        edge.sessions.lock().remove(&session.id);
        metrics::gauge!("switchyard_connections", "api" => "frust").decrement(1.0);
        rename(&edge, &session, None).await;
        edge.presence(&Presence::Left {
            session: session.id.clone(),
        })
        .await;
    });
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

fn reject(kind: &'static str, why: &Invalid) {
    tracing::debug!(packet = kind, reason = %why, "invalid packet rejected");
    metrics::counter!("switchyard_rejects_total", "api" => "frust", "reason" => "validation")
        .increment(1);
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

async fn on_click(edge: &FrustEdge, session: &Session, click: ClickIn) {
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
    publish_inbound(edge, IN_FRUST_CLICK, &packet).await;
}

async fn on_event(edge: &FrustEdge, session: &Session, event: EventIn) {
    rename(edge, session, Some(event.user.clone())).await;
    let event = frust::Event {
        user: event.user,
        name: event.name,
        timestamp: edge.clock.now(),
    };
    if edge.ephemeral_events.contains(&event.name) {
        // Shown to everyone, but neither stored, counted nor toasted.
        if let Err(e) = edge.broadcast(&FrustOut::Event(event)).await {
            tracing::warn!(error = %e, "ephemeral event broadcast failed");
        }
        return;
    }
    let packet = Inbound::FrustEvent {
        id: new_packet_id(),
        session: session.id.clone(),
        event,
    };
    publish_inbound(edge, IN_FRUST_EVENT, &packet).await;
}

async fn publish_inbound(edge: &FrustEdge, subject: &str, packet: &Inbound) {
    let started = std::time::Instant::now();
    match edge
        .bus
        .publish_durable(subject, packet.id(), encoded(packet))
        .await
    {
        Ok(()) => metrics::histogram!("switchyard_publish_seconds").record(started.elapsed()),
        Err(e) => {
            tracing::error!(error = %e, subject, "inbound publish failed; packet dropped");
            metrics::counter!("switchyard_rejects_total", "api" => "frust", "reason" => "publish")
                .increment(1);
        }
    }
}
