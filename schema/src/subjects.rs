//! Bus subjects. Inbound packets are durable (stream IN), what was persisted is durable (stream
//! FACTS); fan-out, presence and queries are plain pub/sub.

/// Durable stream of packets accepted at an edge and not yet persisted.
pub const STREAM_IN: &str = "IN";
/// Durable stream of what the workers persisted, in the order the aggregator must apply it.
pub const STREAM_FACTS: &str = "FACTS";

pub const IN_FRUST_CLICK: &str = "in.frust.click";
pub const IN_FRUST_EVENT: &str = "in.frust.event";
pub const FACTS_FRUST: &str = "facts.frust";

/// Everything every Frust client should see (clicks, events, toasts, stats, status).
pub const OUT_FRUST: &str = "out.frust";
/// Frust session presence changes, from edges to the aggregator.
pub const PRESENCE_FRUST: &str = "presence.frust";
/// Request/reply: the aggregator answers with the online sessions.
pub const RPC_FRUST_ONLINE: &str = "rpc.frust.online";

/// Which durable stream a subject belongs to, if any.
pub fn stream_of(subject: &str) -> Option<&'static str> {
    if subject.starts_with("in.") {
        Some(STREAM_IN)
    } else if subject.starts_with("facts.") {
        Some(STREAM_FACTS)
    } else {
        None
    }
}

/// NATS subject matching: `*` matches one token, a trailing `>` one or more.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut pat = pattern.split('.');
    let mut sub = subject.split('.');
    loop {
        match (pat.next(), sub.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => continue,
            (Some(p), Some(s)) if p == s => continue,
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_behave_like_nats() {
        assert!(subject_matches("out.frust", "out.frust"));
        assert!(subject_matches("out.*", "out.frust"));
        assert!(!subject_matches("out.*", "out.chat.room.1"));
        assert!(subject_matches("out.>", "out.chat.room.1"));
        assert!(!subject_matches("out.>", "out"));
        assert!(!subject_matches("out.frust", "out.frust.x"));
    }

    #[test]
    fn streams_by_prefix() {
        assert_eq!(stream_of(IN_FRUST_CLICK), Some(STREAM_IN));
        assert_eq!(stream_of(FACTS_FRUST), Some(STREAM_FACTS));
        assert_eq!(stream_of(OUT_FRUST), None);
    }
}
