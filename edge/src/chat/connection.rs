//! One chat websocket, served by one task: it reads and handles packets, drains the bounded send
//! queue (`outbox.rs`) and pings the client, so an idle connection is one small future, one
//! queue that holds nothing and the websocket's buffers. A send stuck on a client that stopped
//! reading does not stop the reading, nor a kick (slow consumer, drain) from closing at once.
//! The connection also ends when the token expires and when the client stays silent too long
//! (close codes: `close.rs`); the user's presence is updated on the way out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::{Sink, Stream, StreamExt};
use switchyard_bus::TypedBus;
use switchyard_schema::chat::{ErrorCode, Rejection, ServerPacket};
use switchyard_schema::envelope::ChatPresence;
use switchyard_schema::new_packet_id;
use switchyard_schema::topics;

use super::auth::Identity;
use super::outbox::{Next, Outbox};
use super::{close, packets, ChatEdge};
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

/// How a connection's loop ended.
enum Ending {
    /// Close with this code after sending what is still queued.
    Close(u16),
    /// Kicked (slow consumer or drain: "try again"; the server API): close now with the
    /// kick's code, whatever is queued.
    Kicked(u16),
    /// The client closed, went away or cannot be written to: nothing more to say.
    Gone,
}

/// What the websocket side has for the loop.
enum Io {
    Frame(Option<Result<Message, axum::Error>>),
    Kicked(u16),
    SendFailed,
}

/// The websocket's send side: a frame waiting for room in the websocket, and whether written
/// frames wait for a flush.
#[derive(Default)]
struct Sending {
    /// Taken from the queue (or a ping), waiting for the websocket to accept it.
    frame: Option<Message>,
    flushing: bool,
}

/// A packet being handled: boxed only while there is one, so an idle connection's future has
/// no room for the handler's (large) state.
type Handling<'a> = Pin<Box<dyn Future<Output = Result<(), Rejection>> + Send + 'a>>;

/// A plain `fn` returning the connection's future: an `async fn` would keep its arguments twice
/// (as captured and as locals), and the websocket and rate limiter are most of an idle
/// connection's task.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice"
)]
pub fn run(
    chat: Arc<ChatEdge>,
    identity: Identity,
    limiter: ConnectionLimiter,
    mut socket: WebSocket,
) -> impl Future<Output = ()> + Send {
    async move {
        let connection = new_packet_id();
        let outbox = Arc::new(Outbox::new(chat.config.send_queue));
        let user = &identity.user;
        chat.registry.add(user, &connection, outbox.clone());
        metrics::gauge!("switchyard_connections", "api" => "chat").increment(1.0);
        // Listen on the user's rooms before reading packets (their own messages come back that
        // way). The rare awaits are boxed: the task's future is only as large as its idle loop.
        Box::pin(chat.subscriptions.refresh_rooms_of(&chat, user)).await;
        Box::pin(publish_presence(
            &chat,
            ChatPresence::Connected {
                user: user.clone(),
                connection: connection.clone(),
                edge: chat.edge_id.clone(),
            },
        ))
        .await;

        let ending = serve(
            &chat,
            user,
            &limiter,
            &outbox,
            &mut socket,
            expiry(identity.expires_at),
        )
        .await;

        chat.registry.remove(user, &connection);
        if !chat.registry.has_user(user) {
            let (chat, user) = (chat.clone(), user.clone());
            tokio::spawn(async move { chat.subscriptions.refresh_rooms_of(&chat, &user).await });
        }
        Box::pin(finish(&mut socket, &outbox, ending)).await;
        outbox.close();
        metrics::gauge!("switchyard_connections", "api" => "chat").decrement(1.0);
        Box::pin(publish_presence(
            &chat,
            ChatPresence::Disconnected {
                user: identity.user.clone(),
                connection,
            },
        ))
        .await;
    }
}

