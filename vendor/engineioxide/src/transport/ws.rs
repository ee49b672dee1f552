//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::sync::Arc;

use std::{future::poll_fn, task::Poll};

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use smallvec::smallvec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::future::FutureExt as _;

use engineioxide_core::{Packet, PacketBuf, ProtocolVersion, Sid, Str, TransportType};

use super::heartbeat::Heartbeat;
use crate::{
    DisconnectReason, Socket, body::ResponseBody, config::EngineIoConfig, engine::EngineIo,
    errors::Error, handler::EngineIoHandler, queue::PacketQueue, transport::make_open_packet,
};

/// Create a response for websocket upgrade
fn ws_response<B>(ws_key: &HeaderValue) -> Response<ResponseBody<B>> {
    let derived = derive_accept_key(ws_key.as_bytes());
    let sec = derived.parse::<HeaderValue>().unwrap();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )
        .header(http::header::SEC_WEBSOCKET_ACCEPT, sec)
        .body(ResponseBody::empty_response())
        .unwrap() // we are only using constants
}

/// Upgrade a websocket request to create a websocket connection.
///
/// If a sid is provided in the query it means that is is upgraded from an existing HTTP polling request.
/// In this case the http polling request is closed and the SID is kept for the websocket
pub fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts.clone(), body);

    let ws_key = parts
        .headers
        .get("Sec-WebSocket-Key")
        .ok_or(Error::InvalidWebSocketKey)?
        .clone();

    // Boxed, as are the closing and each write: the session's task then keeps room for an idle
    // session's state only, not for the request, the HTTP upgrade or the opening handshake.
    let opening = {
        let engine = engine.clone();
        Box::pin(async move {
            let conn = match hyper::upgrade::on(req).await {
                Ok(conn) => hyper_util::rt::TokioIo::new(conn),
                Err(_e) => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!("ws upgrade error: {}", _e);
                    return None;
                }
            };
            Some(open(&engine, conn, protocol, sid, parts).await)
        })
    };
    tokio::spawn(async move {
        let res = match opening.await {
            None => return,
            Some(Ok(session)) => {
                serve(session).await;
                Ok(())
            }
            Some(Err(e)) => Err(e),
        };

        match res {
            Ok(()) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed")
            }
            Err(Error::MultipleWebsocketRequests) => {}
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed with error: {_e}");
                if let Some(sid) = sid {
                    engine.close_session(sid, DisconnectReason::TransportError);
                }
            }
        }
    });

    Ok(ws_response(&ws_key))
}

/// Handle a websocket connection upgrade
///
/// Sends an open packet if it is not an upgrade from a polling request
///
/// Serves the session until the connection is closed: one task reads the client's packets,
/// writes the queued ones and, for a session that opened on websocket, keeps the heartbeat
/// (switchyard patch 2, see PATCHES.md; it was three tasks).
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", name = "init_websocket", skip(engine, conn, req_data))
)]
pub async fn on_init<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let session = Box::pin(open(&engine, conn, protocol, sid, req_data)).await?;
    serve(session).await;
    Ok(())
}

/// Serves an opened session until it closes, then closes its websocket. The session is never
/// moved: a move would take room of its own in this future.
///
/// Not an `async fn`: one stores its arguments twice (as the future's captures and as locals).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn serve<H: EngineIoHandler, S>(mut session: WsSession<H, S>) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let (engine, socket) = (session.engine.clone(), session.socket.clone());
        // A polling request that was in progress during the upgrade may still hold the lock.
        let locking = socket
            .internal_rx
            .lock()
            .with_cancellation_token(&socket.cancellation_token);
        let Some(_receiver) = Box::pin(locking).await else {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "session closed before its websocket was served");
            return;
        };

        match session.serve().await {
            End::Error(ref e) => {
                let reason =
                    Option::<DisconnectReason>::from(e).unwrap_or(DisconnectReason::TransportError);

                #[cfg(feature = "tracing")]
                tracing::debug!("error when handling packet: {:?}", e);
                engine.close_session(socket.id, reason);
            }
            End::Closed => {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = %socket.id, "ws transport was closed");
                engine.close_session(socket.id, DisconnectReason::TransportClose);
            }
            End::Cancelled => {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = %socket.id, "socket is closing");
            }
        }
        Box::pin(session.close()).await;
    }
}

