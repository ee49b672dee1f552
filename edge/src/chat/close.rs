//! The close codes `/chat` uses, each with the reason text sent along (README: "Close codes").

/// The client closed, or the connection ended normally.
pub const NORMAL: u16 = 1000;
/// Policy violation: flooding past the rate limit, or too many bad packets.
pub const POLICY: u16 = 1008;
/// A frame over the websocket size cap (4 × `SWITCHYARD_CHAT_MAX_FRAME`, at least 64 KiB).
pub const TOO_BIG: u16 = 1009;
/// Try again later: a slow consumer, or the edge is draining.
pub const TRY_AGAIN: u16 = 1013;
/// The token's `exp` passed while connected: reconnect with a fresh token.
pub const TOKEN_EXPIRED: u16 = 4001;
/// Nothing (not even a pong) came from the client within `SWITCHYARD_CHAT_IDLE_TIMEOUT_MS`.
pub const IDLE: u16 = 4002;
/// Closed through the server API (`switchyard server disconnect-chat-user`).
pub const DISCONNECTED: u16 = 4003;

pub fn reason(code: u16) -> &'static str {
    match code {
        POLICY => "policy violation",
        TOO_BIG => "message too big",
        TRY_AGAIN => "try again later",
        TOKEN_EXPIRED => "token expired",
        IDLE => "idle timeout",
        DISCONNECTED => "disconnected by the server",
        _ => "",
    }
}
