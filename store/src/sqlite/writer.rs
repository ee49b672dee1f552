//! The single SQLite writer. Async callers queue operations; a dedicated thread takes whatever
//! is queued (up to a batch), runs it in one transaction and answers each caller after commit,
//! so a burst of clicks costs one fsync instead of one per click.

use rusqlite::{params, Connection, Transaction};
use tokio::sync::oneshot;

use switchyard_schema::chat::Room;

use switchyard_schema::id::IMPORTED_PREFIX;

use crate::{
    CounterUpdate, ImportedCounters, Placement, StoreError, StoreResult, StoredChatMessage,
    StoredClick, StoredEvent,
};

const MAX_BATCH: usize = 512;

pub(crate) enum WriteOp {
    InsertClick(StoredClick),
    InsertEvent(StoredEvent),
    InsertEphemeralEvent(StoredEvent),
    /// One import batch, in one transaction: thousands of rows for one commit.
    InsertImported(Vec<StoredClick>, Vec<StoredEvent>),
    SaveImported(ImportedCounters),
    SaveCounters(CounterUpdate),
    RebuildCounters,
    CreateRoom(Room),
    AddMember(String, String),
    RemoveMember(String, String),
    DeleteRoom(String),
    InsertChatMessage(StoredChatMessage),
}

/// The reply channel of one queued operation, typed by what it answers.
pub(crate) enum Reply {
    Inserted(oneshot::Sender<StoreResult<bool>>),
    Placed(oneshot::Sender<StoreResult<Placement>>),
    Counted(oneshot::Sender<StoreResult<u64>>),
    Done(oneshot::Sender<StoreResult<()>>),
}

/// What one operation produced inside the transaction.
enum Outcome {
    Inserted(bool),
    Placed(Placement),
    Counted(u64),
    Done,
}

struct Job {
    op: WriteOp,
    reply: Reply,
}

pub(crate) struct Writer {
    tx: std::sync::mpsc::Sender<Job>,
}

/// Something that can come back from the writer thread.
pub(crate) trait FromOutcome: Sized + Send + 'static {
    fn channel() -> (Reply, oneshot::Receiver<StoreResult<Self>>);
}

impl FromOutcome for bool {
    fn channel() -> (Reply, oneshot::Receiver<StoreResult<Self>>) {
        let (tx, rx) = oneshot::channel();
        (Reply::Inserted(tx), rx)
    }
}

impl FromOutcome for Placement {
    fn channel() -> (Reply, oneshot::Receiver<StoreResult<Self>>) {
        let (tx, rx) = oneshot::channel();
        (Reply::Placed(tx), rx)
    }
}

impl FromOutcome for u64 {
    fn channel() -> (Reply, oneshot::Receiver<StoreResult<Self>>) {
        let (tx, rx) = oneshot::channel();
        (Reply::Counted(tx), rx)
    }
}

impl FromOutcome for () {
    fn channel() -> (Reply, oneshot::Receiver<StoreResult<Self>>) {
        let (tx, rx) = oneshot::channel();
        (Reply::Done(tx), rx)
    }
}

impl Writer {
    pub(crate) fn start(conn: Connection) -> StoreResult<Self> {
        // Registered before the first batch, so the panels have a series from the start.
        let _ = metrics::histogram!("switchyard_store_batch_seconds");
        let _ = metrics::histogram!("switchyard_store_batch_size");
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(StoreError::WriterThread)?;
        Ok(Self { tx })
    }

