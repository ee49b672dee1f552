//! Writes cleaned rows to the store in batches (one transaction each on SQLite), under ids
//! derived from the original rows: a batch written twice stores nothing twice.

use switchyard_schema::frust::{Click, Event};
use switchyard_schema::id::{imported_click_id, imported_event_id};
use switchyard_store::{Store, StoredClick, StoredEvent};

/// One page of cleaned rows, with the lines to report about it.
#[derive(Default)]
pub struct Batch {
    pub clicks: Vec<StoredClick>,
    pub events: Vec<StoredEvent>,
    /// Rows read (kept or not).
    pub rows: u64,
    pub skipped: Vec<String>,
    pub repaired: Vec<String>,
}

impl Batch {
    pub fn click(&mut self, row_id: i64, click: Click) {
        self.clicks.push(StoredClick {
            id: imported_click_id(row_id),
            click,
        });
    }

    pub fn event(&mut self, row_id: i64, event: Event) {
        self.events.push(StoredEvent {
            id: imported_event_id(row_id),
            event,
        });
    }
}

/// What the store said about the rows written.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    /// Rows stored now.
    pub new: u64,
    /// Rows that were stored already (an earlier run, or an interrupted one).
    pub present: u64,
}

pub async fn write(store: &dyn Store, batch: &Batch) -> anyhow::Result<Written> {
    let rows = (batch.clicks.len() + batch.events.len()) as u64;
    if rows == 0 {
        return Ok(Written::default());
    }
    let new = store.insert_imported(&batch.clicks, &batch.events).await?;
    Ok(Written {
        new,
        present: rows - new,
    })
}
