//! Socket.IO over a websocket, just enough for a load generator: Engine.IO v3 and v4 framing,
//! the default namespace, events with acknowledgements. Verified against switchyard
//! (socketioxide):
//!
//! - v4 (`EIO=4`): server `0{open}`, client `40`, server `40{"sid":…}`; the server pings `2`,
//!   the client answers `3`.
//! - v3 (`EIO=3`): server `0{open}` then `40` by itself; the client pings `2` every
//!   `pingInterval`, the server answers `3`.
//! - Events `42["name",payload]`, with an ack id `42<id>[…]`; acks `43<id>[…]`;
//!   connection refused by a middleware `44{"message":…}`.

use std::fmt::Write;
use std::time::Duration;

use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::args::Protocol;
use crate::net::{next_handshake_text, ConnectError, Ws};

/// The websocket path and query for a protocol version.
pub fn path(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::V4 => "/api/socket.io/?EIO=4&transport=websocket",
        Protocol::V3 => "/api/socket.io/?EIO=3&transport=websocket",
    }
}

/// One websocket text frame, decoded as far as the bench needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Engine.IO open, with its JSON (`sid`, `pingInterval`, …).
    Open(&'a str),
    Close,
    Ping,
    Pong,
    Connect,
    Disconnect,
    /// `42[…]`: an event, its ack id if it asks for one, and the JSON array.
    Event {
        ack: Option<u64>,
        body: &'a str,
    },
    /// `43<id>[…]`: the answer to an event we sent with an ack id.
    Ack {
        id: u64,
        body: &'a str,
    },
    /// `44{…}`: the server refused the namespace connection.
    ConnectError(&'a str),
    Other,
}

pub fn decode(text: &str) -> Frame<'_> {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b'0') => Frame::Open(&text[1..]),
        Some(b'1') => Frame::Close,
        Some(b'2') => Frame::Ping,
        Some(b'3') => Frame::Pong,
        Some(b'4') => decode_socketio(&text[1..]),
        _ => Frame::Other,
    }
}

fn decode_socketio(text: &str) -> Frame<'_> {
    let Some(&kind) = text.as_bytes().first() else {
        return Frame::Other;
    };
    let rest = skip_namespace(&text[1..]);
    match kind {
        b'0' => Frame::Connect,
        b'1' => Frame::Disconnect,
        b'2' => {
            let (ack, body) = ack_id(rest);
            Frame::Event { ack, body }
        }
        b'3' => match ack_id(rest) {
            (Some(id), body) => Frame::Ack { id, body },
            (None, _) => Frame::Other,
        },
        b'4' => Frame::ConnectError(rest),
        _ => Frame::Other,
    }
}

/// Only the default namespace is used; a `/nsp,` prefix is skipped all the same.
fn skip_namespace(s: &str) -> &str {
    if s.starts_with('/') {
        s.find(',').map_or("", |i| &s[i + 1..])
    } else {
        s
    }
}

fn ack_id(s: &str) -> (Option<u64>, &str) {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    (s[..digits].parse().ok(), &s[digits..])
}

/// `true` when an event body is the event `name` (`["name",…` or `["name"]`).
pub fn is_event(body: &str, name: &str) -> bool {
    body.strip_prefix("[\"")
        .and_then(|b| b.strip_prefix(name))
        .is_some_and(|b| b.starts_with("\",") || b.starts_with("\"]"))
}

/// Writes `42<ack>["name",<payload json>]` into `out` (cleared first).
pub fn encode_event(out: &mut String, ack: Option<u64>, name: &str, payload_json: &str) {
    out.clear();
    out.push_str("42");
    if let Some(id) = ack {
        let _ = write!(out, "{id}");
    }
    let _ = write!(out, "[\"{name}\",{payload_json}]");
}

/// The outcome an ack body reports: `[{"ok":true}]` or `[{"ok":false,"error":"…"}]`.
pub fn ack_outcome(body: &str) -> Result<(), String> {
    if body.contains("\"ok\":true") {
        return Ok(());
    }
    let parsed: Result<Vec<serde_json::Value>, _> = serde_json::from_str(body);
    let reason = parsed
        .ok()
        .and_then(|v| v.into_iter().next())
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unreadable acknowledgement".to_owned());
    Err(reason)
}

/// `pingInterval` of an open packet's JSON, for v3 clients that must ping.
pub fn ping_interval(open_json: &str) -> Option<Duration> {
    #[derive(serde::Deserialize)]
    struct Open {
        #[serde(rename = "pingInterval")]
        ping_interval: u64,
    }
    serde_json::from_str::<Open>(open_json)
        .ok()
        .map(|o| Duration::from_millis(o.ping_interval))
}

