//! `switchyard import frust-sqlite PATH`: brings an original Frust deployment's data into the
//! configured store, with the server stopped or running.
//!
//! How the counts stay exact next to a live aggregator: imported rows are stored under ids
//! derived from the original rows (`frust-import-click-<id>`), idempotently, and never published
//! to the FACTS stream; their counters are computed here from the whole source and saved at the
//! end as absolute values in their own tables (`frust_imported_*`), which the REST routes and
//! the hourly stats add to the aggregator's. The aggregator's counters, checkpoint and counted
//! marks never learn of the import, so nothing it does (flushes of absolute values, replays,
//! recounts, which skip imported ids) can lose or double an imported count, and live traffic
//! counts on top. Going through the bus instead was rejected: it needs the running bus (an
//! embedded server's is inside its process), and a million facts through the aggregator would
//! cost far more than batched inserts. Running again (or after an interruption) re-inserts
//! nothing and writes the same counters.
//!
//! Modules: `reader` (the original's tables), `rules` (cleaning a row), `tally` (counters and
//! disagreements), `writer` (batches to the store), `progress` (bar or lines).

mod progress;
mod reader;
mod rules;
mod tally;
#[cfg(test)]
mod tests;
mod writer;

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use switchyard_schema::Clock;
use tokio::sync::mpsc;

use progress::Progress;
use reader::{OriginalHour, OriginalUser, Source};
pub use tally::Trust;
use tally::{Findings, Tally};
use writer::{Batch, Written};

#[derive(Debug, clap::Subcommand)]
pub enum ImportSource {
    /// The original backend's SQLite file (`db.sqlite`).
    FrustSqlite(FrustSqliteArgs),
}

#[derive(Debug, clap::Args)]
pub struct FrustSqliteArgs {
    /// Path of the original's `db.sqlite` (opened read-only).
    pub path: PathBuf,
    /// Where the rows and the original's own `users`/`hours` counters disagree: count the rows
    /// (`rows`) or keep the original's counters (`original`). Every disagreement is reported.
    #[arg(long, value_enum, default_value = "rows")]
    pub counters: Trust,
    /// Rows written per store batch (one transaction on SQLite).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
}

/// Runs an import; prints the report and the summary on stderr, the summary as one JSON line
/// on stdout.
/// Rows after the configured clock's now (the servers' clock) are future rows.
pub async fn run(store_url: &str, clock: Clock, source: ImportSource) -> anyhow::Result<()> {
    let ImportSource::FrustSqlite(args) = source;
    let store = switchyard_store::open(store_url)
        .await
        .with_context(|| format!("cannot open the store {store_url}"))?;
    let summary = import(&*store, &args, clock.now()).await?;
    println!("{}", summary.json());
    Ok(())
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub rows: u64,
    pub clicks: Written,
    pub events: Written,
    pub skipped: u64,
    pub repaired: u64,
    pub disagreements: u64,
    pub ephemeral_events: i64,
    pub click_total: i64,
    pub event_total: i64,
    pub users: usize,
    pub hours: usize,
    pub seconds: f64,
}

impl Summary {
    fn json(&self) -> serde_json::Value {
        json!({
            "rows": self.rows,
            "clicks_stored": self.clicks.new,
            "clicks_present": self.clicks.present,
            "events_stored": self.events.new,
            "events_present": self.events.present,
            "skipped": self.skipped,
            "repaired": self.repaired,
            "disagreements": self.disagreements,
            "ephemeral_events": self.ephemeral_events,
            "click_total": self.click_total,
            "event_total": self.event_total,
            "users": self.users,
            "hours": self.hours,
            "seconds": self.seconds,
        })
    }
}

/// What the reading thread hands back when the rows are through.
struct Read {
    tally: Tally,
    users: Vec<OriginalUser>,
    hours: Vec<OriginalHour>,
}

