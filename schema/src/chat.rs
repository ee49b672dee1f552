//! The chat API: `{"type", "payload"}` packets over `/chat`, parsed and validated once here,
//! and the packets the server sends back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MAX_MESSAGE_CHARS: usize = 4000;
pub const MAX_ID_CHARS: usize = 128;
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 100;

/// Error codes clients see in `{"type":"error","payload":{"code","message"}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    UnknownType,
    InvalidPayload,
    /// Not a member of the room, or no such room: the same answer, so nothing leaks.
    Forbidden,
    FrameTooLarge,
    RateLimited,
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// A history page request, validated: limit capped, cursors optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub room_id: String,
    pub limit: u32,
    pub skip: u32,
    pub order: Order,
    /// Only messages older than this message id.
    pub before: Option<String>,
    /// Only messages newer than this message id.
    pub after: Option<String>,
}

/// A validated packet from a chat client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPacket {
    MessageSend { room_id: String, message: String },
    ChatJoin,
    Typing { room_id: String, is_typing: bool },
    ListMessages(HistoryQuery),
}

impl ClientPacket {
    /// The packet type label used in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientPacket::MessageSend { .. } => "message-send",
            ClientPacket::ChatJoin => "chat-join",
            ClientPacket::Typing { .. } => "typing",
            ClientPacket::ListMessages(_) => "list-message-request",
        }
    }

    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Rejection::new(ErrorCode::InvalidJson, format!("not JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| {
            Rejection::new(
                ErrorCode::InvalidJson,
                "a packet is an object {type, payload}",
            )
        })?;
        let kind = obj.get("type").and_then(Value::as_str).ok_or_else(|| {
            Rejection::new(ErrorCode::InvalidPayload, "field `type` must be a string")
        })?;
        let empty = Value::Object(Default::default());
        let payload = obj.get("payload").unwrap_or(&empty);
        let payload = Payload(payload.as_object().ok_or_else(|| {
            Rejection::new(
                ErrorCode::InvalidPayload,
                "field `payload` must be an object",
            )
        })?);
        match kind {
            "message-send" => {
                let message = payload.string("message", MAX_MESSAGE_CHARS)?;
                if message.trim().is_empty() {
                    return Err(invalid("field `message` must not be empty"));
                }
                Ok(ClientPacket::MessageSend {
                    room_id: payload.string("room_id", MAX_ID_CHARS)?,
                    message,
                })
            }
            "chat-join" => Ok(ClientPacket::ChatJoin),
            "typing" => Ok(ClientPacket::Typing {
                room_id: payload.string("room_id", MAX_ID_CHARS)?,
                is_typing: payload
                    .0
                    .get("is_typing")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| invalid("field `is_typing` must be a boolean"))?,
            }),
            "list-message-request" => Ok(ClientPacket::ListMessages(HistoryQuery {
                room_id: payload.string("room_id", MAX_ID_CHARS)?,
                limit: payload
                    .count("limit")?
                    .unwrap_or(DEFAULT_PAGE)
                    .min(MAX_PAGE),
                skip: payload.count("skip")?.unwrap_or(0),
                order: match payload.0.get("order") {
                    None | Some(Value::Null) => Order::default(),
                    Some(v) => serde_json::from_value(v.clone())
                        .map_err(|_| invalid("field `order` must be \"asc\" or \"desc\""))?,
                },
                before: payload.optional_string("before", MAX_ID_CHARS)?,
                after: payload.optional_string("after", MAX_ID_CHARS)?,
            })),
            other => Err(Rejection::new(
                ErrorCode::UnknownType,
                format!("unknown packet type `{}`", truncate(other, 64)),
            )),
        }
    }
}

fn invalid(message: impl Into<String>) -> Rejection {
    Rejection::new(ErrorCode::InvalidPayload, message)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

struct Payload<'a>(&'a serde_json::Map<String, Value>);

impl Payload<'_> {
    fn optional_string(&self, field: &str, max: usize) -> Result<Option<String>, Rejection> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(invalid(format!(
                "field `{field}` is longer than {max} characters"
            ))),
            Some(_) => Err(invalid(format!("field `{field}` must be a string"))),
        }
    }

    fn string(&self, field: &str, max: usize) -> Result<String, Rejection> {
        self.optional_string(field, max)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(format!("field `{field}` is required")))
    }

    fn count(&self, field: &str) -> Result<Option<u32>, Rejection> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n.min(u32::MAX as u64) as u32))
                .ok_or_else(|| invalid(format!("field `{field}` must be a non-negative integer"))),
        }
    }
}

