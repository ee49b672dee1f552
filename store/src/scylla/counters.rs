//! The aggregator's exact counters: absolute values saved with the stream sequence they include,
//! one flush per logged batch, and a recount from the stored rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::batch::{Batch, BatchType};
use ::scylla::statement::prepared::PreparedStatement;
use futures::stream::TryStreamExt;
use switchyard_schema::clock::hour_start;
use switchyard_schema::frust::UserRow;
use switchyard_schema::id::is_imported;

use super::keys::{hour_period, user_bucket, SHARDS, USER_BUCKETS};
use super::statements::Series;
use super::ScyllaStore;
use crate::{CounterUpdate, HourCount, StoreResult, Totals};

type Values = Box<dyn SerializeRow + Send + Sync>;

/// Concurrent single-row writes of a recount, and of counted marks.
const RECOUNT_WRITES: usize = 32;

pub(super) struct Checkpoint {
    pub totals: Totals,
    /// The `frust_hours` partitions written so far.
    pub periods: BTreeSet<i32>,
}

/// Counts of one kind per hour and per user, and in all.
#[derive(Default)]
struct Tally {
    total: i64,
    hours: BTreeMap<i64, i64>,
    users: HashMap<String, i64>,
}

impl ScyllaStore {
    pub(super) async fn checkpoint(&self, op: &'static str) -> StoreResult<Checkpoint> {
        type Row = (Option<i64>, Option<i64>, Option<i64>, Option<BTreeSet<i32>>);
        let row: Option<Row> = self.db.first(op, &self.st.checkpoint_read, &()).await?;
        let (seq, clicks, events, periods) = row.unwrap_or_default();
        Ok(Checkpoint {
            totals: Totals {
                applied_seq: seq.unwrap_or(0).max(0) as u64,
                clicks: clicks.unwrap_or(0),
                events: events.unwrap_or(0),
            },
            periods: periods.unwrap_or_default(),
        })
    }

    pub(super) async fn read_hours(&self, since: i64) -> StoreResult<Vec<HourCount>> {
        let first = hour_period(since);
        let mut hours = Vec::new();
        for period in self.checkpoint("hours_since").await?.periods {
            if period < first {
                continue;
            }
            let rows: Vec<(i64, i64, i64)> = self
                .db
                .all("hours_since", &self.st.hours_read, (period, since))
                .await?;
            hours.extend(rows.into_iter().map(|(hour, clicks, events)| HourCount {
                hour,
                clicks,
                events,
            }));
        }
        Ok(hours)
    }

