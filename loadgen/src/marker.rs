//! The marker a bench packet carries in its text (Frust `comment`, chat `message`):
//! `sy:<run>:<sender>:<seq>:<unix_micros>`. Receivers find it by substring and parse it without
//! building a JSON value; wall-clock micros let several processes on one machine agree.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

pub const PREFIX: &str = "sy:";

/// Longest marker: prefix, a 16-char run id, two u32 and a u64 (fits Frust's 75-char comment).
pub const MAX_LEN: usize = PREFIX.len() + crate::args::MAX_RUN_ID + 1 + 10 + 1 + 10 + 1 + 20;
const _: () = assert!(MAX_LEN <= switchyard_schema::frust::MAX_COMMENT_CHARS);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker<'a> {
    pub run: &'a str,
    pub sender: u32,
    pub seq: u32,
    pub sent_us: u64,
}

impl Marker<'_> {
    pub fn write(&self, out: &mut String) {
        let _ = write!(
            out,
            "{PREFIX}{}:{}:{}:{}",
            self.run, self.sender, self.seq, self.sent_us
        );
    }
}

/// Parses the marker at the start of `s` (which may go on after it, e.g. `…","style":null}`).
pub fn parse(s: &str) -> Option<Marker<'_>> {
    let s = s.strip_prefix(PREFIX)?;
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '-' || c == '_'))
        .unwrap_or(s.len());
    let mut parts = s[..end].split(':');
    let run = parts.next().filter(|r| !r.is_empty())?;
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Marker {
        run,
        sender,
        seq,
        sent_us,
    })
}

/// Finds the marker that follows `key` (e.g. `"comment":"`) in a JSON text.
pub fn find<'a>(text: &'a str, key: &str) -> Option<Marker<'a>> {
    let at = text.find(key)? + key.len();
    parse(&text[at..])
}

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Marker {
            run: "ab12",
            sender: 7,
            seq: 42,
            sent_us: 1_700_000_000_123_456,
        };
        let mut s = String::new();
        m.write(&mut s);
        assert_eq!(s, "sy:ab12:7:42:1700000000123456");
        assert_eq!(parse(&s), Some(m));
        let json = format!(r#"42["click",{{"user":"bench-7","comment":"{s}","style":null}}]"#);
        assert_eq!(find(&json, r#""comment":""#), Some(m));
    }

    #[test]
    fn longest_marker_fits_a_frust_comment() {
        let run = "x".repeat(crate::args::MAX_RUN_ID);
        let mut s = String::new();
        Marker {
            run: &run,
            sender: u32::MAX,
            seq: u32::MAX,
            sent_us: u64::MAX,
        }
        .write(&mut s);
        assert!(s.len() <= MAX_LEN);
    }

    #[test]
    fn rejects_foreign_text() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("sy:run:1:2"), None);
        assert_eq!(parse("sy::1:2:3"), None);
        assert_eq!(parse("sy:run:1:x:3"), None);
        assert_eq!(parse("sy:run:1:2:3:4"), None);
        assert_eq!(find(r#"{"comment":null}"#, r#""comment":""#), None);
    }
}
