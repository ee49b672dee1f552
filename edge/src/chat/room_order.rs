//! Keeps one room's live delivery in history order. Fan-out travels over core NATS, and after
//! a NATS node freeze a message can reach this edge after a later one of its room (the two
//! went over different cluster routes). Each room message carries its position in the room's
//! history; one at or below the last position delivered is not shown: it would break the
//! room's order, and the client reads it from history. Redeliveries land here too.

/// What to do with a room message that just arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    /// The message last delivered, again (a worker redelivered it).
    Repeat,
    /// Older than the last delivered message of the room.
    Late,
}

/// The last position delivered in one room, for the life of this edge's subscription to it.
#[derive(Debug, Default)]
pub struct RoomOrder {
    last: Option<i64>,
}

impl RoomOrder {
    /// Judges a message at `position` (`None`: not a stored message, e.g. typing, always
    /// delivered) and remembers it when delivered.
    pub fn admit(&mut self, position: Option<i64>) -> Verdict {
        let Some(position) = position else {
            return Verdict::Deliver;
        };
        match self.last {
            Some(last) if position == last => Verdict::Repeat,
            Some(last) if position < last => Verdict::Late,
            _ => {
                self.last = Some(position);
                Verdict::Deliver
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_follows_the_last_delivered_position_is_delivered() {
        let mut room = RoomOrder::default();
        assert_eq!(room.admit(Some(10)), Verdict::Deliver);
        assert_eq!(room.admit(None), Verdict::Deliver);
        assert_eq!(room.admit(Some(10)), Verdict::Repeat);
        assert_eq!(room.admit(Some(30)), Verdict::Deliver);
        assert_eq!(room.admit(Some(20)), Verdict::Late);
        assert_eq!(room.admit(Some(10)), Verdict::Late);
        assert_eq!(room.admit(Some(31)), Verdict::Deliver);
    }
}