/// A stored chat message as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: String,
    pub room_id: String,
    pub sender_id: String,
    pub message: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    pub room_id: String,
    pub name: Option<String>,
    /// The user who created the room and may remove others or delete it; `None` for rooms the
    /// operator created (admin token) and for rooms made before owners existed.
    #[serde(default)]
    pub owner: Option<String>,
    pub members: Vec<String>,
}

/// Packets the server sends, serialized as `{"type", "payload"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "kebab-case")]
pub enum ServerPacket {
    MessageReceive(ChatMessage),
    ChatJoinNotify {
        participant_id: String,
    },
    ChatLeave {
        participant_id: String,
    },
    TypingNotify {
        room_id: String,
        participant_id: String,
        is_typing: bool,
    },
    ListMessageResponse {
        room_id: String,
        messages: Vec<ChatMessage>,
        total_count: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl ServerPacket {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server packets always serialize")
    }

    pub fn error(r: &Rejection) -> Self {
        ServerPacket::Error {
            code: r.code,
            message: r.message.clone(),
        }
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        ClientPacket::parse(text).unwrap_err().code
    }

    #[test]
    fn parses_the_seed_packets() {
        assert_eq!(
            ClientPacket::parse(
                r#"{"type":"message-send","payload":{"message":"Hello","room_id":"room123"}}"#
            ),
            Ok(ClientPacket::MessageSend {
                room_id: "room123".into(),
                message: "Hello".into()
            })
        );
        assert_eq!(
            ClientPacket::parse(r#"{"type":"chat-join","payload":{"notice":"join"}}"#),
            Ok(ClientPacket::ChatJoin)
        );
        assert_eq!(
            ClientPacket::parse(r#"{"type":"typing","payload":{"is_typing":true,"room_id":"r"}}"#),
            Ok(ClientPacket::Typing {
                room_id: "r".into(),
                is_typing: true
            })
        );
        let q = ClientPacket::parse(
            r#"{"type":"list-message-request","payload":{"room_id":"r","limit":1000,"skip":0,"order":"asc"}}"#,
        )
        .unwrap();
        assert_eq!(
            q,
            ClientPacket::ListMessages(HistoryQuery {
                room_id: "r".into(),
                limit: MAX_PAGE,
                skip: 0,
                order: Order::Asc,
                before: None,
                after: None
            })
        );
    }

    #[test]
    fn rejects_with_the_right_code() {
        assert_eq!(code("not json"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidJson);
        assert_eq!(
            code(r#"{"type":"dance","payload":{}}"#),
            ErrorCode::UnknownType
        );
        assert_eq!(code(r#"{"payload":{}}"#), ErrorCode::InvalidPayload);
        assert_eq!(
            code(r#"{"type":"message-send","payload":{"room_id":"r"}}"#),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(r#"{"type":"message-send","payload":{"room_id":"r","message":"   "}}"#),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(r#"{"type":"typing","payload":{"room_id":"r","is_typing":"yes"}}"#),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(r#"{"type":"list-message-request","payload":{"room_id":"r","limit":-1}}"#),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(r#"{"type":"list-message-request","payload":{"room_id":"r","order":"up"}}"#),
            ErrorCode::InvalidPayload
        );
        let long = "x".repeat(MAX_MESSAGE_CHARS + 1);
        let packet =
            serde_json::json!({"type":"message-send","payload":{"room_id":"r","message":long}});
        assert_eq!(code(&packet.to_string()), ErrorCode::InvalidPayload);
    }

    #[test]
    fn server_packets_have_the_seed_shape() {
        let p = ServerPacket::TypingNotify {
            room_id: "r".into(),
            participant_id: "u".into(),
            is_typing: true,
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"type":"typing-notify","payload":{"room_id":"r","participant_id":"u","is_typing":true}})
        );
        let e = ServerPacket::error(&Rejection::new(ErrorCode::Forbidden, "no"));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"type":"error","payload":{"code":"forbidden","message":"no"}})
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_724_250_600_123), "2024-08-21T14:30:00.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
