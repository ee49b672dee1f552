//! Command line and environment: every flag has an `SWITCHYARD_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SWITCHYARD_COMMIT"), ")"),
    about = "Realtime backend: Frust click counter and room chat",
    // Server flags belong to the server subcommands (`switchyard edge --help`); bare
    // `switchyard` is `switchyard all` and takes them too.
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every role in one process over the in-process bus (the default).
    All(Box<Common>),
    /// Edge role only (cluster mode: needs SWITCHYARD_NATS).
    Edge(Box<Common>),
    /// Worker role only (cluster mode: needs SWITCHYARD_NATS).
    Worker(Box<Common>),
    /// Aggregator role only (cluster mode: needs SWITCHYARD_NATS).
    Aggregator(Box<Common>),
    /// Check the configuration a server would start with (values, store, NATS, JWT key,
    /// limits), changing nothing and opening no listener: one line per check, exit 1 on any
    /// problem.
    CheckConfig(Box<CheckConfig>),
    /// Create or upgrade the store schema, then exit.
    Migrate(StoreArg),
    /// Print an HS256 chat token signed with SWITCHYARD_JWT_SECRET (development and tests).
    Token {
        /// The user id (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Lifetime: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
        #[command(flatten)]
        secret: JwtSecret,
    },
    /// Bring an existing deployment's data into the configured store (server stopped or
    /// running; safe to run again).
    Import(Box<Import>),
    /// Inbound packets the workers could not persist (cluster mode: the DEAD stream).
    DeadLetters(Box<DeadLetters>),
    /// Call a running switchyard's server API (SWITCHYARD_SERVER_API_TOKEN): publish, list
    /// connections and users, disconnect.
    Server(Box<crate::server_cli::ServerCli>),
    /// Load generator: real clients against running edges; latency, throughput, errors.
    /// `switchyard bench merge a.json b.json` merges several processes' results.
    Bench(Box<Bench>),
}

#[derive(Debug, Args)]
pub struct CheckConfig {
    /// The server command to check for (`edge`, `worker` and `aggregator` need SWITCHYARD_NATS).
    #[arg(long, value_enum, default_value = "all")]
    pub role: RoleArg,
    /// Exactly the server's flags and SWITCHYARD_* variables.
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    All,
    Edge,
    Worker,
    Aggregator,
}

#[derive(Debug, Args)]
pub struct DeadLetters {
    #[command(subcommand)]
    pub action: DeadLetterAction,
    /// The NATS connection (SWITCHYARD_NATS and the rest) as the server processes have it.
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct Import {
    #[command(subcommand)]
    pub source: crate::import::ImportSource,
    /// The store (SWITCHYARD_STORE) and clock (SWITCHYARD_CLOCK_START) as the servers have them.
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct Bench {
    #[command(flatten)]
    pub args: switchyard_loadgen::BenchArgs,
    /// Signs chat tokens for the simulated users.
    #[command(flatten)]
    pub secret: JwtSecret,
}

/// The store URL (servers and `migrate`).
#[derive(Debug, Args)]
pub struct StoreArg {
    /// Store URL: `sqlite:///abs/path.sqlite` (relative paths work too) or
    /// `scylla://host:9042,…/keyspace`.
    #[arg(
        long,
        env = "SWITCHYARD_STORE",
        default_value = "sqlite://./data/switchyard.sqlite"
    )]
    pub store: String,
}

/// The HS256 secret of chat tokens (the edge checks them, `token` and `bench` mint them).
#[derive(Debug, Args)]
pub struct JwtSecret {
    /// HS256 secret for user tokens (use 32 or more random bytes; shorter ones are warned about).
    #[arg(long, env = "SWITCHYARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Print each dead letter as one JSON line: seq, subject, id, error, attempts, failed_at_ms.
    List {
        /// Print at most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Publish dead letters to their inbound subject again (same packet id: persisting stays
    /// idempotent), then delete them from the DEAD stream.
    Redrive {
        /// The stream sequences to re-drive (from `list`).
        #[arg(long = "seq", required_unless_present = "all")]
        seqs: Vec<u64>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "seqs")]
        all: bool,
    },
}

/// A number flag with a floor: values below it are refused with a clear error, never raised.
fn at_least(min: u64) -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(min..)
}