/// Opens a session on this websocket, or upgrades a polling one to it.
async fn open<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<WsSession<H, S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(engine.config.ws_read_buffer_size)
        .max_message_size(Some(engine.config.ws_max_message_size))
        .max_frame_size(Some(engine.config.ws_max_frame_size));

    let ws_init = move || WebSocketStream::from_raw_socket(conn, Role::Server, Some(ws_config));
    if let Some(sid) = sid {
        match engine.get_socket(sid) {
            None => Err(Error::UnknownSessionID(sid)),
            Some(socket) if socket.is_ws() => Err(Error::MultipleWebsocketRequests),
            Some(socket) => {
                let ws = upgrade(engine, &socket, ws_init).await?;
                // The heartbeat job the polling session started goes on.
                Ok(WsSession::new(engine, socket, ws, None))
            }
        }
    } else {
        let socket = engine.create_session(protocol, TransportType::Websocket, req_data, false);

        #[cfg(feature = "tracing")]
        tracing::debug!("new websocket connection");

        let mut ws = ws_init().await;
        init_handshake(socket.id, &mut ws, &engine.config).await?;
        let heartbeat = Heartbeat::new(
            protocol,
            engine.config.ping_interval,
            engine.config.ping_timeout,
        );
        Ok(WsSession::new(engine, socket, ws, Some(heartbeat)))
    }
}

/// Upgrades a polling session to this websocket, within the upgrade timeout.
async fn upgrade<H: EngineIoHandler, S, F>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    ws_init: impl FnOnce() -> F,
) -> Result<WebSocketStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = WebSocketStream<S>>,
{
    let mut ws = ws_init().await;

    let upgrade_fut = upgrade_handshake::<H, S>(socket, &mut ws);
    match tokio::time::timeout(engine.config.upgrade_timeout, upgrade_fut)
        .with_cancellation_token(&socket.cancellation_token)
        .await
    {
        Some(Ok(res)) => res?,
        Some(Err(_)) => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "ws upgrade timed out, closing session");
            engine.close_session(socket.id, DisconnectReason::TransportError);
            return Err(Error::Upgrade);
        }
        None => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "socket is being closed");
            return Err(Error::Upgrade);
        }
    }
    Ok(ws)
}

/// How a websocket session ended.
enum End {
    /// The client closed it (a close packet or frame, or the end of the stream).
    Closed,
    /// The session was closed on the server side (its cancellation token).
    Cancelled,
    Error(Error),
}

/// One websocket session, served by one task.
struct WsSession<H: EngineIoHandler, S> {
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    ws: WebSocketStream<S>,
    /// Kept here for a session that opened on websocket; `None` after an upgrade.
    heartbeat: Option<Heartbeat>,
}

/// What the session's queue gave.
enum Outbound {
    Buffered(PacketBuf),
    Volatile(PacketBuf),
    /// The queue closed: the session is closing.
    Closed,
}

