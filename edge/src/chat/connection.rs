//! One chat websocket: a reader that handles packets and a writer that drains the bounded
//! send queue and pings the client. Either side ending ends both; the user's presence is
//! updated on the way out. The reader also ends the connection when the token expires and when
//! the client stays silent too long (close codes: `close.rs`).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use switchyard_schema::chat::{ErrorCode, Rejection, ServerPacket};
use switchyard_schema::envelope::ChatPresence;
use switchyard_schema::new_packet_id;
use switchyard_schema::subjects::PRESENCE_CHAT;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::auth::Identity;
use super::registry::ConnectionHandle;
use super::{close, packets, ChatEdge};
use crate::frust::encoded;
use crate::limits::{ConnectionLimiter, Verdict};

/// A client making more mistakes than this within `ABUSE_WINDOW` is disconnected.
const ABUSE_LIMIT: u32 = 50;
const ABUSE_WINDOW: Duration = Duration::from_secs(10);

/// Counts a connection's rejected packets in a fixed window.
struct AbuseMeter {
    window_start: Instant,
    errors: u32,
}

impl AbuseMeter {
    fn strike(&mut self) -> bool {
        if self.window_start.elapsed() > ABUSE_WINDOW {
            self.window_start = Instant::now();
            self.errors = 0;
        }
        self.errors += 1;
        self.errors > ABUSE_LIMIT
    }
}

/// When a token valid until `expires_at` (Unix seconds) runs out, on the runtime's clock.
fn expiry(expires_at: u64) -> tokio::time::Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(expires_at).saturating_sub(now);
    // A token valid for centuries: far enough.
    let left = left.min(Duration::from_secs(100 * 365 * 86_400));
    tokio::time::Instant::now() + left
}

