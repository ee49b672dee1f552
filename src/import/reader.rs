//! Reads the original backend's `db.sqlite` (its SQLAlchemy models: `clicks`, `events`, `users`,
//! `hours`), read-only, rows in id order one page at a time so a million rows never sit in
//! memory at once. A missing table reads as empty (an original that never saw an event).

use std::path::Path;

use anyhow::Context;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::rules::{RawClick, RawEvent};

/// A row of the original's `users` table: its own running counter of a user.
pub struct OriginalUser {
    pub name: Value,
    pub clicks: Value,
    pub events: Value,
}

/// A row of the original's `hours` table: its counters as of the end of that hour.
pub struct OriginalHour {
    pub timestamp: i64,
    pub clicks: Value,
    pub events: Value,
    pub clicks_total: Value,
    pub events_total: Value,
}

pub struct Source {
    conn: Connection,
    has_clicks: bool,
    has_events: bool,
}

impl Source {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open {}", path.display()))?;
        // The original may still be running: wait out its writes instead of failing.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let (has_clicks, has_events) = (
            table_exists(&conn, "clicks")?,
            table_exists(&conn, "events")?,
        );
        if !has_clicks && !has_events {
            anyhow::bail!(
                "{} has neither a `clicks` nor an `events` table: not an original Frust database",
                path.display()
            );
        }
        Ok(Self {
            conn,
            has_clicks,
            has_events,
        })
    }

    /// How many click and event rows there are (for the progress bar).
    pub fn row_counts(&self) -> anyhow::Result<(u64, u64)> {
        let count = |present: bool, table: &str| -> anyhow::Result<u64> {
            if !present {
                return Ok(0);
            }
            let n: i64 =
                self.conn
                    .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(n as u64)
        };
        Ok((
            count(self.has_clicks, "clicks")?,
            count(self.has_events, "events")?,
        ))
    }

    /// Up to `limit` clicks with `id > after`, in id order.
    pub fn clicks_after(&self, after: i64, limit: usize) -> anyhow::Result<Vec<RawClick>> {
        if !self.has_clicks {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, user, comment, style, timestamp FROM clicks
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![after, limit as i64], |r| {
            Ok(RawClick {
                id: r.get(0)?,
                user: r.get(1)?,
                comment: r.get(2)?,
                style: r.get(3)?,
                timestamp: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Up to `limit` events with `id > after`, in id order.
    pub fn events_after(&self, after: i64, limit: usize) -> anyhow::Result<Vec<RawEvent>> {
        if !self.has_events {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, user, name, timestamp FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![after, limit as i64], |r| {
            Ok(RawEvent {
                id: r.get(0)?,
                user: r.get(1)?,
                name: r.get(2)?,
                timestamp: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn users(&self) -> anyhow::Result<Vec<OriginalUser>> {
        if !table_exists(&self.conn, "users")? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name, clicks, events FROM users")?;
        let rows = stmt.query_map([], |r| {
            Ok(OriginalUser {
                name: r.get(0)?,
                clicks: r.get(1)?,
                events: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Its hours, oldest first (a NULL timestamp cannot be a key; such rows are left out).
    pub fn hours(&self) -> anyhow::Result<Vec<OriginalHour>> {
        if !table_exists(&self.conn, "hours")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT timestamp, clicks, events, clicks_total, events_total FROM hours
             WHERE typeof(timestamp) = 'integer' ORDER BY timestamp",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(OriginalHour {
                timestamp: r.get(0)?,
                clicks: r.get(1)?,
                events: r.get(2)?,
                clicks_total: r.get(3)?,
                events_total: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn table_exists(conn: &Connection, table: &str) -> anyhow::Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [table],
        |r| r.get(0),
    )?)
}
