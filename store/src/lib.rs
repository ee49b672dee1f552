//! The store port: everything the roles persist or read, and its adapters. Writes are idempotent
//! on packet ids; counters are absolute values saved with the stream sequence they include.

pub mod sqlite;

use async_trait::async_trait;
use switchyard_schema::chat::{ChatMessage, HistoryQuery, Room};
use switchyard_schema::frust::{Click, Event, UserRow};

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store is shutting down")]
    Closed,
    #[error("bad store url `{0}`: {1}")]
    BadUrl(String, &'static str),
    #[error("store i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

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
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Persists a click; `false` when a click with this id was already stored.
    async fn insert_click(&self, click: &StoredClick) -> StoreResult<bool>;
    async fn insert_event(&self, event: &StoredEvent) -> StoreResult<bool>;
    /// Clicks with `timestamp >= since`, newest first, at most `limit`.
    async fn clicks_since(&self, since: i64, limit: u32) -> StoreResult<Vec<Click>>;
    async fn events_since(&self, since: i64, limit: u32) -> StoreResult<Vec<Event>>;

    async fn totals(&self) -> StoreResult<Totals>;
    /// Hour counts with `hour >= since`, any order.
    async fn hours_since(&self, since: i64) -> StoreResult<Vec<HourCount>>;
    async fn users(&self) -> StoreResult<Vec<UserRow>>;
    async fn save_counters(&self, update: &CounterUpdate) -> StoreResult<()>;
    /// Recomputes every counter from the stored clicks and events and resets the applied
    /// sequence to 0. For a bus whose streams do not outlive the process (embedded mode).
    async fn rebuild_counters(&self) -> StoreResult<()>;

    /// Creates a room with its members (the room id is new).
    async fn create_room(&self, room: &Room) -> StoreResult<()>;
    async fn room(&self, room_id: &str) -> StoreResult<Option<Room>>;
    /// The rooms `user_id` belongs to, with their members.
    async fn rooms_of(&self, user_id: &str) -> StoreResult<Vec<Room>>;
    async fn add_member(&self, room_id: &str, user_id: &str) -> StoreResult<()>;
    async fn remove_member(&self, room_id: &str, user_id: &str) -> StoreResult<()>;
    /// Persists a chat message; `false` when one with this id was already stored. Messages of a
    /// room are kept in the order they are inserted.
    async fn insert_chat_message(&self, message: &StoredChatMessage) -> StoreResult<bool>;
    /// One page of a room's history: the `limit` messages nearest the cursor (or the newest /
    /// oldest without one, by `order`), after skipping `skip`, in `order`.
    async fn chat_history(&self, query: &HistoryQuery) -> StoreResult<Vec<ChatMessage>>;
    async fn room_message_count(&self, room_id: &str) -> StoreResult<u64>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChatMessage {
    pub message: ChatMessage,
    pub sent_at_ms: i64,
}

/// Opens the store a URL names: `sqlite:///abs/path.db` (ScyllaDB comes with its own adapter).
pub fn open(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::BadUrl(url.into(), "missing file path"));
        }
        return Ok(std::sync::Arc::new(SqliteStore::open(path)?));
    }
    Err(StoreError::BadUrl(
        url.into(),
        "supported scheme: sqlite://",
    ))
}
