//! Rows and counters brought by `switchyard import`: rows through the same idempotent inserts
//! as live ones (bounded in flight), counters as absolute values beside the aggregator's.

use std::collections::{BTreeSet, HashSet};

use switchyard_schema::frust::UserRow;

use super::keys::{hour_period, user_bucket, USER_BUCKETS};
use super::ScyllaStore;
use crate::{HourCount, ImportedCounters, ImportedCounts, StoreResult, StoredClick, StoredEvent};

/// Rows of one import batch written at once.
const IMPORT_WRITES: usize = 64;

impl ScyllaStore {
    pub(super) async fn put_imported(
        &self,
        clicks: &[StoredClick],
        events: &[StoredEvent],
    ) -> StoreResult<u64> {
        let mut new = 0;
        for chunk in clicks.chunks(IMPORT_WRITES) {
            let sent = chunk.iter().map(|c| self.put_click(c));
            new += count_new(futures::future::try_join_all(sent).await?);
        }
        for chunk in events.chunks(IMPORT_WRITES) {
            let sent = chunk.iter().map(|e| self.put_event(e));
            new += count_new(futures::future::try_join_all(sent).await?);
        }
        Ok(new)
    }

    /// Writes the new rows, deletes the old ones the new counters lack, then the totals (which
    /// list the hour partitions in use). An import is not running twice at once.
    pub(super) async fn write_imported(&self, c: &ImportedCounters) -> StoreResult<()> {
        let op = "save_imported";
        let old_hours = self.read_imported_hours(op, i64::MIN).await?;
        let old_users = self.read_imported_users(op).await?;
        let hours: HashSet<i64> = c.counts.hours.iter().map(|h| h.hour).collect();
        let users: HashSet<&str> = c.users.iter().map(|u| u.name.as_str()).collect();
        for h in &c.counts.hours {
            let row = (hour_period(h.hour), h.hour, h.clicks, h.events);
            self.db
                .execute(op, &self.st.imported_hour_upsert, &row)
                .await?;
        }
        for h in old_hours.iter().filter(|h| !hours.contains(&h.hour)) {
            let key = (hour_period(h.hour), h.hour);
            self.db
                .execute(op, &self.st.imported_hour_delete, &key)
                .await?;
        }
        for u in &c.users {
            let row = (user_bucket(&u.name), &u.name, u.click_count, u.event_count);
            self.db
                .execute(op, &self.st.imported_user_upsert, &row)
                .await?;
        }
        for u in old_users
            .iter()
            .filter(|u| !users.contains(u.name.as_str()))
        {
            let key = (user_bucket(&u.name), &u.name);
            self.db
                .execute(op, &self.st.imported_user_delete, &key)
                .await?;
        }
        let periods: BTreeSet<i32> = hours.iter().map(|&h| hour_period(h)).collect();
        let totals = (c.counts.clicks, c.counts.events, periods);
        self.db
            .execute(op, &self.st.imported_totals_write, &totals)
            .await?;
        Ok(())
    }

    pub(super) async fn read_imported_counts(&self, since: i64) -> StoreResult<ImportedCounts> {
        let op = "imported_counts";
        let (clicks, events, _) = self.imported_totals(op).await?;
        Ok(ImportedCounts {
            clicks,
            events,
            hours: self.read_imported_hours(op, since).await?,
        })
    }

    async fn imported_totals(&self, op: &'static str) -> StoreResult<(i64, i64, BTreeSet<i32>)> {
        type Row = (Option<i64>, Option<i64>, Option<BTreeSet<i32>>);
        let row: Option<Row> = self
            .db
            .first(op, &self.st.imported_totals_read, &())
            .await?;
        let (clicks, events, periods) = row.unwrap_or_default();
        Ok((
            clicks.unwrap_or(0),
            events.unwrap_or(0),
            periods.unwrap_or_default(),
        ))
    }

    async fn read_imported_hours(
        &self,
        op: &'static str,
        since: i64,
    ) -> StoreResult<Vec<HourCount>> {
        let first = hour_period(since);
        let mut hours = Vec::new();
        for period in self.imported_totals(op).await?.2 {
            if period < first {
                continue;
            }
            let rows: Vec<(i64, i64, i64)> = self
                .db
                .all(op, &self.st.imported_hours_read, (period, since))
                .await?;
            hours.extend(rows.into_iter().map(|(hour, clicks, events)| HourCount {
                hour,
                clicks,
                events,
            }));
        }
        Ok(hours)
    }

    pub(super) async fn read_imported_users(&self, op: &'static str) -> StoreResult<Vec<UserRow>> {
        let buckets = (0..USER_BUCKETS).map(|bucket| {
            self.db
                .all::<(String, i64, i64), _>(op, &self.st.imported_users_read, (bucket,))
        });
        let mut users: Vec<UserRow> = futures::future::try_join_all(buckets)
            .await?
            .into_iter()
            .flatten()
            .map(|(name, click_count, event_count)| UserRow {
                name,
                click_count,
                event_count,
            })
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }
}

fn count_new(inserted: Vec<bool>) -> u64 {
    inserted.into_iter().filter(|&n| n).count() as u64
}
