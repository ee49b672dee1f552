//! SQLite adapter: bundled SQLite in WAL mode. One writer thread batches writes into
//! transactions off the async runtime; reads use a small pool of connections on blocking threads.

mod chat;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags};
use switchyard_schema::chat::{ChatMessage, HistoryQuery, Room};
use switchyard_schema::frust::{Click, Event, UserRow};
use tokio::sync::Semaphore;

use crate::{
    CounterUpdate, HourCount, ImportedCounters, ImportedCounts, Page, Placement, Store, StoreError,
    StoreResult, StoredChatMessage, StoredClick, StoredEvent, Totals,
};
use writer::{WriteOp, Writer};

const SCHEMA: &str = include_str!("../../../schema/sql/sqlite.sql");
const READ_CONNECTIONS: usize = 4;
/// Page cache per read connection, in KiB (SQLite's default is 2,000).
const READER_CACHE_KIB: i64 = 256;

pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit per read connection: a burst of reads waits for one rather than opening
    /// more (each kept connection holds its schema and page cache for good).
    read_permits: Arc<Semaphore>,
    path: String,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers (and other processes sharing the file) proceed while one writes.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Columns added after a table first shipped: `CREATE TABLE IF NOT EXISTS` leaves an existing
/// table as it was, so files made by an older build get them here.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("chat_rooms", "owner", "TEXT")];

fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, decl) in ADDED_COLUMNS {
        let present: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            [table, column],
            |r| r.get(0),
        )?;
        if !present {
            let added =
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"));
            // Another process sharing the file may have added it meanwhile: fine.
            if let Err(e) = added {
                if !e.to_string().contains("duplicate column name") {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &str) -> StoreResult<Self> {
        if let Some(dir) = Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.to_owned(),
                    source,
                })?;
            }
        }
        let conn = Connection::open(path).map_err(|source| StoreError::OpenFile {
            path: path.to_owned(),
            source,
        })?;
        configure(&conn)?;
        conn.execute_batch(SCHEMA)?;
        add_missing_columns(&conn)?;
        let writer = Writer::start(conn)?;
        let mut readers = Vec::with_capacity(READ_CONNECTIONS);
        for _ in 0..READ_CONNECTIONS {
            readers.push(Self::read_connection(path)?);
        }
        Ok(Self {
            writer,
            readers: Arc::new(Mutex::new(readers)),
            read_permits: Arc::new(Semaphore::new(READ_CONNECTIONS)),
            path: path.to_owned(),
        })
    }

    /// What `open` would find at `path`, without creating or changing anything.
    pub fn check(path: &str) -> StoreResult<String> {
        let file = Path::new(path);
        if file.exists() {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            if conn.is_readonly(rusqlite::MAIN_DB)? {
                return Err(StoreError::BadUrl(
                    path.into(),
                    "the database file is not writable".into(),
                ));
            }
            // Reads the header: a file that is not a database fails here.
            let tables: i64 =
                conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
            return Ok(match tables {
                0 => format!("{path}: an empty database (the schema is created at start)"),
                n => format!("{path}: a writable database ({n} schema objects)"),
            });
        }
        // Missing: `open` creates it and its directories under the nearest existing ancestor.
        let mut ancestor = file.parent();
        while let Some(dir) = ancestor {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(meta) = std::fs::metadata(dir) {
                if !meta.is_dir() {
                    return Err(StoreError::BadUrl(
                        path.into(),
                        format!("{} is not a directory", dir.display()),
                    ));
                }
                if meta.permissions().readonly() {
                    return Err(StoreError::BadUrl(
                        path.into(),
                        format!("{} is not writable", dir.display()),
                    ));
                }
                return Ok(format!(
                    "{path}: absent, created at start (under {})",
                    dir.display()
                ));
            }
            ancestor = dir.parent();
        }
        Ok(format!("{path}: absent, created at start"))
    }

    fn read_connection(path: &str) -> StoreResult<Connection> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Each reader's page cache is private, so the four would hold four copies of the same
        // hot pages (2 MiB each by default); the OS page cache keeps the file anyway. The reads
        // are index lookups touching a few pages each.
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
        Ok(conn)
    }

    /// Runs a read on a pooled connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = self
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // Empty only if a read panicked and lost its connection: open its replacement.
            let conn = match readers.lock().pop() {
                Some(c) => c,
                None => Self::read_connection(&path)?,
            };
            let result = f(&conn);
            readers.lock().push(conn);
            Ok(result?)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_click(&self, click: &StoredClick) -> StoreResult<bool> {
        self.writer.run(WriteOp::InsertClick(click.clone())).await
    }

    async fn insert_event(&self, event: &StoredEvent) -> StoreResult<bool> {
        self.writer.run(WriteOp::InsertEvent(event.clone())).await
    }

    async fn insert_ephemeral_event(&self, event: &StoredEvent) -> StoreResult<bool> {
        self.writer
            .run(WriteOp::InsertEphemeralEvent(event.clone()))
            .await
    }

    async fn insert_imported(
        &self,
        clicks: &[StoredClick],
        events: &[StoredEvent],
    ) -> StoreResult<u64> {
        self.writer
            .run(WriteOp::InsertImported(clicks.to_vec(), events.to_vec()))
            .await
    }

    async fn save_imported(&self, counters: &ImportedCounters) -> StoreResult<()> {
        self.writer
            .run(WriteOp::SaveImported(counters.clone()))
            .await
    }

    async fn imported_counts(&self, since: i64) -> StoreResult<ImportedCounts> {
        self.read(move |c| {
            let (clicks, events) = c
                .prepare_cached(
                    "SELECT click_total, event_total FROM frust_imported_totals WHERE id = 1",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok((0, 0)),
                    e => Err(e),
                })?;
            let mut stmt = c.prepare_cached(
                "SELECT hour, click_count, event_count FROM frust_imported_hours WHERE hour >= ?1",
            )?;
            let hours = stmt
                .query_map([since], |r| {
                    Ok(HourCount {
                        hour: r.get(0)?,
                        clicks: r.get(1)?,
                        events: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ImportedCounts {
                clicks,
                events,
                hours,
            })
        })
        .await
    }

    async fn imported_users(&self) -> StoreResult<Vec<UserRow>> {
        self.read(|c| user_rows(c, "frust_imported_users")).await
    }

    async fn clicks_since(&self, since: i64, limit: u32) -> StoreResult<Vec<Click>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT user, comment, style, timestamp FROM frust_clicks
                 WHERE timestamp >= ?1 ORDER BY timestamp DESC, id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![since, limit], |r| {
                Ok(Click {
                    user: r.get(0)?,
                    comment: r.get(1)?,
                    style: r.get(2)?,
                    timestamp: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn events_since(&self, since: i64, limit: u32) -> StoreResult<Vec<Event>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT user, name, timestamp FROM frust_events
                 WHERE timestamp >= ?1 ORDER BY timestamp DESC, id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![since, limit], |r| {
                Ok(Event {
                    user: r.get(0)?,
                    name: r.get(1)?,
                    timestamp: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn totals(&self) -> StoreResult<Totals> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT applied_seq, click_total, event_total FROM aggregator_checkpoint WHERE id = 1",
            )?;
            let mut rows = stmt.query([])?;
            Ok(match rows.next()? {
                Some(r) => Totals {
                    applied_seq: r.get::<_, i64>(0)? as u64,
                    clicks: r.get(1)?,
                    events: r.get(2)?,
                },
                None => Totals::default(),
            })
        })
        .await
    }

    async fn hours_since(&self, since: i64) -> StoreResult<Vec<HourCount>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT hour, click_count, event_count FROM frust_hours WHERE hour >= ?1",
            )?;
            let rows = stmt.query_map([since], |r| {
                Ok(HourCount {
                    hour: r.get(0)?,
                    clicks: r.get(1)?,
                    events: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn users(&self) -> StoreResult<Vec<UserRow>> {
        self.read(|c| user_rows(c, "frust_users")).await
    }

    async fn save_counters(&self, update: &CounterUpdate) -> StoreResult<()> {
        self.writer.run(WriteOp::SaveCounters(update.clone())).await
    }

    async fn counted_facts(
        &self,
        ids: &[String],
    ) -> StoreResult<std::collections::HashMap<String, u64>> {
        let ids = ids.to_vec();
        self.read(move |c| {
            let mut counted = std::collections::HashMap::new();
            // Within SQLite's limit on bound parameters.
            for chunk in ids.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(",");
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT id, seq FROM aggregator_counted WHERE id IN ({marks})"
                ))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(chunk), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?;
                for row in rows {
                    let (id, seq) = row?;
                    counted.insert(id, seq);
                }
            }
            Ok(counted)
        })
        .await
    }

    async fn rebuild_counters(&self) -> StoreResult<()> {
        self.writer.run(WriteOp::RebuildCounters).await
    }

    async fn create_room(&self, room: &Room) -> StoreResult<()> {
        self.writer.run(WriteOp::CreateRoom(room.clone())).await
    }

    async fn room(&self, room_id: &str) -> StoreResult<Option<Room>> {
        let room_id = room_id.to_owned();
        self.read(move |c| chat::room(c, &room_id)).await
    }

    async fn rooms_of(&self, user_id: &str) -> StoreResult<Vec<Room>> {
        let user_id = user_id.to_owned();
        self.read(move |c| chat::rooms_of(c, &user_id)).await
    }

    async fn room_mates(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let user_id = user_id.to_owned();
        self.read(move |c| chat::room_mates(c, &user_id)).await
    }

    async fn rooms_page(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<Room>> {
        let (user_id, after) = (user_id.to_owned(), after.map(str::to_owned));
        self.read(move |c| chat::rooms_page(c, &user_id, after.as_deref(), limit))
            .await
    }

    async fn members_page(
        &self,
        room_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<String>> {
        let (room_id, after) = (room_id.to_owned(), after.map(str::to_owned));
        self.read(move |c| chat::members_page(c, &room_id, after.as_deref(), limit))
            .await
    }

    async fn room_counts(&self, user_ids: &[String]) -> StoreResult<Vec<u64>> {
        let user_ids = user_ids.to_vec();
        self.read(move |c| chat::room_counts(c, &user_ids)).await
    }

    async fn delete_room(&self, room_id: &str) -> StoreResult<()> {
        self.writer
            .run(WriteOp::DeleteRoom(room_id.to_owned()))
            .await
    }

    async fn add_member(&self, room_id: &str, user_id: &str) -> StoreResult<()> {
        self.writer
            .run(WriteOp::AddMember(room_id.to_owned(), user_id.to_owned()))
            .await
    }

    async fn remove_member(&self, room_id: &str, user_id: &str) -> StoreResult<()> {
        self.writer
            .run(WriteOp::RemoveMember(
                room_id.to_owned(),
                user_id.to_owned(),
            ))
            .await
    }

    async fn insert_chat_message(&self, message: &StoredChatMessage) -> StoreResult<Placement> {
        self.writer
            .run(WriteOp::InsertChatMessage(message.clone()))
            .await
    }

    async fn chat_history(&self, query: &HistoryQuery) -> StoreResult<Vec<ChatMessage>> {
        let query = query.clone();
        self.read(move |c| chat::history(c, &query)).await
    }

    async fn room_message_count(&self, room_id: &str) -> StoreResult<u64> {
        let room_id = room_id.to_owned();
        self.read(move |c| chat::message_count(c, &room_id)).await
    }
}

/// Every row of a per-user counter table (the aggregator's or the import's), by name.
fn user_rows(c: &Connection, table: &str) -> rusqlite::Result<Vec<UserRow>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT name, click_count, event_count FROM {table} ORDER BY name"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(UserRow {
            name: r.get(0)?,
            click_count: r.get(1)?,
            event_count: r.get(2)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of slow reads shares the fixed pool: before the bound, every read that found
    /// the pool empty opened a connection and kept it, one per blocking thread (up to 512).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_reads_opens_no_connection_beyond_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Arc::new(SqliteStore::open(path.to_str().unwrap()).unwrap());
        let reads: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .read(|c| {
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                        })
                        .await
                })
            })
            .collect();
        for read in reads {
            assert_eq!(read.await.unwrap().unwrap(), 1);
        }
        assert_eq!(store.readers.lock().len(), READ_CONNECTIONS);
    }
}
