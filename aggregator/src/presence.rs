//! Who is online: one entry per connected Socket.IO session, with its session counts.

use std::collections::HashMap;

use switchyard_schema::envelope::{Fact, Presence};
use switchyard_schema::frust::{OnlineUser, Status};

#[derive(Debug, Default)]
struct Session {
    name: Option<String>,
    clicks: u64,
    events: u64,
}

#[derive(Debug, Default)]
pub struct Sessions {
    sessions: HashMap<String, Session>,
    /// A session came or went since the last `status`: everyone (the newcomer included)
    /// must hear the count, even when it is the same number as before.
    changed: bool,
}

impl Sessions {
    pub fn apply(&mut self, p: Presence) {
        match p {
            Presence::Joined { session, .. } => {
                self.sessions.entry(session).or_default();
                self.changed = true;
            }
            Presence::Renamed { session, name } => {
                self.sessions.entry(session).or_default().name = name;
            }
            Presence::Left { session } => {
                self.sessions.remove(&session);
                self.changed = true;
            }
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
            Fact::FrustEvent { session, .. } => {
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

    #[test]
    fn status_is_announced_once_per_change() {
        let mut s = Sessions::default();
        for i in 0..1000 {
            s.apply(Presence::Joined {
                session: format!("s{i}"),
                edge: "e".into(),
            });
        }
        assert_eq!(s.take_status_change(), Some(Status { user_count: 1000 }));
        assert_eq!(s.take_status_change(), None);
        s.apply(Presence::Left {
            session: "s1".into(),
        });
        s.apply(Presence::Joined {
            session: "s2000".into(),
            edge: "e".into(),
        });
        assert_eq!(
            s.take_status_change(),
            Some(Status { user_count: 1000 }),
            "the newcomer must hear the count even when it did not change"
        );
    }

    #[test]
    fn sessions_count_their_own_packets() {
        let mut s = Sessions::default();
        s.apply(Presence::Joined {
            session: "a".into(),
            edge: "e".into(),
        });
        s.apply(Presence::Renamed {
            session: "a".into(),
            name: Some("ann".into()),
        });
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
}
