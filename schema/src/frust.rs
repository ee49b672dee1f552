//! The Frust click-counter API: what clients may send (validated here, once, for every role),
//! what they receive, and the toast texts of the original backend.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MAX_USER_CHARS: usize = 15;
pub const MAX_COMMENT_CHARS: usize = 75;
/// The original had no cap on these; a cap keeps one client from bloating every broadcast.
pub const MAX_STYLE_CHARS: usize = 100;
pub const MAX_EVENT_NAME_CHARS: usize = 64;

/// Why an inbound packet was refused; the label is used as a metrics reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("payload must be a JSON object")]
    NotAnObject,
    #[error("field `{0}` is required")]
    Missing(&'static str),
    #[error("field `{0}` must be a string")]
    NotAString(&'static str),
    #[error("field `{field}` is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
}

/// A validated `click` from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickIn {
    pub user: String,
    pub comment: Option<String>,
    pub style: Option<String>,
}

/// A validated `event` from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIn {
    pub user: String,
    pub name: String,
}

/// Strips like Python's `str.strip()`; empty becomes `None`.
fn stripped(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn optional_text(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, Invalid> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let text = stripped(s);
            match &text {
                Some(t) if t.chars().count() > max => Err(Invalid::TooLong { field, max }),
                _ => Ok(text),
            }
        }
        Some(_) => Err(Invalid::NotAString(field)),
    }
}

