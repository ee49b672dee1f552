//! Connections over a cap: answered with 503 (the edge is full: try another) or 429 (this
//! address holds too many) and closed. Answering needs the request read first, so each refusal
//! gets a short bound; when many are in progress at once, new ones are closed unanswered.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use switchyard_edge::occupancy::Full;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// Refusals answered at the same time; beyond, a refused connection is closed at once.
pub const IN_PROGRESS: usize = 256;
/// How long a refused connection may take to send its request and read the answer.
const BOUND: Duration = Duration::from_secs(2);
/// Refused connections get a small read buffer: the answer never depends on the request.
const READ_BUFFER: usize = 8192;

pub fn refuse(
    tcp: TcpStream,
    client: IpAddr,
    full: Full,
    in_progress: &Arc<Semaphore>,
    tracker: &TaskTracker,
) {
    let (reason, status, why) = match full {
        Full::Total => (
            "max_connections",
            StatusCode::SERVICE_UNAVAILABLE,
            "this edge is at its connection limit (SWITCHYARD_MAX_CONNECTIONS): try another",
        ),
        Full::Client => (
            "max_connections_per_ip",
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address (SWITCHYARD_MAX_CONNECTIONS_PER_IP)",
        ),
    };
    switchyard_edge::refusals::refused("edge", reason, client, why);
    let Ok(permit) = in_progress.clone().try_acquire_owned() else {
        metrics::counter!("switchyard_refused_unanswered_total").increment(1);
        return; // dropping the stream closes it
    };
    tracker.spawn(async move {
        let _permit = permit;
        let answer = hyper::service::service_fn(move |_request| {
            let response = (status, [(header::RETRY_AFTER, "1")], why).into_response();
            std::future::ready(Ok::<_, Infallible>(response))
        });
        let mut builder = http1::Builder::new();
        builder.keep_alive(false).max_buf_size(READ_BUFFER);
        let conn = builder.serve_connection(TokioIo::new(tcp), answer);
        let _ = tokio::time::timeout(BOUND, conn).await;
    });
}
