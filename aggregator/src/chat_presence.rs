//! Chat presence across every edge: a user is online while any of their connections is open.
//! When the last one closes (or its edge dies), the members of their rooms hear `chat-leave`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use switchyard_schema::envelope::ChatPresence;

#[derive(Debug, Default)]
pub struct ChatPresenceMap {
    /// user → connection → edge
    connections: HashMap<String, HashMap<String, String>>,
    edges_seen: HashMap<String, Instant>,
}

impl ChatPresenceMap {
    /// Applies a change; returns the users who just went offline.
    pub fn apply(&mut self, p: ChatPresence, now: Instant) -> Vec<String> {
        match p {
            ChatPresence::Connected {
                user,
                connection,
                edge,
            } => {
                self.edges_seen.insert(edge.clone(), now);
                self.connections
                    .entry(user)
                    .or_default()
                    .insert(connection, edge);
                Vec::new()
            }
            ChatPresence::Disconnected { user, connection } => {
                self.remove_where(|u, c, _| u == user && c == connection)
            }
            ChatPresence::Heartbeat { edge, connections } => {
                self.edges_seen.insert(edge.clone(), now);
                let listed: HashSet<(String, String)> = connections.into_iter().collect();
                for (user, connection) in &listed {
                    self.connections
                        .entry(user.clone())
                        .or_default()
                        .insert(connection.clone(), edge.clone());
                }
                self.remove_where(|u, c, e| {
                    e == edge && !listed.contains(&(u.to_owned(), c.to_owned()))
                })
            }
        }
    }

    /// Drops the connections of edges silent for longer than `timeout`.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<String> {
        let dead: HashSet<String> = self
            .edges_seen
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) > timeout)
            .map(|(edge, _)| edge.clone())
            .collect();
        self.edges_seen.retain(|edge, _| !dead.contains(edge));
        self.remove_where(|_, _, edge| dead.contains(edge))
    }

    /// Users with at least one open connection.
    pub fn online_users(&self) -> usize {
        self.connections.len()
    }

    /// Edges heard from within the edge timeout (the silent ones are dropped by `expire`).
    pub fn edges(&self) -> impl Iterator<Item = &String> {
        self.edges_seen.keys()
    }

    /// Removes matching connections; returns users left with none.
    fn remove_where(&mut self, doomed: impl Fn(&str, &str, &str) -> bool) -> Vec<String> {
        let mut offline = Vec::new();
        self.connections.retain(|user, conns| {
            let before = conns.len();
            conns.retain(|conn, edge| !doomed(user, conn, edge));
            if conns.is_empty() && before > 0 {
                offline.push(user.clone());
                false
            } else {
                !conns.is_empty()
            }
        });
        offline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(user: &str, c: &str, edge: &str) -> ChatPresence {
        ChatPresence::Connected {
            user: user.into(),
            connection: c.into(),
            edge: edge.into(),
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
        let now = Instant::now();
        let mut p = ChatPresenceMap::default();
        assert!(p.apply(conn("ann", "1", "e1"), now).is_empty());
        assert!(p.apply(conn("ann", "2", "e2"), now).is_empty());
        assert!(p.apply(gone("ann", "1"), now).is_empty());
        assert_eq!(p.apply(gone("ann", "2"), now), vec!["ann"]);
        assert!(
            p.apply(gone("ann", "2"), now).is_empty(),
            "a repeated close is not a second leave"
        );
    }

    #[test]
    fn a_dead_edge_takes_its_connections_along() {
        let t0 = Instant::now();
        let mut p = ChatPresenceMap::default();
        p.apply(conn("ann", "1", "e1"), t0);
        p.apply(conn("bob", "2", "e1"), t0);
        p.apply(conn("bob", "3", "e2"), t0);
        let later = t0 + Duration::from_secs(10);
        p.apply(
            ChatPresence::Heartbeat {
                edge: "e2".into(),
                connections: vec![("bob".into(), "3".into())],
            },
            later,
        );
        assert_eq!(
            p.expire(later, Duration::from_secs(5)),
            vec!["ann"],
            "bob is still on e2"
        );
        // The gauges' inputs: bob online (two connections counted once before), e2 alive.
        assert_eq!(p.online_users(), 1);
        assert_eq!(p.edges().collect::<Vec<_>>(), vec!["e2"]);
    }
}
