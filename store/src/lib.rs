//! The store port: everything the roles persist or read, and its adapters. Writes are idempotent
//! on packet ids; counters are absolute values saved with the stream sequence they include.

mod imported;
mod instrumented;
pub mod scylla;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use switchyard_schema::chat::{ChatMessage, HistoryQuery, Room};
use switchyard_schema::frust::{Click, Event, UserRow};

pub use self::scylla::ScyllaStore;
pub use imported::{add_users, served_counts, served_users, ImportedCounters, ImportedCounts};
pub use instrumented::{describe as describe_metrics, Instrumented};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A ScyllaDB request failed; `op` names what the store was doing.
    #[error("scylla ({op}): {source}")]
    Scylla {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The keyspace was migrated by an older build (or not at all).
    #[error("schema version {found}, this build needs {needed}: run `switchyard migrate`")]
    SchemaTooOld { found: u32, needed: u32 },
    #[error("store is shutting down")]
    Closed,
    #[error("bad store url `{0}`: {1}")]
    BadUrl(String, String),
    /// The SQLite file's directory cannot be made (the cause follows in the error chain).
    #[error("cannot create the directory {}", path.display())]
    CreateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The SQLite file cannot be opened or created.
    #[error("cannot open the SQLite file {path}")]
    OpenFile {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The OS refused a thread for the SQLite writer (out of threads or memory).
    #[error("cannot start the SQLite writer thread")]
    WriterThread(#[source] std::io::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The members of `rooms` other than `user_id`, by id, each once: [`Store::room_mates`] for an
/// adapter that reads the rooms themselves.
fn mates_in(rooms: Vec<Room>, user_id: &str) -> Vec<String> {
    let mut mates: Vec<String> = rooms
        .into_iter()
        .flat_map(|r| r.members)
        .filter(|m| m != user_id)
        .collect();
    mates.sort();
    mates.dedup();
    mates
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClick {
    pub id: String,
    pub click: Click,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: String,
    pub event: Event,
}

/// Clicks and events counted in one hour (the hour's start, Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HourCount {
    pub hour: i64,
    pub clicks: i64,
    pub events: i64,
}

/// The aggregator's totals and the last stream sequence they include.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub applied_seq: u64,
    pub clicks: i64,
    pub events: i64,
}

/// One flush of the aggregator: absolute values of everything that changed, saved together
/// with the sequence they include so a restart neither loses nor double counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CounterUpdate {
    pub totals: Totals,
    pub hours: Vec<HourCount>,
    pub users: Vec<UserRow>,
    /// The facts this flush counted: packet id and FACTS sequence, one mark per id. A fact for
    /// an id counted at another sequence is a late duplicate (re-published after the stream's
    /// duplicate window) and is not counted again.
    pub counted: Vec<CountedFact>,
}

/// A packet id the aggregator counted, and the FACTS sequence of the fact it counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedFact {
    pub id: String,
    pub seq: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Persists a click; `false` when a click with this id was already stored. (Two concurrent
    /// inserts of one id may both say `true` on ScyllaDB; the click is stored once either way.)
    async fn insert_click(&self, click: &StoredClick) -> StoreResult<bool>;
    async fn insert_event(&self, event: &StoredEvent) -> StoreResult<bool>;
    /// Stores an ephemeral event as a tally row only: counted by recounts, never listed; `false`
    /// when it was stored already.
    async fn insert_ephemeral_event(&self, event: &StoredEvent) -> StoreResult<bool>;
    /// Stores clicks and events brought from an original Frust database (ids from
    /// `switchyard_schema::id::imported_*_id`), idempotently, as one batch; returns how many
    /// were new. They count through [`Store::save_imported`], never through the aggregator.
    async fn insert_imported(
        &self,
        clicks: &[StoredClick],
        events: &[StoredEvent],
    ) -> StoreResult<u64>;
    /// Replaces the imported counters with `counters` (absolute values).
    async fn save_imported(&self, counters: &ImportedCounters) -> StoreResult<()>;
    /// Imported totals and the imported hours with `hour >= since`, any order.
    async fn imported_counts(&self, since: i64) -> StoreResult<ImportedCounts>;
    /// Imported per-user counts.
    async fn imported_users(&self) -> StoreResult<Vec<UserRow>>;
    /// Clicks with `timestamp >= since`, newest first, at most `limit`.
    async fn clicks_since(&self, since: i64, limit: u32) -> StoreResult<Vec<Click>>;
    async fn events_since(&self, since: i64, limit: u32) -> StoreResult<Vec<Event>>;

    async fn totals(&self) -> StoreResult<Totals>;
    /// Hour counts with `hour >= since`, any order.
    async fn hours_since(&self, since: i64) -> StoreResult<Vec<HourCount>>;
    async fn users(&self) -> StoreResult<Vec<UserRow>>;
    /// Saves a flush. The `counted` marks may be written before the counters (not atomically
    /// with them): a mark is only ever read together with its sequence, so a mark whose
    /// counters were lost in a crash still lets the same fact count when it is replayed.
    async fn save_counters(&self, update: &CounterUpdate) -> StoreResult<()>;
    /// The FACTS sequence each of `ids` was counted at, for the ids that were counted.
    async fn counted_facts(&self, ids: &[String]) -> StoreResult<HashMap<String, u64>>;
    /// Recomputes every counter from the stored clicks and events (ephemeral tally rows
    /// included, imported rows not: they have their own counters) and resets the applied
    /// sequence to 0. For a bus whose streams do not outlive the process (embedded mode).
    async fn rebuild_counters(&self) -> StoreResult<()>;

    /// Creates a room with its owner and members (the room id is new).
    async fn create_room(&self, room: &Room) -> StoreResult<()>;
    async fn room(&self, room_id: &str) -> StoreResult<Option<Room>>;
    /// The rooms `user_id` belongs to, with their members, oldest first.
    async fn rooms_of(&self, user_id: &str) -> StoreResult<Vec<Room>>;
    /// The users who share a room with `user_id` (not `user_id` itself), by id, each once:
    /// whom a user's joining or leaving the chat is told to.
    async fn room_mates(&self, user_id: &str) -> StoreResult<Vec<String>>;
    /// One page of the rooms `user_id` belongs to, with their members, in room id order (room
    /// ids are UUIDv7, so that is creation order), starting after the cursor `after`.
    async fn rooms_page(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<Room>>;
    /// One page of a room's member ids in id order, starting after the cursor `after`.
    async fn members_page(
        &self,
        room_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<String>>;
    /// How many rooms each of `user_ids` belongs to, in the order asked.
    async fn room_counts(&self, user_ids: &[String]) -> StoreResult<Vec<u64>>;
    async fn add_member(&self, room_id: &str, user_id: &str) -> StoreResult<()>;
    async fn remove_member(&self, room_id: &str, user_id: &str) -> StoreResult<()>;
    /// Deletes a room with its memberships (both directions) and its history. Idempotent.
    async fn delete_room(&self, room_id: &str) -> StoreResult<()>;
    /// Persists a chat message and says where it sits in its room's history. Messages of a room
    /// are kept in the order they are inserted; a redelivery stores nothing and gets the
    /// position of the first insert.
    async fn insert_chat_message(&self, message: &StoredChatMessage) -> StoreResult<Placement>;
    /// One page of a room's history: the `limit` messages nearest the cursor (or the newest /
    /// oldest without one, by `order`), after skipping `skip`, in `order`.
    async fn chat_history(&self, query: &HistoryQuery) -> StoreResult<Vec<ChatMessage>>;
    async fn room_message_count(&self, room_id: &str) -> StoreResult<u64>;
}

/// One page of a list read by cursor. `next` is the cursor of the following page (the last item
/// of this one), `None` when this page is the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` items read in order: the extra one only says there is more.
    pub fn from_overread(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> Self {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next = if more { items.last().map(cursor) } else { None };
        Self { items, next }
    }
}

/// Where an inserted chat message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// False when a message with this id was stored before (a redelivery).
    pub newly_stored: bool,
    /// Its position in the room: strictly increasing in history order, so an edge can keep live
    /// delivery in history order whatever order fan-out arrives in. Not dense: only the order
    /// means something. `None` when the id belongs to a message of another room.
    pub position: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChatMessage {
    pub message: ChatMessage,
    pub sent_at_ms: i64,
}

/// Opens the store a URL names, wrapped in [`Instrumented`] (latency and errors per operation):
/// - `sqlite:///abs/path.sqlite` (or a relative path): creates the file and schema if missing;
/// - `scylla://host:9042,host:9042/keyspace[?options]` (see [`scylla::ScyllaUrl`]): refuses a
///   keyspace whose schema is older than this build ([`StoreError::SchemaTooOld`]).
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    match Target::parse(url)? {
        Target::Sqlite(path) => {
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await
                .map_err(|_| StoreError::Closed)??;
            Ok(Arc::new(Instrumented::new(store)))
        }
        Target::Scylla(url) => Ok(Arc::new(Instrumented::new(ScyllaStore::open(&url).await?))),
    }
}

/// Creates or upgrades the schema a URL names (`switchyard migrate`). SQLite applies its
/// idempotent schema; ScyllaDB creates the keyspace if missing and applies the numbered CQL
/// migrations it has not applied yet, recording each version.
pub async fn migrate(url: &str) -> StoreResult<()> {
    match Target::parse(url)? {
        Target::Sqlite(path) => {
            tokio::task::spawn_blocking(move || SqliteStore::open(&path).map(drop))
                .await
                .map_err(|_| StoreError::Closed)?
        }
        Target::Scylla(url) => self::scylla::migrate(&url).await,
    }
}

/// Checks that the store a URL names can be opened, changing nothing (`switchyard
/// check-config`): SQLite, that the file is a writable database or can be created where it
/// would be; ScyllaDB, that the nodes answer and the keyspace's schema suits this build. Says
/// what it found.
pub async fn check(url: &str) -> StoreResult<String> {
    match Target::parse(url)? {
        Target::Sqlite(path) => tokio::task::spawn_blocking(move || SqliteStore::check(&path))
            .await
            .map_err(|_| StoreError::Closed)?,
        Target::Scylla(url) => ScyllaStore::check(&url).await,
    }
}

enum Target {
    Sqlite(String),
    Scylla(self::scylla::ScyllaUrl),
}

impl Target {
    fn parse(url: &str) -> StoreResult<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::BadUrl(url.into(), "missing file path".into()));
            }
            return Ok(Target::Sqlite(path.to_owned()));
        }
        if url.starts_with("scylla://") {
            return Ok(Target::Scylla(self::scylla::ScyllaUrl::parse(url)?));
        }
        Err(StoreError::BadUrl(
            url.into(),
            "supported schemes: sqlite://, scylla://".into(),
        ))
    }
}
