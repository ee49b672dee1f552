//! Why a client's packet did not reach the durable stream, the same for every API: what a failed
//! durable publish (or a full held-bytes budget) means for the client. Each API words it for
//! its own clients (a Socket.IO ack, a `/chat` error packet).

use switchyard_bus::BusError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAccepted {
    /// Definitely not accepted: the client may send it again.
    Unavailable,
    /// Not accepted: the edge holds its maximum of unconfirmed packets already.
    Overloaded,
    /// Unknown: the bus never answered, so it may still be stored (retrying could make a
    /// second packet).
    Unconfirmed,
}

impl NotAccepted {
    /// What a failed durable publish means for the client.
    pub fn of_publish(e: &BusError) -> Self {
        match e {
            BusError::Unconfirmed(_) => Self::Unconfirmed,
            _ => Self::Unavailable,
        }
    }

    /// Whether the packet surely was not stored.
    pub fn surely_not_stored(self) -> bool {
        self != Self::Unconfirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unanswered_publish_may_still_be_stored() {
        let unanswered = BusError::Unconfirmed("timed out".into());
        assert_eq!(
            NotAccepted::of_publish(&unanswered),
            NotAccepted::Unconfirmed
        );
        assert!(!NotAccepted::Unconfirmed.surely_not_stored());
        let refused = BusError::NotDurable("x".into());
        assert_eq!(NotAccepted::of_publish(&refused), NotAccepted::Unavailable);
        assert!(NotAccepted::Unavailable.surely_not_stored());
        assert!(NotAccepted::Overloaded.surely_not_stored());
    }
}
