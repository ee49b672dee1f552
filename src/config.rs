//! Command line and environment: every flag has an `SWITCHYARD_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Realtime backend: Frust click counter and room chat"
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
    All,
    /// Edge role only (cluster mode: needs SWITCHYARD_NATS).
    Edge,
    /// Worker role only (cluster mode: needs SWITCHYARD_NATS).
    Worker,
    /// Aggregator role only (cluster mode: needs SWITCHYARD_NATS).
    Aggregator,
    /// Create or upgrade the store schema, then exit.
    Migrate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct Common {
    /// Address the HTTP server (APIs, /metrics, /healthz) listens on.
    #[arg(
        long,
        env = "SWITCHYARD_LISTEN",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Store URL: `sqlite:///abs/path.sqlite` (relative paths work too).
    #[arg(
        long,
        env = "SWITCHYARD_STORE",
        default_value = "sqlite://./data/switchyard.sqlite",
        global = true
    )]
    pub store: String,

    /// NATS server URLs, comma separated; selects cluster mode.
    #[arg(long, env = "SWITCHYARD_NATS", global = true)]
    pub nats: Option<String>,

    /// Serve this frontend directory at `/` (development, like the original's --dev).
    #[arg(long, env = "SWITCHYARD_STATIC_DIR", global = true)]
    pub static_dir: Option<PathBuf>,

    /// Frust event names that are broadcast but neither stored nor toasted.
    #[arg(
        long,
        env = "SWITCHYARD_EPHEMERAL_EVENTS",
        value_delimiter = ',',
        default_value = "rickroll,exmatrikulieren",
        global = true
    )]
    pub ephemeral_events: Vec<String>,

    /// How long `status` changes are gathered into one broadcast, in milliseconds.
    #[arg(
        long,
        env = "SWITCHYARD_STATUS_WINDOW_MS",
        default_value_t = 100,
        global = true
    )]
    pub status_window_ms: u64,

    /// Upper bound for a graceful shutdown, in seconds.
    #[arg(
        long,
        env = "SWITCHYARD_DRAIN_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub drain_timeout_secs: u64,

    /// Log format.
    #[arg(
        long,
        env = "SWITCHYARD_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Testing: start the clock at this Unix time (it then runs at real speed).
    #[arg(long, env = "SWITCHYARD_CLOCK_START", hide = true, global = true)]
    pub clock_start: Option<i64>,
}
