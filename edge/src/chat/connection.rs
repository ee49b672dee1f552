//! One chat websocket: a reader that handles packets and a writer that drains the bounded
//! send queue. Either side ending ends both; the user's presence is updated on the way out.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use switchyard_schema::chat::{ErrorCode, Rejection, ServerPacket};
use switchyard_schema::envelope::ChatPresence;
use switchyard_schema::new_packet_id;
use switchyard_schema::subjects::PRESENCE_CHAT;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::registry::ConnectionHandle;
use super::{packets, ChatEdge};
use crate::frust::encoded;
use crate::limits::{ConnectionLimiter, Verdict};

/// A client making more mistakes than this within `ABUSE_WINDOW` is disconnected.
const ABUSE_LIMIT: u32 = 50;
const ABUSE_WINDOW: Duration = Duration::from_secs(10);
/// Close code for a policy violation (RFC 6455).
const CLOSE_POLICY: u16 = 1008;
/// Close code asking the client to come back later, used for slow consumers and drains.
const CLOSE_TRY_AGAIN: u16 = 1013;

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

pub async fn run(chat: Arc<ChatEdge>, user: String, limiter: ConnectionLimiter, socket: WebSocket) {
    let connection = new_packet_id();
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(chat.config.send_queue);
    let kick = CancellationToken::new();
    chat.registry.add(
        &user,
        &connection,
        ConnectionHandle {
            tx: tx.clone(),
            kick: kick.clone(),
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
    // Set by the reader before it lets the writer finish: how the connection is closed.
    let close_code = Arc::new(AtomicU16::new(1000));
    let mut writer = {
        let (kick, close_code) = (kick.clone(), close_code.clone());
        tokio::spawn(async move {
            let code = loop {
                // Slow consumer or drain: close now, whatever is still queued — even while a
                // send is stuck on a client that stopped reading.
                let text = tokio::select! {
                    biased;
                    _ = kick.cancelled() => break CLOSE_TRY_AGAIN,
                    next = rx.recv() => match next {
                        Some(text) => text,
                        None => break close_code.load(Ordering::SeqCst),
                    },
                };
                tokio::select! {
                    biased;
                    _ = kick.cancelled() => break CLOSE_TRY_AGAIN,
                    sent = sink.send(Message::Text(text)) => if sent.is_err() { return },
                }
            };
            let frame = CloseFrame {
                code,
                reason: "".into(),
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
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = kick.cancelled() => break,
        };
        let is_data = matches!(msg, Some(Ok(Message::Text(_) | Message::Binary(_))));
        match if is_data {
            limiter.check("chat")
        } else {
            Verdict::Allow
        } {
            Verdict::Allow => {}
            Verdict::Limit => {
                let r = Rejection::new(ErrorCode::RateLimited, "rate limited; slow down");
                let _ = tx.try_send(ServerPacket::error(&r).to_json().into());
                continue;
            }
            Verdict::Disconnect => {
                tracing::info!(ip = %limiter.ip(), "closing a flooding chat connection");
                close_code.store(CLOSE_POLICY, Ordering::SeqCst);
                break;
            }
        }
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                let r = Rejection::new(ErrorCode::InvalidJson, "packets are JSON text frames");
                if reject(&tx, &r, &mut abuse) {
                    close_code.store(CLOSE_POLICY, Ordering::SeqCst);
                    break;
                }
                continue;
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                client_left = true;
                break;
            }
            Some(Ok(_)) => continue, // ping/pong are answered by the websocket layer
        };
        if text.len() > chat.config.max_frame {
            let r = Rejection::new(
                ErrorCode::FrameTooLarge,
                format!("packets are limited to {} bytes", chat.config.max_frame),
            );
            if reject(&tx, &r, &mut abuse) {
                close_code.store(CLOSE_POLICY, Ordering::SeqCst);
                break;
            }
            continue;
        }
        if let Err(r) = packets::handle(&chat, &user, &tx, text.as_str()).await {
            if reject(&tx, &r, &mut abuse) {
                close_code.store(CLOSE_POLICY, Ordering::SeqCst);
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
        tracing::info!("closing abusive chat connection");
        return true;
    }
    false
}

async fn publish_presence(chat: &ChatEdge, p: ChatPresence) {
    if let Err(e) = chat.bus.publish(PRESENCE_CHAT, encoded(&p)).await {
        tracing::warn!(error = %e, "chat presence publish failed");
    }
}
