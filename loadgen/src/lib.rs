//! `switchyard bench`: a load generator that opens real client connections (Socket.IO over
//! Engine.IO v3 or v4, or `/chat`) to one or more edges, sends at a fixed total rate, and
//! measures end-to-end delivery (send → receipt on every receiving client): latency
//! percentiles, deliveries per second, the share of expected deliveries made, connect times
//! and errors. Results print as a table and as JSON; `switchyard bench merge` combines the
//! JSON of several processes (see `stats` for how expected deliveries add up).
//!
//! Cheap by design, so it can share a 2-core machine with the server: one tokio runtime (the
//! binary's), one small task per connection with 4 KiB read buffers, receivers find the
//! marker by substring instead of parsing JSON, latencies go to a shared HdrHistogram in
//! batches. It depends on the schema crate only, never on a role crate.

pub mod args;
pub mod chat;
pub mod marker;
pub mod net;
pub mod report;
pub mod scenario;
pub mod sio;
pub mod stats;
pub mod sys;

use std::path::Path;

pub use args::{BenchAction, BenchArgs, RunArgs};

/// Runs `switchyard bench …`. `jwt_secret` is the binary's global `--jwt-secret`
/// (SWITCHYARD_JWT_SECRET), used to mint chat tokens.
pub async fn run(args: BenchArgs, jwt_secret: Option<String>) -> anyhow::Result<()> {
    let (report, json) = match args.action {
        Some(BenchAction::Merge { files, json }) => {
            let reports = files
                .iter()
                .map(|f| report::read_json(f))
                .collect::<anyhow::Result<Vec<_>>>()?;
            (stats::merge(reports)?, json)
        }
        None => {
            let report = scenario::run(&args.run, jwt_secret).await?;
            (report, args.run.json)
        }
    };
    let table = report::table(&report);
    match &json {
        // stdout carries the JSON alone; the table goes beside it.
        Some(path) if path == Path::new("-") => eprint!("{table}"),
        _ => print!("{table}"),
    }
    if let Some(path) = &json {
        report::write_json(&report, path)?;
    }
    if report.connect.attempted > 0 && report.connect.connected == 0 {
        // The report says why; the exit code tells scripts that nothing was measured.
        anyhow::bail!("no client could connect");
    }
    Ok(())
}
