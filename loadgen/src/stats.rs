//! Counting: per-connection tallies, latency histograms, and the arithmetic that turns them
//! (or several processes' reports) into one report.
//!
//! Expected deliveries. Frust broadcasts every click to every connected client, the sender's
//! own socket included, so one process expects `accepted × receivers` (receivers = its
//! connections that were up when sending started). With P processes on one server, every
//! accepted click reaches every client of every process, so a merge expects
//! `(Σ accepted) × (Σ receivers)` and counts as delivered every receipt, on any process, of a
//! packet sent by any process in the merge (the `by_run` counts). That holds when every
//! process was connected during every other process's send window; the merge checks the
//! recorded windows and warns otherwise (use `--start-at`). Chat rooms belong to one process,
//! so their expectations simply add up: `accepted × connected members of the room`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::args::Api;
use crate::marker::Marker;
use crate::report::{
    Connect, Deliveries, Errors, Latency, Memory, Params, Process, Report, Sends, SCHEMA,
};

/// Microseconds, 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing to memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("bad histogram: {e:?}"))?;
    // Widen to the standard bounds so histograms from any process add up.
    let mut out = new_histogram();
    out.add(&h)
        .map_err(|e| anyhow::anyhow!("histogram out of range: {e:?}"))?;
    Ok(out)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub type SharedHistogram = Arc<Mutex<Histogram<u64>>>;

/// A connection's latency samples, handed to the shared histogram in batches so a busy
/// receiver takes the lock once per few hundred messages.
pub struct LatencyRecorder {
    shared: SharedHistogram,
    batch: Vec<u64>,
}

const BATCH: usize = 256;

impl LatencyRecorder {
    pub fn new(shared: SharedHistogram) -> Self {
        Self {
            shared,
            batch: Vec::new(),
        }
    }

    pub fn record(&mut self, us: u64) {
        if self.batch.capacity() == 0 {
            self.batch.reserve_exact(BATCH);
        }
        self.batch.push(us);
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut h = self.shared.lock();
        for v in self.batch.drain(..) {
            h.saturating_record(v);
        }
    }
}

impl Drop for LatencyRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What one connection saw; the task returns it when the run ends.
#[derive(Debug, Default)]
pub struct Tally {
    pub connected: bool,
    pub connect_error: Option<String>,
    pub disconnected: bool,
    pub protocol_errors: u64,
    pub sent: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<String, u64>,
    pub unacked: u64,
    /// Chat: the room this connection belongs to.
    pub room: Option<usize>,
    /// Receipts of this run's packets, and of other runs' by run id.
    pub own: u64,
    pub foreign: BTreeMap<String, u64>,
    pub last_receipt_us: u64,
}

impl Tally {
    pub fn reject(&mut self, why: String) {
        *self.rejected.entry(why).or_default() += 1;
    }

    /// Counts a receipt and records its latency.
    pub fn receipt(
        &mut self,
        m: &Marker<'_>,
        run_id: &str,
        now_us: u64,
        latency: &mut LatencyRecorder,
    ) {
        latency.record(now_us.saturating_sub(m.sent_us));
        if m.run == run_id {
            self.own += 1;
        } else if let Some(n) = self.foreign.get_mut(m.run) {
            *n += 1;
        } else {
            self.foreign.insert(m.run.to_owned(), 1);
        }
        self.last_receipt_us = self.last_receipt_us.max(now_us);
    }
}

/// Phase boundaries of one run, in Unix µs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    pub connect_start_us: u64,
    pub all_connected_us: u64,
    pub send_start_us: u64,
    pub send_end_us: u64,
    pub stop_us: u64,
}

