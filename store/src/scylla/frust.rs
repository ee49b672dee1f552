//! Clicks and events: idempotent inserts into (day, shard) partitions, newest-first reads that
//! merge a day's shards and walk back through the days that have rows.

use ::scylla::deserialize::row::DeserializeRow;
use ::scylla::value::MaybeUnset;
use switchyard_schema::frust::{Click, Event};

use super::keys::{day_of, shard_of, SHARDS};
use super::merge;
use super::statements::Series;
use super::ScyllaStore;
use crate::{StoreResult, StoredClick, StoredEvent};

/// `user, comment, style, timestamp, id`
type ClickRow = (String, Option<String>, Option<String>, i64, String);
/// `user, name, timestamp, id`
type EventRow = (String, String, i64, String);

impl ScyllaStore {
    pub(super) async fn put_click(&self, stored: &StoredClick) -> StoreResult<bool> {
        let c = &stored.click;
        let Some((day, shard)) = self
            .absent(&self.st.clicks, "insert_click", &stored.id, c.timestamp)
            .await?
        else {
            return Ok(false);
        };
        // A missing comment or style is left unset rather than bound as null: a null is a
        // tombstone, and most clicks would carry two.
        let values = (
            day,
            shard,
            c.timestamp,
            &stored.id,
            &c.user,
            MaybeUnset::from_option(c.comment.as_ref()),
            MaybeUnset::from_option(c.style.as_ref()),
        );
        self.db
            .execute("insert_click", &self.st.clicks.insert, &values)
            .await?;
        Ok(true)
    }

    pub(super) async fn put_event(&self, stored: &StoredEvent) -> StoreResult<bool> {
        self.put_event_into(&self.st.events, "insert_event", stored)
            .await
    }

    /// An ephemeral event's tally row: same shape as an event, another table.
    pub(super) async fn put_ephemeral_event(&self, stored: &StoredEvent) -> StoreResult<bool> {
        self.put_event_into(&self.st.ephemeral_events, "insert_ephemeral_event", stored)
            .await
    }

    async fn put_event_into(
        &self,
        series: &Series,
        op: &'static str,
        stored: &StoredEvent,
    ) -> StoreResult<bool> {
        let e = &stored.event;
        let Some((day, shard)) = self.absent(series, op, &stored.id, e.timestamp).await? else {
            return Ok(false);
        };
        let values = (day, shard, e.timestamp, &stored.id, &e.user, &e.name);
        self.db.execute(op, &series.insert, &values).await?;
        Ok(true)
    }

    /// The row's partition when no row with this id is stored yet, `None` when one is.
    ///
    /// Why a read and not `INSERT … IF NOT EXISTS`: the key is fully determined by the packet
    /// (its id and timestamp), so the plain insert that follows is idempotent by itself and a
    /// redelivery can never add a second row. The read only answers "was it new?", which for
    /// clicks and events feeds a metric (`switchyard_redelivered_total`). A lightweight
    /// transaction would make that answer exact under a race of two deliveries of the same
    /// packet, at the price of a Paxos round (4 round trips, serialised per partition) on the
    /// hottest write path; one LOCAL_QUORUM read is the better trade.
    async fn absent(
        &self,
        series: &Series,
        op: &'static str,
        id: &str,
        timestamp: i64,
    ) -> StoreResult<Option<(i32, i8)>> {
        let (day, shard) = (day_of(timestamp), shard_of(id));
        self.note_day(series.kind, day, op).await?;
        let existing: Option<(String,)> = self
            .db
            .first(op, &series.exists, &(day, shard, timestamp, id))
            .await?;
        Ok(existing.is_none().then_some((day, shard)))
    }

    /// Lists `day` in `frust_days` before its first row is written, once per process and day.
    async fn note_day(&self, kind: &'static str, day: i32, op: &'static str) -> StoreResult<()> {
        if self.days_written.lock().contains(&(kind, day)) {
            return Ok(());
        }
        self.db
            .execute(op, &self.st.day_insert, &(kind, day))
            .await?;
        self.days_written.lock().insert((kind, day));
        Ok(())
    }

    pub(super) async fn read_clicks(&self, since: i64, limit: u32) -> StoreResult<Vec<Click>> {
        let rows: Vec<ClickRow> = self
            .newest(
                &self.st.clicks,
                "clicks_since",
                since,
                limit,
                |r: &ClickRow| (r.3, r.4.clone()),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(user, comment, style, timestamp, _)| Click {
                user,
                comment,
                style,
                timestamp,
            })
            .collect())
    }

    pub(super) async fn read_events(&self, since: i64, limit: u32) -> StoreResult<Vec<Event>> {
        let rows: Vec<EventRow> = self
            .newest(
                &self.st.events,
                "events_since",
                since,
                limit,
                |r: &EventRow| (r.2, r.3.clone()),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(user, name, timestamp, _)| Event {
                user,
                name,
                timestamp,
            })
            .collect())
    }

    /// Rows with `timestamp >= since`, newest first (timestamp, then id, both descending, as the
    /// SQLite adapter orders them), at most `limit`: the days that have rows, newest first, each
    /// a merge of its shards. Stops reading as soon as `limit` rows are in hand.
    async fn newest<R>(
        &self,
        series: &Series,
        op: &'static str,
        since: i64,
        limit: u32,
        key: impl Fn(&R) -> (i64, String) + Copy,
    ) -> StoreResult<Vec<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f> + Send,
    {
        let limit = limit as usize;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let days: Vec<(i32,)> = self
            .db
            .all(op, &self.st.days_since, (series.kind, day_of(since)))
            .await?;
        for (day,) in days {
            let remaining = limit - out.len();
            let per_shard = i32::try_from(remaining).unwrap_or(i32::MAX);
            let shards = (0..SHARDS)
                .map(|shard| {
                    self.db
                        .rows::<R, _>(op, &series.read, (day, shard, since, per_shard))
                })
                .collect();
            out.extend(merge::take_desc(shards, key, remaining).await?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