/// `90`, `90s`, `15m`, `1h`, `7d` → seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit in `{s}` (use s, m, h or d)")),
    };
    Ok(n * scale)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Shorter server API tokens could be guessed: the API can disconnect anyone.
const MIN_SERVER_API_TOKEN_CHARS: usize = 16;

#[derive(Debug, Args)]
pub struct Common {
    /// Address the HTTP server listens on: the client APIs, and /metrics, /healthz and /readyz
    /// unless SWITCHYARD_OPS_LISTEN moves them.
    #[arg(
        help_heading = "Listening",
        long,
        env = "SWITCHYARD_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,

    /// Address of a separate listener for /metrics, /healthz and /readyz; when set, the public
    /// listener no longer serves them (and roles without an edge open no public listener).
    #[arg(
        help_heading = "Listening",
        long,
        alias = "ops-addr",
        env = "SWITCHYARD_OPS_LISTEN"
    )]
    pub ops_listen: Option<SocketAddr>,

    /// Bearer token of the server API (`/server/…` on the ops listener: publish, list and
    /// disconnect connections; at least 16 characters). Unset: the API is off.
    #[arg(
        help_heading = "Listening",
        long,
        env = "SWITCHYARD_SERVER_API_TOKEN",
        hide_env_values = true
    )]
    pub server_api_token: Option<String>,

    #[command(next_help_heading = "Storage")]
    #[command(flatten)]
    pub store: StoreArg,

    /// NATS server URLs, comma separated; selects cluster mode.
    #[arg(help_heading = "Bus and cluster", long, env = "SWITCHYARD_NATS")]
    pub nats: Option<String>,

    /// How long a start waits for a first NATS server to answer before it exits with one line
    /// naming the URLs, in seconds (once connected, lost connections are retried for ever).
    #[arg(help_heading = "Bus and cluster", long, env = "SWITCHYARD_NATS_CONNECT_TIMEOUT_SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub nats_connect_timeout_secs: u64,

    /// JetStream stream replicas; unset: min(3, servers in the NATS cluster).
    #[arg(help_heading = "Bus and cluster", long, env = "SWITCHYARD_NATS_REPLICAS", value_parser = clap::value_parser!(u64).range(1..=5))]
    pub nats_replicas: Option<u64>,

    /// How long an edge holds an inbound packet and retries its durable publish (same
    /// Nats-Msg-Id) before refusing it, in milliseconds; outlasts a JetStream election.
    #[arg(
        help_heading = "Bus and cluster",
        long,
        env = "SWITCHYARD_PUBLISH_BUDGET_MS",
        default_value_t = 30_000
        ,
        value_parser = clap::value_parser!(u64).range(1000..)
    )]
    pub publish_budget_ms: u64,

    /// Bytes of inbound packets one edge may hold while the stream has not confirmed them;
    /// beyond, packets are refused (`held_full`).
    #[arg(
        help_heading = "Bus and cluster",
        long,
        env = "SWITCHYARD_HELD_BYTES",
        default_value_t = 32 * 1024 * 1024
        ,
        value_parser = clap::value_parser!(u64).range(1024..)
    )]
    pub held_bytes: u64,

    /// Attempts to persist one inbound packet while the store otherwise works, before it goes
    /// to the dead-letter stream and its partition moves on.
    #[arg(
        help_heading = "Bus and cluster",
        long,
        env = "SWITCHYARD_PERSIST_ATTEMPTS",
        default_value_t = 10
        ,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub persist_attempts: u32,

    /// How often edges report their connections to the aggregator, in milliseconds.
    #[arg(
        help_heading = "Bus and cluster",
        long,
        env = "SWITCHYARD_HEARTBEAT_MS",
        default_value_t = 5000,
        value_parser = at_least(50)
    )]
    pub heartbeat_ms: u64,

    /// An edge silent for this long is considered dead and its users offline, in milliseconds.
    #[arg(
        help_heading = "Bus and cluster",
        long,
        env = "SWITCHYARD_EDGE_TIMEOUT_MS",
        default_value_t = 15_000,
        value_parser = at_least(100)
    )]
    pub edge_timeout_ms: u64,

    /// Serve this frontend directory at `/` (development, like the original's --dev).
    #[arg(help_heading = "Frust", long, env = "SWITCHYARD_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Frust event names that are broadcast but neither stored nor toasted.
    #[arg(
        help_heading = "Frust",
        long,
        env = "SWITCHYARD_EPHEMERAL_EVENTS",
        value_delimiter = ',',
        default_value = "rickroll,exmatrikulieren"
    )]
    pub ephemeral_events: Vec<String>,

    /// How long `status` changes are gathered into one broadcast, in milliseconds, with up to
    /// 1000 users online; longer in proportion beyond (each broadcast costs a packet per user).
    #[arg(
        help_heading = "Frust",
        long,
        env = "SWITCHYARD_STATUS_WINDOW_MS",
        default_value_t = 100,
        value_parser = at_least(1)
    )]
    pub status_window_ms: u64,

    /// The longest the status window stretches to with many users online, in milliseconds.
    #[arg(
        help_heading = "Frust",
        long,
        env = "SWITCHYARD_STATUS_WINDOW_MAX_MS",
        default_value_t = 2000
    )]
    pub status_window_max_ms: u64,

    /// Upper bound for a graceful shutdown, in seconds.
    #[arg(
        help_heading = "Shutdown and logging",
        long,
        env = "SWITCHYARD_DRAIN_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub drain_timeout_secs: u64,

    /// During a drain, keep answering HTTP (503 on /readyz and to new clients, /metrics) for at
    /// least this long, so load balancers see the edge go unready before it disappears.
    #[arg(
        help_heading = "Shutdown and logging",
        long,
        env = "SWITCHYARD_DRAIN_NOTICE_MS",
        default_value_t = 1000
    )]
    pub drain_notice_ms: u64,

    /// Log format.
    #[arg(
        help_heading = "Shutdown and logging",
        long,
        env = "SWITCHYARD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Socket.IO: packets queued per socket before it is dropped as a slow consumer.
    #[arg(
        help_heading = "Socket.IO (Frust)",
        long,
        env = "SWITCHYARD_SIO_SEND_QUEUE",
        default_value_t = 256,
        value_parser = at_least(16)
    )]
    pub sio_send_queue: u64,

    /// Socket.IO heartbeat interval (ms); a client that stopped reading is closed within it.
    #[arg(
        help_heading = "Socket.IO (Frust)",
        long,
        env = "SWITCHYARD_SIO_PING_INTERVAL_MS",
        default_value_t = 25_000,
        value_parser = at_least(100)
    )]
    pub sio_ping_interval_ms: u64,

    /// Packets per second one connection may send (sustained; a human clicks at most ~20/s).
    #[arg(
        help_heading = "Rate limits",
        long,
        env = "SWITCHYARD_RATE_CONN",
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rate_conn: u32,

    /// Packets one connection may send in a burst.
    #[arg(
        help_heading = "Rate limits",
        long,
        env = "SWITCHYARD_RATE_CONN_BURST",
        default_value_t = 200,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rate_conn_burst: u32,

    /// Packets per second from one client IP, all its connections together.
    #[arg(
        help_heading = "Rate limits",
        long,
        env = "SWITCHYARD_RATE_IP",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rate_ip: u32,

    /// Packets one client IP may send in a burst.
    #[arg(
        help_heading = "Rate limits",
        long,
        env = "SWITCHYARD_RATE_IP_BURST",
        default_value_t = 4000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rate_ip_burst: u32,

    /// New connections per second from one client IP.
    #[arg(
        help_heading = "Rate limits",
        long,
        env = "SWITCHYARD_RATE_CONNECT",
        default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rate_connect: u32,

    /// New connections one client IP may open in a burst.
    #[arg(
        help_heading = "Rate limits",
        long,
        env = "SWITCHYARD_RATE_CONNECT_BURST",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rate_connect_burst: u32,

    /// A connection with this many rate-limited packets within 10 s is disconnected.
    #[arg(
        help_heading = "Rate limits",
        long,
        env = "SWITCHYARD_FLOOD_STRIKES",
        default_value_t = 200,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub flood_strikes: u32,

    /// Proxies (addresses or CIDR ranges, comma separated) whose X-Forwarded-For is believed.
    #[arg(
        help_heading = "Rate limits",
        long,
        env = "SWITCHYARD_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<switchyard_edge::limits::IpRange>,

    /// Testing: start the clock at this Unix time (it then runs at real speed).
    #[arg(
        help_heading = "Rate limits",
        long,
        env = "SWITCHYARD_CLOCK_START",
        hide = true
    )]
    pub clock_start: Option<i64>,

    /// Connection, timeout and size limits of the HTTP server and the Socket.IO transport
    /// (`--help` shows them under "Transport limits"; README "Limits").
    #[command(flatten)]
    pub transport: TransportArgs,

    /// Chat: tokens, limits, caps (`--help` shows them under "Chat"). Last: the heading would
    /// also cover any argument after it.
    #[command(flatten)]
    pub chat: ChatArgs,
}

