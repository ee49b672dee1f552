//! Starts the roles a process runs, serves HTTP, and drains them in order on SIGTERM:
//! clients first (their disconnects still publish), then workers, then the aggregator.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use switchyard_aggregator::{Aggregator, AggregatorConfig};
use switchyard_bus::{Bus, InProcessBus, NatsBus, NatsOptions};
use switchyard_edge::chat::auth::ChatAuthConfig;
use switchyard_edge::chat::quotas::{RestLimits, RoomCreateQuota};
use switchyard_edge::chat::ChatConfig;
use switchyard_edge::limits::{LimitsConfig, Rate};
use switchyard_edge::occupancy::Occupancy;
use switchyard_edge::{Edge, EdgeConfig, SocketIoConfig};
use switchyard_schema::Clock;
use switchyard_workers::Worker;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Common;
use crate::ops;
use crate::serve::{self, ByteRate, ServeConfig};

/// How long in-flight HTTP requests may run on during a drain.
const HTTP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub struct Roles {
    pub edge: bool,
    pub worker: bool,
    pub aggregator: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        edge: true,
        worker: true,
        aggregator: true,
    };
    pub const EDGE: Roles = Roles {
        edge: true,
        worker: false,
        aggregator: false,
    };
    pub const WORKER: Roles = Roles {
        edge: false,
        worker: true,
        aggregator: false,
    };
    pub const AGGREGATOR: Roles = Roles {
        edge: false,
        worker: false,
        aggregator: true,
    };
    /// No role: a command-line tool talking to the cluster.
    pub const NONE: Roles = Roles {
        edge: false,
        worker: false,
        aggregator: false,
    };

    pub fn is_all(&self) -> bool {
        self.edge && self.worker && self.aggregator
    }

    /// The `role` label of `switchyard_build_info`, and the NATS connection name's middle.
    pub fn label(&self) -> &'static str {
        match (self.edge, self.worker, self.aggregator) {
            (false, false, false) => "cli",
            (true, true, true) => "all",
            (true, false, false) => "edge",
            (false, true, false) => "worker",
            (false, false, true) => "aggregator",
            _ => "mixed",
        }
    }
}

/// A background role and the token that asks it to drain.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn<F>(role: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(role(stop.clone()));
        Running { stop, task }
    }

    async fn drain(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?
    }
}

async fn connect_bus(common: &Common, roles: Roles) -> anyhow::Result<Arc<dyn Bus>> {
    match &common.nats {
        Some(urls) => connect_nats(common, urls, roles).await,
        None if roles.is_all() => Ok(Arc::new(InProcessBus::new())),
        None => anyhow::bail!(NEEDS_NATS),
    }
}

/// Why a single role does not start without NATS.
pub const NEEDS_NATS: &str = "a single role runs in cluster mode and needs SWITCHYARD_NATS (NATS \
     server URLs); `switchyard all` runs every role in one process without it";

/// SWITCHYARD_NATS as a list of URLs.
pub fn nats_urls(urls: &str) -> anyhow::Result<Vec<String>> {
    let urls: Vec<String> = urls
        .split(',')
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    anyhow::ensure!(!urls.is_empty(), "SWITCHYARD_NATS names no server");
    Ok(urls)
}

pub async fn connect_nats(
    common: &Common,
    urls: &str,
    roles: Roles,
) -> anyhow::Result<Arc<dyn Bus>> {
    let urls = nats_urls(urls)?;
    let opts = NatsOptions {
        replicas: common.nats_replicas.map(|n| n as usize),
        publish_budget: Duration::from_millis(common.publish_budget_ms),
        connect_timeout: Duration::from_secs(common.nats_connect_timeout_secs),
        // The pid tells an operator (and the chaos suite) which process a connection is.
        ..NatsOptions::new(
            urls,
            format!("switchyard-{}-{}", roles.label(), std::process::id()),
        )
    };
    let servers = opts.urls.join(",");
    let bus = match NatsBus::connect(opts).await {
        Ok(bus) => bus,
        // Already the one line: `cannot reach NATS at nats://…: … (waited N s, …)`.
        Err(e @ switchyard_bus::BusError::Unreachable(_)) => return Err(e.into()),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("connecting to NATS at {servers} (SWITCHYARD_NATS)")))
        }
    };
    Ok(Arc::new(bus))
}

pub fn clock(common: &Common) -> Clock {
    common
        .clock_start
        .map(Clock::starting_at)
        .unwrap_or_else(Clock::system)
}

