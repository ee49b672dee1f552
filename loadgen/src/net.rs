//! Getting a websocket up: targets, an optional local source address, the upgrade with small
//! buffers, and connection errors sorted into kinds for the report. Then reading it: the next
//! text frame, during the handshake or the run.

use std::net::{IpAddr, SocketAddr};

use futures::StreamExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::stats::Tally;

pub type Ws = WebSocketStream<TcpStream>;

/// One edge to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    /// As the user wrote it, for the report.
    pub url: String,
    /// `host:port`, for the Host header.
    pub authority: String,
    pub addr: SocketAddr,
}

impl Target {
    /// `http://host:port`, `ws://host:port` or `host:port` (no TLS: a bench runs next to its
    /// target or on a private network).
    pub async fn resolve(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .unwrap_or(url);
        if url.starts_with("https://") || url.starts_with("wss://") {
            anyhow::bail!(
                "{url}: TLS targets are not supported; point the bench at an edge directly"
            );
        }
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            anyhow::bail!("{url}: give the server's base URL (http://host:port), without a path");
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&authority)
            .await
            .map_err(|e| anyhow::anyhow!("{url}: cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{url}: {authority} has no address"))?;
        Ok(Self {
            url: url.to_owned(),
            authority,
            addr,
        })
    }
}

/// Why a connection did not come up (the report counts them by `kind`).
#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    /// TCP (or the socket under the websocket) failed: the OS's words.
    Tcp(String),
    /// The upgrade was answered with this HTTP status (429: connection rate limit).
    Http(u16),
    /// The server refused the Socket.IO connection (connect_error) with this message.
    Refused(String),
    Closed,
    Websocket(String),
    /// The protocol did not go as expected (e.g. chat's readiness probe got an error).
    Protocol(String),
}

impl ConnectError {
    pub fn from_ws(e: &WsError) -> Self {
        match e {
            WsError::Http(response) => Self::Http(response.status().as_u16()),
            WsError::Io(io) => Self::tcp(io),
            WsError::ConnectionClosed | WsError::AlreadyClosed => Self::Closed,
            other => Self::Websocket(other.to_string()),
        }
    }

    /// "Connection refused (os error 111)" says more than the ErrorKind ("uncategorized").
    pub fn tcp(e: &std::io::Error) -> Self {
        Self::Tcp(e.to_string())
    }

    pub fn kind(&self) -> String {
        match self {
            Self::Timeout => "timeout".to_owned(),
            Self::Tcp(why) => format!("tcp: {why}"),
            Self::Http(status) => format!("http {status}"),
            Self::Refused(why) => format!("refused: {why}"),
            Self::Closed => "closed during handshake".to_owned(),
            Self::Websocket(why) => format!("websocket: {why}"),
            Self::Protocol(why) => format!("protocol: {why}"),
        }
    }

    /// The server's connection rate limit said no.
    pub fn is_rate_limited(&self) -> bool {
        match self {
            Self::Http(429) => true,
            Self::Refused(why) => why.contains("too many connection"),
            _ => false,
        }
    }
}

/// Small buffers: a bench holds tens of thousands of these (tungstenite's default read buffer
/// is 128 KiB, eagerly allocated). Writes go out at once: packets are small and rare per socket.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// TCP connect (from `source` if given) and websocket upgrade to `path_and_query`.
pub async fn open(
    target: &Target,
    source: Option<IpAddr>,
    path_and_query: &str,
) -> Result<Ws, ConnectError> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| ConnectError::tcp(&e))?;
    if let Some(ip) = source {
        bind_without_port(&socket, ip).map_err(|e| ConnectError::tcp(&e))?;
    }
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| ConnectError::tcp(&e))?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{}{}", target.authority, path_and_query);
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
            .await
            .map_err(|e| ConnectError::from_ws(&e))?;
    Ok(ws)
}

