//! Bus subjects. Inbound packets are durable (stream IN), what was persisted is durable (stream
//! FACTS); fan-out, presence and queries are plain pub/sub.

/// Durable stream of packets accepted at an edge and not yet persisted.
pub const STREAM_IN: &str = "IN";
/// Durable stream of what the workers persisted, in the order the aggregator must apply it.
pub const STREAM_FACTS: &str = "FACTS";
/// Durable stream of inbound packets that could not be persisted (poison packets), with why.
pub const STREAM_DEAD: &str = "DEAD";
/// Every durable stream.
pub const STREAMS: [&str; 3] = [STREAM_IN, STREAM_FACTS, STREAM_DEAD];

pub const IN_FRUST_CLICK: &str = "in.frust.click";
pub const IN_FRUST_EVENT: &str = "in.frust.event";
pub const FACTS_FRUST: &str = "facts.frust";
pub const FACTS_CHAT: &str = "facts.chat";
/// A dead letter of an inbound subject: `dead.` + the subject it was read from.
pub const DEAD_PREFIX: &str = "dead.";

/// Inbound chat is partitioned by room so one consumer at a time owns a room's order.
pub const CHAT_PARTITIONS: u32 = 16;
pub const IN_CHAT_ALL: &str = "in.chat.>";
pub const IN_FRUST_ALL: &str = "in.frust.>";

/// Chat fan-out for one room's members (`out.chat.room.<room_id>`).
pub const OUT_CHAT_ROOM_PREFIX: &str = "out.chat.room.";
pub const OUT_CHAT_ROOM_ALL: &str = "out.chat.room.>";
/// Chat fan-out addressed to a list of users.
pub const OUT_CHAT_USERS: &str = "out.chat.users";
/// Chat connections opening and closing, from edges to the aggregator.
pub const PRESENCE_CHAT: &str = "presence.chat";
/// A room's membership changed: edges drop what they cached about it.
pub const CHAT_ROOM_CHANGED: &str = "chat.room.changed";

/// Everything every Frust client should see (clicks, events, toasts, stats, status).
pub const OUT_FRUST: &str = "out.frust";
/// Frust session presence changes, from edges to the aggregator.
pub const PRESENCE_FRUST: &str = "presence.frust";
/// Request/reply: the aggregator answers with the online sessions.
pub const RPC_FRUST_ONLINE: &str = "rpc.frust.online";
/// The server API's requests to every edge (`ControlRequest`); each edge answers with a
/// `ControlReply` about its own connections.
pub const CONTROL_EDGES: &str = "control.edges";

/// The inbound subject for a message into `room_id`.
pub fn in_chat_message(room_id: &str) -> String {
    in_chat_partition(chat_partition(room_id))
}

/// The inbound subject of chat partition `partition` (0..CHAT_PARTITIONS).
pub fn in_chat_partition(partition: u32) -> String {
    in_chat_subject(partition, "message")
}

/// The one builder of partitioned chat subjects: `in.chat.<partition>.<leaf>` (`>` as the leaf
/// gives a partition's consumer filter).
pub fn in_chat_subject(partition: impl std::fmt::Display, leaf: &str) -> String {
    format!("in.chat.{partition}.{leaf}")
}

/// Every inbound subject a packet can be published to.
pub fn inbound_subjects() -> Vec<String> {
    let mut subjects = vec![IN_FRUST_CLICK.to_owned(), IN_FRUST_EVENT.to_owned()];
    subjects.extend((0..CHAT_PARTITIONS).map(in_chat_partition));
    subjects
}

pub fn out_chat_room(room_id: &str) -> String {
    format!("{OUT_CHAT_ROOM_PREFIX}{room_id}")
}

/// FNV-1a over the room id: stable across processes and releases.
pub fn chat_partition(room_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in room_id.bytes() {
        hash ^= b as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % CHAT_PARTITIONS
}

/// Which durable stream a subject belongs to, if any.
pub fn stream_of(subject: &str) -> Option<&'static str> {
    crate::topics::Stream::of(subject).map(crate::topics::Stream::name)
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
    fn chat_rooms_map_to_a_stable_partition() {
        assert_eq!(in_chat_message("room-1"), in_chat_message("room-1"));
        assert!(chat_partition("anything") < CHAT_PARTITIONS);
        assert!(subject_matches(IN_CHAT_ALL, &in_chat_message("r")));
        assert!(subject_matches(OUT_CHAT_ROOM_ALL, &out_chat_room("r")));
    }

    #[test]
    fn streams_by_prefix() {
        assert_eq!(stream_of(IN_FRUST_CLICK), Some(STREAM_IN));
        assert_eq!(stream_of(FACTS_FRUST), Some(STREAM_FACTS));
        assert_eq!(stream_of("dead.in.frust.click"), Some(STREAM_DEAD));
        assert_eq!(stream_of(OUT_FRUST), None);
    }
}
