//! The chat API: JWT-authenticated rooms over a plain websocket at `/chat`, REST under
//! `/api/chat`.

pub mod auth;
pub mod close;
mod connection;
mod fanout;
mod outbox;
pub(crate) mod packets;
pub mod quotas;
pub mod redact;
mod registry;
mod rest;
mod room_order;
mod rooms;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use switchyard_bus::{Bus, TypedBus};
use switchyard_schema::envelope::{ChatPresence, RoomChanged};
use switchyard_schema::topics;
use switchyard_schema::Clock;
use switchyard_store::Store;
use tokio::task::JoinHandle;

use auth::{Authenticator, ChatAuthConfig};
use quotas::{RestLimits, RestQuotas};
use registry::Registry;
use rooms::RoomCache;

#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub auth: ChatAuthConfig,
    /// Largest packet a client may send, in bytes; larger ones get `frame_too_large`.
    pub max_frame: usize,
    /// Packets queued for one client before it counts as a slow consumer and is dropped.
    pub send_queue: usize,
    /// How often the server pings each connection.
    pub ping_interval: Duration,
    /// A connection that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// Estimated heap bytes the room membership cache may hold.
    pub room_cache_bytes: usize,
    pub rest: RestLimits,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            auth: ChatAuthConfig::default(),
            max_frame: 64 * 1024,
            send_queue: 1024,
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            room_cache_bytes: 64 << 20,
            rest: RestLimits::default(),
        }
    }
}

impl ChatConfig {
    /// The smallest values that still make sense; anything below is refused, not raised.
    pub const MIN_MAX_FRAME: usize = 256;
    pub const MIN_SEND_QUEUE: usize = 16;
    pub const MIN_PING_INTERVAL: Duration = Duration::from_millis(100);

    /// Refuses settings that cannot work, saying which and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_frame < Self::MIN_MAX_FRAME {
            return Err(format!(
                "SWITCHYARD_CHAT_MAX_FRAME must be at least {} bytes (got {})",
                Self::MIN_MAX_FRAME,
                self.max_frame
            ));
        }
        if self.send_queue < Self::MIN_SEND_QUEUE {
            return Err(format!(
                "SWITCHYARD_CHAT_SEND_QUEUE must be at least {} packets (got {})",
                Self::MIN_SEND_QUEUE,
                self.send_queue
            ));
        }
        if self.ping_interval < Self::MIN_PING_INTERVAL {
            return Err(format!(
                "SWITCHYARD_CHAT_PING_INTERVAL_MS must be at least {} ms",
                Self::MIN_PING_INTERVAL.as_millis()
            ));
        }
        if self.idle_timeout <= self.ping_interval {
            return Err(format!(
                "SWITCHYARD_CHAT_IDLE_TIMEOUT_MS ({} ms) must be longer than the ping interval \
                 ({} ms), or every client would time out between two pings",
                self.idle_timeout.as_millis(),
                self.ping_interval.as_millis()
            ));
        }
        if self.room_cache_bytes == 0 {
            return Err("SWITCHYARD_CHAT_ROOM_CACHE_BYTES must be at least 1".into());
        }
        if self.auth.max_sub_bytes == 0 {
            return Err("SWITCHYARD_JWT_MAX_SUB_BYTES must be at least 1".into());
        }
        self.rest.validate()
    }
}

/// Everything the chat handlers share.
pub struct ChatEdge {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    pub edge_id: String,
    pub config: ChatConfig,
    pub auth: Authenticator,
    pub rooms: RoomCache,
    pub registry: Registry,
    pub subscriptions: subscriptions::RoomSubscriptions,
    pub limits: Arc<crate::limits::Limits>,
    pub quotas: Arc<RestQuotas>,
    /// Serializes this edge's membership writes with the cap checks before them, so two
    /// requests cannot both take a room's (or a user's) last place.
    pub membership_writes: tokio::sync::Mutex<()>,
    /// Messages already delivered here (at-least-once delivery from workers).
    pub recent: crate::dedup::RecentIds,
    /// Messages waiting for the durable stream's confirmation, bounded for the whole edge.
    pub held: crate::held::Held,
}