/// The websocket layer refused a frame over its size cap.
fn is_too_big(e: &axum::Error) -> bool {
    use std::error::Error;
    matches!(
        e.source()
            .and_then(|s| s.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}

pub async fn run(
    chat: Arc<ChatEdge>,
    identity: Identity,
    limiter: ConnectionLimiter,
    socket: WebSocket,
) {
    let user = identity.user;
    let connection = new_packet_id();
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(chat.config.send_queue);
    let kick = CancellationToken::new();
    // How the connection is closed: set by the reader before it lets the writer finish, or by
    // whoever kicks it.
    let close_code = Arc::new(AtomicU16::new(close::NORMAL));
    chat.registry.add(
        &user,
        &connection,
        ConnectionHandle {
            tx: tx.clone(),
            kick: kick.clone(),
            close_code: close_code.clone(),
        },
    );
    metrics::gauge!("switchyard_connections", "api" => "chat").increment(1.0);
    // Listen on the user's rooms before reading packets (their own messages come back that way).
    chat.subscriptions.refresh_rooms_of(&chat, &user).await;
    publish_presence(
        &chat,
        ChatPresence::Connected {
            user: user.clone(),
            connection: connection.clone(),
            edge: chat.edge_id.clone(),
        },
    )
    .await;

    let (mut sink, mut stream) = socket.split();
    let ping_every = chat.config.ping_interval;
    let mut writer = {
        let (kick, close_code) = (kick.clone(), close_code.clone());
        tokio::spawn(async move {
            let mut ping =
                tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
            ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let code = loop {
                // Kicked (slow consumer, drain, server API): close now, whatever is still queued — even while a
                // send is stuck on a client that stopped reading. The ping comes before the
                // queue, so a busy queue cannot starve it.
                let outgoing = tokio::select! {
                    biased;
                    _ = kick.cancelled() => break close_code.load(Ordering::SeqCst),
                    _ = ping.tick() => Message::Ping(Bytes::new()),
                    next = rx.recv() => match next {
                        Some(text) => Message::Text(text),
                        None => break close_code.load(Ordering::SeqCst),
                    },
                };
                tokio::select! {
                    biased;
                    _ = kick.cancelled() => break close_code.load(Ordering::SeqCst),
                    sent = sink.send(outgoing) => if sent.is_err() { return },
                }
            };
            let frame = CloseFrame {
                code,
                reason: close::reason(code).into(),
            };
            // A client that reads nothing would block the close too: give it a moment only.
            let close = sink.send(Message::Close(Some(frame)));
            let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
        })
    };

    let mut client_left = false;
    let mut abuse = AbuseMeter {
        window_start: Instant::now(),
        errors: 0,
    };
    let idle_timeout = chat.config.idle_timeout;
    let idle = tokio::time::sleep(idle_timeout);
    let expired = tokio::time::sleep_until(expiry(identity.expires_at));
    tokio::pin!(idle, expired);
    let end = |code: u16| close_code.store(code, Ordering::SeqCst);
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = kick.cancelled() => break,
            _ = &mut expired => {
                metrics::counter!("switchyard_chat_closes_total", "reason" => "token_expired")
                    .increment(1);
                tracing::debug!("closing a chat connection: its token expired");
                end(close::TOKEN_EXPIRED);
                break;
            }
            _ = &mut idle => {
                metrics::counter!("switchyard_chat_closes_total", "reason" => "idle").increment(1);
                if let Some(suppressed) = crate::refusals::due("chat", "idle") {
                    tracing::info!(
                        ip = %limiter.ip(),
                        idle_ms = idle_timeout.as_millis() as u64,
                        suppressed,
                        "closing a silent chat connection (no frame or pong within the idle timeout)"
                    );
                }
                end(close::IDLE);
                break;
            }
        };
        // Anything from the client, a pong included, shows it is still there.
        idle.as_mut()
            .reset(tokio::time::Instant::now() + idle_timeout);
        // Every frame but a close counts against the connection's rate: control frames too (a
        // ping costs the server a pong).
        let is_data = matches!(msg, Some(Ok(Message::Text(_) | Message::Binary(_))));
        let is_control = matches!(msg, Some(Ok(Message::Ping(_) | Message::Pong(_))));
        match if is_data || is_control {
            limiter.check("chat")
        } else {
            Verdict::Allow
        } {
            Verdict::Allow => {}
            // An over-limit control frame gets no answer of ours: that would feed the flood.
            Verdict::Limit if is_control => continue,
            Verdict::Limit => {
                let r = Rejection::new(ErrorCode::RateLimited, "rate limited; slow down");
                let _ = tx.try_send(ServerPacket::error(&r).to_json().into());
                continue;
            }
            Verdict::Disconnect => {
                if let Some(suppressed) = crate::refusals::due("chat", "flood") {
                    tracing::info!(ip = %limiter.ip(), suppressed, "closing a flooding chat connection");
                }
                end(close::POLICY);
                break;
            }
        }
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                let r = Rejection::new(ErrorCode::InvalidJson, "packets are JSON text frames");
                if reject(&tx, &r, &mut abuse) {
                    end(close::POLICY);
                    break;
                }
                continue;
            }
            Some(Err(e)) if is_too_big(&e) => {
                metrics::counter!("switchyard_rejects_total", "api" => "chat", "reason" => "frame_too_large")
                    .increment(1);
                if let Some(suppressed) = crate::refusals::due("chat", "frame_cap") {
                    tracing::info!(ip = %limiter.ip(), error = %e, suppressed, "closing a chat connection: frame over the size cap");
                }
                end(close::TOO_BIG);
                break;
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                client_left = true;
                break;
            }
            Some(Ok(_)) => continue, // pings are answered by the websocket layer
        };
        if text.len() > chat.config.max_frame {
            let r = Rejection::new(
                ErrorCode::FrameTooLarge,
                format!("packets are limited to {} bytes", chat.config.max_frame),
            );
            if reject(&tx, &r, &mut abuse) {
                end(close::POLICY);
                break;
            }
            continue;
        }
        if let Err(r) = packets::handle(&chat, &user, &tx, text.as_str()).await {
            if reject(&tx, &r, &mut abuse) {
                end(close::POLICY);
                break;
            }
        }
    }

    // The registry held the only other sender: once it is gone the writer flushes and closes.
    chat.registry.remove(&user, &connection);
    drop(tx);
    if !chat.registry.has_user(&user) {
        let (chat, user) = (chat.clone(), user.clone());
        tokio::spawn(async move { chat.subscriptions.refresh_rooms_of(&chat, &user).await });
    }
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    if !client_left {
        // Closing handshake: read (and drop) what the client still sends until it answers our
        // close; closing with unread input would reset the TCP connection and lose the close.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    metrics::gauge!("switchyard_connections", "api" => "chat").decrement(1.0);
    publish_presence(&chat, ChatPresence::Disconnected { user, connection }).await;
}

/// Answers a rejected packet; true when the client has abused its allowance and must go.
fn reject(tx: &mpsc::Sender<Utf8Bytes>, r: &Rejection, abuse: &mut AbuseMeter) -> bool {
    metrics::counter!("switchyard_rejects_total", "api" => "chat", "reason" => r.code.as_str())
        .increment(1);
    let _ = tx.try_send(ServerPacket::error(r).to_json().into());
    if abuse.strike() {
        let _ = tx.try_send(
            ServerPacket::error(&Rejection::new(
                ErrorCode::RateLimited,
                "too many bad packets; closing",
            ))
            .to_json()
            .into(),
        );
        metrics::counter!("switchyard_abuse_disconnects_total", "api" => "chat").increment(1);
        if let Some(suppressed) = crate::refusals::due("chat", "abuse") {
            tracing::info!(
                suppressed,
                "closing an abusive chat connection (too many bad packets)"
            );
        }
        return true;
    }
    false
}

async fn publish_presence(chat: &ChatEdge, p: ChatPresence) {
    if let Err(e) = chat.bus.publish(PRESENCE_CHAT, encoded(&p)).await {
        tracing::warn!(error = %e, "chat presence publish failed");
    }
}