/// The connection's life: frames in, queued packets and pings out, the idle and token clocks.
/// A plain `fn` for the same reason as `run`.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice"
)]
fn serve<'a>(
    chat: &'a ChatEdge,
    user: &'a str,
    limiter: &'a ConnectionLimiter,
    outbox: &'a Outbox,
    socket: &'a mut WebSocket,
    expires: tokio::time::Instant,
) -> impl Future<Output = Ending> + Send + 'a {
    async move {
        let mut abuse = AbuseMeter {
            window_start: Instant::now(),
            errors: 0,
        };
        let (ping_every, idle_timeout) = (chat.config.ping_interval, chat.config.idle_timeout);
        let now = tokio::time::Instant::now();
        // One timer for three deadlines; the idle one moves with every frame without touching it
        // (when it fires early it is set again).
        let mut next_ping = now + ping_every;
        let mut idle_at = now + idle_timeout;
        let timer = tokio::time::sleep_until(next_ping.min(idle_at).min(expires));
        tokio::pin!(timer);
        let mut sending = Sending::default();
        let mut ping_due = false;
        let mut handling: Option<Handling<'a>> = None;
        loop {
            let read = handling.is_none();
            let io = tokio::select! {
                biased;
                _ = &mut timer => {
                    let now = tokio::time::Instant::now();
                    if now >= expires {
                        metrics::counter!("switchyard_chat_closes_total", "reason" => "token_expired")
                            .increment(1);
                        tracing::debug!("closing a chat connection: its token expired");
                        return Ending::Close(close::TOKEN_EXPIRED);
                    }
                    if now >= idle_at {
                        metrics::counter!("switchyard_chat_closes_total", "reason" => "idle").increment(1);
                        if let Some(suppressed) = crate::refusals::due("chat", "idle") {
                            tracing::info!(
                                ip = %limiter.ip(),
                                idle_ms = idle_timeout.as_millis() as u64,
                                suppressed,
                                "closing a silent chat connection (no frame or pong within the idle timeout)"
                            );
                        }
                        return Ending::Close(close::IDLE);
                    }
                    if now >= next_ping {
                        ping_due = true;
                        next_ping = now + ping_every;
                    }
                    timer.as_mut().reset(next_ping.min(idle_at).min(expires));
                    continue;
                }
                result = std::future::poll_fn(|cx| match handling.as_mut() {
                    Some(h) => h.as_mut().poll(cx),
                    None => Poll::Pending,
                }), if !read => {
                    handling = None;
                    if let Err(r) = result {
                        if reject(outbox, &r, &mut abuse) {
                            return Ending::Close(close::POLICY);
                        }
                    }
                    continue;
                }
                io = std::future::poll_fn(|cx| {
                    drive(cx, socket, outbox, &mut sending, &mut ping_due, read)
                }) => io,
            };
            let msg = match io {
                Io::Frame(msg) => msg,
                Io::Kicked(code) => return Ending::Kicked(code),
                Io::SendFailed => return Ending::Gone,
            };
            // Anything from the client, a pong included, shows it is still there.
            idle_at = tokio::time::Instant::now() + idle_timeout;
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
                    let _ = outbox.try_send(ServerPacket::error(&r).to_json().into());
                    continue;
                }
                Verdict::Disconnect => {
                    if let Some(suppressed) = crate::refusals::due("chat", "flood") {
                        tracing::info!(ip = %limiter.ip(), suppressed, "closing a flooding chat connection");
                    }
                    return Ending::Close(close::POLICY);
                }
            }
            let text = match msg {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(_))) => {
                    let r = Rejection::new(ErrorCode::InvalidJson, "packets are JSON text frames");
                    if reject(outbox, &r, &mut abuse) {
                        return Ending::Close(close::POLICY);
                    }
                    continue;
                }
                Some(Err(e)) if is_too_big(&e) => {
                    metrics::counter!("switchyard_rejects_total", "api" => "chat", "reason" => "frame_too_large")
                        .increment(1);
                    if let Some(suppressed) = crate::refusals::due("chat", "frame_cap") {
                        tracing::info!(ip = %limiter.ip(), error = %e, suppressed, "closing a chat connection: frame over the size cap");
                    }
                    return Ending::Close(close::TOO_BIG);
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ending::Gone,
                Some(Ok(_)) => continue, // pings are answered by the websocket layer
            };
            if text.len() > chat.config.max_frame {
                let r = Rejection::new(
                    ErrorCode::FrameTooLarge,
                    format!("packets are limited to {} bytes", chat.config.max_frame),
                );
                if reject(outbox, &r, &mut abuse) {
                    return Ending::Close(close::POLICY);
                }
                continue;
            }
            // Handled while the queue and the pings go on; the next frame is read once it is done.
            handling = Some(Box::pin(async move {
                packets::handle(chat, user, outbox, text.as_str()).await
            }));
        }
    }
}