/// A connected Socket.IO session. `ping_every` is set for v3, where the client must ping.
pub struct Session {
    pub ws: Ws,
    pub ping_every: Option<Duration>,
}

/// Runs the Engine.IO and Socket.IO handshakes on a fresh websocket, until the default
/// namespace is connected.
pub async fn handshake(mut ws: Ws, protocol: Protocol) -> Result<Session, ConnectError> {
    let mut ping_every = None;
    loop {
        let text = next_handshake_text(&mut ws).await?;
        match decode(&text) {
            Frame::Open(json) => {
                if protocol == Protocol::V3 {
                    ping_every = Some(ping_interval(json).unwrap_or(Duration::from_secs(25)));
                } else {
                    send(&mut ws, "40").await?;
                }
            }
            Frame::Ping => send(&mut ws, "3").await?,
            Frame::Connect => return Ok(Session { ws, ping_every }),
            Frame::ConnectError(json) => return Err(ConnectError::Refused(refusal(json))),
            Frame::Close | Frame::Disconnect => return Err(ConnectError::Closed),
            _ => {}
        }
    }
}

async fn send(ws: &mut Ws, text: &'static str) -> Result<(), ConnectError> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| ConnectError::from_ws(&e))
}

/// The `message` of a connect_error (`{"message":"…"}` in v4, a JSON string in v3).
fn refusal(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => v
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string()),
        Err(_) => json.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_engine_io_frames() {
        assert_eq!(
            decode(r#"0{"sid":"a","pingInterval":25000}"#),
            Frame::Open(r#"{"sid":"a","pingInterval":25000}"#)
        );
        assert_eq!(decode("2"), Frame::Ping);
        assert_eq!(decode("3"), Frame::Pong);
        assert_eq!(decode("1"), Frame::Close);
        assert_eq!(decode("6"), Frame::Other);
        assert_eq!(decode(""), Frame::Other);
    }

    #[test]
    fn decodes_socket_io_packets() {
        assert_eq!(decode("40"), Frame::Connect);
        assert_eq!(decode(r#"40{"sid":"x"}"#), Frame::Connect);
        assert_eq!(decode("41"), Frame::Disconnect);
        assert_eq!(
            decode(r#"42["click",{"user":"a"}]"#),
            Frame::Event {
                ack: None,
                body: r#"["click",{"user":"a"}]"#
            }
        );
        assert_eq!(
            decode(r#"4217["click",{}]"#),
            Frame::Event {
                ack: Some(17),
                body: r#"["click",{}]"#
            }
        );
        assert_eq!(
            decode(r#"431[{"ok":true}]"#),
            Frame::Ack {
                id: 1,
                body: r#"[{"ok":true}]"#
            }
        );
        assert_eq!(
            decode(r#"42/admin,["x"]"#),
            Frame::Event {
                ack: None,
                body: r#"["x"]"#
            }
        );
        assert_eq!(
            decode(r#"44{"message":"no"}"#),
            Frame::ConnectError(r#"{"message":"no"}"#)
        );
        assert_eq!(refusal(r#"{"message":"too many"}"#), "too many");
        assert_eq!(refusal(r#""v3 says no""#), "v3 says no");
    }

    #[test]
    fn events_and_acks() {
        let mut out = String::new();
        encode_event(&mut out, Some(3), "click", r#"{"user":"u"}"#);
        assert_eq!(out, r#"423["click",{"user":"u"}]"#);
        encode_event(&mut out, None, "auth", r#""bob""#);
        assert_eq!(out, r#"42["auth","bob"]"#);
        assert!(is_event(r#"["click",{}]"#, "click"));
        assert!(is_event(r#"["click"]"#, "click"));
        assert!(!is_event(r#"["clicks",{}]"#, "click"));
        assert!(!is_event(r#"["status",{}]"#, "click"));
        assert_eq!(ack_outcome(r#"[{"ok":true}]"#), Ok(()));
        assert_eq!(
            ack_outcome(r#"[{"ok":false,"error":"rate limited; slow down"}]"#),
            Err("rate limited; slow down".to_owned())
        );
        assert!(ack_outcome("garbage").is_err());
    }

    #[test]
    fn ping_interval_of_open() {
        let open = r#"{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#;
        assert_eq!(ping_interval(open), Some(Duration::from_secs(25)));
        assert_eq!(ping_interval("{}"), None);
    }
}