/// Transport limits: what any client, authenticated or not, can make a process hold. Every
/// value is checked at start (`Common::validate` for those that depend on each other).
#[derive(Debug, Args)]
#[command(next_help_heading = "Transport limits")]
pub struct TransportArgs {
    /// Open TCP connections per process (websockets included), and Socket.IO sessions per edge.
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS", default_value_t = 20_000,
        value_parser = at_least(1))]
    pub max_connections: u64,

    /// Open TCP connections, and Socket.IO sessions, per client address (IPv6: per /64).
    /// Trusted proxies count only toward the total; their clients' sessions count per client.
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS_PER_IP", default_value_t = 1024,
        value_parser = at_least(1))]
    pub max_connections_per_ip: u64,

    /// A request head must be complete this long after its first byte (a new connection's
    /// first head: after the accept), in milliseconds.
    #[arg(long, env = "SWITCHYARD_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = at_least(100))]
    pub http_header_timeout_ms: u64,

    /// A kept-alive HTTP connection without a request is closed after this, in milliseconds.
    #[arg(long, env = "SWITCHYARD_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000,
        value_parser = at_least(100))]
    pub http_idle_timeout_ms: u64,

    /// A request body must arrive whole within this of its head, in milliseconds.
    #[arg(long, env = "SWITCHYARD_HTTP_BODY_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = at_least(100))]
    pub http_body_timeout_ms: u64,

    /// Largest request body in bytes (413 above).
    #[arg(long, env = "SWITCHYARD_HTTP_MAX_BODY", default_value_t = 65_536,
        value_parser = at_least(1024))]
    pub http_max_body: u64,

    /// Largest request head in bytes (431 above; hyper needs at least 8192).
    #[arg(long, env = "SWITCHYARD_HTTP_MAX_HEADER_BYTES", default_value_t = 16_384,
        value_parser = at_least(8192))]
    pub http_max_header_bytes: u64,

    /// Bytes per second one connection may send, sustained (websocket control frames included);
    /// faster senders are read more slowly.
    #[arg(long, env = "SWITCHYARD_CONN_READ_RATE", default_value_t = 65_536,
        value_parser = at_least(1024))]
    pub conn_read_rate: u64,

    /// Bytes one connection may send in a burst above its read rate.
    #[arg(long, env = "SWITCHYARD_CONN_READ_BURST", default_value_t = 524_288,
        value_parser = at_least(1024))]
    pub conn_read_burst: u64,

    /// TCP keepalive: probe a connection silent for this long, in seconds (0: off).
    #[arg(long, env = "SWITCHYARD_TCP_KEEPALIVE_SECS", default_value_t = 60)]
    pub tcp_keepalive_secs: u64,

    /// Socket.IO: largest inbound payload in bytes — a polling request body, a websocket
    /// message, one packet's attachments together; refused before it is buffered or parsed.
    #[arg(long, env = "SWITCHYARD_SIO_MAX_PAYLOAD", default_value_t = 8192,
        value_parser = at_least(1024))]
    pub sio_max_payload: u64,

    /// Socket.IO: binary attachments one packet may announce. The Frust API uses none; one is
    /// allowed so a stray binary payload is an invalid packet, not a dropped connection.
    #[arg(long, env = "SWITCHYARD_SIO_MAX_ATTACHMENTS", default_value_t = 1)]
    pub sio_max_attachments: u64,

    /// Socket.IO: a new session must join the namespace, an upgrade to websocket complete, and
    /// a packet's attachments follow it, within this, in milliseconds.
    #[arg(long, env = "SWITCHYARD_SIO_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = at_least(100))]
    pub sio_handshake_timeout_ms: u64,
}