/// One step of the websocket's two directions: sends what is due (a ping before the queue, so a
/// busy queue cannot starve it), then reads a frame if `read`. Ready with a frame, a kick or a
/// failed send; a send stuck on the client leaves the reading and the kick going.
fn drive(
    cx: &mut Context<'_>,
    socket: &mut WebSocket,
    outbox: &Outbox,
    sending: &mut Sending,
    ping_due: &mut bool,
    read: bool,
) -> Poll<Io> {
    loop {
        // Frames are written while the queue has more and flushed once it has none: one write
        // for a burst, not one per frame (a fast reader keeps up with a busy room).
        let take = sending.frame.is_none() && !*ping_due;
        match outbox.poll_next(cx, take) {
            Poll::Ready(Next::Kicked(code)) => return Poll::Ready(Io::Kicked(code)),
            Poll::Ready(Next::Send(text)) => sending.frame = Some(Message::Text(text)),
            Poll::Pending if sending.frame.is_none() && *ping_due => {
                *ping_due = false;
                sending.frame = Some(Message::Ping(Bytes::new()));
            }
            Poll::Pending => {}
        }
        if let Some(frame) = sending.frame.take() {
            match Pin::new(&mut *socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    if Pin::new(&mut *socket).start_send(frame).is_err() {
                        return Poll::Ready(Io::SendFailed);
                    }
                    sending.flushing = true;
                    // The next frame, if one is queued, joins this write.
                    continue;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Io::SendFailed),
                Poll::Pending => sending.frame = Some(frame),
            }
        }
        if sending.flushing {
            match Pin::new(&mut *socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    sending.flushing = false;
                    // Flushed: look at the queue again (and register for what comes next).
                    continue;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Io::SendFailed),
                Poll::Pending => {}
            }
        }
        break;
    }
    if read {
        if let Poll::Ready(frame) = Pin::new(&mut *socket).poll_next(cx) {
            return Poll::Ready(Io::Frame(frame));
        }
    }
    Poll::Pending
}

/// Closes the connection the way `ending` says: what is still queued goes first unless kicked,
/// then the close frame; a connection we close gets its closing handshake read.
async fn finish(socket: &mut WebSocket, outbox: &Outbox, ending: Ending) {
    let code = match ending {
        Ending::Gone => {
            // The client is gone or closed: what is queued may still reach a closing client.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Some(text) = outbox.pop() {
                    if socket.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                let _ = socket.send(close_frame(close::NORMAL)).await;
            })
            .await;
            return;
        }
        Ending::Kicked(code) => code,
        Ending::Close(code) => {
            // Flush what is queued (the answer to the packet that ended it, say), boundedly.
            let flushed = tokio::time::timeout(Duration::from_secs(4), async {
                while let Some(text) = outbox.pop() {
                    socket.send(Message::Text(text)).await?;
                }
                Ok::<_, axum::Error>(())
            })
            .await;
            if !matches!(flushed, Ok(Ok(()))) {
                return;
            }
            code
        }
    };
    // A client that reads nothing would block the close too: give it a moment only.
    let close = socket.send(close_frame(code));
    if !matches!(
        tokio::time::timeout(Duration::from_secs(1), close).await,
        Ok(Ok(()))
    ) {
        return;
    }
    // Closing handshake: read (and drop) what the client still sends until it answers our
    // close; closing with unread input would reset the TCP connection and lose the close.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(msg)) = socket.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

fn close_frame(code: u16) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: close::reason(code).into(),
    }))
}

/// Answers a rejected packet; true when the client has abused its allowance and must go.
fn reject(tx: &Outbox, r: &Rejection, abuse: &mut AbuseMeter) -> bool {
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
    if let Err(e) = chat.bus.publish_to(&topics::PRESENCE_CHAT, &p).await {
        tracing::warn!(error = %e, "chat presence publish failed");
    }
}
