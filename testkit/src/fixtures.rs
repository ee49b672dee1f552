//! Packets the integration tests of several crates publish, written once.

use switchyard_schema::envelope::Inbound;
use switchyard_schema::frust::Click;

/// An inbound click as an edge publishes it; `n` orders it (its timestamp and the session's
/// click count).
pub fn inbound_click(id: &str, n: u64) -> Inbound {
    Inbound::FrustClick {
        id: id.to_owned(),
        session: "s".into(),
        click: Click {
            user: "u".into(),
            comment: None,
            style: None,
            timestamp: 1_700_000_000 + n as i64,
        },
        session_clicks: n + 1,
    }
}
