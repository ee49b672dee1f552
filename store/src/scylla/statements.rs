//! Every statement the adapter runs, prepared once at open. Prepared statements carry their
//! partition key positions, which is what lets the driver route each request to a replica
//! (and the right shard) of its partition.

use ::scylla::client::session::Session;
use ::scylla::statement::prepared::PreparedStatement;

use super::exec::error;
use crate::StoreResult;

/// A time series of Frust rows (clicks or events): same shape, different tables.
pub struct Series {
    /// `frust_days.kind`.
    pub kind: &'static str,
    pub exists: PreparedStatement,
    pub insert: PreparedStatement,
    /// Newest first within one (day, shard), `timestamp >= ?`, `LIMIT ?`.
    pub read: PreparedStatement,
    /// `user, timestamp, id` of every row of one (day, shard), for recounts.
    pub scan: PreparedStatement,
}

/// What differs between the two series; the key columns `(day, shard, timestamp, id)` do not.
struct SeriesSpec {
    kind: &'static str,
    table: &'static str,
    /// Payload columns, `user` first, in insert and read order.
    payload: &'static [&'static str],
}

const CLICKS: SeriesSpec = SeriesSpec {
    kind: "click",
    table: "frust_clicks",
    payload: &["user", "comment", "style"],
};

const EVENTS: SeriesSpec = SeriesSpec {
    kind: "event",
    table: "frust_events",
    payload: &["user", "name"],
};

const EPHEMERAL_EVENTS: SeriesSpec = SeriesSpec {
    kind: "ephemeral",
    table: "frust_ephemeral_events",
    payload: &["user", "name"],
};

impl SeriesSpec {
    fn exists(&self) -> String {
        format!(
            "SELECT id FROM {} WHERE day = ? AND shard = ? AND timestamp = ? AND id = ?",
            self.table
        )
    }

    fn insert(&self) -> String {
        let markers = vec!["?"; 4 + self.payload.len()].join(", ");
        format!(
            "INSERT INTO {} (day, shard, timestamp, id, {}) VALUES ({markers})",
            self.table,
            self.payload.join(", ")
        )
    }

    fn read(&self) -> String {
        format!(
            "SELECT {}, timestamp, id FROM {} WHERE day = ? AND shard = ? AND timestamp >= ? LIMIT ?",
            self.payload.join(", "),
            self.table
        )
    }

    fn scan(&self) -> String {
        format!(
            "SELECT user, timestamp, id FROM {} WHERE day = ? AND shard = ?",
            self.table
        )
    }
}

impl Series {
    async fn prepare(p: &Preparer<'_>, spec: &SeriesSpec) -> StoreResult<Self> {
        Ok(Self {
            kind: spec.kind,
            exists: p.idem(&spec.exists()).await?,
            insert: p.idem(&spec.insert()).await?,
            read: p.idem(&spec.read()).await?,
            scan: p.idem(&spec.scan()).await?,
        })
    }
}

pub struct Statements {
    pub clicks: Series,
    pub events: Series,
    pub ephemeral_events: Series,
    pub day_insert: PreparedStatement,
    pub days_since: PreparedStatement,

    pub checkpoint_read: PreparedStatement,
    pub checkpoint_save: PreparedStatement,
    pub checkpoint_reset: PreparedStatement,
    pub hour_upsert: PreparedStatement,
    pub hour_delete: PreparedStatement,
    pub hours_read: PreparedStatement,
    pub user_upsert: PreparedStatement,
    pub user_delete: PreparedStatement,
    pub users_read: PreparedStatement,
    pub counted_insert: PreparedStatement,
    pub counted_read: PreparedStatement,

    pub imported_totals_read: PreparedStatement,
    pub imported_totals_write: PreparedStatement,
    pub imported_hour_upsert: PreparedStatement,
    pub imported_hour_delete: PreparedStatement,
    pub imported_hours_read: PreparedStatement,
    pub imported_user_upsert: PreparedStatement,
    pub imported_user_delete: PreparedStatement,
    pub imported_users_read: PreparedStatement,

