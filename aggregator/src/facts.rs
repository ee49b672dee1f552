//! Reads the FACTS stream strictly in sequence from the checkpoint on, and tells a fact that
//! must be counted from one that must not: already applied (a stale delivery), a late duplicate
//! of a counted packet (published again after the stream's duplicate window), or one that lies
//! past a gap (then the reader re-opens at the gap instead of stepping over it).

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use switchyard_bus::{Bus, BusError, Decoded, TypedBus};
use switchyard_schema::envelope::{self, Fact};
use switchyard_schema::topics;
use switchyard_store::{Store, StoreResult};

/// What to do with one delivery, given the sequence applied so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Place {
    /// The next fact: apply it.
    Next,
    /// At or below the checkpoint: applied already.
    Stale,
    /// Past a gap: facts in between have not been seen; re-read from the gap.
    Gap,
}

/// A replay of FACTS from one sequence on, re-opened at the gap whenever one shows.
pub struct FactReader {
    bus: Arc<dyn Bus>,
    deliveries: BoxStream<'static, Decoded<Fact>>,
    /// Just opened at `applied + 1`: the first delivery may lie further on when the stream holds
    /// nothing in between (aged out or deleted); that is a jump, not a gap.
    fresh: bool,
}

impl FactReader {
    pub async fn open(bus: Arc<dyn Bus>, from: u64) -> Result<Self, BusError> {
        let deliveries = bus.replay_from(topics::FACTS, from).await?;
        Ok(Self {
            bus,
            deliveries,
            fresh: true,
        })
    }

    /// Re-opens at `from` (the first unapplied sequence) after a gap.
    pub async fn reopen(&mut self, from: u64) -> Result<(), BusError> {
        metrics::counter!("switchyard_aggregator_fact_gaps_total").increment(1);
        tracing::warn!(
            from,
            "gap in the facts read: re-reading from the first unapplied"
        );
        self.deliveries = self.bus.replay_from(topics::FACTS, from).await?;
        self.fresh = true;
        Ok(())
    }

    pub async fn next(&mut self) -> Option<Decoded<Fact>> {
        self.deliveries.next().await
    }

    /// Whatever is ready now, after `first`, up to `max` in all.
    pub fn ready(&mut self, first: Decoded<Fact>, max: usize) -> Vec<Decoded<Fact>> {
        let mut batch = vec![first];
        while batch.len() < max {
            match self.deliveries.next().now_or_never() {
                Some(Some(d)) => batch.push(d),
                _ => break,
            }
        }
        batch
    }

    /// Where a delivery stands after `applied`; accepts the first jump after an open.
    pub fn place(&mut self, seq: u64, applied: u64) -> Place {
        let fresh = std::mem::replace(&mut self.fresh, false);
        if seq <= applied {
            self.fresh = fresh; // a stale delivery says nothing about what follows
            Place::Stale
        } else if seq == applied + 1 {
            Place::Next
        } else if fresh {
            tracing::warn!(
                from = applied + 1,
                to = seq - 1,
                "FACTS holds nothing in this range (aged out or deleted): nothing to count there"
            );
            Place::Next
        } else {
            Place::Gap
        }
    }
}

/// A decoded batch of facts, and the sequence each packet id was counted at before.
pub struct Batch {
    pub facts: Vec<(u64, Result<Fact, envelope::EnvelopeError>)>,
    counted: HashMap<String, u64>,
}

impl Batch {
    /// Decodes `deliveries` and reads the counted marks of their packet ids.
    pub async fn read(deliveries: Vec<Decoded<Fact>>, store: &dyn Store) -> StoreResult<Self> {
        // Unwrapped first: a delivery is not `Sync`, so none is held across the store read.
        let facts: Vec<_> = deliveries
            .into_iter()
            .map(|d| (d.delivery.seq, d.body))
            .collect();
        let ids: Vec<String> = facts
            .iter()
            .filter_map(|(_, f)| f.as_ref().ok().and_then(counted_id))
            .map(str::to_owned)
            .collect();
        let counted = if ids.is_empty() {
            HashMap::new()
        } else {
            store.counted_facts(&ids).await?
        };
        Ok(Self { facts, counted })
    }

    /// Whether the fact at `seq` counts: not when its packet was counted at another sequence.
    /// Marks it counted otherwise, so a duplicate later in the same batch is caught too.
    pub fn first_count(&mut self, fact: &Fact, seq: u64) -> bool {
        let Some(id) = counted_id(fact) else {
            return true;
        };
        match self.counted.get(id) {
            Some(&at) if at != seq => false,
            _ => {
                self.counted.insert(id.to_owned(), seq);
                true
            }
        }
    }
}

/// The packet id a fact is counted under (chat facts count nothing here).
pub fn counted_id(fact: &Fact) -> Option<&str> {
    match fact {
        Fact::FrustClick { id, .. }
        | Fact::FrustEvent { id, .. }
        | Fact::FrustEphemeral { id, .. } => Some(id),
        Fact::ChatMessage { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_bus::InProcessBus;

    #[tokio::test]
    async fn a_gap_is_a_gap_except_right_after_opening() {
        let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new());
        let mut reader = FactReader::open(bus, 5).await.unwrap();
        assert_eq!(reader.place(3, 4), Place::Stale, "stale keeps it fresh");
        assert_eq!(
            reader.place(9, 4),
            Place::Next,
            "first after opening: a jump"
        );
        assert_eq!(reader.place(10, 9), Place::Next);
        assert_eq!(reader.place(12, 10), Place::Gap, "11 was never seen");
        assert_eq!(reader.place(10, 10), Place::Stale);
    }
}
