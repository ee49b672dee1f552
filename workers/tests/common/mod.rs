//! What the workers' integration tests share.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_schema::envelope;
use switchyard_store::Store;
use switchyard_testkit::inbound_click;
use tempfile::TempDir;

/// An inbound click, encoded as an edge publishes it; `n` orders it (timestamp, session count).
pub fn click(id: &str, n: u64) -> Bytes {
    Bytes::from(envelope::encode(&inbound_click(id, n)).unwrap())
}

/// A SQLite store in a directory of its own, removed when the `TempDir` drops (the file is
/// `worker.sqlite` in it).
pub async fn temp_store() -> (TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("worker.sqlite").display());
    let store = switchyard_store::open(&url).await.unwrap();
    (dir, store)
}
