//! What a row of the original database becomes. The original did not sanitize every row (older
//! versions stored NULLs and empty strings, SQLite does not enforce `VARCHAR(n)`), so each row
//! is cleaned by the live API's rules, and a row that cannot be cleaned is skipped:
//!
//! - strings are stripped; an empty comment or style becomes null (as live);
//! - a NULL or empty `user` (or event `name`) skips the row: switchyard never stores one;
//! - a string over the live limit (user 15, comment 75, style 100, event name 64 characters)
//!   is cut to it, and the row kept;
//! - a number or blob where text belongs is read as its text (blobs as lossy UTF-8);
//! - a NULL, non-integer, negative or future `timestamp` skips the row (a future row would
//!   count in an hour that has not come).

use rusqlite::types::Value;
use switchyard_schema::frust::{
    Click, Event, MAX_COMMENT_CHARS, MAX_EVENT_NAME_CHARS, MAX_STYLE_CHARS, MAX_USER_CHARS,
};

/// One row as read, before cleaning.
#[derive(Debug, Clone)]
pub struct RawClick {
    pub id: i64,
    pub user: Value,
    pub comment: Value,
    pub style: Value,
    pub timestamp: Value,
}

#[derive(Debug, Clone)]
pub struct RawEvent {
    pub id: i64,
    pub user: Value,
    pub name: Value,
    pub timestamp: Value,
}

/// A row's cleaned value and what was repaired in it.
pub struct Cleaned<T> {
    pub row: T,
    pub repairs: Vec<String>,
}

pub type Outcome<T> = Result<Cleaned<T>, String>;

pub fn click(raw: &RawClick, now: i64) -> Outcome<Click> {
    let mut repairs = Vec::new();
    let user = required(&raw.user, "user", MAX_USER_CHARS, &mut repairs)?;
    let timestamp = timestamp(&raw.timestamp, now)?;
    let comment = optional(&raw.comment, "comment", MAX_COMMENT_CHARS, &mut repairs);
    let style = optional(&raw.style, "style", MAX_STYLE_CHARS, &mut repairs);
    Ok(Cleaned {
        row: Click {
            user,
            comment,
            style,
            timestamp,
        },
        repairs,
    })
}

pub fn event(raw: &RawEvent, now: i64) -> Outcome<Event> {
    let mut repairs = Vec::new();
    let user = required(&raw.user, "user", MAX_USER_CHARS, &mut repairs)?;
    let name = required(&raw.name, "name", MAX_EVENT_NAME_CHARS, &mut repairs)?;
    let timestamp = timestamp(&raw.timestamp, now)?;
    Ok(Cleaned {
        row: Event {
            user,
            name,
            timestamp,
        },
        repairs,
    })
}

/// A user name from the original's `users` table, by the same rule as a row's `user` (so a
/// cut name is compared with the rows it was cut in); `None` when it has none.
pub fn user_name(value: &Value) -> Option<String> {
    required(value, "user", MAX_USER_CHARS, &mut Vec::new()).ok()
}

/// An integer column of a counter table; NULL or not a number reads as 0.
pub fn count(value: &Value) -> i64 {
    match value {
        Value::Integer(n) => *n,
        Value::Real(f) => *f as i64,
        Value::Text(t) => t.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Text(t) => Some(t.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Real(f) => Some(f.to_string()),
        Value::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

fn optional(value: &Value, field: &str, max: usize, repairs: &mut Vec<String>) -> Option<String> {
    let raw = text(value)?;
    let stripped = raw.trim();
    if stripped.is_empty() {
        if !raw.is_empty() {
            repairs.push(format!("{field} blank, stored as null"));
        }
        return None;
    }
    let chars = stripped.chars().count();
    if chars > max {
        repairs.push(format!("{field} of {chars} characters cut to {max}"));
        return Some(stripped.chars().take(max).collect());
    }
    Some(stripped.to_owned())
}

fn required(
    value: &Value,
    field: &str,
    max: usize,
    repairs: &mut Vec<String>,
) -> Result<String, String> {
    match value {
        Value::Null => return Err(format!("{field} is NULL")),
        Value::Text(t) if t.trim().is_empty() => return Err(format!("{field} is empty")),
        _ => {}
    }
    optional(value, field, max, repairs).ok_or_else(|| format!("{field} is empty"))
}

fn timestamp(value: &Value, now: i64) -> Result<i64, String> {
    let t = match value {
        Value::Integer(n) => *n,
        Value::Real(f) if f.fract() == 0.0 => *f as i64,
        Value::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("timestamp {s:?} is not an integer"))?,
        Value::Null => return Err("timestamp is NULL".into()),
        other => return Err(format!("timestamp {other:?} is not an integer")),
    };
    if t < 0 {
        return Err(format!("timestamp {t} is before 1970"));
    }
    if t > now {
        return Err(format!("timestamp {t} is in the future (now {now})"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_click(user: Value, comment: Value, timestamp: Value) -> RawClick {
        RawClick {
            id: 1,
            user,
            comment,
            style: Value::Text("  ".into()),
            timestamp,
        }
    }

    #[test]
    fn cleans_by_the_live_rules() {
        let t = |s: &str| Value::Text(s.into());
        let ok = click(&raw_click(t(" ann "), t(""), Value::Integer(5)), 10).unwrap();
        assert_eq!(ok.row.user, "ann");
        assert_eq!((ok.row.comment, ok.row.style), (None, None));
        assert_eq!(ok.repairs, vec!["style blank, stored as null"]);

        let long = click(
            &raw_click(t(&"x".repeat(20)), t(&"c".repeat(80)), Value::Integer(5)),
            10,
        )
        .unwrap();
        assert_eq!(long.row.user.chars().count(), 15);
        assert_eq!(long.row.comment.unwrap().chars().count(), 75);
        assert_eq!(long.repairs.len(), 3);

        let skip = |r: RawClick| click(&r, 10).err().unwrap();
        assert_eq!(
            skip(raw_click(Value::Null, Value::Null, Value::Integer(5))),
            "user is NULL"
        );
        assert_eq!(
            skip(raw_click(t(" "), Value::Null, Value::Integer(5))),
            "user is empty"
        );
        assert!(skip(raw_click(t("a"), Value::Null, Value::Integer(11))).contains("future"));
        assert!(skip(raw_click(t("a"), Value::Null, Value::Null)).contains("NULL"));
        assert!(skip(raw_click(t("a"), Value::Null, t("soon"))).contains("not an integer"));
        assert_eq!(user_name(&Value::Integer(42)).as_deref(), Some("42"));
    }
}
