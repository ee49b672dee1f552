//! The HTTP server of every role: accepts TCP connections and serves the app on them (HTTP/1.1
//! and upgrades) within the transport limits — connections per edge and per client address,
//! header, idle and body timeouts, body and head sizes, a read byte rate — and drains them on
//! shutdown. `axum::serve` runs hyper without a timer and without any of these.

mod activity;
mod body;
mod connection;
mod io;
mod refuse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use switchyard_edge::limits::{canonical, IpRange};
use switchyard_edge::occupancy::Occupancy;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use io::ByteRate;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Open TCP connections (websockets included) at most.
    pub max_connections: usize,
    /// Open TCP connections per client address (IPv6: per /64) at most; trusted proxies are
    /// counted only in the total.
    pub max_connections_per_ip: usize,
    pub trusted_proxies: Vec<IpRange>,
    /// A request head must arrive within this of its first byte (a new connection's first head:
    /// of the accept).
    pub header_timeout: Duration,
    /// A kept-alive connection without a request is closed after this.
    pub idle_timeout: Duration,
    /// A request body must arrive whole within this of its head.
    pub body_timeout: Duration,
    pub max_body: usize,
    /// Largest request head (hyper's read buffer).
    pub max_header_bytes: usize,
    /// Reads per connection, websockets included.
    pub read_rate: ByteRate,
    /// TCP keepalive probes after this much silence (`None`: off).
    pub tcp_keepalive: Option<Duration>,
}

/// HELP text of the server's metrics (once per process).
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "switchyard_tcp_connections",
        "Open TCP connections (websockets included)"
    );
    describe_counter!(
        "switchyard_read_throttled_total",
        "Times a connection was read more slowly for sending past SWITCHYARD_CONN_READ_RATE"
    );
    describe_counter!(
        "switchyard_http_idle_closed_total",
        "Kept-alive connections closed for idling past SWITCHYARD_HTTP_IDLE_TIMEOUT_MS"
    );
    describe_counter!(
        "switchyard_refused_unanswered_total",
        "Over-cap connections closed without an answer (too many being refused at once)"
    );
    describe_counter!(
        "switchyard_accept_errors_total",
        "Failed accepts, by kind (EMFILE, ENFILE, ENOBUFS, ENOMEM: the process backs off)"
    );
    metrics::gauge!("switchyard_tcp_connections").increment(0.0);
}

/// File descriptors the process needs besides client connections (store, bus, logs, …).
const OWN_FDS: u64 = 256;

/// Serves `app` on `listener` until `stop` is cancelled; then stops accepting, lets each
/// connection finish the request in flight (idle ones close at once) and returns when all
/// have. Upgraded connections (websockets) are not waited for: their owners close them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServeConfig,
    slots: Arc<Occupancy>,
    stop: CancellationToken,
) {
    check_fd_limit(config.max_connections as u64);
    let config = Arc::new(config);
    let refusing = Arc::new(Semaphore::new(refuse::IN_PROGRESS));
    let tracker = TaskTracker::new();
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) => {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = backoff.after(&e) => continue,
                }
            }
        };
        tune(&tcp, &config, peer);
        let ip = canonical(peer.ip());
        let per_client = (!config.trusted_proxies.iter().any(|r| r.contains(ip))).then_some(ip);
        match slots.try_hold(per_client) {
            Ok(slot) => {
                let (app, config, stop) = (app.clone(), config.clone(), stop.clone());
                tracker.spawn(connection::serve(tcp, peer, app, slot, config, stop));
            }
            Err(full) => refuse::refuse(tcp, ip, full, &refusing, &tracker),
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// The connection places of a listener with `config`, for [`serve`] (and readiness, which says
/// when they are all taken).
pub fn slots(config: &ServeConfig) -> Arc<Occupancy> {
    Occupancy::new(config.max_connections, config.max_connections_per_ip)
}

/// Small realtime frames must not wait for Nagle's algorithm; keepalive probes find peers that
/// vanished without a FIN (a websocket would otherwise wait for its own heartbeat).
fn tune(tcp: &TcpStream, config: &ServeConfig, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    if let Some(idle) = config.tcp_keepalive {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES);
        if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
            tracing::debug!(%peer, error = %e, "cannot set TCP keepalive");
        }
    }
}

/// Between unanswered keepalive probes, and how many before the peer is given up.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

/// Waiting after a failed accept. Running out of descriptors or memory (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM) does not heal by retrying at once: the wait doubles up to a second while it
/// persists. A connection that failed on its own (reset before it was accepted) costs nothing.
#[derive(Default)]
struct Backoff {
    /// Accept failures in a row (that back off) since the last accepted connection.
    failures: u32,
}

/// 10 ms doubling up to 1 s.
const ACCEPT_BACKOFF: switchyard_schema::backoff::Backoff =
    switchyard_schema::backoff::Backoff::new(Duration::from_millis(10), Duration::from_secs(1));

impl Backoff {
    fn reset(&mut self) {
        self.failures = 0;
    }

    async fn after(&mut self, e: &std::io::Error) {
        let kind = accept_error_kind(e);
        metrics::counter!("switchyard_accept_errors_total", "kind" => kind).increment(1);
        if kind == "connection" {
            return;
        }
        self.failures += 1;
        let delay = ACCEPT_BACKOFF.delay(self.failures);
        if let Some(more) = switchyard_edge::refusals::due("edge", "accept_error") {
            tracing::error!(error = %e, kind, ?delay, more_since_last_line = more,
                "accept failed; backing off (logged at most every 10 s; counted in \
                 switchyard_accept_errors_total)");
        }
        tokio::time::sleep(delay).await;
    }
}

fn accept_error_kind(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => "fd_limit",
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => "memory",
        _ => match e.kind() {
            std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::Interrupted => "connection",
            _ => "other",
        },
    }
}

/// Raises the soft open-file limit as far as allowed, and warns when it stays below what the
/// connection cap needs: past it, accepts fail with EMFILE before the cap refuses anyone.
fn check_fd_limit(max_connections: u64) {
    let wanted = max_connections + OWN_FDS;
    match switchyard_loadgen::sys::raise_nofile(wanted) {
        Some(limit) if limit < wanted => tracing::warn!(
            limit,
            max_connections,
            "RLIMIT_NOFILE ({limit}) is below SWITCHYARD_MAX_CONNECTIONS ({max_connections}) + \
             {OWN_FDS} for the process's own files: raise it (ulimit -n, systemd LimitNOFILE) \
             or lower SWITCHYARD_MAX_CONNECTIONS"
        ),
        Some(_) => {}
        None => tracing::warn!("cannot read RLIMIT_NOFILE"),
    }
}