    pub room_insert: PreparedStatement,
    pub room_read: PreparedStatement,
    pub member_insert: PreparedStatement,
    pub member_delete: PreparedStatement,
    pub user_room_insert: PreparedStatement,
    pub user_room_delete: PreparedStatement,
    pub user_rooms_read: PreparedStatement,
    pub user_rooms_page: PreparedStatement,
    pub user_room_count: PreparedStatement,
    pub members_page: PreparedStatement,
    pub room_delete: PreparedStatement,
    pub bucket_delete: PreparedStatement,
    pub room_buckets_delete: PreparedStatement,

    pub message_id_claim: PreparedStatement,
    pub message_id_read: PreparedStatement,
    pub message_insert: PreparedStatement,
    pub message_exists: PreparedStatement,
    pub room_state_read: PreparedStatement,
    pub room_state_write: PreparedStatement,
    pub room_buckets_read: PreparedStatement,
    pub history_desc: PreparedStatement,
    pub history_asc: PreparedStatement,
}

/// Whether re-sending a statement whose outcome is unknown is safe. Plain inserts, deletes and
/// reads are: they write absolute values under a fixed key. Conditional writes are not: a retry
/// of one that did apply reports "not applied".
#[derive(Clone, Copy, PartialEq)]
enum Retry {
    Idempotent,
    Conditional,
}

struct Preparer<'a> {
    session: &'a Session,
    page_size: i32,
}

impl Preparer<'_> {
    async fn prepare(&self, cql: &str, retry: Retry) -> StoreResult<PreparedStatement> {
        let mut statement = self
            .session
            .prepare(cql)
            .await
            .map_err(|e| error("prepare", e))?;
        statement.set_is_idempotent(retry == Retry::Idempotent);
        statement.set_page_size(self.page_size);
        Ok(statement)
    }

    async fn idem(&self, cql: &str) -> StoreResult<PreparedStatement> {
        self.prepare(cql, Retry::Idempotent).await
    }
}

