//! Request and response bodies on a connection: a request body is capped in bytes
//! (`http_body_util::Limited`, which axum's extractors answer with 413) and must arrive whole
//! within a deadline counted from its request head; a response body carries the connection's
//! "request in flight" mark until it is sent (or dropped).

use std::future::Future as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Limited;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::activity::InFlight;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body as the app sees it.
pub fn request(body: Incoming, max: usize, deadline: Instant, client: IpAddr) -> Body {
    use http_body::Body as _;
    if body.is_end_stream() {
        return Body::new(body);
    }
    Body::new(Deadline {
        inner: Limited::new(body, max),
        at: deadline,
        timer: None,
        client,
    })
}

/// The request body did not arrive within the body timeout.
#[derive(Debug)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body timed out")
    }
}

impl std::error::Error for BodyTimeout {}

struct Deadline<B> {
    inner: B,
    at: Instant,
    /// Made only once the body has to be waited for.
    timer: Option<Pin<Box<Sleep>>>,
    client: IpAddr,
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let at = this.at;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                switchyard_edge::refusals::refused(
                    "edge",
                    "body_timeout",
                    this.client,
                    "a request body that did not arrive within SWITCHYARD_HTTP_BODY_TIMEOUT_MS",
                );
                Poll::Ready(Some(Err(BodyTimeout.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks its request in flight until it is sent or dropped.
pub fn response(body: Body, in_flight: InFlight) -> Body {
    Body::new(Tracked {
        inner: body,
        _in_flight: in_flight,
    })
}

struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