/// Builds a single process's report from its connections' tallies.
pub fn single_report(
    params: Params,
    tallies: &[Tally],
    expected_own: u64,
    phases: Phases,
    connect_hist: &Histogram<u64>,
    latency_hist: &Histogram<u64>,
    memory: Memory,
) -> Report {
    let run_id = params.run_ids[0].clone();
    let mut errors = Errors::default();
    let mut by_run = BTreeMap::new();
    let (mut sent, mut accepted, mut unacked, mut own) = (0, 0, 0, 0);
    let mut last_receipt_us = 0;
    for t in tallies {
        if let Some(kind) = &t.connect_error {
            *errors.connect.entry(kind.clone()).or_default() += 1;
        }
        errors.disconnects += u64::from(t.disconnected);
        errors.protocol += t.protocol_errors;
        for (why, n) in &t.rejected {
            *errors.rejected_sends.entry(why.clone()).or_default() += n;
        }
        sent += t.sent;
        accepted += t.accepted;
        unacked += t.unacked;
        own += t.own;
        for (run, n) in &t.foreign {
            *by_run.entry(run.clone()).or_default() += n;
        }
        last_receipt_us = last_receipt_us.max(t.last_receipt_us);
    }
    if own > 0 {
        by_run.insert(run_id.clone(), own);
    }
    errors.unacked = unacked;
    let connected = tallies.iter().filter(|t| t.connected).count() as u64;
    let process = Process {
        run_id,
        pid: std::process::id(),
        api: params.api,
        protocol: params.protocol,
        clients: tallies.len() as u64,
        receivers: connected,
        accepted,
        expected_own,
        connect_start_us: phases.connect_start_us,
        all_connected_us: phases.all_connected_us,
        send_start_us: phases.send_start_us,
        send_end_us: phases.send_end_us,
        stop_us: phases.stop_us,
        last_receipt_us,
    };
    let counts = Counts {
        attempted: tallies.len() as u64,
        connected,
        sent,
        accepted,
        rejected: errors.rejected_sends.values().sum(),
        unacked,
        by_run,
        errors,
    };
    settled_report(
        params,
        vec![process],
        counts,
        connect_hist,
        latency_hist,
        memory,
        Vec::new(),
    )
}

/// What a report adds up, from connection tallies or from other reports.
struct Counts {
    attempted: u64,
    connected: u64,
    sent: u64,
    accepted: u64,
    rejected: u64,
    unacked: u64,
    by_run: BTreeMap<String, u64>,
    errors: Errors,
}

/// The report from its counts, with the figures derived from them worked out
/// (`settle_totals`): one way for a single run and for a merge, so they cannot drift apart.
fn settled_report(
    params: Params,
    processes: Vec<Process>,
    counts: Counts,
    connect_hist: &Histogram<u64>,
    latency_hist: &Histogram<u64>,
    memory: Memory,
    warnings: Vec<String>,
) -> Report {
    let mut errors = counts.errors;
    errors.recount();
    let mut report = Report {
        schema: SCHEMA.to_owned(),
        params,
        processes,
        connect: connect_summary(counts.attempted, counts.connected, connect_hist, 0),
        sends: Sends {
            sent: counts.sent,
            accepted: counts.accepted,
            rejected: counts.rejected,
            unacked: counts.unacked,
            per_s: 0.0,
        },
        deliveries: Deliveries {
            expected: 0,
            delivered: 0,
            share: None,
            per_s: 0.0,
            foreign: 0,
            by_run: counts.by_run,
        },
        latency: latency_summary(latency_hist),
        errors,
        memory,
        warnings,
    };
    settle_totals(&mut report, connect_hist);
    report
}

fn connect_summary(attempted: u64, connected: u64, h: &Histogram<u64>, total_us: u64) -> Connect {
    Connect {
        attempted,
        connected,
        failed: attempted - connected,
        total_ms: ms(total_us),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
        histogram: encode_histogram(h),
    }
}

fn latency_summary(h: &Histogram<u64>) -> Latency {
    Latency {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        histogram: encode_histogram(h),
    }
}

/// The figures derived from `processes` and `by_run`: expected, delivered, rates, connect span.
fn settle_totals(r: &mut Report, connect_hist: &Histogram<u64>) {
    let procs = &r.processes;
    let runs: BTreeSet<&str> = procs.iter().map(|p| p.run_id.as_str()).collect();
    let (mut delivered, mut foreign) = (0, 0);
    for (run, n) in &r.deliveries.by_run {
        if runs.contains(run.as_str()) {
            delivered += n;
        } else {
            foreign += n;
        }
    }
    let expected = expected_deliveries(r.params.api, procs);
    let first_send = procs.iter().map(|p| p.send_start_us).min().unwrap_or(0);
    let last_send = procs.iter().map(|p| p.send_end_us).max().unwrap_or(0);
    let last_receipt = procs.iter().map(|p| p.last_receipt_us).max().unwrap_or(0);
    let per_s = |n: u64, end: u64| {
        let span = end.saturating_sub(first_send);
        if span == 0 || n == 0 {
            0.0
        } else {
            n as f64 * 1e6 / span as f64
        }
    };
    let d = &mut r.deliveries;
    d.expected = expected;
    d.delivered = delivered;
    d.foreign = foreign;
    d.share = (expected > 0).then(|| delivered as f64 / expected as f64);
    d.per_s = per_s(delivered, last_receipt);
    r.sends.per_s = per_s(r.sends.accepted, last_send);
    let connect_start = procs.iter().map(|p| p.connect_start_us).min().unwrap_or(0);
    let all_connected = procs.iter().map(|p| p.all_connected_us).max().unwrap_or(0);
    r.connect = connect_summary(
        r.connect.attempted,
        r.connect.connected,
        connect_hist,
        all_connected.saturating_sub(connect_start),
    );
}