pub async fn start(
    edge_id: &str,
    clock: Clock,
    config: ChatConfig,
    limits: Arc<crate::limits::Limits>,
    held: crate::held::Held,
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
) -> anyhow::Result<(Arc<ChatEdge>, Router, Vec<JoinHandle<()>>)> {
    config.validate().map_err(anyhow::Error::msg)?;
    let auth = Authenticator::new(&config.auth)?;
    if !auth.enabled() {
        tracing::warn!("chat is disabled: set SWITCHYARD_JWT_SECRET or SWITCHYARD_JWT_PUBLIC_KEY");
    }
    let chat = Arc::new(ChatEdge {
        rooms: RoomCache::new(store.clone(), config.room_cache_bytes),
        registry: Registry::default(),
        subscriptions: Default::default(),
        recent: crate::dedup::RecentIds::new(crate::DEDUP_WINDOW),
        limits,
        quotas: RestQuotas::new(&config.rest),
        membership_writes: tokio::sync::Mutex::new(()),
        bus,
        store,
        clock,
        edge_id: edge_id.to_owned(),
        config,
        auth,
        held,
    });
    let tasks = fanout::spawn(chat.clone()).await?;
    let router = Router::new()
        .route("/chat", get(upgrade))
        .with_state(chat.clone())
        .merge(rest::routes(chat.clone()));
    Ok((chat, router, tasks))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Authenticates before the upgrade: a bad, expired or missing token is a plain 401.
async fn upgrade(
    State(chat): State<Arc<ChatEdge>>,
    Query(query): Query<TokenQuery>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ip = chat.limits.client_ip(Some(peer), &headers);
    if !chat.limits.allow_connect(ip) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connection attempts",
        )
            .into_response();
    }
    let token = query.token.as_deref().or_else(|| auth::bearer(&headers));
    let Some(identity) = token.and_then(|t| chat.auth.verify(t)) else {
        metrics::counter!("switchyard_rejects_total", "api" => "chat", "reason" => "auth")
            .increment(1);
        tracing::debug!(%peer, "chat upgrade refused: no valid token");
        return (StatusCode::UNAUTHORIZED, "invalid or missing token").into_response();
    };
    // Frames up to 4x the packet cap are read and answered with `frame_too_large`; beyond that
    // the websocket layer closes the connection (1009) without buffering it.
    let hard_cap = chat.config.max_frame.saturating_mul(4).max(64 * 1024);
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    ws.max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        // Chat packets are small: axum's 128 KiB default read buffer per connection is what an
        // idle connection would cost most. A larger frame grows it (the size cap still holds);
        // it is read in pieces of this size.
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| {
            let limiter = chat.limits.connection(ip);
            let span = tracing::info_span!("chat_connection", user = %identity.user, %ip);
            tracing::Instrument::instrument(connection::run(chat, identity, limiter, socket), span)
        })
}

/// Initial websocket read buffer per chat connection, and the most read at once: a packet of a
/// few hundred bytes is one read; 4 KiB cost an idle connection 3.3 KB more.
const READ_BUFFER: usize = 512;

impl ChatEdge {
    pub fn heartbeat(&self) -> ChatPresence {
        ChatPresence::Heartbeat {
            edge: self.edge_id.clone(),
            connections: self.registry.snapshot(),
        }
    }

    pub fn close_all(&self) {
        self.subscriptions.stop_all();
        self.registry.close_all();
    }

    /// Drops what every edge cached about a room after its membership changed.
    /// Subscriptions of this edge are refreshed before returning, so a member added here
    /// receives the room's next message; other edges catch up on the notice.
    pub async fn room_changed(self: &Arc<Self>, room_id: &str) {
        self.rooms.invalidate(room_id);
        self.subscriptions.refresh(self, room_id).await;
        if let Err(e) = self
            .bus
            .publish_to(&topics::CHAT_ROOM_CHANGED, &RoomChanged(room_id.to_owned()))
            .await
        {
            tracing::warn!(error = %e, "room change notice failed");
        }
    }
}
