//! Admission of new client sessions, before anything is allocated for them. A Socket.IO
//! handshake (a request without `sid`, either protocol version, polling or websocket) is
//! refused with 429 when its address opens sessions too fast, holds too many, or has too many
//! handshakes younger than the handshake timeout (sessions that never join the namespace are
//! invisible to the session cap until they expire), and with 503 when this edge is full.
//! Once a drain begins, new Socket.IO handshakes and `/chat` upgrades
//! are refused with 503, so clients told to reconnect land on another edge, while sessions
//! already here (Socket.IO polls carry their `sid`) still fetch their close packet.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::frust::SOCKET_IO_PATH;
use crate::limits::Limits;
use crate::occupancy::{Expiring, Full, Occupancy};
use crate::refusals;

#[derive(Clone)]
pub struct Admission {
    closed: Arc<AtomicBool>,
    limits: Arc<Limits>,
    /// Socket.IO sessions open on this edge.
    sessions: Arc<Occupancy>,
    /// Handshakes admitted within the handshake window, capped like sessions.
    handshakes: Arc<Occupancy>,
    /// Holds each handshake's place for the window.
    young: Arc<Expiring>,
}

/// What a request would open.
#[derive(Debug, PartialEq, Eq)]
enum Opens {
    SocketIo,
    Chat,
}

impl Admission {
    /// `handshake_window`: how long a session may take to join (then it joined, counting as a
    /// session, or it is closed).
    pub fn new(limits: Arc<Limits>, sessions: Arc<Occupancy>, handshake_window: Duration) -> Self {
        let handshakes = Occupancy::new(sessions.max_total(), sessions.max_per_client());
        Self {
            closed: Default::default(),
            limits,
            sessions,
            handshakes,
            young: Expiring::new(handshake_window),
        }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub async fn gate(self, request: Request, next: Next) -> Response {
        let Some(opens) = opens_session(&request) else {
            return next.run(request).await;
        };
        if self.closed.load(Ordering::SeqCst) {
            metrics::counter!("switchyard_rejects_total", "api" => "edge", "reason" => "draining")
                .increment(1);
            return unavailable("draining: connect to another edge");
        }
        // `/chat` applies its connect limit itself, after authenticating.
        if opens == Opens::SocketIo {
            if let Some(refusal) = self.refuse_socket_io(&request) {
                return refusal;
            }
        }
        next.run(request).await
    }

    /// The answer to a Socket.IO handshake that may not open a session, if it may not.
    fn refuse_socket_io(&self, request: &Request) -> Option<Response> {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let ip = self.limits.client_ip(peer, request.headers());
        if !self.limits.allow_connect(ip) {
            refusals::log(
                "connect",
                "rate",
                ip,
                "Socket.IO handshakes from one address too fast",
            );
            return Some(too_many("too many connection attempts from this address"));
        }
        let admitted = self
            .sessions
            .has_room(ip)
            .map_err(|full| refusal_reason(full, "max_sessions", "max_sessions_per_ip"))
            .and_then(|()| {
                self.handshakes
                    .try_hold(Some(ip))
                    .map_err(|full| refusal_reason(full, "handshakes", "handshakes_per_ip"))
            });
        match admitted {
            Ok(handshake) => {
                // Given back once the session joined (and counts as one) or was closed.
                self.young.hold(handshake);
                None
            }
            Err((Full::Client, reason)) => {
                let what = "a Socket.IO handshake from an address at its session cap";
                refusals::refused("frust", reason, ip, what);
                Some(too_many("too many sessions from this address"))
            }
            Err((Full::Total, reason)) => {
                let what = "a Socket.IO handshake while this edge holds its session cap";
                refusals::refused("frust", reason, ip, what);
                Some(unavailable("this edge is full: connect to another edge"))
            }
        }
    }
}

/// Which cap was full, and its `reason` label.
fn refusal_reason(
    full: Full,
    total: &'static str,
    per_client: &'static str,
) -> (Full, &'static str) {
    match full {
        Full::Total => (full, total),
        Full::Client => (full, per_client),
    }
}

fn unavailable(why: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        why,
    )
        .into_response()
}

fn too_many(why: &'static str) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "1")],
        why,
    )
        .into_response()
}

fn opens_session(request: &Request) -> Option<Opens> {
    let uri = request.uri();
    match uri.path() {
        "/chat" => Some(Opens::Chat),
        path if path.starts_with(SOCKET_IO_PATH) => {
            let has_sid = uri
                .query()
                .unwrap_or("")
                .split('&')
                .any(|pair| pair.starts_with("sid="));
            (!has_sid).then_some(Opens::SocketIo)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn only_new_sessions_are_gated() {
        assert_eq!(opens_session(&req("/chat?token=x")), Some(Opens::Chat));
        for handshake in [
            "/api/socket.io/?EIO=4&transport=polling&t=1",
            "/api/socket.io/?EIO=3&transport=polling&t=1",
            "/api/socket.io/?EIO=3&transport=websocket",
            "/api/socket.io/?EIO=4&transport=websocket",
        ] {
            assert_eq!(
                opens_session(&req(handshake)),
                Some(Opens::SocketIo),
                "{handshake}"
            );
        }
        assert_eq!(
            opens_session(&req("/api/socket.io/?EIO=4&transport=polling&sid=abc")),
            None
        );
        assert_eq!(opens_session(&req("/api/current_stats")), None);
        assert_eq!(opens_session(&req("/readyz")), None);
    }
}
