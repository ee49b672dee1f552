//! Who is online on the Frust API: one entry per connected Socket.IO session, with its session
//! counts, across every edge. An edge that stops sending heartbeats loses its sessions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use switchyard_schema::envelope::{Fact, Presence};
use switchyard_schema::frust::{OnlineUser, Status};

#[derive(Debug)]
struct Session {
    edge: String,
    name: Option<String>,
    clicks: u64,
    events: u64,
}

impl Session {
    fn on(edge: &str) -> Self {
        Self {
            edge: edge.to_owned(),
            name: None,
            clicks: 0,
            events: 0,
        }
    }
}

#[derive(Debug, Default)]
pub struct Sessions {
    sessions: HashMap<String, Session>,
    edges_seen: HashMap<String, Instant>,
    /// A session came or went since the last `status`: everyone (the newcomer included)
    /// must hear the count, even when it is the same number as before.
    changed: bool,
}

impl Sessions {
    pub fn apply(&mut self, p: Presence, now: Instant) {
        match p {
            Presence::Joined { session, edge } => {
                self.edges_seen.insert(edge.clone(), now);
                self.sessions
                    .entry(session)
                    .or_insert_with(|| Session::on(&edge));
                self.changed = true;
            }
            Presence::Renamed { session, name } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.name = name;
                }
            }
            Presence::Left { session } => {
                if self.sessions.remove(&session).is_some() {
                    self.changed = true;
                }
            }
            Presence::Heartbeat { edge, sessions } => {
                self.edges_seen.insert(edge.clone(), now);
                self.reconcile(&edge, sessions);
            }
        }
    }

    /// Makes this edge's sessions exactly those of its heartbeat.
    fn reconcile(&mut self, edge: &str, listed: Vec<(String, Option<String>)>) {
        let listed: HashMap<String, Option<String>> = listed.into_iter().collect();
        let before = self.sessions.len();
        self.sessions
            .retain(|id, s| s.edge != edge || listed.contains_key(id));
        let mut changed = self.sessions.len() != before;
        for (id, name) in listed {
            let s = self.sessions.entry(id).or_insert_with(|| {
                changed = true;
                Session::on(edge)
            });
            s.name = name;
        }
        self.changed |= changed;
    }

    /// Drops the sessions of edges silent for longer than `timeout` (they died).
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        let dead: Vec<String> = self
            .edges_seen
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) > timeout)
            .map(|(edge, _)| edge.clone())
            .collect();
        for edge in dead {
            tracing::warn!(%edge, "edge stopped sending heartbeats; dropping its sessions");
            self.edges_seen.remove(&edge);
            self.reconcile(&edge, Vec::new());
        }
    }

    /// Counts a persisted packet towards its session, if that session is still online.
    pub fn count(&mut self, fact: &Fact) {
        match fact {
            Fact::FrustClick { session, .. } => {
                if let Some(s) = self.sessions.get_mut(session) {
                    s.clicks += 1;
                }
            }
            Fact::FrustEvent { session, .. } | Fact::FrustEphemeral { session, .. } => {
                if let Some(s) = self.sessions.get_mut(session) {
                    s.events += 1;
                }
            }
            Fact::ChatMessage { .. } => {}
        }
    }

    /// The status to broadcast if anyone came or went since the last broadcast.
    pub fn take_status_change(&mut self) -> Option<Status> {
        let user_count = self.sessions.len() as u64;
        std::mem::take(&mut self.changed).then_some(Status { user_count })
    }

    /// Online sessions: what one `status` broadcast costs, in packets.
    pub fn online_count(&self) -> usize {
        self.sessions.len()
    }

    /// Edges heard from within the edge timeout (the silent ones are dropped by `expire`).
    pub fn edges(&self) -> impl Iterator<Item = &String> {
        self.edges_seen.keys()
    }

    pub fn online_users(&self) -> Vec<OnlineUser> {
        self.sessions
            .values()
            .map(|s| OnlineUser {
                name: s.name.clone(),
                click_count_session: s.clicks,
                event_count_session: s.events,
                click_count: s.clicks,
                event_count: s.events,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(s: &str, edge: &str) -> Presence {
        Presence::Joined {
            session: s.into(),
            edge: edge.into(),
        }
    }

    #[test]
    fn status_is_announced_once_per_change() {
        let now = Instant::now();
        let mut s = Sessions::default();
        for i in 0..1000 {
            s.apply(joined(&format!("s{i}"), "e"), now);
        }
        assert_eq!(s.take_status_change(), Some(Status { user_count: 1000 }));
        assert_eq!(s.take_status_change(), None);
        s.apply(
            Presence::Left {
                session: "s1".into(),
            },
            now,
        );
        s.apply(joined("s2000", "e"), now);
        assert_eq!(
            s.take_status_change(),
            Some(Status { user_count: 1000 }),
            "the newcomer must hear the count even when it did not change"
        );
    }

    #[test]
    fn sessions_count_their_own_packets() {
        let now = Instant::now();
        let mut s = Sessions::default();
        s.apply(joined("a", "e"), now);
        s.apply(
            Presence::Renamed {
                session: "a".into(),
                name: Some("ann".into()),
            },
            now,
        );
        s.count(&Fact::FrustClick {
            id: "1".into(),
            session: "a".into(),
            user: "ann".into(),
            timestamp: 0,
        });
        s.count(&Fact::FrustClick {
            id: "2".into(),
            session: "gone".into(),
            user: "x".into(),
            timestamp: 0,
        });
        let online = s.online_users();
        assert_eq!(online.len(), 1);
        assert_eq!(
            (online[0].name.as_deref(), online[0].click_count_session),
            (Some("ann"), 1)
        );
    }

    #[test]
    fn a_silent_edge_loses_its_sessions_and_heartbeats_rebuild_them() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        s.apply(joined("a", "e1"), t0);
        s.apply(joined("b", "e2"), t0);
        s.take_status_change();
        let later = t0 + Duration::from_secs(10);
        s.apply(
            Presence::Heartbeat {
                edge: "e2".into(),
                sessions: vec![("b".into(), None)],
            },
            later,
        );
        s.expire(later, Duration::from_secs(5));
        assert_eq!(
            s.take_status_change(),
            Some(Status { user_count: 1 }),
            "e1 died"
        );
        // The gauges' inputs: one session, one live edge.
        assert_eq!(s.online_count(), 1);
        assert_eq!(s.edges().collect::<Vec<_>>(), vec!["e2"]);
        // After an aggregator restart, a heartbeat alone brings sessions back with names.
        let mut fresh = Sessions::default();
        fresh.apply(
            Presence::Heartbeat {
                edge: "e2".into(),
                sessions: vec![("b".into(), Some("bob".into()))],
            },
            later,
        );
        assert_eq!(fresh.online_users()[0].name.as_deref(), Some("bob"));
        assert_eq!(fresh.take_status_change(), Some(Status { user_count: 1 }));
    }
}