/// Chat settings: tokens, websocket limits and the REST caps. Every limit is checked at start:
/// a value that cannot work is an error, never silently raised.
#[derive(Debug, Args)]
#[command(next_help_heading = "Chat")]
pub struct ChatArgs {
    #[command(flatten)]
    pub secret: JwtSecret,

    /// PEM file with an RSA or EC public key for RS256/ES256 user tokens.
    #[arg(long, env = "SWITCHYARD_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Tokens must carry this issuer (`iss`); unset: any or none.
    #[arg(long, env = "SWITCHYARD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Tokens must carry this audience (`aud`); unset: tokens naming an audience are refused.
    #[arg(long, env = "SWITCHYARD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Longest accepted user id (`sub`), in bytes.
    #[arg(long, env = "SWITCHYARD_JWT_MAX_SUB_BYTES", default_value_t = 128)]
    pub jwt_max_sub_bytes: usize,

    /// Bearer token that may manage any room over REST.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Largest packet a client may send, in bytes (at least 256).
    #[arg(long, env = "SWITCHYARD_CHAT_MAX_FRAME", default_value_t = 65_536)]
    pub chat_max_frame: usize,

    /// Packets queued per connection before it is dropped as a slow consumer (at least 16).
    #[arg(long, env = "SWITCHYARD_CHAT_SEND_QUEUE", default_value_t = 1024)]
    pub chat_send_queue: usize,