/// Imports `args.path` into `store`; rows timestamped after `now` are skipped.
pub async fn import(
    store: &dyn switchyard_store::Store,
    args: &FrustSqliteArgs,
    now: i64,
) -> anyhow::Result<Summary> {
    let source = Source::open(&args.path)?;
    let (clicks, events) = source.row_counts()?;
    let mut progress = Progress::new(clicks + events);
    progress.line(&format!(
        "import: {} clicks and {} events from {}",
        clicks,
        events,
        args.path.display()
    ));
    // Reading and cleaning on a thread of its own, one batch ahead of the store's writes.
    let (tx, mut rx) = mpsc::channel::<Batch>(2);
    let page = args.batch as usize;
    let reading = tokio::task::spawn_blocking(move || read_all(source, page, now, tx));

    let mut summary = Summary::default();
    while let Some(batch) = rx.recv().await {
        for line in &batch.skipped {
            progress.line(&format!("skipped {line}"));
        }
        for line in &batch.repaired {
            progress.line(&format!("repaired {line}"));
        }
        // A batch holds clicks or events, never both (see `read_all`).
        let written = writer::write(store, &batch).await?;
        let kind = if batch.clicks.is_empty() {
            &mut summary.events
        } else {
            &mut summary.clicks
        };
        kind.new += written.new;
        kind.present += written.present;
        summary.rows += batch.rows;
        summary.skipped += batch.skipped.len() as u64;
        summary.repaired += batch.repaired.len() as u64;
        progress.advance(batch.rows);
    }
    let Read {
        tally,
        users,
        hours,
    } = reading.await.context("the reading thread failed")??;
    progress.finish();

    let (counters, findings) = tally::reconcile(tally, &users, &hours, args.counters, now);
    let Findings {
        disagreements,
        ephemeral_events,
    } = findings;
    for line in &disagreements {
        progress.line(&format!("disagreement: {line}"));
    }
    // Last, and whole: until here the imported rows count nothing, so an interrupted import
    // never leaves counters that disagree with what a complete one would write.
    store.save_imported(&counters).await?;

    summary.disagreements = disagreements.len() as u64;
    summary.ephemeral_events = ephemeral_events;
    summary.click_total = counters.counts.clicks;
    summary.event_total = counters.counts.events;
    summary.users = counters.users.len();
    summary.hours = counters.counts.hours.len();
    summary.seconds = progress.elapsed().as_secs_f64();
    progress.line(&format!(
        "import done in {:.1}s ({:.0} rows/s): {} rows read; clicks {} stored, {} already there; \
         events {} stored, {} already there; {} skipped, {} repaired; {} disagreements (kept: \
         {} counters); {} ephemeral events counted from the original's hours; totals now \
         include {} clicks and {} events of {} users",
        summary.seconds,
        progress.rate(),
        summary.rows,
        summary.clicks.new,
        summary.clicks.present,
        summary.events.new,
        summary.events.present,
        summary.skipped,
        summary.repaired,
        summary.disagreements,
        match args.counters {
            Trust::Rows => "the rows'",
            Trust::Original => "the original's",
        },
        summary.ephemeral_events,
        summary.click_total,
        summary.event_total,
        summary.users,
    ));
    Ok(summary)
}

/// Reads every click, then every event, page by page; cleans and tallies each row.
fn read_all(
    source: Source,
    page: usize,
    now: i64,
    tx: mpsc::Sender<Batch>,
) -> anyhow::Result<Read> {
    let mut tally = Tally::default();
    let mut after = i64::MIN;
    loop {
        let rows = source.clicks_after(after, page)?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        let mut batch = Batch {
            rows: rows.len() as u64,
            ..Batch::default()
        };
        for raw in rows {
            match rules::click(&raw, now) {
                Ok(cleaned) => {
                    if !cleaned.repairs.is_empty() {
                        let repairs = cleaned.repairs.join("; ");
                        batch
                            .repaired
                            .push(format!("clicks id {}: {repairs}", raw.id));
                    }
                    tally.click(&cleaned.row.user, cleaned.row.timestamp);
                    batch.click(raw.id, cleaned.row);
                }
                Err(why) => batch.skipped.push(format!("clicks id {}: {why}", raw.id)),
            }
        }
        if tx.blocking_send(batch).is_err() {
            anyhow::bail!("import stopped");
        }
    }
    let mut after = i64::MIN;
    loop {
        let rows = source.events_after(after, page)?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        let mut batch = Batch {
            rows: rows.len() as u64,
            ..Batch::default()
        };
        for raw in rows {
            match rules::event(&raw, now) {
                Ok(cleaned) => {
                    if !cleaned.repairs.is_empty() {
                        let repairs = cleaned.repairs.join("; ");
                        batch
                            .repaired
                            .push(format!("events id {}: {repairs}", raw.id));
                    }
                    tally.event(&cleaned.row.user, cleaned.row.timestamp);
                    batch.event(raw.id, cleaned.row);
                }
                Err(why) => batch.skipped.push(format!("events id {}: {why}", raw.id)),
            }
        }
        if tx.blocking_send(batch).is_err() {
            anyhow::bail!("import stopped");
        }
    }
    Ok(Read {
        tally,
        users: source.users()?,
        hours: source.hours()?,
    })
}
