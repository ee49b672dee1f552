//! The results: one JSON document per bench process (or per merge), and the table printed from
//! it. Everything a merge needs is in the JSON, so `bench merge` works from files alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::args::{Api, Protocol};

pub const SCHEMA: &str = "switchyard-bench/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Always `switchyard-bench/1`.
    pub schema: String,
    pub params: Params,
    /// One entry per bench process that contributed (one for a single run).
    pub processes: Vec<Process>,
    pub connect: Connect,
    pub sends: Sends,
    pub deliveries: Deliveries,
    pub latency: Latency,
    pub errors: Errors,
    pub memory: Memory,
    pub warnings: Vec<String>,
}

/// The scenario. In a merged report: counts and rates summed, durations the longest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub api: Api,
    /// Frust only; `null` for chat, or for a merge of processes with different versions.
    pub protocol: Option<Protocol>,
    pub targets: Vec<String>,
    pub clients: u64,
    pub senders: u64,
    /// Packets per second, all senders together.
    pub rate: f64,
    pub duration_s: f64,
    pub settle_s: f64,
    pub rooms: Option<u64>,
    pub room_size: Option<u64>,
    pub idle: bool,
    pub connect_concurrency: u64,
    pub source_ips: Vec<String>,
    pub start_at: Option<f64>,
    pub run_ids: Vec<String>,
}