    /// How often the server pings each /chat connection, in milliseconds (at least 100).
    #[arg(
        long,
        env = "SWITCHYARD_CHAT_PING_INTERVAL_MS",
        default_value_t = 25_000
    )]
    pub chat_ping_interval_ms: u64,

    /// A /chat connection silent this long (no frame, no pong) is closed (4002), in
    /// milliseconds; longer than the ping interval.
    #[arg(
        long,
        env = "SWITCHYARD_CHAT_IDLE_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub chat_idle_timeout_ms: u64,

    /// Estimated heap bytes the edge's room membership cache may hold.
    #[arg(
        long,
        env = "SWITCHYARD_CHAT_ROOM_CACHE_BYTES",
        default_value_t = 64 << 20
    )]
    pub chat_room_cache_bytes: usize,

    /// Chat REST requests per second from one client IP (checked before the token).
    #[arg(long, env = "SWITCHYARD_CHAT_REST_RATE_IP", default_value_t = 50)]
    pub chat_rest_rate_ip: u32,

    /// Chat REST requests one client IP may send in a burst.
    #[arg(
        long,
        env = "SWITCHYARD_CHAT_REST_RATE_IP_BURST",
        default_value_t = 200
    )]
    pub chat_rest_rate_ip_burst: u32,

    /// Chat REST requests per second from one user.
    #[arg(long, env = "SWITCHYARD_CHAT_REST_RATE_USER", default_value_t = 10)]
    pub chat_rest_rate_user: u32,

    /// Chat REST requests one user may send in a burst.
    #[arg(
        long,
        env = "SWITCHYARD_CHAT_REST_RATE_USER_BURST",
        default_value_t = 50
    )]
    pub chat_rest_rate_user_burst: u32,

    /// Rooms one user may create per interval (all at once, then refilled evenly).
    #[arg(long, env = "SWITCHYARD_CHAT_ROOM_CREATES", default_value_t = 20)]
    pub chat_room_creates: u32,

    /// The interval of SWITCHYARD_CHAT_ROOM_CREATES, in seconds.
    #[arg(
        long,
        env = "SWITCHYARD_CHAT_ROOM_CREATE_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub chat_room_create_interval_secs: u64,

    /// Members one room may have.
    #[arg(long, env = "SWITCHYARD_CHAT_MAX_ROOM_MEMBERS", default_value_t = 1000)]
    pub chat_max_room_members: usize,

    /// Rooms one user may be a member of.
    #[arg(
        long,
        env = "SWITCHYARD_CHAT_MAX_ROOMS_PER_USER",
        default_value_t = 500
    )]
    pub chat_max_rooms_per_user: usize,
}

