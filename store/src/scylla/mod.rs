//! ScyllaDB adapter, the store of cluster mode. The data model and its reasons are in the CQL
//! (schema/cql/); capacity numbers in docs/capacity.md. Behaviour matches the SQLite adapter
//! for every method of the port: the same contract suite runs against both.
//!
//! Modules: `url` (the store URL), `session` (driver configuration), `exec` (in-flight bound,
//! retries, paging), `statements` (all prepared at open), `migrate` (numbered CQL, version
//! check), `keys` (partition keys), `merge` (newest-first over shards), and one module per
//! area: `frust`, `counters`, `chat`.

mod chat;
mod counters;
mod exec;
mod frust;
mod imported;
mod keys;
mod merge;
mod migrate;
mod session;
mod statements;
mod url;

use std::collections::HashSet;

use async_trait::async_trait;
use parking_lot::Mutex;
use switchyard_schema::chat::{ChatMessage, HistoryQuery, Room};
use switchyard_schema::frust::{Click, Event, UserRow};

use crate::{
    CounterUpdate, HourCount, ImportedCounters, ImportedCounts, Page, Placement, Store,
    StoreResult, StoredChatMessage, StoredClick, StoredEvent, Totals,
};
use exec::Db;
use statements::Statements;

pub use migrate::{Migration, MIGRATIONS};
pub use url::{Replication, ScyllaUrl};

pub struct ScyllaStore {
    db: Db,
    st: Statements,
    /// `frust_days` entries this process has written: each is written once, not per click.
    days_written: Mutex<HashSet<(&'static str, i32)>>,
}

impl ScyllaStore {
    /// Connects, refuses a keyspace older than this build, prepares every statement.
    pub async fn open(url: &ScyllaUrl) -> StoreResult<Self> {
        let session = session::connect(url).await?;
        let found = migrate::current_version(&session, &url.keyspace).await?;
        migrate::check(found, migrate::needed())?;
        session
            .use_keyspace(&url.keyspace, false)
            .await
            .map_err(|e| exec::error("open", e))?;
        let st = Statements::prepare(&session, url.page_size).await?;
        tracing::info!(
            keyspace = %url.keyspace,
            nodes = ?url.nodes,
            schema_version = found,
            "scylla store open"
        );
        Ok(Self {
            db: Db::new(session, url.max_in_flight),
            st,
            days_written: Mutex::new(HashSet::new()),
        })
    }
}

impl ScyllaStore {
    /// Connects and reads the keyspace's schema version, changing nothing.
    pub async fn check(url: &ScyllaUrl) -> StoreResult<String> {
        let session = session::connect(url).await?;
        let found = migrate::current_version(&session, &url.keyspace).await?;
        migrate::check(found, migrate::needed())?;
        Ok(format!(
            "ScyllaDB {:?}, keyspace {} at schema version {found}",
            url.nodes, url.keyspace
        ))
    }
}

/// Creates the keyspace if missing and applies the migrations it lacks (`switchyard migrate`).
pub async fn migrate(url: &ScyllaUrl) -> StoreResult<()> {
    migrate::run(url).await
}

#[async_trait]
impl Store for ScyllaStore {
    async fn insert_click(&self, click: &StoredClick) -> StoreResult<bool> {
        self.put_click(click).await
    }

    async fn insert_event(&self, event: &StoredEvent) -> StoreResult<bool> {
        self.put_event(event).await
    }

    async fn insert_ephemeral_event(&self, event: &StoredEvent) -> StoreResult<bool> {
        self.put_ephemeral_event(event).await
    }

    async fn insert_imported(
        &self,
        clicks: &[StoredClick],
        events: &[StoredEvent],
    ) -> StoreResult<u64> {
        self.put_imported(clicks, events).await
    }

    async fn save_imported(&self, counters: &ImportedCounters) -> StoreResult<()> {
        self.write_imported(counters).await
    }

    async fn imported_counts(&self, since: i64) -> StoreResult<ImportedCounts> {
        self.read_imported_counts(since).await
    }

    async fn imported_users(&self) -> StoreResult<Vec<UserRow>> {
        self.read_imported_users("imported_users").await
    }

    async fn clicks_since(&self, since: i64, limit: u32) -> StoreResult<Vec<Click>> {
        self.read_clicks(since, limit).await
    }

    async fn events_since(&self, since: i64, limit: u32) -> StoreResult<Vec<Event>> {
        self.read_events(since, limit).await
    }

    async fn totals(&self) -> StoreResult<Totals> {
        Ok(self.checkpoint("totals").await?.totals)
    }

    async fn hours_since(&self, since: i64) -> StoreResult<Vec<HourCount>> {
        self.read_hours(since).await
    }

    async fn users(&self) -> StoreResult<Vec<UserRow>> {
        self.read_users("users").await
    }

    async fn save_counters(&self, update: &CounterUpdate) -> StoreResult<()> {
        self.write_counters(update).await
    }

    async fn counted_facts(
        &self,
        ids: &[String],
    ) -> StoreResult<std::collections::HashMap<String, u64>> {
        self.read_counted(ids).await
    }

    async fn rebuild_counters(&self) -> StoreResult<()> {
        self.recount().await
    }

    async fn create_room(&self, room: &Room) -> StoreResult<()> {
        self.put_room(room).await
    }

    async fn room(&self, room_id: &str) -> StoreResult<Option<Room>> {
        Ok(self
            .room_with_time("room", room_id)
            .await?
            .map(|(room, _)| room))
    }

    async fn rooms_of(&self, user_id: &str) -> StoreResult<Vec<Room>> {
        self.rooms_of_user(user_id).await
    }

    async fn room_mates(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let rooms = self.rooms_of_user(user_id).await?;
        Ok(crate::mates_in(rooms, user_id))
    }

    async fn rooms_page(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<Room>> {
        self.rooms_page_of_user(user_id, after, limit).await
    }

    async fn members_page(
        &self,
        room_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<String>> {
        self.members_page_of_room(room_id, after, limit).await
    }

    async fn room_counts(&self, user_ids: &[String]) -> StoreResult<Vec<u64>> {
        self.room_counts_of(user_ids).await
    }

    async fn delete_room(&self, room_id: &str) -> StoreResult<()> {
        self.drop_room(room_id).await
    }

    async fn add_member(&self, room_id: &str, user_id: &str) -> StoreResult<()> {
        self.join(room_id, user_id).await
    }

    async fn remove_member(&self, room_id: &str, user_id: &str) -> StoreResult<()> {
        self.leave(room_id, user_id).await
    }

    async fn insert_chat_message(&self, message: &StoredChatMessage) -> StoreResult<Placement> {
        self.put_message(message).await
    }

    async fn chat_history(&self, query: &HistoryQuery) -> StoreResult<Vec<ChatMessage>> {
        self.history(query).await
    }

    async fn room_message_count(&self, room_id: &str) -> StoreResult<u64> {
        self.message_count(room_id).await
    }
}