fn required_text(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<String, Invalid> {
    optional_text(obj, field, max)?.ok_or(Invalid::Missing(field))
}

impl ClickIn {
    pub fn parse(payload: &Value) -> Result<Self, Invalid> {
        let obj = payload.as_object().ok_or(Invalid::NotAnObject)?;
        Ok(Self {
            user: required_text(obj, "user", MAX_USER_CHARS)?,
            comment: optional_text(obj, "comment", MAX_COMMENT_CHARS)?,
            style: optional_text(obj, "style", MAX_STYLE_CHARS)?,
        })
    }
}

impl EventIn {
    pub fn parse(payload: &Value) -> Result<Self, Invalid> {
        let obj = payload.as_object().ok_or(Invalid::NotAnObject)?;
        Ok(Self {
            user: required_text(obj, "user", MAX_USER_CHARS)?,
            name: required_text(obj, "name", MAX_EVENT_NAME_CHARS)?,
        })
    }
}

/// `auth(name)`: a string, stripped; empty means "no name".
pub fn parse_auth(payload: &Value) -> Result<Option<String>, Invalid> {
    match payload {
        Value::String(s) => {
            let name = stripped(s);
            match &name {
                Some(n) if n.chars().count() > MAX_USER_CHARS => Err(Invalid::TooLong {
                    field: "name",
                    max: MAX_USER_CHARS,
                }),
                _ => Ok(name),
            }
        }
        _ => Err(Invalid::NotAString("name")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Click {
    pub user: String,
    pub comment: Option<String>,
    pub style: Option<String>,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub user: String,
    pub name: String,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub click_count_total: i64,
    pub click_count_today: i64,
    pub click_count_hour: i64,
    pub event_count_total: i64,
    pub event_count_today: i64,
    pub event_count_hour: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub user_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub text: String,
    pub style: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Message {
    pub fn toast(text: String) -> Self {
        Self {
            text,
            style: Some("medium highlight".into()),
            kind: "toast".into(),
        }
    }
}

/// The toast a name change produces, if any: join, leave or rename.
pub fn name_change_toast(old: Option<&str>, new: Option<&str>) -> Option<Message> {
    let text = match (old, new) {
        (None, Some(new)) => format!("{new} ist beigetreten."),
        (Some(old), None) => format!("{old} hat verlassen."),
        (Some(old), Some(new)) if old != new => format!("{old} hat sich umbenannt zu {new}."),
        _ => return None,
    };
    Some(Message::toast(text))
}

/// The milestone toast for a session's `n`-th click: at 50 and at every multiple of 100.
pub fn milestone_toast(user: &str, session_clicks: u64) -> Option<Message> {
    (session_clicks == 50 || (session_clicks > 0 && session_clicks.is_multiple_of(100)))
        .then(|| Message::toast(format!("{user} erreicht {session_clicks} Klicks!")))
}

pub fn event_toast(user: &str, name: &str) -> Message {
    Message::toast(format!("{user} triggered {name}!"))
}

/// One row of `/api/latest_hours`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourRow {
    pub timestamp: i64,
    pub click_count: i64,
    pub event_count: i64,
    pub click_count_total: i64,
    pub event_count_total: i64,
}

/// One row of `/api/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub name: String,
    pub click_count: i64,
    pub event_count: i64,
}

/// One entry of `/api/online_users`: a connected socket. The shipped frontend reads the
/// `*_session` names; the README spells them without the suffix, so both are given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUser {
    pub name: Option<String>,
    pub click_count_session: u64,
    pub event_count_session: u64,
    pub click_count: u64,
    pub event_count: u64,
}

/// Builds the contiguous hour series `[from, to]` (hour starts) from the stored per-hour counts
/// (`(hour, clicks, events)`, any order, gaps allowed) and the current totals. Running totals
/// at the end of each hour are the current totals minus everything counted after it.
pub fn hour_series(
    from: i64,
    to: i64,
    hours: &[(i64, i64, i64)],
    click_total: i64,
    event_total: i64,
) -> Vec<HourRow> {
    use std::collections::HashMap;
    let by_hour: HashMap<i64, (i64, i64)> = hours.iter().map(|&(h, c, e)| (h, (c, e))).collect();
    let later_clicks: i64 = hours.iter().filter(|h| h.0 > to).map(|h| h.1).sum();
    let later_events: i64 = hours.iter().filter(|h| h.0 > to).map(|h| h.2).sum();
    let mut rows = Vec::new();
    let (mut clicks_after, mut events_after) = (later_clicks, later_events);
    let mut t = to;
    while t >= from {
        let (c, e) = by_hour.get(&t).copied().unwrap_or((0, 0));
        rows.push(HourRow {
            timestamp: t,
            click_count: c,
            event_count: e,
            click_count_total: click_total - clicks_after,
            event_count_total: event_total - events_after,
        });
        clicks_after += c;
        events_after += e;
        t -= crate::clock::HOUR;
    }
    rows.reverse();
    rows
}

/// Stats as of `now`, from the totals and the per-hour counts of (at least) today.
pub fn stats_at(now: i64, click_total: i64, event_total: i64, hours: &[(i64, i64, i64)]) -> Stats {
    let (day, hour) = (crate::clock::day_start(now), crate::clock::hour_start(now));
    let mut stats = Stats {
        click_count_total: click_total,
        event_count_total: event_total,
        ..Stats::default()
    };
    for &(h, clicks, events) in hours.iter().filter(|h| h.0 >= day && h.0 <= hour) {
        stats.click_count_today += clicks;
        stats.event_count_today += events;
        if h == hour {
            stats.click_count_hour += clicks;
            stats.event_count_hour += events;
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn click_strips_and_nulls_empty_fields() {
        let c =
            ClickIn::parse(&json!({"user": "  bob ", "comment": "   ", "style": null})).unwrap();
        assert_eq!(c.user, "bob");
        assert_eq!(c.comment, None);
        assert_eq!(c.style, None);
        let c = ClickIn::parse(&json!({"user": "bob", "comment": " hi "})).unwrap();
        assert_eq!(c.comment.as_deref(), Some("hi"));
    }

    #[test]
    fn click_rejects_bad_shapes() {
        for bad in [
            json!(null),
            json!("bob"),
            json!(5),
            json!([{"user": "bob"}]),
            json!({}),
            json!({"user": ""}),
            json!({"user": "   "}),
            json!({"user": 5}),
            json!({"user": null}),
            json!({"user": "bob", "comment": 7}),
            json!({"user": "bob", "style": {"a": 1}}),
        ] {
            assert!(ClickIn::parse(&bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        let ok = "ä".repeat(MAX_USER_CHARS);
        assert!(ClickIn::parse(&json!({ "user": ok })).is_ok());
        let long = "a".repeat(MAX_USER_CHARS + 1);
        assert_eq!(
            ClickIn::parse(&json!({ "user": long })),
            Err(Invalid::TooLong {
                field: "user",
                max: 15
            })
        );
        let comment = "c".repeat(MAX_COMMENT_CHARS + 1);
        assert!(ClickIn::parse(&json!({"user": "a", "comment": comment})).is_err());
    }

    #[test]
    fn event_needs_user_and_name() {
        assert!(EventIn::parse(&json!({"user": "a"})).is_err());
        assert!(EventIn::parse(&json!({"name": "x"})).is_err());
        let e = EventIn::parse(&json!({"user": " a", "name": "x "})).unwrap();
        assert_eq!((e.user.as_str(), e.name.as_str()), ("a", "x"));
    }

    #[test]
    fn auth_accepts_strings_only() {
        assert_eq!(parse_auth(&json!("  x ")), Ok(Some("x".into())));
        assert_eq!(parse_auth(&json!("  ")), Ok(None));
        assert!(parse_auth(&json!(3)).is_err());
        assert!(parse_auth(&json!(null)).is_err());
    }

    #[test]
    fn toasts_match_the_original_texts() {
        let t = |m: Option<Message>| m.map(|m| m.text);
        assert_eq!(
            t(name_change_toast(None, Some("a"))).unwrap(),
            "a ist beigetreten."
        );
        assert_eq!(
            t(name_change_toast(Some("a"), None)).unwrap(),
            "a hat verlassen."
        );
        assert_eq!(
            t(name_change_toast(Some("a"), Some("b"))).unwrap(),
            "a hat sich umbenannt zu b."
        );
        assert_eq!(name_change_toast(Some("a"), Some("a")), None);
        assert_eq!(name_change_toast(None, None), None);
        assert_eq!(event_toast("a", "x").text, "a triggered x!");
        let toast = serde_json::to_value(Message::toast("x".into())).unwrap();
        assert_eq!(
            toast,
            json!({"text": "x", "style": "medium highlight", "type": "toast"})
        );
    }

    #[test]
    fn milestones_at_50_and_every_100() {
        let hits: Vec<u64> = (1..=400)
            .filter(|&n| milestone_toast("u", n).is_some())
            .collect();
        assert_eq!(hits, vec![50, 100, 200, 300, 400]);
        assert_eq!(
            milestone_toast("u", 50).unwrap().text,
            "u erreicht 50 Klicks!"
        );
    }

    #[test]
    fn stats_split_today_and_hour() {
        let now = 86_400 * 10 + 7200 + 30;
        let hours = [
            (86_400 * 9 + 3600, 5, 1),
            (86_400 * 10, 2, 0),
            (86_400 * 10 + 7200, 3, 1),
        ];
        let s = stats_at(now, 100, 10, &hours);
        assert_eq!(
            (s.click_count_total, s.click_count_today, s.click_count_hour),
            (100, 5, 3)
        );
        assert_eq!(
            (s.event_count_total, s.event_count_today, s.event_count_hour),
            (10, 1, 1)
        );
    }

    #[test]
    fn hour_series_fills_gaps_and_keeps_running_totals() {
        // 10 clicks before the window, 2 in hour 3600, 3 in hour 10800, 1 after the window.
        let hours = [(0, 10, 0), (3600, 2, 1), (10800, 3, 0), (14400, 1, 0)];
        let rows = hour_series(3600, 10800, &hours, 16, 1);
        let got: Vec<(i64, i64, i64)> = rows
            .iter()
            .map(|r| (r.timestamp, r.click_count, r.click_count_total))
            .collect();
        assert_eq!(got, vec![(3600, 2, 12), (7200, 0, 12), (10800, 3, 15)]);
        assert_eq!(rows[0].event_count_total, 1);
    }
}
