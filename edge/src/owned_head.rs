//! The request head a Socket.IO session keeps: owned, and only what is read from it.
//!
//! engineioxide keeps the head of the request that opened a session for the session's life.
//! hyper parses a head in place: the URI and every header value are slices of the
//! connection's read buffer (16 KiB once grown), and so is the copy axum's router keeps as
//! `OriginalUri`; without copies every idle Socket.IO connection pinned its whole read buffer.
//! A browser's head is also mostly what no one here reads (cookies, user agent, languages):
//! a session keeps the headers in [`KEPT_HEADERS`] and the extensions in [`slim_extensions`].
//! To read another header from a session (`SocketRef::req_parts`), add it there.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::Response;

use crate::frust::SOCKET_IO_PATH;

/// What engineioxide reads (the websocket key, a polling body's type) and what the edge reads
/// (the proxies' client address). hyper made of the rest what it needs (the upgrade, the body's
/// framing) before the head reaches here.
static KEPT_HEADERS: [HeaderName; 3] = [
    axum::http::header::SEC_WEBSOCKET_KEY,
    axum::http::header::CONTENT_TYPE,
    HeaderName::from_static("x-forwarded-for"),
];

pub async fn middleware(request: Request, next: Next) -> Response {
    if request.uri().path().starts_with(SOCKET_IO_PATH) {
        next.run(slim(request)).await
    } else {
        next.run(request).await
    }
}

/// The same request as far as Socket.IO is concerned: its URI and kept headers in allocations
/// of their own, its upgrade and its peer address.
fn slim(request: Request) -> Request {
    let (mut parts, body) = request.into_parts();
    parts.uri = owned_uri(&parts.uri);
    parts.headers = kept_headers(&parts.headers);
    parts.extensions = slim_extensions(&mut parts.extensions);
    Request::from_parts(parts, body)
}

/// hyper's upgrade (a websocket needs it) and the peer address (the client's IP). Not axum's
/// routing records (`OriginalUri`, the path parameters): the router is done with them.
fn slim_extensions(extensions: &mut Extensions) -> Extensions {
    let mut kept = Extensions::new();
    if let Some(upgrade) = extensions.remove::<hyper::upgrade::OnUpgrade>() {
        kept.insert(upgrade);
    }
    if let Some(peer) = extensions.remove::<ConnectInfo<SocketAddr>>() {
        kept.insert(peer);
    }
    kept
}

fn owned_uri(uri: &Uri) -> Uri {
    // Parsing from a fresh String copies every component; the text came from a valid Uri.
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

fn kept_headers(headers: &HeaderMap) -> HeaderMap {
    let kept = KEPT_HEADERS
        .iter()
        .map(|name| headers.get_all(name).iter().count());
    // Sized to fit: a map grown by inserts keeps room for a dozen.
    let mut copy = HeaderMap::with_capacity(kept.sum());
    for name in &KEPT_HEADERS {
        for value in headers.get_all(name) {
            // `from_bytes` copies into a new buffer (and the bytes were valid already).
            let value = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
            copy.append(name.clone(), value);
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::OriginalUri;
    use bytes::Bytes;

    #[test]
    fn a_session_keeps_the_headers_read_from_it_and_no_other() {
        let request = Request::builder()
            .uri("/api/socket.io/?EIO=4&transport=websocket")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-for", "10.0.0.2")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("cookie", "a=1")
            .header("user-agent", "test")
            .body(axum::body::Body::empty())
            .unwrap();
        let uri = request.uri().clone();
        let after = slim(request);
        assert_eq!(after.uri(), &uri);
        let forwarded: Vec<_> = after.headers().get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(
            after.headers()["sec-websocket-key"],
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
        assert_eq!(after.headers().len(), 3);
        assert!(after.headers().get("cookie").is_none());
    }

    #[test]
    fn a_session_keeps_its_peer_address_and_not_the_routing_records() {
        let peer: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let mut request = Request::builder()
            .uri("/api/socket.io/?EIO=4")
            .body(axum::body::Body::empty())
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        request
            .extensions_mut()
            .insert(OriginalUri("/api/socket.io/?EIO=4".parse().unwrap()));
        let after = slim(request);
        assert_eq!(
            after
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .unwrap()
                .0,
            peer
        );
        assert!(after.extensions().get::<OriginalUri>().is_none());
    }

    #[test]
    fn copies_do_not_share_the_source_buffer() {
        let buffer = Bytes::from_static(b"dGhlIHNhbXBsZSBub25jZQ==");
        let mut headers = HeaderMap::new();
        headers.insert(
            "sec-websocket-key",
            HeaderValue::from_maybe_shared(buffer.clone()).unwrap(),
        );
        let copy = kept_headers(&headers);
        assert_eq!(copy["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_ne!(
            copy["sec-websocket-key"].as_bytes().as_ptr(),
            buffer.as_ptr()
        );
    }

    /// What hyper does: the URI is a slice of the read buffer.
    #[test]
    fn the_uri_no_longer_points_into_the_read_buffer() {
        let buffer = Bytes::from_static(b"/api/socket.io/?EIO=4&transport=websocket");
        let inside = |p: *const u8| buffer.as_ptr_range().contains(&p);
        let shared = Uri::from_maybe_shared(buffer.clone()).unwrap();
        assert!(
            inside(shared.path().as_ptr()),
            "the setup shares the buffer"
        );
        let request = Request::builder()
            .uri(shared.clone())
            .body(axum::body::Body::empty())
            .unwrap();
        let after = slim(request);
        assert_eq!(after.uri(), &shared);
        assert!(!inside(after.uri().path().as_ptr()));
    }
}
