//! The phases every scenario goes through: connect all clients (bounded concurrency), wait for
//! `--start-at`, send for `--duration`, let deliveries settle, stop, count. One small task per
//! connection reads its socket and, if it is a sender, sends on its own schedule.

pub mod chat;
pub mod frust;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::args::{Api, RunArgs};
use crate::marker::unix_micros;
use crate::net::{ConnectError, Target};
use crate::report::{Memory, Params, Report};
use crate::stats::{self, Phases, SharedHistogram, Tally};
use crate::sys;

/// The server's defaults (README): a bench past them needs the server's limits raised.
const SERVER_RATE_CONN: f64 = 50.0;
const SERVER_RATE_IP: f64 = 2000.0;
const SERVER_CONNECT_BURST: f64 = 2000.0;
/// The server's default caps on open connections (and Socket.IO sessions), per edge and per IP.
const SERVER_MAX_CONNECTIONS: usize = 20_000;
const SERVER_MAX_CONNECTIONS_PER_IP: usize = 1024;

/// The send window, the same for every sender of this process.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

/// One sender's share of the rate: every `period`, starting `phase` into the window, so the
/// senders together send evenly rather than in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct SendRole {
    pub index: u32,
    pub period: Duration,
    pub phase: Duration,
}

impl SendRole {
    pub fn new(index: u32, senders: u32, total_rate: f64) -> Self {
        let period = Duration::from_secs_f64(f64::from(senders) / total_rate);
        Self {
            index,
            period,
            phase: period.mul_f64(f64::from(index) / f64::from(senders)),
        }
    }
}

/// A sender's ticks within the window. `Burst` catches up after a stall (the generator's own
/// hiccup), so the offered load stays R over the window instead of quietly dropping below it;
/// each packet carries its real send time, so late sends do not flatter the latency.
pub struct Schedule {
    interval: Interval,
    end: Instant,
}

impl Schedule {
    pub fn new(window: Window, role: &SendRole) -> Self {
        let mut interval = tokio::time::interval_at(window.start + role.phase, role.period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
        Self {
            interval,
            end: window.end,
        }
    }
}

/// Resolves when the next packet is due; never while there is no schedule. Returns `false`
/// (and drops the schedule) once the window is over.
pub async fn next_send(schedule: &mut Option<Schedule>) -> bool {
    let Some(s) = schedule else {
        return std::future::pending().await;
    };
    let due = s.interval.tick().await;
    if due >= s.end {
        *schedule = None;
        return false;
    }
    true
}

/// An optional periodic timer (v3 clients' pings).
pub async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// What the connection tasks share.
pub struct Shared {
    pub run_id: String,
    targets: Vec<Target>,
    source_ips: Vec<IpAddr>,
    connect_permits: Semaphore,
    connect_timeout: Duration,
    connect_hist: Mutex<Histogram<u64>>,
    pub latency: SharedHistogram,
    ready: mpsc::UnboundedSender<()>,
    pub go: watch::Receiver<Option<Window>>,
    pub stop: CancellationToken,
}

impl Shared {
    pub fn target(&self, client: usize) -> &Target {
        &self.targets[client % self.targets.len()]
    }

    pub fn source(&self, client: usize) -> Option<IpAddr> {
        (!self.source_ips.is_empty()).then(|| self.source_ips[client % self.source_ips.len()])
    }

    /// Runs a connection attempt under the concurrency bound and the timeout, records how long
    /// it took, and tells the runner it is done either way.
    pub async fn connect<T>(
        &self,
        tally: &mut Tally,
        attempt: impl Future<Output = Result<T, ConnectError>>,
    ) -> Option<T> {
        let permit = self.connect_permits.acquire().await;
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.connect_timeout, attempt).await;
        drop(permit);
        let connected = match outcome {
            Ok(Ok(conn)) => {
                let us = started.elapsed().as_micros() as u64;
                self.connect_hist.lock().saturating_record(us);
                tally.connected = true;
                Some(conn)
            }
            Ok(Err(e)) => {
                tally.connect_error = Some(e.kind());
                None
            }
            Err(_) => {
                tally.connect_error = Some(ConnectError::Timeout.kind());
                None
            }
        };
        let _ = self.ready.send(());
        connected
    }
}

