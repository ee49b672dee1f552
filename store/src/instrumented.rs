//! Store metrics in one place, for every adapter: a decorator that times each operation
//! (`switchyard_store_op_duration_seconds{op}`) and counts its failures
//! (`switchyard_store_errors_total{op}`, the name the alert rules already watch). A failure is
//! counted here and nowhere else, once per operation; `describe` declares every store metric.

use std::future::Future;
use std::time::Instant;

use async_trait::async_trait;
use switchyard_schema::chat::{ChatMessage, HistoryQuery, Room};
use switchyard_schema::frust::{Click, Event, UserRow};

use crate::{
    CounterUpdate, HourCount, ImportedCounters, ImportedCounts, Page, Placement, Store,
    StoreResult, StoredChatMessage, StoredClick, StoredEvent, Totals,
};

/// Wraps an adapter; `open` returns every store wrapped in one.
pub struct Instrumented<S> {
    inner: S,
}

impl<S: Store> Instrumented<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

/// Every operation `timed` below is called with (a test keeps the two in step).
const OPS: [&str; 28] = [
    "insert_click",
    "insert_event",
    "insert_ephemeral_event",
    "insert_imported",
    "imported_counts",
    "imported_users",
    "save_imported",
    "clicks_since",
    "events_since",
    "totals",
    "hours_since",
    "users",
    "save_counters",
    "counted_facts",
    "rebuild_counters",
    "create_room",
    "room",
    "rooms_of",
    "room_mates",
    "rooms_page",
    "room_counts",
    "delete_room",
    "add_member",
    "remove_member",
    "members_page",
    "insert_chat_message",
    "chat_history",
    "room_message_count",
];

/// HELP text and unit of every store metric (adapters' included); error counters at zero.
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_histogram!(
        "switchyard_store_op_duration_seconds",
        Unit::Seconds,
        "Store operations, by operation"
    );
    describe_counter!(
        "switchyard_store_errors_total",
        "Store operations that failed, by operation"
    );
    describe_counter!(
        "switchyard_store_retries_total",
        "ScyllaDB requests retried, by operation"
    );
    describe_histogram!(
        "switchyard_store_batch_seconds",
        Unit::Seconds,
        "SQLite write transactions (one batch of writes)"
    );
    describe_histogram!(
        "switchyard_store_batch_size",
        Unit::Count,
        "Writes per SQLite transaction"
    );
    for op in OPS {
        metrics::counter!("switchyard_store_errors_total", "op" => op).absolute(0);
    }
}

async fn timed<T>(op: &'static str, call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let started = Instant::now();
    let result = call.await;
    metrics::histogram!("switchyard_store_op_duration_seconds", "op" => op)
        .record(started.elapsed());
    if let Err(e) = &result {
        metrics::counter!("switchyard_store_errors_total", "op" => op).increment(1);
        tracing::debug!(op, error = %e, "store operation failed");
    }
    result
}

#[async_trait]
impl<S: Store> Store for Instrumented<S> {
    async fn insert_click(&self, click: &StoredClick) -> StoreResult<bool> {
        timed("insert_click", self.inner.insert_click(click)).await
    }

    async fn insert_event(&self, event: &StoredEvent) -> StoreResult<bool> {
        timed("insert_event", self.inner.insert_event(event)).await
    }

    async fn insert_ephemeral_event(&self, event: &StoredEvent) -> StoreResult<bool> {
        timed(
            "insert_ephemeral_event",
            self.inner.insert_ephemeral_event(event),
        )
        .await
    }

    async fn insert_imported(
        &self,
        clicks: &[StoredClick],
        events: &[StoredEvent],
    ) -> StoreResult<u64> {
        timed(
            "insert_imported",
            self.inner.insert_imported(clicks, events),
        )
        .await
    }

    async fn save_imported(&self, counters: &ImportedCounters) -> StoreResult<()> {
        timed("save_imported", self.inner.save_imported(counters)).await
    }

    async fn imported_counts(&self, since: i64) -> StoreResult<ImportedCounts> {
        timed("imported_counts", self.inner.imported_counts(since)).await
    }

