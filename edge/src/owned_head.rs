//! Copies a Socket.IO request's URI and headers out of hyper's connection read buffer.
//!
//! hyper parses a request head in place: the URI and every header value are slices of the
//! connection's read buffer (16 KiB once grown), and so is the copy axum's router keeps as
//! `OriginalUri`. engineioxide keeps the request head of each session for its lifetime, so
//! without these copies every idle Socket.IO connection pins its whole read buffer although
//! the head is a few hundred bytes.

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::Response;

use crate::frust::SOCKET_IO_PATH;

pub async fn middleware(request: Request, next: Next) -> Response {
    if request.uri().path().starts_with(SOCKET_IO_PATH) {
        next.run(owned(request)).await
    } else {
        next.run(request).await
    }
}

/// The same request, its URI and header values in allocations of their own.
fn owned(request: Request) -> Request {
    let (mut parts, body) = request.into_parts();
    parts.uri = owned_uri(&parts.uri);
    if let Some(OriginalUri(original)) = parts.extensions.get::<OriginalUri>() {
        let original = owned_uri(original);
        parts.extensions.insert(OriginalUri(original));
    }
    parts.headers = owned_headers(&parts.headers);
    Request::from_parts(parts, body)
}

fn owned_uri(uri: &Uri) -> Uri {
    // Parsing from a fresh String copies every component; the text came from a valid Uri.
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

fn owned_headers(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // `from_bytes` copies into a new buffer (and the bytes were valid already).
        let value = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.append(name.clone(), value);
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn copies_keep_the_request_the_same() {
        let request = Request::builder()
            .uri("/api/socket.io/?EIO=4&transport=websocket")
            .header("x-a", "1")
            .header("x-a", "2")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(axum::body::Body::empty())
            .unwrap();
        let before = (request.uri().clone(), request.headers().clone());
        let after = owned(request);
        assert_eq!(after.uri(), &before.0);
        assert_eq!(after.headers(), &before.1);
    }

    #[test]
    fn copies_do_not_share_the_source_buffer() {
        let buffer = Bytes::from_static(b"keep-alive, Upgrade");
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_maybe_shared(buffer.clone()).unwrap(),
        );
        let copy = owned_headers(&headers);
        assert_eq!(copy["connection"], "keep-alive, Upgrade");
        assert_ne!(copy["connection"].as_bytes().as_ptr(), buffer.as_ptr());
    }

    /// What hyper does: the URI (and axum's `OriginalUri`) are slices of the read buffer.
    #[test]
    fn the_uri_and_original_uri_no_longer_point_into_the_read_buffer() {
        let buffer = Bytes::from_static(b"/api/socket.io/?EIO=4&transport=websocket");
        let inside = |p: *const u8| buffer.as_ptr_range().contains(&p);
        let shared = Uri::from_maybe_shared(buffer.clone()).unwrap();
        assert!(
            inside(shared.path().as_ptr()),
            "the setup shares the buffer"
        );
        let mut request = Request::builder()
            .uri(shared.clone())
            .body(axum::body::Body::empty())
            .unwrap();
        request.extensions_mut().insert(OriginalUri(shared.clone()));
        let after = owned(request);
        assert_eq!(after.uri(), &shared);
        assert!(!inside(after.uri().path().as_ptr()));
        let OriginalUri(original) = after.extensions().get::<OriginalUri>().unwrap();
        assert_eq!(original, &shared);
        assert!(!inside(original.path().as_ptr()));
    }
}