/// What differs between the APIs: how many connect and send, how one client runs, and how many
/// deliveries the run should see.
pub trait Plan: Send + Sync + 'static {
    fn clients(&self) -> usize;
    fn senders(&self) -> usize;
    /// Client `client`'s send schedule, if it sends.
    fn role(&self, client: usize) -> Option<SendRole>;
    /// One client's connection, from connecting until `shared.stop`.
    fn connection(
        self: Arc<Self>,
        shared: Arc<Shared>,
        index: usize,
        role: Option<SendRole>,
    ) -> BoxFuture<'static, Tally>;
    /// The deliveries the connected clients should have received, given what was accepted.
    fn expected(&self, tallies: &[Tally]) -> u64;
}

/// The plan of `--api`; chat mints tokens and creates its rooms here.
async fn plan(
    args: &RunArgs,
    jwt_secret: Option<String>,
    run_id: &str,
    targets: &[Target],
) -> anyhow::Result<Arc<dyn Plan>> {
    Ok(match args.api {
        Api::Frust => Arc::new(frust::Plan::new(args)?),
        Api::Chat => {
            let secret = jwt_secret.ok_or_else(|| {
                anyhow::anyhow!(
                    "chat needs the server's token secret: --jwt-secret or SWITCHYARD_JWT_SECRET"
                )
            })?;
            Arc::new(chat::Plan::prepare(args, &secret, run_id, targets).await?)
        }
    })
}

pub async fn run(args: &RunArgs, jwt_secret: Option<String>) -> anyhow::Result<Report> {
    let run_id = match &args.run_id {
        Some(id) if crate::args::valid_run_id(id) => id.clone(),
        Some(id) => anyhow::bail!("--run-id {id:?}: use 1 to 16 of A-Z a-z 0-9 - _"),
        None => default_run_id(),
    };
    let mut targets = Vec::new();
    for url in &args.targets {
        targets.push(Target::resolve(url).await?);
    }
    if args.connect_concurrency == 0 {
        anyhow::bail!("--connect-concurrency must be at least 1");
    }
    let rate_ok = args.rate > 0.0 && args.rate.is_finite();
    if !args.idle && !rate_ok {
        anyhow::bail!("--rate must be a positive number of packets per second");
    }

    let plan = plan(args, jwt_secret, &run_id, &targets).await?;
    let (clients, senders) = (plan.clients(), plan.senders());
    let senders = if args.idle { 0 } else { senders };
    let sources = args.source_ips.len().max(1);
    warn_about_limits(args, clients, senders, sources);
    // One descriptor per connection, plus a few for REST, stdio and the runtime.
    let wanted = clients as u64 + 256;
    if let Some(limit) = sys::raise_nofile(wanted) {
        if wanted > limit {
            eprintln!("bench: warning: {clients} connections but only {limit} open files allowed (ulimit -n)");
        }
    }

    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = watch::channel(None);
    let latency = Arc::new(Mutex::new(stats::new_histogram()));
    let shared = Arc::new(Shared {
        run_id: run_id.clone(),
        targets,
        source_ips: args.source_ips.clone(),
        connect_permits: Semaphore::new(args.connect_concurrency),
        connect_timeout: args.connect_timeout,
        connect_hist: Mutex::new(stats::new_histogram()),
        latency: latency.clone(),
        ready: ready_tx,
        go: go_rx,
        stop: CancellationToken::new(),
    });

    let mut memory = Memory {
        server_pid: args.server_pid,
        server_rss_before: args.server_pid.and_then(|pid| sys::rss_bytes(Some(pid))),
        ..Memory::default()
    };
    let mut phases = Phases {
        connect_start_us: unix_micros(),
        ..Phases::default()
    };
    eprintln!(
        "bench: run {run_id}: connecting {clients} clients to {}",
        args.targets.join(", ")
    );
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let role = (!args.idle).then(|| plan.role(i)).flatten();
        tasks.push(tokio::spawn(plan.clone().connection(
            shared.clone(),
            i,
            role,
        )));
    }
    wait_connected(&mut ready_rx, clients).await;
    phases.all_connected_us = unix_micros();
    memory.server_rss_connected = args.server_pid.and_then(|pid| sys::rss_bytes(Some(pid)));

    if let Some(at) = args.start_at {
        let wait = at - unix_micros() as f64 / 1e6;
        if wait > 0.0 {
            eprintln!("bench: starting at {at} (in {wait:.1} s)");
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        } else {
            eprintln!(
                "bench: warning: connecting ran {:.1} s past --start-at",
                -wait
            );
        }
    }
    let start = Instant::now();
    let window = Window {
        start,
        end: start + args.duration,
    };
    phases.send_start_us = unix_micros();
    let _ = go_tx.send(Some(window));
    if args.idle {
        eprintln!("bench: holding for {:?}", args.duration);
    } else {
        eprintln!(
            "bench: {senders} senders at {} packets/s for {:?}",
            args.rate, args.duration
        );
    }
    tokio::time::sleep_until(window.end).await;
    phases.send_end_us = unix_micros();
    if !args.idle {
        tokio::time::sleep(args.settle).await;
    }
    phases.stop_us = unix_micros();
    shared.stop.cancel();
    let mut tallies = Vec::with_capacity(clients);
    for task in tasks {
        tallies.push(task.await?);
    }
    memory.server_rss_end = args.server_pid.and_then(|pid| sys::rss_bytes(Some(pid)));
    memory.generator_rss_end = sys::rss_bytes(None);
    let connected = tallies.iter().filter(|t| t.connected).count();
    if let (Some(before), Some(after)) = (memory.server_rss_before, memory.server_rss_connected) {
        if connected > 0 {
            memory.server_bytes_per_connection =
                Some((after as f64 - before as f64) / connected as f64);
        }
    }

    let expected_own = plan.expected(&tallies);
    let params = params(args, clients, senders, run_id);
    let connect_hist = shared.connect_hist.lock().clone();
    let latency_hist = latency.lock().clone();
    let mut report = stats::single_report(
        params,
        &tallies,
        expected_own,
        phases,
        &connect_hist,
        &latency_hist,
        memory,
    );
    report.warnings.extend(hints(&report));
    Ok(report)
}

