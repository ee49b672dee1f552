//! One accepted connection: HTTP/1.1 with upgrades (websockets) by hyper, within the header,
//! idle and body limits. The task ends when the connection closes or is upgraded: a websocket
//! lives on in its own task, its socket still read through `WatchedIo`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use switchyard_edge::occupancy::Slot;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::activity::{Activity, Timeout, Verdict};
use super::io::WatchedIo;
use super::{body, ServeConfig};

pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    slot: Slot,
    config: Arc<ServeConfig>,
    stop: CancellationToken,
) {
    let activity = Activity::new();
    let io = WatchedIo::new(tcp, activity.clone(), config.read_rate, slot);
    let service = Service {
        app,
        peer,
        activity: activity.clone(),
        config: config.clone(),
    };
    let mut builder = http1::Builder::new();
    // The read buffer holds one request head at most this big (431 beyond); hyper's default
    // lets a head grow to ~400 KiB per connection.
    builder.max_buf_size(config.max_header_bytes);
    let mut conn = pin!(builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades());
    let mut check = pin!(tokio::time::sleep(config.header_timeout));
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = stop.cancelled(), if !draining => {
                // Finishes the request in flight, then closes; an idle connection closes now.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = check.as_mut() => match activity.verdict(config.header_timeout, config.idle_timeout) {
                Verdict::CheckAt(at) => check.as_mut().reset(at),
                Verdict::Expired(timeout) => {
                    expired(timeout, peer);
                    return; // dropping the connection closes the socket
                }
            },
        }
    }
}

fn expired(timeout: Timeout, peer: SocketAddr) {
    let ip = switchyard_edge::limits::canonical(peer.ip());
    match timeout {
        // Slowloris and connections that never send: refused, and worth a line.
        Timeout::Header => switchyard_edge::refusals::refused(
            "edge",
            "header_timeout",
            ip,
            "a connection that sent no complete request head within SWITCHYARD_HTTP_HEADER_TIMEOUT_MS",
        ),
        // Keep-alive ending is ordinary: counted, not logged.
        Timeout::Idle => {
            metrics::counter!("switchyard_http_idle_closed_total").increment(1);
        }
    }
}

/// The app as hyper calls it for one connection: the peer address for extractors
/// (`ConnectInfo`), body limits, and the connection's in-flight mark.
struct Service {
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    config: Arc<ServeConfig>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: Request<Incoming>) -> ResponseFuture {
        let in_flight = self.activity.request_started();
        let client = switchyard_edge::limits::canonical(self.peer.ip());
        let max = self.config.max_body;
        if declared_length(&request).is_some_and(|len| len > max as u64) {
            switchyard_edge::refusals::refused(
                "edge",
                "body_too_large",
                client,
                "a request body declared larger than SWITCHYARD_HTTP_MAX_BODY",
            );
            let refusal = (
                StatusCode::PAYLOAD_TOO_LARGE,
                [(header::CONNECTION, "close")],
                "request body too large",
            )
                .into_response();
            return Box::pin(std::future::ready(Ok(body_tracked(refusal, in_flight))));
        }
        let deadline = tokio::time::Instant::now() + self.config.body_timeout;
        let mut request = request.map(|b| body::request(b, max, deadline, client));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let response = self.app.clone().oneshot(request);
        Box::pin(async move {
            let response = response.await.unwrap_or_else(|never| match never {});
            Ok(body_tracked(response, in_flight))
        })
    }
}

fn body_tracked(response: Response<Body>, in_flight: super::activity::InFlight) -> Response<Body> {
    response.map(|b| body::response(b, in_flight))
}

fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