impl<H: EngineIoHandler, S> WsSession<H, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn new(
        engine: &Arc<EngineIo<H>>,
        socket: Arc<Socket<H::Data>>,
        ws: WebSocketStream<S>,
        heartbeat: Option<Heartbeat>,
    ) -> Self {
        Self {
            engine: engine.clone(),
            socket,
            ws,
            heartbeat,
        }
    }

    async fn serve(&mut self) -> End {
        let timer = tokio::time::sleep_until(self.heartbeat_deadline());
        tokio::pin!(timer);
        let socket = self.socket.clone();
        let socket = &socket;
        let token = &socket.cancellation_token;
        loop {
            // Neither side is favoured: a busy queue does not starve the reads, nor the reverse.
            let step = tokio::select! {
                _ = token.cancelled() => return End::Cancelled,
                out = next_outbound(&socket.queue) => {
                    if let Outbound::Closed = out {
                        return End::Cancelled;
                    }
                    // A client that stops reading blocks the writes: the heartbeat and the
                    // session's closing still end it. Neither drops a write under way: its
                    // packets are out of the queue.
                    let closing_time = self.engine.config.ping_timeout;
                    let (ws, heartbeat) = (&mut self.ws, &mut self.heartbeat);
                    let mut write = Box::pin(write(ws, socket, out));
                    loop {
                        tokio::select! {
                            biased;
                            res = &mut write => break res,
                            _ = token.cancelled() => {
                                let _ = tokio::time::timeout(closing_time, write).await;
                                return End::Cancelled;
                            }
                            _ = &mut timer, if heartbeat.is_some() => {
                                if let Err(e) = Self::timer_fired(heartbeat, socket, timer.as_mut()) {
                                    return End::Error(e);
                                }
                            }
                        }
                    }
                }
                msg = self.ws.next() => match msg {
                    None => return End::Closed,
                    Some(Err(e)) => return End::Error(e.into()),
                    Some(Ok(msg)) => match self.on_message(msg, timer.as_mut()) {
                        Ok(true) => Ok(()),
                        Ok(false) => return End::Closed,
                        Err(e) => Err(e),
                    },
                },
                _ = &mut timer, if self.heartbeat.is_some() => {
                    Self::timer_fired(&mut self.heartbeat, socket, timer.as_mut())
                }
            };
            if let Err(e) = step {
                return End::Error(e);
            }
        }
    }

    fn heartbeat_deadline(&self) -> tokio::time::Instant {
        match &self.heartbeat {
            Some(heartbeat) => heartbeat.deadline(),
            None => tokio::time::Instant::now(),
        }
    }

    fn timer_fired(
        heartbeat: &mut Option<Heartbeat>,
        socket: &Socket<H::Data>,
        timer: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Result<(), Error> {
        if let Some(heartbeat) = heartbeat {
            heartbeat.on_timer(&socket.queue)?;
            timer.reset(heartbeat.deadline());
        }
        Ok(())
    }

    /// Handles one websocket message from the client; false once the client closed.
    fn on_message(
        &mut self,
        msg: Message,
        timer: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Result<bool, Error> {
        let (engine, socket) = (&self.engine, &self.socket);
        match msg {
            Message::Text(msg) => match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
                Packet::Close => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!("[sid={}] closing session", socket.id);
                    engine.close_session(socket.id, DisconnectReason::TransportClose);
                    return Ok(false);
                }
                Packet::Pong | Packet::Ping => match &mut self.heartbeat {
                    Some(heartbeat) => {
                        heartbeat.on_heartbeat(&socket.queue)?;
                        timer.reset(heartbeat.deadline());
                    }
                    None => socket.heartbeat_received(),
                },
                Packet::Message(msg) => engine.handler.on_message(msg, socket.clone()),
                p => return Err(Error::BadPacket(p)),
            },
            Message::Binary(mut data) => {
                if socket.protocol == ProtocolVersion::V3 && !data.is_empty() {
                    // The first byte is the message type, which we don't need.
                    data = data.split_off(1);
                }
                engine.handler.on_binary(data, socket.clone());
            }
            Message::Close(_) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("websocket closed, closing session");
                engine.close_session(socket.id, DisconnectReason::TransportClose);
                return Ok(false);
            }
            _ => {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = ?socket.id, "unexpected ws message");
            }
        }
        Ok(true)
    }

    /// Sends what is still queued (a close packet, a socket.io disconnect) and closes the
    /// websocket. A client that reads nothing is given a ping timeout for it.
    async fn close(&mut self) {
        let closing = async {
            while let Some(packets) = self.socket.queue.try_recv() {
                for packet in packets {
                    if let Some(msg) = to_message(packet, self.socket.protocol) {
                        self.ws.feed(msg).await?;
                    }
                }
            }
            #[cfg(feature = "tracing")]
            tracing::trace!(sid = %self.socket.id, "ws closing flush");
            self.ws.flush().await?;
            self.ws.close(None).await
        };
        let _ = tokio::time::timeout(self.engine.config.ping_timeout, closing).await;
    }
}