pub fn chat_config(common: &Common) -> anyhow::Result<ChatConfig> {
    let chat = &common.chat;
    let jwt_public_key_pem = match &chat.jwt_public_key {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let rate = |per_second, burst| Rate { per_second, burst };
    let config = ChatConfig {
        auth: ChatAuthConfig {
            jwt_secret: chat.secret.jwt_secret.clone().filter(|s| !s.is_empty()),
            jwt_public_key_pem,
            admin_token: chat.admin_token.clone(),
            issuer: chat.jwt_issuer.clone().filter(|s| !s.is_empty()),
            audience: chat.jwt_audience.clone().filter(|s| !s.is_empty()),
            max_sub_bytes: chat.jwt_max_sub_bytes,
        },
        max_frame: chat.chat_max_frame,
        send_queue: chat.chat_send_queue,
        ping_interval: Duration::from_millis(chat.chat_ping_interval_ms),
        idle_timeout: Duration::from_millis(chat.chat_idle_timeout_ms),
        room_cache_bytes: chat.chat_room_cache_bytes,
        rest: RestLimits {
            per_ip: rate(chat.chat_rest_rate_ip, chat.chat_rest_rate_ip_burst),
            per_user: rate(chat.chat_rest_rate_user, chat.chat_rest_rate_user_burst),
            room_creates: RoomCreateQuota {
                count: chat.chat_room_creates,
                per: Duration::from_secs(chat.chat_room_create_interval_secs),
            },
            max_room_members: chat.chat_max_room_members,
            max_rooms_per_user: chat.chat_max_rooms_per_user,
        },
    };
    // Checked (clear errors, no clamping) when the edge starts.
    Ok(config)
}

fn serve_config(common: &Common) -> ServeConfig {
    let t = &common.transport;
    ServeConfig {
        max_connections: t.max_connections as usize,
        max_connections_per_ip: t.max_connections_per_ip as usize,
        trusted_proxies: common.trusted_proxies.clone(),
        header_timeout: Duration::from_millis(t.http_header_timeout_ms),
        idle_timeout: Duration::from_millis(t.http_idle_timeout_ms),
        body_timeout: Duration::from_millis(t.http_body_timeout_ms),
        max_body: t.http_max_body as usize,
        max_header_bytes: t.http_max_header_bytes as usize,
        read_rate: ByteRate {
            per_second: t.conn_read_rate,
            burst: t.conn_read_burst,
        },
        tcp_keepalive: (t.tcp_keepalive_secs > 0)
            .then(|| Duration::from_secs(t.tcp_keepalive_secs)),
    }
}

fn limits_config(common: &Common) -> LimitsConfig {
    let rate = |per_second, burst| Rate { per_second, burst };
    LimitsConfig {
        per_connection: rate(common.rate_conn, common.rate_conn_burst),
        per_ip: rate(common.rate_ip, common.rate_ip_burst),
        connects_per_ip: rate(common.rate_connect, common.rate_connect_burst),
        flood_strikes: common.flood_strikes,
        trusted_proxies: common.trusted_proxies.clone(),
    }
}

/// The process: metrics, the roles, their listeners, until SIGTERM or Ctrl-C.
pub async fn main(common: Common, roles: Roles) -> anyhow::Result<()> {
    let metrics = ops::install_metrics(roles, Duration::from_millis(common.publish_budget_ms))?;
    let started = start(common, roles, metrics).await?;
    let listeners = started.bind()?;
    run(started, listeners, shutdown_signal()?).await
}

/// The roles of a process, started and not yet serving.
pub struct Started {
    common: Common,
    roles: Roles,
    bus: Arc<dyn Bus>,
    edge: Option<Edge>,
    worker: Option<Running>,
    aggregator: Option<Running>,
    ready: ops::Readiness,
    /// What the public listener serves: the edge, and the ops routes unless they have their own.
    public_app: Option<Router>,
    /// The ops routes, when SWITCHYARD_OPS_LISTEN gives them a listener of their own.
    ops_app: Option<Router>,
}

/// The bound listeners [`run`] serves on; `None` where there is nothing to serve.
pub struct Listeners {
    pub public: Option<TcpListener>,
    pub ops: Option<TcpListener>,
}

/// Opens the store and the bus, then starts the roles: consumers first, so nothing an edge
/// accepts finds no reader.
pub async fn start(
    common: Common,
    roles: Roles,
    metrics: PrometheusHandle,
) -> anyhow::Result<Started> {
    let store = switchyard_store::open(&common.store.store)
        .await
        .with_context(|| format!("opening store {}", common.store.store))?;
    let bus = connect_bus(&common, roles).await?;
    let clock = clock(&common);

    let aggregator = roles.aggregator.then(|| {
        let config = AggregatorConfig {
            clock,
            status_window: Duration::from_millis(common.status_window_ms),
            status_window_max: Duration::from_millis(common.status_window_max_ms),
            // In-process streams die with the process: recount from stored rows instead.
            rebuild_on_start: common.nats.is_none(),
            edge_timeout: Duration::from_millis(common.edge_timeout_ms),
        };
        let aggregator = Aggregator::new(bus.clone(), store.clone(), config);
        Running::spawn(|stop| aggregator.run(stop))
    });
    let worker = roles.worker.then(|| {
        let worker =
            Worker::new(bus.clone(), store.clone()).with_persist_attempts(common.persist_attempts);
        Running::spawn(|stop| worker.run(stop))
    });
    let edge = match roles.edge {
        true => Some(Edge::start(edge_config(&common, clock)?, bus.clone(), store.clone()).await?),
        false => None,
    };

    let ready = ops::Readiness::default();
    ready.watch_bus(bus.clone());
    let mut ops_routes = ops::routes(metrics, ready.clone());
    if let Some(edge) = &edge {
        ops_routes = ops_routes.merge(edge.server_api(common.server_api_token.clone()));
    }
    // With an ops address the ops routes leave the public listener; without one they stay on
    // it, so a single `switchyard` keeps working with one port as before.
    let (public_routes, ops_app) = match common.ops_listen {
        Some(_) => (None, Some(ops_routes)),
        None => (Some(ops_routes), None),
    };
    let public_app = match (&edge, public_routes) {
        (Some(edge), routes) => Some(edge.app(routes.unwrap_or_default())),
        (None, routes) => routes,
    };
    Ok(Started {
        common,
        roles,
        bus,
        edge,
        worker,
        aggregator,
        ready,
        public_app,
        ops_app,
    })
}

impl Started {
    /// Binds SWITCHYARD_OPS_LISTEN (if set) and SWITCHYARD_LISTEN (if anything serves on it).
    pub fn bind(&self) -> anyhow::Result<Listeners> {
        let ops = match (self.common.ops_listen, &self.ops_app) {
            (Some(addr), Some(_)) => Some(
                listen(addr).with_context(|| format!("binding {addr} (SWITCHYARD_OPS_LISTEN)"))?,
            ),
            _ => None,
        };
        let addr = self.common.listen;
        let public = match &self.public_app {
            Some(_) => {
                Some(listen(addr).with_context(|| format!("binding {addr} (SWITCHYARD_LISTEN)"))?)
            }
            None => None,
        };
        Ok(Listeners { public, ops })
    }
}

/// Serves the started roles on `listeners` until `shutdown` completes, then drains them.
pub async fn run(
    started: Started,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let Started {
        common,
        roles,
        bus,
        edge,
        worker,
        aggregator,
        ready,
        public_app,
        ops_app,
    } = started;
    tracing::info!(listen = %common.listen, ops = ?common.ops_listen, store = %common.store.store, ?roles,
        bus = if common.nats.is_some() { "nats" } else { "in-process" }, "switchyard running");
    ready.set(true);

    let public = listeners.public.zip(public_app).map(|(listener, app)| {
        let config = serve_config(&common);
        let slots = serve::slots(&config);
        ready.watch_capacity(slots.clone());
        Server::spawn(listener, app, config, slots)
    });
    // The ops listener outlives the drain, so /readyz (503) and /metrics answer until the end.
    let ops = listeners.ops.zip(ops_app).map(|(listener, app)| {
        let config = ops_serve_config(&common);
        let slots = serve::slots(&config);
        Server::spawn(listener, app, config, slots)
    });

    shutdown.await;
    let bound = Duration::from_secs(common.drain_timeout_secs);
    let notice = Duration::from_millis(common.drain_notice_ms);
    tracing::info!(drain = ?bound, "draining");
    ready.set(false);
    let drained = tokio::time::timeout(
        bound,
        drain(edge.as_ref(), public, worker, aggregator, notice),
    )
    .await;
    if let Some(edge) = &edge {
        edge.stop_tasks();
    }
    match drained {
        Ok(result) => result?,
        Err(_) => tracing::warn!(drain = ?bound, "drain did not finish in time; exiting anyway"),
    }
    // Leave toasts, presence and acks published during the drain must not die in a buffer.
    if tokio::time::timeout(Duration::from_secs(2), bus.flush())
        .await
        .is_err()
    {
        tracing::warn!("bus flush timed out at exit");
    }
    if let Some(ops) = ops {
        ops.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Drains in order: clients first (their disconnects still publish), then in-flight HTTP, then
/// the workers, then the aggregator. HTTP stops no sooner than `notice` after the start.
async fn drain(
    edge: Option<&Edge>,
    public: Option<Server>,
    worker: Option<Running>,
    aggregator: Option<Running>,
    notice: Duration,
) -> anyhow::Result<()> {
    let notice_ends = tokio::time::Instant::now() + notice;
    if let Some(edge) = edge {
        close_clients(edge).await;
    }
    tokio::time::sleep_until(notice_ends).await;
    if let Some(public) = public {
        if !public.stop().await {
            tracing::warn!("HTTP connections still open after the grace period; closing them");
        }
    }
    if let Some(worker) = worker {
        worker.drain().await?;
    }
    if let Some(aggregator) = aggregator {
        aggregator.drain().await?;
    }
    Ok(())
}

/// New sessions are refused from here on (503, so clients reconnect elsewhere) while /readyz and
/// /metrics keep answering and polling clients fetch their close packet.
async fn close_clients(edge: &Edge) {
    edge.close_connections().await;
    let polls_done = async {
        while edge.open_socket_io_sessions() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(HTTP_GRACE, polls_done).await.is_err() {
        tracing::warn!(
            open = edge.open_socket_io_sessions(),
            "Socket.IO sessions still open after the grace period"
        );
    }
    tracing::info!("client connections closed");
}

/// An HTTP server task and the token that stops it.
struct Server {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    fn spawn(
        listener: TcpListener,
        app: Router,
        config: ServeConfig,
        slots: Arc<Occupancy>,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve::serve(listener, app, config, slots, stop.clone()));
        Server { stop, task }
    }

    /// Stops accepting; in-flight requests get [`HTTP_GRACE`] to finish, then they are cut.
    /// False when the grace period ran out.
    async fn stop(self) -> bool {
        self.stop.cancel();
        tokio::time::timeout(HTTP_GRACE, self.task).await.is_ok()
    }
}

fn edge_config(common: &Common, clock: Clock) -> anyhow::Result<EdgeConfig> {
    Ok(EdgeConfig {
        edge_id: switchyard_schema::new_packet_id(),
        clock,
        ephemeral_events: common.ephemeral_events.clone(),
        static_dir: common.static_dir.clone(),
        version: format!("switchyard {}", env!("CARGO_PKG_VERSION")),
        chat: chat_config(common)?,
        heartbeat: Duration::from_millis(common.heartbeat_ms),
        limits: limits_config(common),
        held_bytes: common.held_bytes as usize,
        socket_io: SocketIoConfig {
            send_queue: common.sio_send_queue as usize,
            ping_interval: Duration::from_millis(common.sio_ping_interval_ms),
            max_payload: common.transport.sio_max_payload as usize,
            max_attachments: common.transport.sio_max_attachments as usize,
            handshake_timeout: Duration::from_millis(common.transport.sio_handshake_timeout_ms),
            max_sessions: common.transport.max_connections as usize,
            max_sessions_per_ip: common.transport.max_connections_per_ip as usize,
        },
    })
}

/// The ops listener has few clients (Prometheus, probes, an operator's curl): the same server and
/// timeouts as the public one, with a small connection cap of its own.
fn ops_serve_config(common: &Common) -> ServeConfig {
    ServeConfig {
        max_connections: OPS_MAX_CONNECTIONS,
        max_connections_per_ip: OPS_MAX_CONNECTIONS,
        trusted_proxies: Vec::new(),
        ..serve_config(common)
    }
}

const OPS_MAX_CONNECTIONS: usize = 64;

/// Binds with a deep accept queue: connect storms (a deploy, a reconnect wave) otherwise overflow
/// the default backlog and clients wait a SYN retransmit (1 s) to get in.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    const BACKLOG: u32 = 4096; // the kernel caps it at net.core.somaxconn
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Completes on SIGTERM or Ctrl-C; the handler is installed before it returns, so a SIGTERM from
/// then on drains instead of killing the process.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    })
}

#[cfg(test)]
mod tests;
