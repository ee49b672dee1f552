//! Packet ids: unique and time-ordered, assigned once at the edge. Persistence is idempotent on
//! them and they double as JetStream `Nats-Msg-Id`, so a redelivered packet changes nothing.

/// A fresh UUIDv7 in its canonical text form; lexical order is creation order (per millisecond).
pub fn new_packet_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
