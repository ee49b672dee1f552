//! Exact Frust counters: totals, per-hour and per-user counts, kept in memory and saved as
//! absolute values with the sequence they include, so replays after a crash change nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use switchyard_schema::clock::hour_start;
use switchyard_schema::envelope::Fact;
use switchyard_schema::frust::{stats_at, Stats, UserRow};
use switchyard_store::{
    CountedFact, CounterUpdate, HourCount, ImportedCounts, Store, StoreResult, Totals,
};

use crate::facts::counted_id;

#[derive(Debug, Default)]
pub struct Counters {
    totals: Totals,
    hours: BTreeMap<i64, (i64, i64)>,
    users: HashMap<String, (i64, i64)>,
    dirty_hours: HashSet<i64>,
    dirty_users: HashSet<String>,
    /// Packets counted since the last flush, saved with it.
    counted: Vec<CountedFact>,
    dirty: bool,
}

impl Counters {
    pub async fn load(store: &dyn Store) -> StoreResult<Self> {
        let totals = store.totals().await?;
        let hours = store
            .hours_since(i64::MIN)
            .await?
            .into_iter()
            .map(|h| (h.hour, (h.clicks, h.events)))
            .collect();
        let users = store
            .users()
            .await?
            .into_iter()
            .map(|u| (u.name, (u.click_count, u.event_count)))
            .collect();
        Ok(Self {
            totals,
            hours,
            users,
            ..Self::default()
        })
    }

    pub fn applied_seq(&self) -> u64 {
        self.totals.applied_seq
    }

    pub fn apply(&mut self, fact: &Fact, seq: u64) {
        // (user, timestamp, click, event): an ephemeral event counts for no user.
        let (user, timestamp, click, event) = match fact {
            Fact::FrustClick {
                user, timestamp, ..
            } => (Some(user), *timestamp, 1, 0),
            Fact::FrustEvent {
                user, timestamp, ..
            } => (Some(user), *timestamp, 0, 1),
            Fact::FrustEphemeral { timestamp, .. } => (None, *timestamp, 0, 1),
            // Room message counts are read from the store (SQLite counts its index).
            Fact::ChatMessage { .. } => return self.skip(seq),
        };
        self.totals.clicks += click;
        self.totals.events += event;
        let hour = hour_start(timestamp);
        let h = self.hours.entry(hour).or_default();
        h.0 += click;
        h.1 += event;
        self.dirty_hours.insert(hour);
        if let Some(user) = user {
            let u = self.users.entry(user.clone()).or_default();
            u.0 += click;
            u.1 += event;
            self.dirty_users.insert(user.clone());
        }
        if let Some(id) = counted_id(fact) {
            self.counted.push(CountedFact {
                id: id.to_owned(),
                seq,
            });
        }
        self.skip(seq);
    }

    /// Moves the checkpoint past a fact that counts nothing.
    pub fn skip(&mut self, seq: u64) {
        self.totals.applied_seq = self.totals.applied_seq.max(seq);
        self.dirty = true;
    }

    pub async fn flush(&mut self, store: &dyn Store) -> StoreResult<()> {
        if !self.dirty {
            return Ok(());
        }
        let update = CounterUpdate {
            totals: self.totals,
            hours: self
                .dirty_hours
                .iter()
                .map(|&hour| {
                    let (clicks, events) = self.hours[&hour];
                    HourCount {
                        hour,
                        clicks,
                        events,
                    }
                })
                .collect(),
            users: self
                .dirty_users
                .iter()
                .map(|name| {
                    let (click_count, event_count) = self.users[name];
                    UserRow {
                        name: name.clone(),
                        click_count,
                        event_count,
                    }
                })
                .collect(),
            counted: self.counted.clone(),
        };
        store.save_counters(&update).await?;
        self.dirty_hours.clear();
        self.dirty_users.clear();
        self.counted.clear();
        self.dirty = false;
        Ok(())
    }

    /// Stats as of `now`, with `imported` (the counts of an import, kept apart from these) added.
    pub fn stats(&self, now: i64, imported: &ImportedCounts) -> Stats {
        let since = switchyard_schema::clock::day_start(now);
        let live: Vec<HourCount> = self
            .hours
            .range(since..)
            .map(|(&hour, &(clicks, events))| HourCount {
                hour,
                clicks,
                events,
            })
            .collect();
        let today: Vec<(i64, i64, i64)> = imported
            .add_hours(live)
            .into_iter()
            .filter(|h| h.hour >= since)
            .map(|h| (h.hour, h.clicks, h.events))
            .collect();
        let totals = imported.add_totals(self.totals);
        stats_at(now, totals.clicks, totals.events, &today)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(user: &str, t: i64) -> Fact {
        Fact::FrustClick {
            id: "x".into(),
            session: "s".into(),
            user: user.into(),
            timestamp: t,
        }
    }

    #[test]
    fn counts_clicks_and_events_by_hour_user_and_total() {
        let mut c = Counters::default();
        c.apply(&click("a", 3600 + 5), 1);
        c.apply(&click("a", 7200), 2);
        c.apply(
            &Fact::FrustEvent {
                id: "y".into(),
                session: "s".into(),
                user: "b".into(),
                timestamp: 7201,
            },
            3,
        );
        assert_eq!(c.applied_seq(), 3);
        assert_eq!((c.totals.clicks, c.totals.events), (2, 1));
        assert_eq!(c.hours[&3600], (1, 0));
        assert_eq!(c.hours[&7200], (1, 1));
        assert_eq!(c.users["a"], (2, 0));
        c.apply(
            &Fact::FrustEphemeral {
                id: "z".into(),
                session: "s".into(),
                timestamp: 7202,
            },
            4,
        );
        assert_eq!(c.totals.events, 2, "an ephemeral event counts in the total");
        assert_eq!(c.hours[&7200], (1, 2), "and in its hour");
        assert_eq!(c.users.len(), 2, "but for no user");
        assert_eq!(c.users["b"], (0, 1));
        let s = c.stats(7300, &ImportedCounts::default());
        assert_eq!(
            (s.click_count_hour, s.event_count_hour, s.click_count_today),
            (1, 2, 2)
        );
    }
}
