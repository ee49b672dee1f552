//! Admission of new client sessions. Once a drain begins, new Socket.IO handshakes and `/chat`
//! upgrades are refused with 503, so clients told to reconnect land on another edge, while
//! sessions already here (Socket.IO polls carry their `sid`) still fetch their close packet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::frust::SOCKET_IO_PATH;

#[derive(Clone, Default)]
pub struct Admission {
    closed: Arc<AtomicBool>,
}

impl Admission {
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub async fn gate(self, request: Request, next: Next) -> Response {
        if self.closed.load(Ordering::SeqCst) && opens_session(&request) {
            metrics::counter!("switchyard_rejects_total", "api" => "edge", "reason" => "draining")
                .increment(1);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "draining: connect to another edge",
            )
                .into_response();
        }
        next.run(request).await
    }
}

fn opens_session(request: &Request) -> bool {
    let uri = request.uri();
    match uri.path() {
        "/chat" => true,
        path if path.starts_with(SOCKET_IO_PATH) => !uri
            .query()
            .unwrap_or("")
            .split('&')
            .any(|pair| pair.starts_with("sid=")),
        _ => false,
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
        assert!(opens_session(&req("/chat?token=x")));
        assert!(opens_session(&req(
            "/api/socket.io/?EIO=4&transport=polling&t=1"
        )));
        assert!(opens_session(&req(
            "/api/socket.io/?EIO=3&transport=websocket"
        )));
        assert!(!opens_session(&req(
            "/api/socket.io/?EIO=4&transport=polling&sid=abc"
        )));
        assert!(!opens_session(&req("/api/current_stats")));
        assert!(!opens_session(&req("/readyz")));
    }
}