    pub(crate) async fn run<T: FromOutcome>(&self, op: WriteOp) -> StoreResult<T> {
        let (reply, rx) = T::channel();
        self.tx
            .send(Job { op, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn run(mut conn: Connection, rx: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let size = batch.len();
        write_batch(&mut conn, batch);
        metrics::histogram!("switchyard_store_batch_seconds").record(started.elapsed());
        metrics::histogram!("switchyard_store_batch_size").record(size as f64);
    }
}

fn write_batch(conn: &mut Connection, batch: Vec<Job>) {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return fail_all(batch, &e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let outcome = apply(&tx, job.op);
        results.push((job.reply, outcome));
    }
    match tx.commit() {
        Ok(()) => {
            for (reply, outcome) in results {
                answer(reply, outcome.map_err(StoreError::from));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "sqlite commit failed");
            for (reply, _) in results {
                answer(reply, Err(StoreError::Sqlite(clone_error(&e))));
            }
        }
    }
}

fn fail_all(batch: Vec<Job>, e: &rusqlite::Error) {
    tracing::error!(error = %e, "sqlite transaction failed to start");
    for job in batch {
        answer(job.reply, Err(StoreError::Sqlite(clone_error(e))));
    }
}

fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.to_string().into())
}

fn answer(reply: Reply, outcome: StoreResult<Outcome>) {
    // A caller that gave up waiting is not an error of the write.
    match reply {
        Reply::Inserted(tx) => {
            let _ = tx.send(outcome.map(|o| matches!(o, Outcome::Inserted(true))));
        }
        Reply::Placed(tx) => {
            let _ = tx.send(outcome.map(|o| match o {
                Outcome::Placed(p) => p,
                _ => Placement {
                    newly_stored: false,
                    position: None,
                },
            }));
        }
        Reply::Counted(tx) => {
            let _ = tx.send(outcome.map(|o| match o {
                Outcome::Counted(n) => n,
                _ => 0,
            }));
        }
        Reply::Done(tx) => {
            let _ = tx.send(outcome.map(|_| ()));
        }
    }
}

fn apply(tx: &Transaction<'_>, op: WriteOp) -> rusqlite::Result<Outcome> {
    match op {
        WriteOp::InsertClick(c) => Ok(Outcome::Inserted(insert_click(tx, &c)?)),
        WriteOp::InsertEvent(e) => Ok(Outcome::Inserted(insert_event(tx, "frust_events", &e)?)),
        WriteOp::InsertEphemeralEvent(e) => Ok(Outcome::Inserted(insert_event(
            tx,
            "frust_ephemeral_events",
            &e,
        )?)),
        WriteOp::InsertImported(clicks, events) => {
            let mut new = 0;
            for c in &clicks {
                new += u64::from(insert_click(tx, c)?);
            }
            for e in &events {
                new += u64::from(insert_event(tx, "frust_events", e)?);
            }
            Ok(Outcome::Counted(new))
        }
        WriteOp::SaveImported(counters) => {
            save_imported(tx, &counters)?;
            Ok(Outcome::Done)
        }
        WriteOp::SaveCounters(u) => {
            save_counters(tx, &u)?;
            Ok(Outcome::Done)
        }
        WriteOp::RebuildCounters => {
            rebuild_counters(tx)?;
            Ok(Outcome::Done)
        }
        WriteOp::CreateRoom(room) => {
            tx.prepare_cached(
                "INSERT INTO chat_rooms (room_id, name, owner, created_ms)
                 VALUES (?1, ?2, ?3, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
            )?
            .execute(params![room.room_id, room.name, room.owner])?;
            for member in &room.members {
                add_member(tx, &room.room_id, member)?;
            }
            Ok(Outcome::Done)
        }
        WriteOp::AddMember(room_id, user_id) => {
            add_member(tx, &room_id, &user_id)?;
            Ok(Outcome::Done)
        }
        WriteOp::RemoveMember(room_id, user_id) => {
            tx.prepare_cached("DELETE FROM chat_members WHERE room_id = ?1 AND user_id = ?2")?
                .execute(params![room_id, user_id])?;
            Ok(Outcome::Done)
        }
        WriteOp::DeleteRoom(room_id) => {
            for sql in [
                "DELETE FROM chat_members WHERE room_id = ?1",
                "DELETE FROM chat_messages WHERE room_id = ?1",
                "DELETE FROM chat_rooms WHERE room_id = ?1",
            ] {
                tx.prepare_cached(sql)?.execute([&room_id])?;
            }
            Ok(Outcome::Done)
        }
        WriteOp::InsertChatMessage(m) => {
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO chat_messages
                       (id, room_id, sender_id, message, timestamp, sent_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    m.message.id,
                    m.message.room_id,
                    m.message.sender_id,
                    m.message.message,
                    m.message.timestamp,
                    m.sent_at_ms
                ])?;
            // The room's order is `seq`; a redelivery reads the one its first insert got.
            let (room_id, seq): (String, i64) = tx
                .prepare_cached("SELECT room_id, seq FROM chat_messages WHERE id = ?1")?
                .query_row([&m.message.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(Outcome::Placed(Placement {
                newly_stored: n == 1,
                position: (room_id == m.message.room_id).then_some(seq),
            }))
        }
    }
}

fn insert_click(tx: &Transaction<'_>, c: &StoredClick) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO frust_clicks (id, user, comment, style, timestamp)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            c.id,
            c.click.user,
            c.click.comment,
            c.click.style,
            c.click.timestamp
        ])?;
    Ok(n == 1)
}

/// Into `frust_events` or the ephemeral tally (same columns).
fn insert_event(tx: &Transaction<'_>, table: &str, e: &StoredEvent) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO {table} (id, user, name, timestamp) VALUES (?1, ?2, ?3, ?4)"
        ))?
        .execute(params![e.id, e.event.user, e.event.name, e.event.timestamp])?;
    Ok(n == 1)
}

