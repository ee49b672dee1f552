//! Chat presence across every edge: a user is online while any of their connections is open.
//! When the last one closes, the members of their rooms hear `chat-leave`.

use std::collections::{HashMap, HashSet};

use switchyard_schema::envelope::ChatPresence;

#[derive(Debug, Default)]
pub struct ChatPresenceMap {
    connections: HashMap<String, HashSet<String>>,
}

impl ChatPresenceMap {
    /// Applies a change; returns the user who just went offline, if any.
    pub fn apply(&mut self, p: ChatPresence) -> Option<String> {
        match p {
            ChatPresence::Connected {
                user, connection, ..
            } => {
                self.connections.entry(user).or_default().insert(connection);
                None
            }
            ChatPresence::Disconnected { user, connection } => {
                let conns = self.connections.get_mut(&user)?;
                conns.remove(&connection);
                if conns.is_empty() {
                    self.connections.remove(&user);
                    Some(user)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(user: &str, c: &str) -> ChatPresence {
        ChatPresence::Connected {
            user: user.into(),
            connection: c.into(),
            edge: "e".into(),
        }
    }
    fn gone(user: &str, c: &str) -> ChatPresence {
        ChatPresence::Disconnected {
            user: user.into(),
            connection: c.into(),
        }
    }

    #[test]
    fn leaves_only_when_the_last_connection_closes() {
        let mut p = ChatPresenceMap::default();
        assert_eq!(p.apply(conn("ann", "1")), None);
        assert_eq!(p.apply(conn("ann", "2")), None);
        assert_eq!(p.apply(gone("ann", "1")), None);
        assert_eq!(p.apply(gone("ann", "2")), Some("ann".into()));
        assert_eq!(
            p.apply(gone("ann", "2")),
            None,
            "a repeated close is not a second leave"
        );
    }
}
