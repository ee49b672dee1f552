//! Counters of the rows an import brought from an original Frust database. They are kept beside
//! the aggregator's counters, never in them: the aggregator counts live facts from its checkpoint
//! and overwrites its rows with absolute values, so anything written into them from outside
//! would be lost at its next flush (or counted twice on a replay). Whoever serves counts adds the
//! two: they are disjoint (imported ids never reach the FACTS stream; recounts skip them).

use std::collections::BTreeMap;

use switchyard_schema::frust::UserRow;

use crate::{HourCount, Store, StoreResult, Totals};

/// The totals and the hours from `since` on as clients see them: the aggregator's (live) plus
/// the imported ones.
pub async fn served_counts(store: &dyn Store, since: i64) -> StoreResult<(Totals, Vec<HourCount>)> {
    let totals = store.totals().await?;
    let hours = store.hours_since(since).await?;
    let imported = store.imported_counts(since).await?;
    Ok((imported.add_totals(totals), imported.add_hours(hours)))
}

/// Every user as clients see them: live counts plus imported ones.
pub async fn served_users(store: &dyn Store) -> StoreResult<Vec<UserRow>> {
    Ok(add_users(
        store.users().await?,
        store.imported_users().await?,
    ))
}

/// Imported totals and hours (the hours from some hour on).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportedCounts {
    pub clicks: i64,
    pub events: i64,
    pub hours: Vec<HourCount>,
}

/// Everything an import counted, saved at its end as absolute values (so running it again
/// writes the same numbers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportedCounters {
    pub counts: ImportedCounts,
    pub users: Vec<UserRow>,
}

impl ImportedCounts {
    /// Live totals plus imported ones (the applied sequence stays the aggregator's).
    pub fn add_totals(&self, live: Totals) -> Totals {
        Totals {
            clicks: live.clicks + self.clicks,
            events: live.events + self.events,
            ..live
        }
    }

    /// Live hours plus imported ones, by hour, in hour order.
    pub fn add_hours(&self, live: Vec<HourCount>) -> Vec<HourCount> {
        let mut by_hour: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for h in live.iter().chain(&self.hours) {
            let e = by_hour.entry(h.hour).or_default();
            e.0 += h.clicks;
            e.1 += h.events;
        }
        by_hour
            .into_iter()
            .map(|(hour, (clicks, events))| HourCount {
                hour,
                clicks,
                events,
            })
            .collect()
    }
}

/// Live users plus imported ones, by name, in name order.
pub fn add_users(live: Vec<UserRow>, imported: Vec<UserRow>) -> Vec<UserRow> {
    let mut by_name: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for u in live.into_iter().chain(imported) {
        let e = by_name.entry(u.name).or_default();
        e.0 += u.click_count;
        e.1 += u.event_count;
    }
    by_name
        .into_iter()
        .map(|(name, (click_count, event_count))| UserRow {
            name,
            click_count,
            event_count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_by_key() {
        let imported = ImportedCounts {
            clicks: 10,
            events: 2,
            hours: vec![HourCount {
                hour: 3600,
                clicks: 10,
                events: 2,
            }],
        };
        let live = Totals {
            applied_seq: 7,
            clicks: 1,
            events: 0,
        };
        let t = imported.add_totals(live);
        assert_eq!((t.applied_seq, t.clicks, t.events), (7, 11, 2));
        let hours = imported.add_hours(vec![
            HourCount {
                hour: 7200,
                clicks: 1,
                events: 0,
            },
            HourCount {
                hour: 3600,
                clicks: 1,
                events: 1,
            },
        ]);
        assert_eq!(hours.len(), 2);
        assert_eq!(
            (hours[0].hour, hours[0].clicks, hours[0].events),
            (3600, 11, 3)
        );
        let user = |name: &str, c, e| UserRow {
            name: name.into(),
            click_count: c,
            event_count: e,
        };
        let users = add_users(
            vec![user("b", 1, 0)],
            vec![user("b", 2, 1), user("a", 5, 0)],
        );
        assert_eq!(users, vec![user("a", 5, 0), user("b", 3, 1)]);
    }
}