/// The run's parameters, as the report states them.
fn params(args: &RunArgs, clients: usize, senders: usize, run_id: String) -> Params {
    Params {
        api: args.api,
        protocol: (args.api == Api::Frust).then_some(args.protocol),
        targets: args.targets.clone(),
        clients: clients as u64,
        senders: senders as u64,
        rate: if args.idle { 0.0 } else { args.rate },
        duration_s: args.duration.as_secs_f64(),
        settle_s: if args.idle {
            0.0
        } else {
            args.settle.as_secs_f64()
        },
        rooms: (args.api == Api::Chat).then_some(u64::from(args.rooms)),
        room_size: (args.api == Api::Chat).then_some(u64::from(args.room_size)),
        idle: args.idle,
        connect_concurrency: args.connect_concurrency as u64,
        source_ips: args.source_ips.iter().map(|ip| ip.to_string()).collect(),
        start_at: args.start_at,
        run_ids: vec![run_id],
    }
}

/// Waits until every connection attempt has finished, printing progress on long runs.
async fn wait_connected(ready: &mut mpsc::UnboundedReceiver<()>, clients: usize) {
    let started = Instant::now();
    let mut progress = tokio::time::interval(Duration::from_secs(2));
    progress.tick().await;
    let mut done = 0;
    while done < clients {
        tokio::select! {
            got = ready.recv() => match got {
                Some(()) => done += 1,
                None => break,
            },
            _ = progress.tick() => eprintln!("bench: {done}/{clients} connection attempts done"),
        }
    }
    eprintln!(
        "bench: {clients} connection attempts done in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// Says up front when the scenario exceeds the server's default rate limits.
fn warn_about_limits(args: &RunArgs, clients: usize, senders: usize, sources: usize) {
    if senders > 0 {
        let per_sender = args.rate / senders as f64;
        if per_sender > SERVER_RATE_CONN {
            eprintln!(
                "bench: note: each sender sends {per_sender:.0}/s; the server's default limit is \
                 {SERVER_RATE_CONN}/s per connection (raise SWITCHYARD_RATE_CONN and _BURST)"
            );
        }
        let per_ip = args.rate / sources as f64;
        if per_ip > SERVER_RATE_IP {
            eprintln!(
                "bench: note: {per_ip:.0} packets/s per source address; the server's default limit \
                 is {SERVER_RATE_IP}/s per IP (raise SWITCHYARD_RATE_IP and _BURST, or add --source-ip)"
            );
        }
    }
    if clients / sources > SERVER_MAX_CONNECTIONS_PER_IP {
        eprintln!(
            "bench: note: {} connections per source address; the server holds at most \
             {SERVER_MAX_CONNECTIONS_PER_IP} per IP by default (raise \
             SWITCHYARD_MAX_CONNECTIONS_PER_IP, or add --source-ip)",
            clients / sources
        );
    }
    let edges = args.targets.len().max(1);
    if clients / edges > SERVER_MAX_CONNECTIONS {
        eprintln!(
            "bench: note: {} connections per edge; an edge holds at most \
             {SERVER_MAX_CONNECTIONS} by default (raise SWITCHYARD_MAX_CONNECTIONS)",
            clients / edges
        );
    }
    if (clients / sources) as f64 > SERVER_CONNECT_BURST {
        eprintln!(
            "bench: note: {} connections per source address; the server admits 500/s per IP after \
             a burst of {SERVER_CONNECT_BURST} by default (raise SWITCHYARD_RATE_CONNECT and _BURST)",
            clients / sources
        );
    }
}

/// Warnings for the report when the server's limits got in the way.
fn hints(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let limited_connects: u64 = r
        .errors
        .connect
        .iter()
        .filter(|(k, _)| k.as_str() == "http 429" || k.contains("too many connection"))
        .map(|(_, n)| n)
        .sum();
    if limited_connects > 0 {
        out.push(format!(
            "{limited_connects} connections refused by the server's connection limits (HTTP 429): \
             raise SWITCHYARD_RATE_CONNECT / SWITCHYARD_RATE_CONNECT_BURST and \
             SWITCHYARD_MAX_CONNECTIONS_PER_IP on the server"
        ));
    }
    let limited_sends: u64 = r
        .errors
        .rejected_sends
        .iter()
        .filter(|(k, _)| k.contains("rate") || k.contains("slow down"))
        .map(|(_, n)| n)
        .sum();
    if limited_sends > 0 {
        out.push(format!(
            "{limited_sends} packets refused by the server's rate limits: raise SWITCHYARD_RATE_CONN \
             / SWITCHYARD_RATE_IP (and their _BURST) on the server for benchmarks"
        ));
    }
    out
}

fn default_run_id() -> String {
    // Unique enough to tell concurrent processes apart: pid and the clock's low bits.
    let mix = unix_micros() ^ (u64::from(std::process::id()) << 40);
    format!("{:08x}", mix & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_share_the_rate_evenly() {
        let r = SendRole::new(3, 4, 200.0);
        assert_eq!(r.period, Duration::from_millis(20));
        assert_eq!(r.phase, Duration::from_millis(15));
    }

    /// Counts follow the scheduled instants, not the wall clock, so this is exact.
    #[tokio::test]
    async fn schedule_sends_rate_times_duration() {
        let start = Instant::now();
        let window = Window {
            start,
            end: start + Duration::from_millis(250),
        };
        let mut total = 0;
        for i in 0..4 {
            let mut s = Some(Schedule::new(window, &SendRole::new(i, 4, 200.0)));
            while next_send(&mut s).await {
                total += 1;
            }
            assert!(s.is_none());
        }
        assert_eq!(total, 50);
    }
}
