//! The command line of `switchyard bench`. Flag names stay clear of the binary's global flags
//! (`--listen`, `--jwt-secret`, `--rate-conn`, …): clap would refuse a duplicate.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// `switchyard bench [flags]` runs a scenario; `switchyard bench merge a.json b.json` merges.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub action: Option<BenchAction>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BenchAction {
    /// Merge the JSON results of several bench processes into one report.
    Merge {
        /// JSON files written with `--json`.
        #[arg(required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Write the merged JSON here (`-` for stdout; the table then goes to stderr).
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// Socket.IO clients clicking (`click` is broadcast to every client).
    Frust,
    /// `/chat` clients in rooms (`message-send` reaches the room's members).
    Chat,
}

/// The Engine.IO protocol the Socket.IO clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Engine.IO 4 / Socket.IO 3+ clients (the server pings).
    V4,
    /// Engine.IO 3 / Socket.IO 2 clients (the client pings).
    V3,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Server base URL (`http://host:port`); repeat to spread clients round-robin over edges.
    #[arg(long = "target", default_value = "http://127.0.0.1:8080")]
    pub targets: Vec<String>,

    /// Which API to load.
    #[arg(long, value_enum, default_value = "frust")]
    pub api: Api,

    /// Frust: the Engine.IO protocol version of the Socket.IO clients.
    #[arg(long, value_enum, default_value = "v4")]
    pub protocol: Protocol,

    /// Frust: connections to open (chat: --rooms × --room-size).
    #[arg(long)]
    pub clients: Option<u32>,

    /// Connections that send (frust default 1; chat default one per room).
    #[arg(long)]
    pub senders: Option<u32>,

    /// Total packets per second over all senders of this process.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,

    /// How long to send (or, with --idle, to hold the connections): 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// After sending, how long to wait for deliveries still in flight.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,

    /// Chat: rooms to create.
    #[arg(long, default_value_t = 10)]
    pub rooms: u32,

    /// Chat: members per room (each one connection).
    #[arg(long, default_value_t = 10)]
    pub room_size: u32,

    /// Connect only: open the connections, hold them for --duration, send nothing.
    #[arg(long)]
    pub idle: bool,

    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,

    /// Give up on one connection (TCP, upgrade and protocol handshake) after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Local address to bind connections to; repeat (127.0.0.2, …) for more than ~28k
    /// connections to one address and port, or to get separate per-IP rate limits.
    #[arg(long = "source-ip")]
    pub source_ips: Vec<IpAddr>,

    /// Sample this server process's VmRSS before connecting and once all are connected.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Start sending at this Unix time (seconds): lines up several bench processes.
    #[arg(long)]
    pub start_at: Option<f64>,

    /// Tags this process's packets (≤ 16 of A-Z a-z 0-9 - _); unique per process when merging.
    #[arg(long)]
    pub run_id: Option<String>,

    /// Write the results as JSON here (`-` for stdout; the table then goes to stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub const MAX_RUN_ID: usize = 16;

pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_RUN_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `10`, `10s`, `500ms`, `2m`, `1h` → a duration (a bare number is seconds, may be fractional).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in `{s}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        use clap::{Args as _, CommandFactory as _, Parser};
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            bench: Bench,
        }
        #[derive(clap::Subcommand)]
        enum Bench {
            Bench(BenchArgs),
        }
        BenchArgs::augment_args(clap::Command::new("bench")).debug_assert();
        Cli::command().debug_assert();
        let cli = Cli::parse_from(["x", "bench", "--clients", "3", "--source-ip", "127.0.0.2"]);
        let Bench::Bench(args) = cli.bench;
        assert!(args.action.is_none());
        assert_eq!(args.run.clients, Some(3));
        assert_eq!(args.run.targets, vec!["http://127.0.0.1:8080".to_owned()]);
        let cli = Cli::parse_from(["x", "bench", "merge", "a.json", "b.json", "--json", "-"]);
        let Bench::Bench(args) = cli.bench;
        assert!(matches!(args.action, Some(BenchAction::Merge { files, .. }) if files.len() == 2));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn run_ids() {
        assert!(valid_run_id("p1"));
        assert!(valid_run_id("host-a_2"));
        assert!(!valid_run_id(""));
        assert!(!valid_run_id("has:colon"));
        assert!(!valid_run_id("x".repeat(17).as_str()));
    }
}
