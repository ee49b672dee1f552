//! Packet ids: unique and time-ordered, assigned once at the edge. Persistence is idempotent on
//! them and they double as JetStream `Nats-Msg-Id`, so a redelivered packet changes nothing.

/// A fresh UUIDv7 in its canonical text form; lexical order is creation order (per millisecond).
pub fn new_packet_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What every id the import of an original Frust database gives begins with. Live ids are
/// UUIDv7 (hex digits), so the two never collide, and counters can tell imported rows apart:
/// their counts live beside the aggregator's, not in them (see `Store::save_imported`).
pub const IMPORTED_PREFIX: &str = "frust-import-";

/// The id of the original's `clicks` row `row_id`: the same row always gets the same id, so an
/// import run twice or resumed stores it once. Zero-padded so lexical order is the row order.
pub fn imported_click_id(row_id: i64) -> String {
    format!("{IMPORTED_PREFIX}click-{row_id:020}")
}

/// The id of the original's `events` row `row_id` (see [`imported_click_id`]).
pub fn imported_event_id(row_id: i64) -> String {
    format!("{IMPORTED_PREFIX}event-{row_id:020}")
}

pub fn is_imported(id: &str) -> bool {
    id.starts_with(IMPORTED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_ids_are_deterministic_ordered_and_apart_from_live_ids() {
        assert_eq!(imported_click_id(7), imported_click_id(7));
        assert_ne!(imported_click_id(7), imported_event_id(7));
        assert!(imported_click_id(9) < imported_click_id(10));
        assert!(is_imported(&imported_event_id(1)));
        assert!(!is_imported(&new_packet_id()));
    }

    #[test]
    fn ids_are_unique_and_ordered() {
        let ids: Vec<String> = (0..1000).map(|_| new_packet_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "ids must be unique");
        assert_eq!(sorted, ids, "ids must sort in creation order");
    }
}
