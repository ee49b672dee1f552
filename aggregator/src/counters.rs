//! Exact Frust counters: totals, per-hour and per-user counts, kept in memory and saved as
//! absolute values with the sequence they include, so replays after a crash change nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use switchyard_schema::clock::hour_start;
use switchyard_schema::envelope::Fact;
use switchyard_schema::frust::{stats_at, Stats, UserRow};
use switchyard_store::{CountedFact, CounterUpdate, HourCount, Store, StoreResult, Totals};

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
        let (user, timestamp, is_click) = match fact {
            Fact::FrustClick {
                user, timestamp, ..
            } => (user, *timestamp, true),
            Fact::FrustEvent {
                user, timestamp, ..
            } => (user, *timestamp, false),
            // Room message counts are read from the store (SQLite counts its index).
            Fact::ChatMessage { .. } => return self.skip(seq),
        };
        let (click, event) = if is_click { (1, 0) } else { (0, 1) };
        self.totals.clicks += click;
        self.totals.events += event;
        let hour = hour_start(timestamp);
        let h = self.hours.entry(hour).or_default();
        h.0 += click;
        h.1 += event;
        let u = self.users.entry(user.clone()).or_default();
        u.0 += click;
        u.1 += event;
        self.dirty_hours.insert(hour);
        self.dirty_users.insert(user.clone());
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

    pub fn stats(&self, now: i64) -> Stats {
        let today: Vec<(i64, i64, i64)> = self
            .hours
            .range(switchyard_schema::clock::day_start(now)..)
            .map(|(&h, &(c, e))| (h, c, e))
            .collect();
        stats_at(now, self.totals.clicks, self.totals.events, &today)
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
        let s = c.stats(7300);
        assert_eq!(
            (s.click_count_hour, s.event_count_hour, s.click_count_today),
            (1, 1, 2)
        );
    }
}