/// The next packets to send: the buffered ones first, then the latest volatile ones.
async fn next_outbound(queue: &PacketQueue) -> Outbound {
    poll_fn(|cx| match queue.poll_recv(cx) {
        Poll::Ready(Some(packets)) => Poll::Ready(Outbound::Buffered(packets)),
        Poll::Ready(None) => Poll::Ready(Outbound::Closed),
        Poll::Pending => queue.poll_volatile(cx).map(Outbound::Volatile),
    })
    .await
}

/// Writes buffered packets and every other one already queued, or the volatile ones, then
/// flushes once.
async fn write<D, S>(
    ws: &mut WebSocketStream<S>,
    socket: &Socket<D>,
    out: Outbound,
) -> Result<(), Error>
where
    D: Default + Send + Sync + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut next = match out {
        Outbound::Buffered(packets) => Some(packets),
        Outbound::Volatile(packets) => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "ws volatile flush: {} packets", packets.len());
            for packet in packets {
                if let Some(msg) = to_message(packet, socket.protocol) {
                    ws.feed(msg).await?;
                }
            }
            None
        }
        Outbound::Closed => None,
    };
    while let Some(packets) = next {
        for packet in packets {
            if let Some(msg) = to_message(packet, socket.protocol) {
                ws.feed(msg).await?;
            }
        }
        next = socket.queue.try_recv();
    }
    #[cfg(feature = "tracing")]
    tracing::trace!(sid = %socket.id, "ws flush");
    ws.flush().await?;
    Ok(())
}

/// The websocket message of a packet; none for a Noop.
fn to_message(packet: Packet, protocol: ProtocolVersion) -> Option<Message> {
    match packet {
        Packet::Binary(bin) | Packet::BinaryV3(bin) => {
            if protocol == ProtocolVersion::V3 {
                // v3 protocol requires packet type as the first byte.
                // This requires a new buffer. This is OK as it is only for the V3 protocol.
                let mut buff = Vec::with_capacity(bin.len() + 1);
                buff.push(0x04);
                buff.extend(bin);
                Some(Message::Binary(buff.into()))
            } else {
                Some(Message::Binary(bin))
            }
        }
        // A Noop Packet maybe sent by the server to upgrade from a polling connection
        // In the case that the packet was not poll in time it will remain in the buffer and therefore
        // it should be discarded here
        Packet::Noop => None,
        packet => Some(Message::Text(String::from(packet).into())),
    }
}

/// Send a Engine.IO [`OpenPacket`] to initiate a websocket connection
async fn init_handshake<S>(
    sid: Sid,
    ws: &mut WebSocketStream<S>,
    config: &EngineIoConfig,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let packet = Packet::Open(make_open_packet(TransportType::Websocket, sid, config));
    let packet: String = packet.into();
    ws.send(Message::Text(packet.into())).await?;
    Ok(())
}

/// Upgrade a session from a polling request to a websocket request.
///
/// Before upgrading the session the server should send a NOOP packet to any pending polling request.
///
/// ## Handshake :
/// ```text
/// CLIENT                                                 SERVER
///│                                                      │
///│   GET /engine.io/?EIO=4&transport=websocket&sid=...  │
///│ ───────────────────────────────────────────────────► │
///│  ◄─────────────────────────────────────────────────┘ │
///│            HTTP 101 (WebSocket handshake)            │
///│                                                      │
///│            -----  WebSocket frames -----             │
///│  ─────────────────────────────────────────────────►  │
///│                         2probe                       │ (ping packet)
///│  ◄─────────────────────────────────────────────────  │
///│                         3probe                       │ (pong packet)
///│  ─────────────────────────────────────────────────►  │
///│                         5                            │ (upgrade packet)
///│                                                      │
///│            -----  WebSocket frames -----             │
/// ```
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", skip(socket, ws))
)]
async fn upgrade_handshake<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "tracing")]
    tracing::debug!("starting websocket connection upgrade");

    // The socket is upgrading, from now on all polling
    // request will return a `Packet::Noop`
    socket.start_upgrade();

    // We send a last Noop request to close a potential waiting polling request.
    socket
        .queue
        .send(smallvec![Packet::Noop])
        .await
        .map_err(|_| Error::Upgrade)?;

    // wait for any current polling connection to finish by waiting for the socket to be unlocked
    // All other polling connection will be immediately closed with a NOOP packet.
    let _lock = socket.internal_rx.lock().await;

    // Fetch the next packet from the ws stream, it should be a PingUpgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        _ => Err(Error::Upgrade)?,
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::PingUpgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("received first ping upgrade");
            // Respond with a PongUpgrade packet
            ws.send(Message::Text(String::from(Packet::PongUpgrade).into()))
                .await?;
        }
        p => Err(Error::BadPacket(p))?,
    };

    // Fetch the next packet from the ws stream, it should be an Upgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        Some(Ok(Message::Close(_))) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws stream closed before upgrade");
            Err(Error::Upgrade)?
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!("unexpected ws message before upgrade");
            Err(Error::Upgrade)?
        }
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::Upgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgraded successfully")
        }
        p => Err(Error::BadPacket(p))?,
    };

    socket.upgrade_to_websocket();
    Ok(())
}