/// A value clap refused, as one line that also names its environment variable (values come
/// from the environment more often than from flags): `invalid value '0' for '--rate-conn
/// <RATE_CONN>' (SWITCHYARD_RATE_CONN): 0 is below the minimum, 1`.
pub fn bad_value(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    let long = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg
            .split_whitespace()
            .next()
            .map(|a| a.trim_start_matches('-').to_owned()),
        _ => None,
    };
    let env = long.and_then(|long| env_of(&<Cli as clap::CommandFactory>::command(), &long));
    // clap words a floor as a range up to the type's maximum.
    let open_ended = [
        format!("..{}", u64::MAX),
        format!("..={}", u64::MAX),
        format!("..={}", u32::MAX),
    ];
    let floor = open_ended
        .iter()
        .find_map(|end| line.strip_suffix(end.as_str()))
        .and_then(|head| head.rsplit_once(" is not in "))
        .map(|(value, min)| format!("{value} is below the minimum, {min}"));
    let line = floor.as_deref().unwrap_or(line);
    match (env, line.split_once("': ")) {
        (Some(env), Some((what, why))) => format!("{what}' ({env}): {why}"),
        _ => line.to_owned(),
    }
}

fn env_of(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .or_else(|| command.get_subcommands().find_map(|sub| env_of(sub, long)))
}