    /// Every user, by name (16 sorted partitions read at once).
    pub(super) async fn read_users(&self, op: &'static str) -> StoreResult<Vec<UserRow>> {
        let buckets = (0..USER_BUCKETS).map(|bucket| {
            self.db
                .all::<(String, i64, i64), _>(op, &self.st.users_read, (bucket,))
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

    /// One logged batch: the batchlog guarantees that either every row of the flush is applied
    /// (eventually, even if the coordinator dies) or none is, so the checkpoint never names a
    /// sequence whose counts are missing, nor do counts run ahead of their checkpoint.
    /// At most ~2,048 users and as many hours per flush (the aggregator's bound), ~200 kB: under
    /// the default 1 MB batch limit, and spanning at most 16 user partitions.
    pub(super) async fn write_counters(&self, update: &CounterUpdate) -> StoreResult<()> {
        // Marks first, outside the batch (one partition each; the batch stays small): a mark
        // whose counters are lost in a crash carries the same sequence the replay brings back.
        for chunk in update.counted.chunks(RECOUNT_WRITES) {
            let sent = chunk.iter().map(|c| async move {
                let row = (c.id.as_str(), c.seq as i64);
                self.db
                    .execute("save_counters", &self.st.counted_insert, &row)
                    .await
            });
            futures::future::try_join_all(sent).await?;
        }
        let seq = update.totals.applied_seq as i64;
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_is_idempotent(true);
        let mut values: Vec<Values> = Vec::new();
        let mut periods = BTreeSet::new();
        for h in &update.hours {
            periods.insert(hour_period(h.hour));
            batch.append_statement(self.st.hour_upsert.clone());
            values.push(Box::new((
                hour_period(h.hour),
                h.hour,
                h.clicks,
                h.events,
                seq,
            )));
        }
        for u in &update.users {
            batch.append_statement(self.st.user_upsert.clone());
            values.push(Box::new((
                user_bucket(&u.name),
                u.name.clone(),
                u.click_count,
                u.event_count,
                seq,
            )));
        }
        batch.append_statement(self.st.checkpoint_save.clone());
        values.push(Box::new((
            seq,
            update.totals.clicks,
            update.totals.events,
            periods,
        )));
        self.db.batch("save_counters", &batch, &values).await
    }

    /// The counted marks of `ids` (point reads, a bounded number at once).
    pub(super) async fn read_counted(&self, ids: &[String]) -> StoreResult<HashMap<String, u64>> {
        let mut counted = HashMap::new();
        for chunk in ids.chunks(RECOUNT_WRITES) {
            let reads = chunk.iter().map(|id| async move {
                let row: Option<(i64,)> = self
                    .db
                    .first("counted_facts", &self.st.counted_read, &(id.as_str(),))
                    .await?;
                Ok::<_, crate::StoreError>(row.map(|(seq,)| (id.clone(), seq.max(0) as u64)))
            });
            counted.extend(
                futures::future::try_join_all(reads)
                    .await?
                    .into_iter()
                    .flatten(),
            );
        }
        Ok(counted)
    }

    /// Recounts hours, users and totals from every stored click and event, replaces the stored
    /// counters with the result and resets the sequence to 0. Not atomic (it can touch every
    /// counter row): it serves embedded mode, whose streams die with the process; a cluster's
    /// aggregator resumes from its checkpoint instead.
    pub(super) async fn recount(&self) -> StoreResult<()> {
        let clicks = self.tally(&self.st.clicks).await?;
        let mut events = self.tally(&self.st.events).await?;
        // Ephemeral events count in the hours and totals, for no user.
        let ephemeral = self.tally(&self.st.ephemeral_events).await?;
        events.total += ephemeral.total;
        for (hour, n) in ephemeral.hours {
            *events.hours.entry(hour).or_default() += n;
        }

        let mut hours: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (&hour, &n) in &clicks.hours {
            hours.entry(hour).or_default().0 += n;
        }
        for (&hour, &n) in &events.hours {
            hours.entry(hour).or_default().1 += n;
        }
        let mut users: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (name, n) in clicks.users {
            users.entry(name).or_default().0 += n;
        }
        for (name, n) in events.users {
            users.entry(name).or_default().1 += n;
        }

        // Rows the recount no longer produces are deleted, as SQLite's DELETE + INSERT does.
        let op = "rebuild_counters";
        let old = self.checkpoint(op).await?;
        let mut writes: Vec<(&PreparedStatement, Values)> = Vec::new();
        for &period in &old.periods {
            let stored: Vec<(i64, i64, i64)> = self
                .db
                .all(op, &self.st.hours_read, (period, i64::MIN))
                .await?;
            for (hour, _, _) in stored {
                if !hours.contains_key(&hour) {
                    writes.push((&self.st.hour_delete, Box::new((period, hour))));
                }
            }
        }
        for user in self.read_users(op).await? {
            if !users.contains_key(&user.name) {
                let key = (user_bucket(&user.name), user.name);
                writes.push((&self.st.user_delete, Box::new(key)));
            }
        }
        for (&hour, &(c, e)) in &hours {
            let row = (hour_period(hour), hour, c, e, 0_i64);
            writes.push((&self.st.hour_upsert, Box::new(row)));
        }
        for (name, &(c, e)) in &users {
            let row = (user_bucket(name), name.clone(), c, e, 0_i64);
            writes.push((&self.st.user_upsert, Box::new(row)));
        }
        for chunk in writes.chunks(RECOUNT_WRITES) {
            let sent = chunk
                .iter()
                .map(|(statement, values)| self.db.execute(op, statement, values));
            futures::future::try_join_all(sent).await?;
        }
        let periods: BTreeSet<i32> = hours.keys().map(|&h| hour_period(h)).collect();
        self.db
            .execute(
                op,
                &self.st.checkpoint_reset,
                &(0_i64, clicks.total, events.total, periods),
            )
            .await?;
        Ok(())
    }

    /// Counts every row of a series: each day that has rows, its shards read at once. Imported
    /// rows are left out: they have their own counters (`frust_imported_*`).
    async fn tally(&self, series: &Series) -> StoreResult<Tally> {
        let op = "rebuild_counters";
        let days: Vec<(i32,)> = self
            .db
            .all(op, &self.st.days_since, (series.kind, i32::MIN))
            .await?;
        let mut tally = Tally::default();
        for (day,) in days {
            let shards = (0..SHARDS).map(|shard| {
                self.db
                    .rows::<(String, i64, String), _>(op, &series.scan, (day, shard))
                    .try_fold(
                        Tally::default(),
                        |mut t, (user, timestamp, id)| async move {
                            if is_imported(&id) {
                                return Ok(t);
                            }
                            t.total += 1;
                            *t.hours.entry(hour_start(timestamp)).or_default() += 1;
                            *t.users.entry(user).or_default() += 1;
                            Ok(t)
                        },
                    )
            });
            for shard in futures::future::try_join_all(shards).await? {
                tally.total += shard.total;
                for (hour, n) in shard.hours {
                    *tally.hours.entry(hour).or_default() += n;
                }
                for (user, n) in shard.users {
                    *tally.users.entry(user).or_default() += n;
                }
            }
        }
        Ok(tally)
    }
}