/// What one process did, with wall-clock times (Unix µs) so a merge can check overlap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Process {
    pub run_id: String,
    pub pid: u32,
    pub api: Api,
    pub protocol: Option<Protocol>,
    pub clients: u64,
    /// Connections up when sending started: each receives every click (frust).
    pub receivers: u64,
    /// Packets the server accepted from this process.
    pub accepted: u64,
    /// Deliveries of this process's packets to this process's own clients.
    pub expected_own: u64,
    pub connect_start_us: u64,
    pub all_connected_us: u64,
    pub send_start_us: u64,
    pub send_end_us: u64,
    /// When it stopped listening (after the settle time).
    pub stop_us: u64,
    pub last_receipt_us: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connect {
    pub attempted: u64,
    pub connected: u64,
    pub failed: u64,
    /// From the first attempt until every connection was up (or had failed).
    pub total_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Connect times in µs: HdrHistogram V2, base64.
    pub histogram: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sends {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Sends with no answer by the end (frust acks).
    pub unacked: u64,
    /// Accepted per second over the send window.
    pub per_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deliveries {
    /// See the crate docs: accepted × receivers (frust), accepted × room members (chat).
    pub expected: u64,
    /// Receipts of packets sent by the processes in this report.
    pub delivered: u64,
    /// delivered / expected; `null` when nothing was expected.
    pub share: Option<f64>,
    /// delivered per second, from the first send until the last receipt.
    pub per_s: f64,
    /// Receipts of bench packets from runs not in this report.
    pub foreign: u64,
    /// Receipts by the run id of their sender (all runs seen, for later merges).
    pub by_run: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Send → receipt in µs (every receipt, any run): HdrHistogram V2, base64.
    pub histogram: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Errors {
    pub total: u64,
    /// Failed connections by kind (`http 429`, `timeout`, `refused: …`).
    pub connect: BTreeMap<String, u64>,
    /// Connections the server closed before the end.
    pub disconnects: u64,
    /// Sends the server refused, by its reason.
    pub rejected_sends: BTreeMap<String, u64>,
    pub unacked: u64,
    /// Frames that made no sense, or errors addressed to non-senders.
    pub protocol: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    pub server_pid: Option<u32>,
    pub server_rss_before: Option<u64>,
    pub server_rss_connected: Option<u64>,
    pub server_rss_end: Option<u64>,
    /// (rss once connected − rss before) / connections, in bytes.
    pub server_bytes_per_connection: Option<f64>,
    /// This generator's own resident memory at the end (summed over processes).
    pub generator_rss_end: Option<u64>,
}

impl Errors {
    pub fn recount(&mut self) {
        self.total = self.connect.values().sum::<u64>()
            + self.disconnects
            + self.rejected_sends.values().sum::<u64>()
            + self.unacked
            + self.protocol;
    }
}

/// Writes the JSON to `path` (`-` = stdout).
pub fn write_json(report: &Report, path: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{json}")?;
        out.flush()?;
    } else {
        std::fs::write(path, json + "\n")
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

pub fn read_json(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let report: Report = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a bench result: {e}", path.display()))?;
    if report.schema != SCHEMA {
        anyhow::bail!(
            "{}: schema {:?}, expected {SCHEMA:?}",
            path.display(),
            report.schema
        );
    }
    Ok(report)
}

/// The readable table.
pub fn table(r: &Report) -> String {
    let p = &r.params;
    let mut t = String::new();
    let scenario = match (p.api, p.protocol) {
        (Api::Frust, Some(Protocol::V4)) => "frust, Socket.IO over Engine.IO v4".to_owned(),
        (Api::Frust, Some(Protocol::V3)) => "frust, Socket.IO over Engine.IO v3".to_owned(),
        (Api::Frust, None) => "frust, Socket.IO (mixed protocols)".to_owned(),
        (Api::Chat, _) => format!(
            "chat, {} rooms of {}",
            p.rooms.unwrap_or(0),
            p.room_size.unwrap_or(0)
        ),
    };
    let mode = if p.idle { " (idle)" } else { "" };
    let _ = writeln!(t, "switchyard bench: {scenario}{mode}");
    let row = |t: &mut String, k: &str, v: String| {
        let _ = writeln!(t, "  {k:<14} {v}");
    };
    row(
        &mut t,
        "run",
        format!(
            "{} ({} process{})",
            p.run_ids.join(", "),
            r.processes.len(),
            if r.processes.len() == 1 { "" } else { "es" }
        ),
    );
    row(&mut t, "targets", p.targets.join(", "));
    let c = &r.connect;
    row(
        &mut t,
        "clients",
        format!("{} connected of {}", c.connected, c.attempted),
    );
    row(
        &mut t,
        "connect",
        format!(
            "all in {}   p50 {}   p99 {}   max {}",
            ms(c.total_ms),
            ms(c.p50_ms),
            ms(c.p99_ms),
            ms(c.max_ms)
        ),
    );
    if !p.idle {
        let s = &r.sends;
        row(
            &mut t,
            "sends",
            format!(
                "{} sent by {} senders, {} accepted ({}/s; asked {}/s for {} s)",
                s.sent,
                p.senders,
                s.accepted,
                num(s.per_s),
                num(p.rate),
                num(p.duration_s)
            ),
        );
        let d = &r.deliveries;
        let share = d
            .share
            .map(|s| format!("{:.2} %", s * 100.0))
            .unwrap_or_else(|| "n/a".to_owned());
        row(
            &mut t,
            "deliveries",
            format!(
                "{} of {} expected ({share})   {}/s",
                d.delivered,
                d.expected,
                num(d.per_s)
            ),
        );
        if d.foreign > 0 {
            row(
                &mut t,
                "",
                format!("+ {} from bench runs not in this report", d.foreign),
            );
        }
        let l = &r.latency;
        row(
            &mut t,
            "latency",
            format!(
                "p50 {}   p99 {}   p999 {}   max {}   mean {}   (n = {})",
                ms(l.p50_ms),
                ms(l.p99_ms),
                ms(l.p999_ms),
                ms(l.max_ms),
                ms(l.mean_ms),
                l.count
            ),
        );
    }
    row(&mut t, "errors", errors_line(&r.errors));
    let m = &r.memory;
    if let Some(pid) = m.server_pid {
        let mb = |b: Option<u64>| {
            b.map(|b| format!("{:.1} MiB", b as f64 / 1_048_576.0))
                .unwrap_or_else(|| "?".to_owned())
        };
        let per = m
            .server_bytes_per_connection
            .map(|b| format!("{} B/connection", num(b)))
            .unwrap_or_else(|| "? B/connection".to_owned());
        row(
            &mut t,
            "server memory",
            format!(
                "pid {pid}: {} before, {} connected, {} at the end: {per}",
                mb(m.server_rss_before),
                mb(m.server_rss_connected),
                mb(m.server_rss_end)
            ),
        );
    }
    if let Some(rss) = m.generator_rss_end {
        row(
            &mut t,
            "bench memory",
            format!("{:.1} MiB resident", rss as f64 / 1_048_576.0),
        );
    }
    for w in &r.warnings {
        let _ = writeln!(t, "  warning: {w}");
    }
    t
}

fn errors_line(e: &Errors) -> String {
    if e.total == 0 {
        return "none".to_owned();
    }
    let mut parts = Vec::new();
    for (kind, n) in &e.connect {
        parts.push(format!("connect {kind}: {n}"));
    }
    if e.disconnects > 0 {
        parts.push(format!("disconnects: {}", e.disconnects));
    }
    for (why, n) in &e.rejected_sends {
        parts.push(format!("rejected ({why}): {n}"));
    }
    if e.unacked > 0 {
        parts.push(format!("unacknowledged: {}", e.unacked));
    }
    if e.protocol > 0 {
        parts.push(format!("protocol: {}", e.protocol));
    }
    format!("{} ({})", e.total, parts.join(", "))
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// A number with thousands separators; one decimal below 1000.
fn num(v: f64) -> String {
    if v < 1000.0 {
        let s = format!("{v:.1}");
        return s.strip_suffix(".0").map(str::to_owned).unwrap_or(s);
    }
    let mut digits = (v.round() as u64).to_string();
    let mut i = digits.len();
    while i > 3 {
        i -= 3;
        digits.insert(i, ',');
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(199.94), "199.9");
        assert_eq!(num(199.96), "200");
        assert_eq!(num(20.0), "20");
        assert_eq!(num(100_000.4), "100,000");
        assert_eq!(num(1_234_567.0), "1,234,567");
        assert_eq!(ms(0.4567), "0.46 ms");
        assert_eq!(ms(12.34), "12.3 ms");
        assert_eq!(ms(1234.0), "1234 ms");
    }
}