/// Binds to `ip` but lets the kernel pick the port at connect time (IP_BIND_ADDRESS_NO_PORT):
/// a port chosen at bind time would have to be unique across all destinations, capping one
/// source address at ~28k connections for the whole machine instead of per destination.
fn bind_without_port(socket: &TcpSocket, ip: IpAddr) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    if ip.is_ipv4() {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a c_int option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    socket.bind(SocketAddr::new(ip, 0))
}

/// The next text frame while connecting; other frames are skipped, and a close or an error
/// fails the connection.
pub async fn next_handshake_text(ws: &mut Ws) -> Result<Utf8Bytes, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(_))) | None => return Err(ConnectError::Closed),
            Some(Err(e)) => return Err(ConnectError::from_ws(&e)),
            Some(Ok(_)) => {}
        }
    }
}

/// The next text frame of a running connection; other frames are skipped. `None` once `stop`
/// is cancelled, or once the connection is gone (closed, failed or ended), which the tally
/// counts as a disconnect. `stop` is checked before every frame so that the end of the run
/// wins over a busy socket. Cancel-safe: nothing is held between frames.
pub async fn next_text(
    ws: &mut Ws,
    tally: &mut Tally,
    stop: &CancellationToken,
) -> Option<Utf8Bytes> {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => return Some(text),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    tally.disconnected = true;
                    return None;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets() {
        let t = Target::resolve("http://127.0.0.1:8080").await.unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        let t = Target::resolve("ws://127.0.0.1:9/").await.unwrap();
        assert_eq!(t.addr.port(), 9);
        let t = Target::resolve("127.0.0.1").await.unwrap();
        assert_eq!(t.addr.port(), 80);
        assert!(Target::resolve("https://127.0.0.1:1").await.is_err());
        assert!(Target::resolve("http://127.0.0.1:1/api").await.is_err());
    }

    /// A local server that sends `frames` on accept, then waits for the client to go.
    async fn serving(frames: Vec<Message>) -> Ws {
        use futures::SinkExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target::resolve(&listener.local_addr().unwrap().to_string())
            .await
            .unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            for frame in frames {
                ws.send(frame).await.unwrap();
            }
            while ws.next().await.is_some() {}
        });
        open(&target, None, "/").await.unwrap()
    }

    #[tokio::test]
    async fn next_text_skips_other_frames_and_counts_a_close() {
        let mut ws = serving(vec![
            Message::Ping(vec![1].into()),
            Message::Binary(vec![2].into()),
            Message::text("a"),
            Message::Close(None),
        ])
        .await;
        let (mut tally, stop) = (Tally::default(), CancellationToken::new());
        let text = next_text(&mut ws, &mut tally, &stop).await;
        assert_eq!(text.as_deref(), Some("a"));
        assert!(!tally.disconnected);
        assert_eq!(next_text(&mut ws, &mut tally, &stop).await, None);
        assert!(tally.disconnected);
    }

    #[tokio::test]
    async fn next_text_ends_on_stop_without_a_disconnect() {
        let mut ws = serving(vec![Message::text("a")]).await;
        let (mut tally, stop) = (Tally::default(), CancellationToken::new());
        stop.cancel();
        assert_eq!(next_text(&mut ws, &mut tally, &stop).await, None);
        assert!(!tally.disconnected, "a stop is not a disconnect");
    }

    #[tokio::test]
    async fn handshake_text_fails_on_close() {
        let mut ws = serving(vec![
            Message::Pong(vec![].into()),
            Message::text("a"),
            Message::Close(None),
        ])
        .await;
        assert_eq!(next_handshake_text(&mut ws).await.unwrap().as_str(), "a");
        assert!(matches!(
            next_handshake_text(&mut ws).await,
            Err(ConnectError::Closed)
        ));
    }

    #[test]
    fn error_kinds() {
        assert!(ConnectError::Http(429).is_rate_limited());
        assert!(
            ConnectError::Refused("too many connection attempts from this address".into())
                .is_rate_limited()
        );
        assert!(!ConnectError::Timeout.is_rate_limited());
        assert_eq!(ConnectError::Http(401).kind(), "http 401");
    }
}