fn ws_bytes_to_str(bytes: tungstenite::Utf8Bytes) -> Str {
    // SAFETY: the bytes are guaranteed to be valid UTF-8 by the tungstenite parser
    unsafe { Str::from_bytes_unchecked(bytes.into()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http::Request;
    use tokio::{
        io::DuplexStream,
        sync::mpsc::{self, error::TrySendError},
    };

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    #[derive(Debug)]
    struct Recorder {
        messages: mpsc::UnboundedSender<Str>,
        disconnects: mpsc::UnboundedSender<DisconnectReason>,
    }
    impl EngineIoHandler for Recorder {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, reason: DisconnectReason) {
            self.disconnects.send(reason).ok();
        }
        fn on_message(self: &Arc<Self>, msg: Str, _: Arc<Socket<()>>) {
            self.messages.send(msg).ok();
        }
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    struct Served {
        engine: Arc<EngineIo<Recorder>>,
        client: WebSocketStream<DuplexStream>,
        messages: mpsc::UnboundedReceiver<Str>,
        disconnects: mpsc::UnboundedReceiver<DisconnectReason>,
        session: tokio::task::JoinHandle<Result<(), Error>>,
    }

    /// A websocket session opened on websocket, over a pipe of `pipe` bytes.
    async fn serve(ping: Duration, pipe: usize) -> (Served, Sid) {
        serve_with(ping, ping, pipe).await
    }

    async fn serve_with(interval: Duration, timeout: Duration, pipe: usize) -> (Served, Sid) {
        let (messages_tx, messages) = mpsc::unbounded_channel();
        let (disconnects_tx, disconnects) = mpsc::unbounded_channel();
        let config = EngineIoConfig::builder()
            .ping_interval(interval)
            .ping_timeout(timeout)
            .build();
        let handler = Recorder {
            messages: messages_tx,
            disconnects: disconnects_tx,
        };
        let engine = Arc::new(EngineIo::new(Arc::new(handler), config));
        let (server, client) = tokio::io::duplex(pipe);
        let parts = Request::<()>::default().into_parts().0;
        let session = tokio::spawn(on_init(
            engine.clone(),
            server,
            ProtocolVersion::V4,
            None,
            parts,
        ));
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let open = next_text(&mut client).await;
        let sid = open
            .split("\"sid\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the open packet names the session")
            .parse()
            .unwrap();
        let served = Served {
            engine,
            client,
            messages,
            disconnects,
            session,
        };
        (served, sid)
    }

    async fn next_text(client: &mut WebSocketStream<DuplexStream>) -> String {
        match tokio::time::timeout(TIMEOUT, client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_task_writes_the_queue_reads_the_client_and_pings() {
        let (mut served, sid) = serve(Duration::from_secs(60), 4096).await;
        // The heartbeat pings at once.
        assert_eq!(next_text(&mut served.client).await, "2");
        served.client.send(Message::text("3")).await.unwrap();

        let socket = served.engine.get_socket(sid).unwrap();
        socket.emit("hello").unwrap();
        assert_eq!(next_text(&mut served.client).await, "4hello");
        assert!(socket.emit_volatile("fleeting"));
        assert_eq!(next_text(&mut served.client).await, "4fleeting");

        served.client.send(Message::text("4hi")).await.unwrap();
        let msg = tokio::time::timeout(TIMEOUT, served.messages.recv()).await;
        assert_eq!(msg.unwrap().unwrap(), Str::from("hi"));

        served.client.send(Message::text("1")).await.unwrap();
        let reason = tokio::time::timeout(TIMEOUT, served.disconnects.recv()).await;
        assert_eq!(reason.unwrap().unwrap(), DisconnectReason::TransportClose);
        tokio::time::timeout(TIMEOUT, served.session)
            .await
            .expect("the session's task ends")
            .unwrap()
            .unwrap();
    }

    /// The heartbeat's timer fires while packets are being written: none of them is lost.
    #[tokio::test]
    async fn packets_written_while_the_heartbeat_fires_all_arrive() {
        let (mut served, sid) =
            serve_with(Duration::from_millis(1), Duration::from_secs(60), 1 << 16).await;
        let socket = served.engine.get_socket(sid).unwrap();
        let sent = 300;
        let sender = tokio::spawn(async move {
            for i in 0..sent {
                let mut msg = format!("n{i}");
                loop {
                    match socket.emit(msg) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => msg = back.to_string(),
                        Err(TrySendError::Closed(_)) => return,
                    }
                    tokio::task::yield_now().await;
                }
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let mut received = Vec::new();
        let receiving = async {
            while received.len() < sent {
                match next_text(&mut served.client).await.as_str() {
                    "2" => served.client.send(Message::text("3")).await.unwrap(),
                    text => received.push(text.to_owned()),
                }
            }
        };
        // Pings keep coming every millisecond: a lost packet shows as this deadline.
        let all_in_time = tokio::time::timeout(Duration::from_secs(10), receiving).await;
        assert!(
            all_in_time.is_ok(),
            "{} of {sent} packets arrived",
            received.len()
        );
        sender.await.unwrap();
        let expected: Vec<String> = (0..sent).map(|i| format!("4n{i}")).collect();
        assert_eq!(received, expected);
    }

    #[tokio::test]
    async fn a_client_that_answers_no_ping_times_out() {
        let (mut served, _) = serve(Duration::from_millis(50), 4096).await;
        assert_eq!(next_text(&mut served.client).await, "2");
        let reason = tokio::time::timeout(TIMEOUT, served.disconnects.recv()).await;
        assert_eq!(reason.unwrap().unwrap(), DisconnectReason::HeartbeatTimeout);
        tokio::time::timeout(TIMEOUT, served.session)
            .await
            .expect("the session's task ends")
            .unwrap()
            .unwrap();
    }

    /// The writes block on a client that reads nothing; its heartbeat still ends the session.
    #[tokio::test]
    async fn a_client_that_reads_nothing_times_out() {
        let (served, sid) = serve(Duration::from_millis(50), 64).await;
        let mut disconnects = served.disconnects;
        let socket = served.engine.get_socket(sid).unwrap();
        for _ in 0..64 {
            let _ = socket.emit("a packet the client never reads");
        }
        let reason = tokio::time::timeout(TIMEOUT, disconnects.recv()).await;
        assert_eq!(reason.unwrap().unwrap(), DisconnectReason::HeartbeatTimeout);
        tokio::time::timeout(TIMEOUT * 2, served.session)
            .await
            .expect("the session's task ends")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn closing_the_session_on_the_server_sends_the_close_packet() {
        let (mut served, sid) = serve(Duration::from_secs(60), 4096).await;
        assert_eq!(next_text(&mut served.client).await, "2");
        let socket = served.engine.get_socket(sid).unwrap();
        socket.emit("last words").unwrap();
        socket.close(DisconnectReason::ClosingServer);
        assert_eq!(next_text(&mut served.client).await, "4last words");
        assert_eq!(next_text(&mut served.client).await, "1");
        tokio::time::timeout(TIMEOUT, served.session)
            .await
            .expect("the session's task ends")
            .unwrap()
            .unwrap();
    }
}
