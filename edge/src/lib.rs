//! Edge role: terminates client connections, validates and publishes what clients send,
//! delivers the fan-out to its local sockets and serves the REST API from the store.
//! It keeps no state another edge would need.

mod admission;
mod api_error;
pub mod chat;
mod coalesce;
mod control;
mod dedup;
pub(crate) mod frust;
mod held;
pub mod limits;
mod not_accepted;
pub mod occupancy;
mod owned_head;
pub mod refusals;
pub mod server_api;
mod static_files;
pub mod telemetry;

/// Sharded per-socket fan-out of Frust events (public for the `fanout` benchmark).
pub use frust::{broadcast, shards};

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use switchyard_bus::Bus;
use switchyard_schema::Clock;
use switchyard_store::Store;
use tokio::task::JoinHandle;

/// Fan-out ids remembered per edge and API to drop redeliveries (≈ minutes of peak traffic).
const DEDUP_WINDOW: usize = 65_536;

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Unique per process; presence is tracked per edge.
    pub edge_id: String,
    pub clock: Clock,
    /// Event names broadcast but neither stored nor toasted.
    pub ephemeral_events: Vec<String>,
    /// Serve this directory at `/` (the original's `--dev`).
    pub static_dir: Option<PathBuf>,
    /// Reported by `GET /api`.
    pub version: String,
    pub chat: chat::ChatConfig,
    /// How often the edge tells the aggregator who is connected to it.
    pub heartbeat: std::time::Duration,
    pub limits: limits::LimitsConfig,
    pub socket_io: SocketIoConfig,
    /// Bytes of inbound packets the edge may hold unconfirmed by the stream (see `held`).
    pub held_bytes: usize,
}

/// Socket.IO transport settings.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// Packets queued per socket; a socket with a full queue is a slow consumer.
    pub send_queue: usize,
    /// Engine.IO heartbeat: also how soon a client that stopped reading is closed.
    pub ping_interval: std::time::Duration,
    /// Largest inbound payload in bytes: a polling request body, a websocket message, and the
    /// attachments of one packet together. Refused before it is buffered or parsed.
    pub max_payload: usize,
    /// Binary attachments one packet may announce (Frust sends none).
    pub max_attachments: usize,
    /// A new session must join the namespace, and a polling session finish its websocket
    /// upgrade, within this; a packet's attachments must follow it within this.
    pub handshake_timeout: std::time::Duration,
    /// Sessions this edge holds at most, and at most per client (IPv4 address or IPv6 /64).
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
}

/// A running edge: its HTTP routes and what must be stopped on shutdown.
pub struct Edge {
    router: Router,
    socket_io: socketioxide::layer::SocketIoLayer,
    static_dir: Option<PathBuf>,
    clock: Clock,
    frust: Arc<frust::FrustEdge>,
    chat: Arc<chat::ChatEdge>,
    tasks: Vec<JoinHandle<()>>,
    admission: admission::Admission,
}

impl Edge {
    pub async fn start(
        config: EdgeConfig,
        bus: Arc<dyn Bus>,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Self> {
        let limits = limits::Limits::new(config.limits.clone());
        let limits_for_admission = limits.clone();
        // One budget for both APIs: what the edge holds unconfirmed, whoever sent it.
        let held = held::Held::new(config.held_bytes);
        let (frust, frust_router, socket_io, mut tasks) = frust::start(
            &config,
            limits.clone(),
            held.clone(),
            bus.clone(),
            store.clone(),
        )
        .await?;
        let (chat, chat_router, chat_tasks) = chat::start(
            &config.edge_id,
            config.clock,
            config.chat.clone(),
            limits,
            held,
            bus.clone(),
            store,
        )
        .await?;
        tasks.extend(chat_tasks);
        let admission = admission::Admission::new(
            limits_for_admission,
            frust.session_slots.clone(),
            config.socket_io.handshake_timeout,
        );
        tasks.push(control::spawn(bus.clone(), frust.clone(), chat.clone()).await?);
        tasks.push(spawn_heartbeat(
            config.heartbeat,
            bus.clone(),
            frust.clone(),
            chat.clone(),
        ));
        Ok(Self {
            router: frust_router.merge(chat_router),
            socket_io,
            static_dir: config.static_dir.clone(),
            clock: config.clock,
            frust,
            chat,
            tasks,
            admission,
        })
    }

    /// The whole HTTP app: `routes` (the process's own, e.g. /metrics) plus the edge's. Socket.IO
    /// wraps everything, so it sees its path before routing does.
    pub fn app(&self, routes: Router) -> Router {
        let mut app = routes.merge(self.router.clone());
        if let Some(dir) = &self.static_dir {
            app = static_files::serve(app, dir, self.clock);
        }
        // One span per HTTP request (method, URI with any chat token redacted); Socket.IO
        // polling requests included.
        let admission = self.admission.clone();
        app.layer(self.socket_io.clone())
            .layer(axum::middleware::from_fn(owned_head::middleware))
            .layer(axum::middleware::from_fn(move |req, next| {
                admission.clone().gate(req, next)
            }))
            .layer(
                tower_http::trace::TraceLayer::new_for_http()
                    .make_span_with(chat::redact::request_span::<axum::body::Body>),
            )
    }

    /// The server API's routes (`/server/…`), for the ops listener; off without a token.
    pub fn server_api(&self, token: Option<String>) -> Router {
        server_api::routes(self.frust.clone(), self.chat.clone(), token)
    }

    /// Closes every client connection (each runs its disconnect path: leave toasts, presence)
    /// and refuses new ones from now on.
    pub async fn close_connections(&self) {
        self.admission.close();
        self.chat.close_all();
        self.frust.close().await;
    }

    /// Socket.IO sessions still open here (polling clients fetch their close packet late).
    pub fn open_socket_io_sessions(&self) -> i64 {
        self.frust
            .local_sockets
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stop_tasks(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Publishes this edge's Frust sessions and chat connections at a fixed interval.
fn spawn_heartbeat(
    every: std::time::Duration,
    bus: Arc<dyn Bus>,
    frust: Arc<frust::FrustEdge>,
    chat: Arc<chat::ChatEdge>,
) -> JoinHandle<()> {
    use switchyard_bus::TypedBus;
    use switchyard_schema::topics;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let frust_beat = frust.heartbeat();
            let chat_beat = chat.heartbeat();
            if let Err(e) = bus.publish_to(&topics::PRESENCE_FRUST, &frust_beat).await {
                tracing::warn!(error = %e, "heartbeat publish failed");
            }
            let _ = bus.publish_to(&topics::PRESENCE_CHAT, &chat_beat).await;
        }
    })
}