fn save_imported(tx: &Transaction<'_>, c: &ImportedCounters) -> rusqlite::Result<()> {
    tx.execute_batch(
        "DELETE FROM frust_imported_hours; DELETE FROM frust_imported_users;
         DELETE FROM frust_imported_totals;",
    )?;
    tx.prepare_cached(
        "INSERT INTO frust_imported_totals (id, click_total, event_total) VALUES (1, ?1, ?2)",
    )?
    .execute(params![c.counts.clicks, c.counts.events])?;
    let mut hour = tx.prepare_cached(
        "INSERT INTO frust_imported_hours (hour, click_count, event_count) VALUES (?1, ?2, ?3)",
    )?;
    for h in &c.counts.hours {
        hour.execute(params![h.hour, h.clicks, h.events])?;
    }
    let mut user = tx.prepare_cached(
        "INSERT INTO frust_imported_users (name, click_count, event_count) VALUES (?1, ?2, ?3)",
    )?;
    for u in &c.users {
        user.execute(params![u.name, u.click_count, u.event_count])?;
    }
    Ok(())
}

fn add_member(tx: &Transaction<'_>, room_id: &str, user_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO chat_members (room_id, user_id) VALUES (?1, ?2)")?
        .execute(params![room_id, user_id])?;
    Ok(())
}

fn save_counters(tx: &Transaction<'_>, u: &CounterUpdate) -> rusqlite::Result<()> {
    let mut hour = tx.prepare_cached(
        "INSERT INTO frust_hours (hour, click_count, event_count) VALUES (?1, ?2, ?3)
         ON CONFLICT (hour) DO UPDATE SET click_count = excluded.click_count,
                                          event_count = excluded.event_count",
    )?;
    for h in &u.hours {
        hour.execute(params![h.hour, h.clicks, h.events])?;
    }
    let mut user = tx.prepare_cached(
        "INSERT INTO frust_users (name, click_count, event_count) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET click_count = excluded.click_count,
                                          event_count = excluded.event_count",
    )?;
    for r in &u.users {
        user.execute(params![r.name, r.click_count, r.event_count])?;
    }
    let mut counted = tx.prepare_cached(
        "INSERT INTO aggregator_counted (id, seq) VALUES (?1, ?2)
         ON CONFLICT (id) DO NOTHING",
    )?;
    for c in &u.counted {
        counted.execute(params![c.id, c.seq as i64])?;
    }
    tx.prepare_cached(
        "INSERT INTO aggregator_checkpoint (id, applied_seq, click_total, event_total)
         VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET applied_seq = excluded.applied_seq,
             click_total = excluded.click_total, event_total = excluded.event_total",
    )?
    .execute(params![
        u.totals.applied_seq as i64,
        u.totals.clicks,
        u.totals.events
    ])?;
    Ok(())
}

/// Imported rows are left out (they have their own counters); ephemeral tally rows count in
/// the hours and totals, not per user.
fn rebuild_counters(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let live = format!("id NOT LIKE '{IMPORTED_PREFIX}%'");
    tx.execute_batch(&format!(
        "DELETE FROM frust_hours;
         INSERT INTO frust_hours (hour, click_count, event_count)
           SELECT hour, SUM(c), SUM(e) FROM (
             SELECT timestamp - (timestamp % 3600) AS hour, 1 AS c, 0 AS e FROM frust_clicks
               WHERE {live}
             UNION ALL
             SELECT timestamp - (timestamp % 3600) AS hour, 0 AS c, 1 AS e FROM frust_events
               WHERE {live}
             UNION ALL
             SELECT timestamp - (timestamp % 3600) AS hour, 0 AS c, 1 AS e
               FROM frust_ephemeral_events)
           GROUP BY hour;
         DELETE FROM frust_users;
         INSERT INTO frust_users (name, click_count, event_count)
           SELECT user, SUM(c), SUM(e) FROM (
             SELECT user, 1 AS c, 0 AS e FROM frust_clicks WHERE {live}
             UNION ALL
             SELECT user, 0 AS c, 1 AS e FROM frust_events WHERE {live})
           GROUP BY user;
         INSERT INTO aggregator_checkpoint (id, applied_seq, click_total, event_total)
           VALUES (1, 0, (SELECT COUNT(*) FROM frust_clicks WHERE {live}),
                   (SELECT COUNT(*) FROM frust_events WHERE {live})
                     + (SELECT COUNT(*) FROM frust_ephemeral_events))
           ON CONFLICT (id) DO UPDATE SET applied_seq = 0,
             click_total = excluded.click_total, event_total = excluded.event_total;"
    ))
}