/// Frust: every accepted click reaches every receiver of every process. Chat: each process's
/// own rooms.
pub fn expected_deliveries(api: Api, procs: &[Process]) -> u64 {
    match api {
        Api::Frust => {
            let accepted: u64 = procs.iter().map(|p| p.accepted).sum();
            let receivers: u64 = procs.iter().map(|p| p.receivers).sum();
            accepted * receivers
        }
        Api::Chat => procs.iter().map(|p| p.expected_own).sum(),
    }
}

/// Merges reports (single or already merged) into one.
pub fn merge(reports: Vec<Report>) -> anyhow::Result<Report> {
    let first = reports
        .first()
        .ok_or_else(|| anyhow::anyhow!("nothing to merge"))?;
    let api = first.params.api;
    let mut processes: Vec<Process> = Vec::new();
    let mut seen = BTreeSet::new();
    for r in &reports {
        if r.params.api != api {
            anyhow::bail!("cannot merge a frust run with a chat run");
        }
        for p in &r.processes {
            if !seen.insert(p.run_id.clone()) {
                anyhow::bail!(
                    "run id {:?} appears twice: give each process its own --run-id",
                    p.run_id
                );
            }
            processes.push(p.clone());
        }
    }

    let mut connect_hist = new_histogram();
    let mut latency_hist = new_histogram();
    let mut by_run: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = Errors::default();
    let (mut attempted, mut connected) = (0, 0);
    let (mut sent, mut accepted, mut rejected, mut unacked) = (0, 0, 0, 0);
    let mut warnings = Vec::new();
    for r in &reports {
        connect_hist.add(decode_histogram(&r.connect.histogram)?)?;
        latency_hist.add(decode_histogram(&r.latency.histogram)?)?;
        for (run, n) in &r.deliveries.by_run {
            *by_run.entry(run.clone()).or_default() += n;
        }
        for (k, n) in &r.errors.connect {
            *errors.connect.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &r.errors.rejected_sends {
            *errors.rejected_sends.entry(k.clone()).or_default() += n;
        }
        errors.disconnects += r.errors.disconnects;
        errors.unacked += r.errors.unacked;
        errors.protocol += r.errors.protocol;
        attempted += r.connect.attempted;
        connected += r.connect.connected;
        sent += r.sends.sent;
        accepted += r.sends.accepted;
        rejected += r.sends.rejected;
        unacked += r.sends.unacked;
        warnings.extend(r.warnings.iter().cloned());
    }
    if api == Api::Frust {
        warnings.extend(overlap_warnings(&processes));
    }

    let counts = Counts {
        attempted,
        connected,
        sent,
        accepted,
        rejected,
        unacked,
        by_run,
        errors,
    };
    Ok(settled_report(
        merge_params(&reports),
        processes,
        counts,
        &connect_hist,
        &latency_hist,
        merge_memory(&reports),
        warnings,
    ))
}

/// A frust merge assumes each process listened through every other's send window.
fn overlap_warnings(procs: &[Process]) -> Vec<String> {
    let mut out = Vec::new();
    for p in procs {
        for q in procs {
            if p.run_id == q.run_id || q.accepted == 0 {
                continue;
            }
            if p.all_connected_us > q.send_start_us || p.stop_us < q.send_end_us {
                out.push(format!(
                    "run {} was not connected during all of run {}'s sending: expected \
                     deliveries are overstated (start the processes with the same --start-at)",
                    p.run_id, q.run_id
                ));
            }
        }
    }
    out
}

fn merge_params(reports: &[Report]) -> Params {
    let ps: Vec<&Params> = reports.iter().map(|r| &r.params).collect();
    let first = ps[0];
    let union = |f: fn(&Params) -> &Vec<String>| {
        let mut v: Vec<String> = Vec::new();
        for p in &ps {
            for x in f(p) {
                if !v.contains(x) {
                    v.push(x.clone());
                }
            }
        }
        v
    };
    let sum = |f: fn(&Params) -> Option<u64>| -> Option<u64> {
        ps.iter().map(|p| f(p)).sum::<Option<u64>>()
    };
    let max = |f: fn(&Params) -> f64| ps.iter().map(|p| f(p)).fold(0.0, f64::max);
    Params {
        api: first.api,
        protocol: ps
            .iter()
            .all(|p| p.protocol == first.protocol)
            .then_some(first.protocol)
            .flatten(),
        targets: union(|p| &p.targets),
        clients: ps.iter().map(|p| p.clients).sum(),
        senders: ps.iter().map(|p| p.senders).sum(),
        rate: ps.iter().map(|p| p.rate).sum(),
        duration_s: max(|p| p.duration_s),
        settle_s: max(|p| p.settle_s),
        rooms: sum(|p| p.rooms),
        room_size: ps
            .iter()
            .all(|p| p.room_size == first.room_size)
            .then_some(first.room_size)
            .flatten(),
        idle: ps.iter().all(|p| p.idle),
        connect_concurrency: ps.iter().map(|p| p.connect_concurrency).sum(),
        source_ips: union(|p| &p.source_ips),
        start_at: ps
            .iter()
            .all(|p| p.start_at == first.start_at)
            .then_some(first.start_at)
            .flatten(),
        run_ids: union(|p| &p.run_ids),
    }
}

/// Generator memory adds up; server memory only means something if one process sampled it.
fn merge_memory(reports: &[Report]) -> Memory {
    let sampled: Vec<&Memory> = reports
        .iter()
        .map(|r| &r.memory)
        .filter(|m| m.server_pid.is_some())
        .collect();
    let mut m = match sampled.as_slice() {
        [one] => (*one).clone(),
        _ => Memory::default(),
    };
    m.generator_rss_end = reports
        .iter()
        .map(|r| r.memory.generator_rss_end)
        .sum::<Option<u64>>();
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Protocol;

    fn params(run: &str, api: Api, clients: u64) -> Params {
        Params {
            api,
            protocol: (api == Api::Frust).then_some(Protocol::V4),
            targets: vec!["http://127.0.0.1:8080".into()],
            clients,
            senders: 2,
            rate: 20.0,
            duration_s: 1.0,
            settle_s: 2.0,
            rooms: (api == Api::Chat).then_some(2),
            room_size: (api == Api::Chat).then_some(3),
            idle: false,
            connect_concurrency: 200,
            source_ips: vec![],
            start_at: Some(100.0),
            run_ids: vec![run.into()],
        }
    }

    fn phases() -> Phases {
        Phases {
            connect_start_us: 1_000_000,
            all_connected_us: 2_000_000,
            send_start_us: 3_000_000,
            send_end_us: 4_000_000,
            stop_us: 6_000_000,
        }
    }

    /// A frust process with `clients` receivers whose `senders` each had `accepted` clicks
    /// accepted; every client received `own` of its own clicks and `foreign` of `other`'s.
    fn frust_run(run: &str, other: &str, clients: usize, accepted: u64, foreign: u64) -> Report {
        let mut tallies: Vec<Tally> = (0..clients)
            .map(|_| Tally {
                connected: true,
                ..Tally::default()
            })
            .collect();
        tallies[0].sent = accepted;
        tallies[0].accepted = accepted;
        let mut latency = new_histogram();
        for t in &mut tallies {
            t.own = accepted;
            t.last_receipt_us = 4_100_000;
            if foreign > 0 {
                t.foreign.insert(other.to_owned(), foreign);
            }
            for v in 0..(accepted + foreign) {
                latency.record(500 + v).unwrap();
            }
        }
        let mut connect = new_histogram();
        for _ in 0..clients {
            connect.record(2_000).unwrap();
        }
        single_report(
            params(run, Api::Frust, clients as u64),
            &tallies,
            accepted * clients as u64,
            phases(),
            &connect,
            &latency,
            Memory::default(),
        )
    }

    #[test]
    fn single_frust_run() {
        let r = frust_run("a", "b", 5, 20, 0);
        assert_eq!(r.deliveries.expected, 100);
        assert_eq!(r.deliveries.delivered, 100);
        assert_eq!(r.deliveries.share, Some(1.0));
        assert_eq!(r.sends.accepted, 20);
        assert_eq!(r.connect.connected, 5);
        assert_eq!(r.connect.total_ms, 1000.0);
        assert_eq!(r.latency.count, 100);
        assert!(r.latency.p50_ms <= r.latency.p99_ms);
        assert!(r.latency.p999_ms <= r.latency.max_ms);
        assert_eq!(r.errors.total, 0);
        // 100 deliveries from the first send (3.0 s) to the last receipt (4.1 s).
        assert!((r.deliveries.per_s - 100.0 / 1.1).abs() < 1e-6);
    }

    #[test]
    fn frust_merge_counts_cross_deliveries() {
        // a: 5 clients, 20 clicks; b: 3 clients, 10 clicks. Each client gets all 30.
        let a = frust_run("a", "b", 5, 20, 10);
        let b = frust_run("b", "a", 3, 10, 20);
        // Alone, a process counts only its own clicks; the others' are "foreign".
        assert_eq!(a.deliveries.expected, 100);
        assert_eq!(a.deliveries.delivered, 100);
        assert_eq!(a.deliveries.foreign, 50);
        let m = merge(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(m.deliveries.expected, 30 * 8);
        assert_eq!(m.deliveries.delivered, 30 * 8);
        assert_eq!(m.deliveries.foreign, 0);
        assert_eq!(m.sends.accepted, 30);
        assert_eq!(m.connect.attempted, 8);
        assert_eq!(m.latency.count, a.latency.count + b.latency.count);
        assert_eq!(m.params.clients, 8);
        assert_eq!(m.params.run_ids, vec!["a".to_owned(), "b".to_owned()]);
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        // Merging is associative: a merged report merges again.
        let c = frust_run("c", "a", 2, 0, 0);
        let m2 = merge(vec![m, c]).unwrap();
        assert_eq!(m2.deliveries.expected, 30 * 10);
        assert_eq!(m2.processes.len(), 3);
        assert!(merge(vec![a.clone(), a]).is_err(), "duplicate run ids");
    }

    #[test]
    fn frust_merge_warns_without_overlap() {
        let a = frust_run("a", "b", 2, 5, 0);
        let mut b = frust_run("b", "a", 2, 5, 0);
        b.processes[0].all_connected_us = 5_000_000; // after a started sending
        let m = merge(vec![a, b]).unwrap();
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    }

    #[test]
    fn chat_merge_adds_expectations() {
        let chat = |run: &str, expected: u64| {
            let tallies: Vec<Tally> = (0..6)
                .map(|_| Tally {
                    connected: true,
                    own: expected / 6,
                    ..Tally::default()
                })
                .collect();
            single_report(
                params(run, Api::Chat, 6),
                &tallies,
                expected,
                phases(),
                &new_histogram(),
                &new_histogram(),
                Memory::default(),
            )
        };
        let m = merge(vec![chat("a", 60), chat("b", 30)]).unwrap();
        assert_eq!(m.deliveries.expected, 90);
        assert_eq!(m.deliveries.delivered, 90);
        assert_eq!(m.params.rooms, Some(4));
        assert_eq!(m.params.room_size, Some(3));
        assert!(merge(vec![chat("x", 6), frust_run("y", "x", 1, 1, 0)]).is_err());
    }

    #[test]
    fn histograms_round_trip() {
        let mut h = new_histogram();
        for v in [1, 10, 100, 1_000, 59_000_000] {
            h.record(v).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&h)).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.max(), h.max());
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }

    #[test]
    fn errors_add_up() {
        let mut tallies = vec![Tally::default(), Tally::default()];
        tallies[0].connect_error = Some("http 429".into());
        tallies[1].connected = true;
        tallies[1].disconnected = true;
        tallies[1].reject("rate limited; slow down".into());
        tallies[1].unacked = 2;
        let r = single_report(
            params("a", Api::Frust, 2),
            &tallies,
            0,
            phases(),
            &new_histogram(),
            &new_histogram(),
            Memory::default(),
        );
        assert_eq!(r.errors.total, 5);
        assert_eq!(r.connect.failed, 1);
        assert_eq!(r.sends.rejected, 1);
        assert_eq!(r.errors.connect["http 429"], 1);
    }
}