impl Statements {
    pub async fn prepare(session: &Session, page_size: i32) -> StoreResult<Self> {
        let p = Preparer { session, page_size };
        Ok(Self {
            clicks: Series::prepare(&p, &CLICKS).await?,
            events: Series::prepare(&p, &EVENTS).await?,
            ephemeral_events: Series::prepare(&p, &EPHEMERAL_EVENTS).await?,
            day_insert: p
                .idem("INSERT INTO frust_days (kind, day) VALUES (?, ?)")
                .await?,
            days_since: p
                .idem("SELECT day FROM frust_days WHERE kind = ? AND day >= ?")
                .await?,

            checkpoint_read: p
                .idem(
                    "SELECT applied_seq, click_total, event_total, hour_periods \
                     FROM aggregator_checkpoint WHERE id = 1",
                )
                .await?,
            // Adding to a set is idempotent: re-adding a period changes nothing.
            checkpoint_save: p
                .idem(
                    "UPDATE aggregator_checkpoint SET applied_seq = ?, click_total = ?, \
                     event_total = ?, hour_periods = hour_periods + ? WHERE id = 1",
                )
                .await?,
            checkpoint_reset: p
                .idem(
                    "UPDATE aggregator_checkpoint SET applied_seq = ?, click_total = ?, \
                     event_total = ?, hour_periods = ? WHERE id = 1",
                )
                .await?,
            hour_upsert: p
                .idem(
                    "INSERT INTO frust_hours \
                     (period, hour, click_count, event_count, applied_seq) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .await?,
            hour_delete: p
                .idem("DELETE FROM frust_hours WHERE period = ? AND hour = ?")
                .await?,
            hours_read: p
                .idem(
                    "SELECT hour, click_count, event_count FROM frust_hours \
                     WHERE period = ? AND hour >= ?",
                )
                .await?,
            user_upsert: p
                .idem(
                    "INSERT INTO frust_users \
                     (bucket, name, click_count, event_count, applied_seq) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .await?,
            user_delete: p
                .idem("DELETE FROM frust_users WHERE bucket = ? AND name = ?")
                .await?,
            users_read: p
                .idem("SELECT name, click_count, event_count FROM frust_users WHERE bucket = ?")
                .await?,
            // IF NOT EXISTS is not needed: one aggregator writes marks, in sequence order.
            counted_insert: p
                .idem("INSERT INTO aggregator_counted (id, seq) VALUES (?, ?)")
                .await?,
            counted_read: p
                .idem("SELECT seq FROM aggregator_counted WHERE id = ?")
                .await?,

            imported_totals_read: p
                .idem(
                    "SELECT click_total, event_total, hour_periods \
                     FROM frust_imported_totals WHERE id = 1",
                )
                .await?,
            imported_totals_write: p
                .idem(
                    "UPDATE frust_imported_totals SET click_total = ?, event_total = ?, \
                     hour_periods = ? WHERE id = 1",
                )
                .await?,
            imported_hour_upsert: p
                .idem(
                    "INSERT INTO frust_imported_hours (period, hour, click_count, event_count) \
                     VALUES (?, ?, ?, ?)",
                )
                .await?,
            imported_hour_delete: p
                .idem("DELETE FROM frust_imported_hours WHERE period = ? AND hour = ?")
                .await?,
            imported_hours_read: p
                .idem(
                    "SELECT hour, click_count, event_count FROM frust_imported_hours \
                     WHERE period = ? AND hour >= ?",
                )
                .await?,
            imported_user_upsert: p
                .idem(
                    "INSERT INTO frust_imported_users (bucket, name, click_count, event_count) \
                     VALUES (?, ?, ?, ?)",
                )
                .await?,
            imported_user_delete: p
                .idem("DELETE FROM frust_imported_users WHERE bucket = ? AND name = ?")
                .await?,
            imported_users_read: p
                .idem(
                    "SELECT name, click_count, event_count FROM frust_imported_users \
                     WHERE bucket = ?",
                )
                .await?,

            room_insert: p
                .idem(
                    "INSERT INTO chat_rooms (room_id, name, owner, created_ms) \
                     VALUES (?, ?, ?, ?)",
                )
                .await?,
            room_read: p
                .idem("SELECT name, created_ms, owner, user_id FROM chat_rooms WHERE room_id = ?")
                .await?,
            member_insert: p
                .idem("INSERT INTO chat_rooms (room_id, user_id) VALUES (?, ?)")
                .await?,
            member_delete: p
                .idem("DELETE FROM chat_rooms WHERE room_id = ? AND user_id = ?")
                .await?,
            user_room_insert: p
                .idem("INSERT INTO chat_user_rooms (user_id, room_id) VALUES (?, ?)")
                .await?,
            user_room_delete: p
                .idem("DELETE FROM chat_user_rooms WHERE user_id = ? AND room_id = ?")
                .await?,
            user_rooms_read: p
                .idem("SELECT room_id FROM chat_user_rooms WHERE user_id = ?")
                .await?,
            user_rooms_page: p
                .idem(
                    "SELECT room_id FROM chat_user_rooms WHERE user_id = ? AND room_id > ? \
                     LIMIT ?",
                )
                .await?,
            user_room_count: p
                .idem("SELECT COUNT(*) FROM chat_user_rooms WHERE user_id = ?")
                .await?,
            members_page: p
                .idem("SELECT user_id FROM chat_rooms WHERE room_id = ? AND user_id > ? LIMIT ?")
                .await?,
            room_delete: p.idem("DELETE FROM chat_rooms WHERE room_id = ?").await?,
            bucket_delete: p
                .idem("DELETE FROM chat_messages WHERE room_id = ? AND bucket = ?")
                .await?,
            room_buckets_delete: p
                .idem("DELETE FROM chat_room_buckets WHERE room_id = ?")
                .await?,

            message_id_claim: p
                .prepare(
                    "INSERT INTO chat_message_ids (message_id, room_id, position) \
                     VALUES (?, ?, ?) IF NOT EXISTS",
                    Retry::Conditional,
                )
                .await?,
            message_id_read: p
                .idem("SELECT room_id, position FROM chat_message_ids WHERE message_id = ?")
                .await?,
            message_insert: p
                .idem(
                    "INSERT INTO chat_messages (room_id, bucket, position, message_id, \
                     sender_id, message, timestamp, sent_at_ms) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .await?,
            message_exists: p
                .idem(
                    "SELECT message_id FROM chat_messages WHERE room_id = ? AND bucket = ? \
                     AND position = ? AND message_id = ?",
                )
                .await?,
            room_state_read: p
                .idem(
                    "SELECT last_position, message_count FROM chat_room_buckets \
                     WHERE room_id = ? LIMIT 1",
                )
                .await?,
            // Written with the position as its timestamp: of two writers racing (a redelivery
            // overtaken by the next message), the state of the later position wins.
            room_state_write: p
                .idem(
                    "INSERT INTO chat_room_buckets \
                     (room_id, bucket, last_position, message_count) VALUES (?, ?, ?, ?) \
                     USING TIMESTAMP ?",
                )
                .await?,
            room_buckets_read: p
                .idem("SELECT bucket FROM chat_room_buckets WHERE room_id = ?")
                .await?,
            history_desc: p
                .idem(
                    "SELECT message_id, sender_id, message, timestamp FROM chat_messages \
                     WHERE room_id = ? AND bucket = ? AND (position, message_id) < (?, ?) \
                     LIMIT ?",
                )
                .await?,
            history_asc: p
                .idem(
                    "SELECT message_id, sender_id, message, timestamp FROM chat_messages \
                     WHERE room_id = ? AND bucket = ? AND (position, message_id) > (?, ?) \
                     ORDER BY position ASC, message_id ASC LIMIT ?",
                )
                .await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated CQL must stay byte-for-byte the statements written out by hand before
    /// (the scans read the id since the import: recounts skip imported rows).
    #[test]
    fn series_cql_is_unchanged() {
        assert_eq!(
            CLICKS.exists(),
            "SELECT id FROM frust_clicks WHERE day = ? AND shard = ? AND timestamp = ? AND id = ?"
        );
        assert_eq!(
            CLICKS.insert(),
            "INSERT INTO frust_clicks (day, shard, timestamp, id, user, comment, style) \
             VALUES (?, ?, ?, ?, ?, ?, ?)"
        );
        assert_eq!(
            CLICKS.read(),
            "SELECT user, comment, style, timestamp, id FROM frust_clicks \
             WHERE day = ? AND shard = ? AND timestamp >= ? LIMIT ?"
        );
        assert_eq!(
            CLICKS.scan(),
            "SELECT user, timestamp, id FROM frust_clicks WHERE day = ? AND shard = ?"
        );
        assert_eq!(
            EVENTS.exists(),
            "SELECT id FROM frust_events WHERE day = ? AND shard = ? AND timestamp = ? AND id = ?"
        );
        assert_eq!(
            EVENTS.insert(),
            "INSERT INTO frust_events (day, shard, timestamp, id, user, name) \
             VALUES (?, ?, ?, ?, ?, ?)"
        );
        assert_eq!(
            EVENTS.read(),
            "SELECT user, name, timestamp, id FROM frust_events \
             WHERE day = ? AND shard = ? AND timestamp >= ? LIMIT ?"
        );
        assert_eq!(
            EVENTS.scan(),
            "SELECT user, timestamp, id FROM frust_events WHERE day = ? AND shard = ?"
        );
        assert_eq!(
            EPHEMERAL_EVENTS.insert(),
            "INSERT INTO frust_ephemeral_events (day, shard, timestamp, id, user, name) \
             VALUES (?, ?, ?, ?, ?, ?)"
        );
        assert_eq!(
            (CLICKS.kind, EVENTS.kind, EPHEMERAL_EVENTS.kind),
            ("click", "event", "ephemeral")
        );
    }
}