    async fn imported_users(&self) -> StoreResult<Vec<UserRow>> {
        timed("imported_users", self.inner.imported_users()).await
    }

    async fn clicks_since(&self, since: i64, limit: u32) -> StoreResult<Vec<Click>> {
        timed("clicks_since", self.inner.clicks_since(since, limit)).await
    }

    async fn events_since(&self, since: i64, limit: u32) -> StoreResult<Vec<Event>> {
        timed("events_since", self.inner.events_since(since, limit)).await
    }

    async fn totals(&self) -> StoreResult<Totals> {
        timed("totals", self.inner.totals()).await
    }

    async fn hours_since(&self, since: i64) -> StoreResult<Vec<HourCount>> {
        timed("hours_since", self.inner.hours_since(since)).await
    }

    async fn users(&self) -> StoreResult<Vec<UserRow>> {
        timed("users", self.inner.users()).await
    }

    async fn save_counters(&self, update: &CounterUpdate) -> StoreResult<()> {
        timed("save_counters", self.inner.save_counters(update)).await
    }

    async fn counted_facts(
        &self,
        ids: &[String],
    ) -> StoreResult<std::collections::HashMap<String, u64>> {
        timed("counted_facts", self.inner.counted_facts(ids)).await
    }

    async fn rebuild_counters(&self) -> StoreResult<()> {
        timed("rebuild_counters", self.inner.rebuild_counters()).await
    }

    async fn create_room(&self, room: &Room) -> StoreResult<()> {
        timed("create_room", self.inner.create_room(room)).await
    }

    async fn room(&self, room_id: &str) -> StoreResult<Option<Room>> {
        timed("room", self.inner.room(room_id)).await
    }

    async fn rooms_of(&self, user_id: &str) -> StoreResult<Vec<Room>> {
        timed("rooms_of", self.inner.rooms_of(user_id)).await
    }

    async fn room_mates(&self, user_id: &str) -> StoreResult<Vec<String>> {
        timed("room_mates", self.inner.room_mates(user_id)).await
    }

    async fn rooms_page(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<Room>> {
        timed("rooms_page", self.inner.rooms_page(user_id, after, limit)).await
    }

    async fn members_page(
        &self,
        room_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<String>> {
        timed(
            "members_page",
            self.inner.members_page(room_id, after, limit),
        )
        .await
    }

    async fn room_counts(&self, user_ids: &[String]) -> StoreResult<Vec<u64>> {
        timed("room_counts", self.inner.room_counts(user_ids)).await
    }

    async fn delete_room(&self, room_id: &str) -> StoreResult<()> {
        timed("delete_room", self.inner.delete_room(room_id)).await
    }

    async fn add_member(&self, room_id: &str, user_id: &str) -> StoreResult<()> {
        timed("add_member", self.inner.add_member(room_id, user_id)).await
    }

    async fn remove_member(&self, room_id: &str, user_id: &str) -> StoreResult<()> {
        timed("remove_member", self.inner.remove_member(room_id, user_id)).await
    }

    async fn insert_chat_message(&self, message: &StoredChatMessage) -> StoreResult<Placement> {
        timed(
            "insert_chat_message",
            self.inner.insert_chat_message(message),
        )
        .await
    }

    async fn chat_history(&self, query: &HistoryQuery) -> StoreResult<Vec<ChatMessage>> {
        timed("chat_history", self.inner.chat_history(query)).await
    }

    async fn room_message_count(&self, room_id: &str) -> StoreResult<u64> {
        timed("room_message_count", self.inner.room_message_count(room_id)).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_timed_operation_is_listed() {
        let source = include_str!("instrumented.rs");
        let called: std::collections::BTreeSet<&str> = source
            .split("timed(")
            .skip(1)
            .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next())
            .filter(|op| !op.is_empty() && op.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .collect();
        let listed: std::collections::BTreeSet<&str> = super::OPS.into_iter().collect();
        assert_eq!(called, listed);
    }
}
