//! Counters of the imported rows, and how they compare with the original's own counters (its
//! `users` and `hours` tables, kept in its memory and written at each hour's end, so a crash of
//! the original left them behind its rows).
//!
//! Reconciling, per hour and per user:
//! - the rows' counts are the truth by default ([`Trust::Rows`]); with [`Trust::Original`], the
//!   original's counter wins wherever it has one (hours and users it has no row for keep the
//!   rows' counts);
//! - every difference is reported, either way;
//! - an hour's events beyond its event rows are the ephemeral events (`rickroll`, …): the
//!   original counted them in its hours and totals but stored no row for them, so they are
//!   counted in both modes, in the hours and totals only (never per user, never a disagreement).

use std::collections::BTreeMap;

use switchyard_schema::clock::hour_start;
use switchyard_schema::frust::UserRow;
use switchyard_store::{HourCount, ImportedCounters, ImportedCounts};

use super::reader::{OriginalHour, OriginalUser};
use super::rules;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Trust {
    /// Count the rows; report where the original's counters disagree.
    Rows,
    /// Keep the original's `users` and `hours` counters where they disagree with the rows.
    Original,
}

/// Counts of the rows imported so far.
#[derive(Debug, Default)]
pub struct Tally {
    hours: BTreeMap<i64, (i64, i64)>,
    users: BTreeMap<String, (i64, i64)>,
}

impl Tally {
    pub fn click(&mut self, user: &str, timestamp: i64) {
        self.add(user, timestamp, (1, 0));
    }

    pub fn event(&mut self, user: &str, timestamp: i64) {
        self.add(user, timestamp, (0, 1));
    }

    fn add(&mut self, user: &str, timestamp: i64, (c, e): (i64, i64)) {
        let h = self.hours.entry(hour_start(timestamp)).or_default();
        h.0 += c;
        h.1 += e;
        let u = self.users.entry(user.to_owned()).or_default();
        u.0 += c;
        u.1 += e;
    }
}

/// What reconciling found besides the counters.
#[derive(Debug, Default)]
pub struct Findings {
    /// One line per disagreement between the rows and the original's counters.
    pub disagreements: Vec<String>,
    /// Events the original counted in its hours without storing a row (ephemeral).
    pub ephemeral_events: i64,
}

pub fn reconcile(
    tally: Tally,
    original_users: &[OriginalUser],
    original_hours: &[OriginalHour],
    trust: Trust,
    now: i64,
) -> (ImportedCounters, Findings) {
    let mut found = Findings::default();
    let keep = trust == Trust::Original;

    let mut originals: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut last_totals = None;
    for h in original_hours {
        let hour = hour_start(h.timestamp);
        if hour > hour_start(now) {
            found.disagreements.push(format!(
                "hour {}: in the future, its counters are left out",
                h.timestamp
            ));
            continue;
        }
        let e = originals.entry(hour).or_default();
        e.0 += rules::count(&h.clicks);
        e.1 += rules::count(&h.events);
        last_totals = Some((
            hour,
            rules::count(&h.clicks_total),
            rules::count(&h.events_total),
        ));
    }

    let mut hours = Vec::new();
    let keys: std::collections::BTreeSet<i64> = tally
        .hours
        .keys()
        .chain(originals.keys())
        .copied()
        .collect();
    for hour in keys {
        let (rc, re) = tally.hours.get(&hour).copied().unwrap_or_default();
        let (clicks, events) = match originals.get(&hour) {
            None => (rc, re),
            Some(&(oc, oe)) => {
                if oc != rc {
                    found.disagreements.push(format!(
                        "hour {hour}: {rc} click rows, the original counted {oc} (kept: {})",
                        if keep { oc } else { rc }
                    ));
                }
                if oe < re {
                    found.disagreements.push(format!(
                        "hour {hour}: {re} event rows, the original counted {oe} (kept: {})",
                        if keep { oe } else { re }
                    ));
                }
                found.ephemeral_events += (oe - re).max(0);
                let clicks = if keep { oc } else { rc };
                let events = if keep { oe } else { re.max(oe) };
                (clicks, events)
            }
        };
        if clicks != 0 || events != 0 {
            hours.push(HourCount {
                hour,
                clicks,
                events,
            });
        }
    }

    let (mut clicks, mut events) = hours
        .iter()
        .fold((0, 0), |(c, e), h| (c + h.clicks, e + h.events));
    if let Some((last, oc, oe)) = last_totals {
        // The original's totals are its last hour's; later hours (lost in a crash, or the
        // current one of a running original) only have rows.
        let (after_c, after_e) = hours
            .iter()
            .filter(|h| h.hour > last)
            .fold((0, 0), |(c, e), h| (c + h.clicks, e + h.events));
        let (kc, ke) = (oc + after_c, oe + after_e);
        if (kc, ke) != (clicks, events) {
            found.disagreements.push(format!(
                "totals: {clicks} clicks and {events} events by the hours, the original's last \
                 hour says {oc} and {oe} (+{after_c} and +{after_e} after it) (kept: {})",
                if keep { "the original's" } else { "the hours'" }
            ));
            if keep {
                (clicks, events) = (kc, ke);
            }
        }
    }

    let mut originals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for u in original_users {
        let Some(name) = rules::user_name(&u.name) else {
            found
                .disagreements
                .push("users: a row without a name, left out".into());
            continue;
        };
        let e = originals.entry(name).or_default();
        e.0 += rules::count(&u.clicks);
        e.1 += rules::count(&u.events);
    }
    let mut users = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        tally.users.keys().chain(originals.keys()).collect();
    for name in names {
        let rows = tally.users.get(name).copied();
        let (click_count, event_count) = match (rows, originals.get(name).copied()) {
            (Some(r), None) => {
                found.disagreements.push(format!(
                    "user {name:?}: {} clicks and {} events in rows, not in the original's users",
                    r.0, r.1
                ));
                r
            }
            (r, Some(o)) => {
                let r = r.unwrap_or_default();
                if r != o {
                    found.disagreements.push(format!(
                        "user {name:?}: {} clicks and {} events in rows, the original counted {} \
                         and {} (kept: the {})",
                        r.0,
                        r.1,
                        o.0,
                        o.1,
                        if keep { "original's" } else { "rows'" }
                    ));
                }
                if keep {
                    o
                } else {
                    r
                }
            }
            (None, None) => continue,
        };
        if click_count != 0 || event_count != 0 {
            users.push(UserRow {
                name: name.clone(),
                click_count,
                event_count,
            });
        }
    }

    let counters = ImportedCounters {
        counts: ImportedCounts {
            clicks,
            events,
            hours,
        },
        users,
    };
    (counters, found)
}
