//! What the workers' integration tests share.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_schema::envelope::{self, Inbound};
use switchyard_schema::frust::Click;
use switchyard_store::Store;
use tempfile::TempDir;

/// An inbound click, encoded as an edge publishes it; `n` orders it (timestamp, session count).
pub fn click(id: &str, n: u64) -> Bytes {
    let packet = Inbound::FrustClick {
        id: id.to_owned(),
        session: "s".into(),
        click: Click {
            user: "u".into(),
            comment: None,
            style: None,
            timestamp: 1_700_000_000 + n as i64,
        },
        session_clicks: n + 1,
    };
    Bytes::from(envelope::encode(&packet).unwrap())
}

/// A SQLite store in a directory of its own, removed when the `TempDir` drops (the file is
/// `worker.sqlite` in it).
pub async fn temp_store() -> (TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("worker.sqlite").display());
    let store = switchyard_store::open(&url).await.unwrap();
    (dir, store)
}