impl Common {
    /// Checks between flags that clap cannot express one flag at a time.
    /// Settings that work but are likely not what was meant; logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (rate, burst, rate_name, burst_name) in [
            (
                self.rate_conn,
                self.rate_conn_burst,
                "SWITCHYARD_RATE_CONN",
                "SWITCHYARD_RATE_CONN_BURST",
            ),
            (
                self.rate_ip,
                self.rate_ip_burst,
                "SWITCHYARD_RATE_IP",
                "SWITCHYARD_RATE_IP_BURST",
            ),
            (
                self.rate_connect,
                self.rate_connect_burst,
                "SWITCHYARD_RATE_CONNECT",
                "SWITCHYARD_RATE_CONNECT_BURST",
            ),
        ] {
            if burst < rate {
                warnings.push(format!(
                    "{burst_name} ({burst}) is below {rate_name} ({rate}): the burst is raised \
                     to the rate (a bucket holds at least one second's worth)"
                ));
            }
        }
        warnings
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.transport.sio_max_payload > self.transport.http_max_body {
            return Err(format!(
                "SWITCHYARD_SIO_MAX_PAYLOAD ({}) exceeds SWITCHYARD_HTTP_MAX_BODY ({}): polling \
                 requests that Socket.IO accepts would be refused as HTTP bodies",
                self.transport.sio_max_payload, self.transport.http_max_body
            ));
        }
        if self.transport.conn_read_burst < self.transport.sio_max_payload {
            return Err(format!(
                "SWITCHYARD_CONN_READ_BURST ({}) is below SWITCHYARD_SIO_MAX_PAYLOAD ({}): one \
                 allowed message would not fit in a burst",
                self.transport.conn_read_burst, self.transport.sio_max_payload
            ));
        }
        if self.status_window_max_ms < self.status_window_ms {
            return Err(format!(
                "SWITCHYARD_STATUS_WINDOW_MAX_MS ({}) is below SWITCHYARD_STATUS_WINDOW_MS ({})",
                self.status_window_max_ms, self.status_window_ms
            ));
        }
        if let Some(token) = self.server_api_token.as_ref().filter(|t| !t.is_empty()) {
            if token.chars().count() < MIN_SERVER_API_TOKEN_CHARS {
                return Err(format!(
                    "SWITCHYARD_SERVER_API_TOKEN has {} characters; use at least \
                     {MIN_SERVER_API_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)",
                    token.chars().count()
                ));
            }
        }
        if self.transport.max_connections_per_ip > self.transport.max_connections {
            return Err(format!(
                "SWITCHYARD_MAX_CONNECTIONS_PER_IP ({}) exceeds SWITCHYARD_MAX_CONNECTIONS ({})",
                self.transport.max_connections_per_ip, self.transport.max_connections
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("switchyard").chain(args.iter().copied()))
    }

    #[test]
    fn transport_limits_have_defaults_and_refuse_values_below_their_floor() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.common.transport.max_connections, 20_000);
        assert_eq!(cli.common.transport.sio_max_payload, 8192);
        assert!(cli.common.validate().is_ok());
        for bad in [
            ["--max-connections", "0"],
            ["--http-max-header-bytes", "4096"],
            ["--sio-max-payload", "10"],
            ["--http-header-timeout-ms", "0"],
        ] {
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains("not in"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_guessable_server_api_token_is_refused_and_an_empty_one_is_off() {
        let cli = parse(&["--server-api-token", "short"]).unwrap();
        let err = cli.common.validate().unwrap_err();
        assert!(
            err.contains("SWITCHYARD_SERVER_API_TOKEN has 5 characters"),
            "{err}"
        );
        let cli = parse(&["--server-api-token", ""]).unwrap();
        assert!(cli.common.validate().is_ok());
        let cli = parse(&["--server-api-token", "0123456789abcdef"]).unwrap();
        assert!(cli.common.validate().is_ok());
    }

    #[test]
    fn inconsistent_limits_are_refused_not_adjusted() {
        let cli = parse(&["--sio-max-payload", "200000", "--conn-read-burst", "300000"]).unwrap();
        let err = cli.common.validate().unwrap_err();
        assert!(err.contains("SWITCHYARD_HTTP_MAX_BODY"), "{err}");
        let cli = parse(&["--max-connections", "10", "--max-connections-per-ip", "11"]).unwrap();
        assert!(cli.common.validate().is_err());
        // A burst below its rate works (it is raised to the rate): warned about, not refused.
        let cli = parse(&["--rate-conn", "50", "--rate-conn-burst", "10"]).unwrap();
        assert!(cli.common.validate().is_ok());
        let warnings = cli.common.warnings();
        assert!(
            warnings.len() == 1 && warnings[0].contains("SWITCHYARD_RATE_CONN_BURST (10)"),
            "{warnings:?}"
        );
        assert!(parse(&[]).unwrap().common.warnings().is_empty());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = parse(&["--rate-conn", "0"]).unwrap_err();
        let line = bad_value(&err);
        assert!(
            line.contains("SWITCHYARD_RATE_CONN") && line.ends_with("0 is below the minimum, 1"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn values_that_were_clamped_are_refused() {
        for bad in [
            ["--sio-send-queue", "8"],
            ["--sio-ping-interval-ms", "10"],
            ["--heartbeat-ms", "0"],
            ["--edge-timeout-ms", "5"],
            ["--status-window-ms", "0"],
            ["--flood-strikes", "0"],
            ["--rate-conn", "0"],
        ] {
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains("not in"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn server_help_reads_by_concern_under_headings() {
        let help = Cli::command()
            .find_subcommand_mut("edge")
            .unwrap()
            .render_help()
            .to_string();
        // Each flag appears after its heading and before the next one.
        let at = |text: &str| {
            help.find(text)
                .unwrap_or_else(|| panic!("{text} missing:\n{help}"))
        };
        let order = [
            ("Listening:", "--ops-listen"),
            ("Storage:", "--store"),
            ("Bus and cluster:", "--nats-connect-timeout-secs"),
            ("Frust:", "--static-dir"),
            ("Shutdown and logging:", "--log-format"),
            ("Socket.IO (Frust):", "--sio-send-queue"),
            ("Rate limits:", "--trusted-proxies"),
            ("Transport limits:", "--max-connections"),
            ("Chat:", "--jwt-public-key"),
        ];
        for pair in order.windows(2) {
            let ((heading, flag), (next, _)) = (pair[0], pair[1]);
            assert!(
                at(heading) < at(flag) && at(flag) < at(next),
                "{flag} under {heading}:\n{help}"
            );
        }
        let check = Cli::command()
            .find_subcommand_mut("check-config")
            .unwrap()
            .render_help()
            .to_string();
        assert!(
            check.contains("--role") && check.contains("Storage:"),
            "{check}"
        );
    }

    #[test]
    fn server_flags_belong_to_server_subcommands() {
        assert!(parse(&["edge", "--listen", "127.0.0.1:1"]).is_ok());
        assert!(
            parse(&["--listen", "127.0.0.1:1"]).is_ok(),
            "bare switchyard is `all`"
        );
        assert!(parse(&["token", "--sub", "a", "--listen", "127.0.0.1:1"]).is_err());
        assert!(parse(&["bench", "--rate-conn", "5"]).is_err());
        let help = Cli::command()
            .find_subcommand_mut("token")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.lines().count() < 40, "{help}");
    }
}
