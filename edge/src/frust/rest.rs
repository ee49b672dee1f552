//! REST under `/api`, JSON bodies exactly as the original backend served them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;
use switchyard_bus::TypedBus;
use switchyard_schema::clock::{day_start, hour_start, DAY};
use switchyard_schema::envelope::{Empty, OnlineUsers};
use switchyard_schema::frust::hour_series;
use switchyard_schema::topics;

use super::FrustEdge;
use crate::api_error::{unavailable, ApiError};

/// The original served at most this many of today's clicks or events.
const LATEST_LIMIT: u32 = 10_000;
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a REST answer is reused: long enough to absorb a stampede, short enough that
/// pages polling for fresh counts do not notice.
const REST_CACHE_TTL: Duration = Duration::from_millis(200);

type Ctx = State<Arc<FrustEdge>>;

pub fn routes(edge: Arc<FrustEdge>) -> Router {
    Router::new()
        .route("/api", get(version))
        .route("/api/", get(version))
        .route("/api/latest_clicks", get(latest_clicks))
        .route("/api/latest_events", get(latest_events))
        .route("/api/latest_hours", get(latest_hours))
        .route("/api/users", get(users))
        .route("/api/online_users", get(online_users))
        .route("/api/current_stats", get(current_stats))
        .with_state(edge)
}

/// A failed dependency of `what`: 503 `{"error": "<what> unavailable"}`, the cause logged (a
/// store failure is counted once, by the store decorator; a bus request is not a store error).
fn failed<E>(what: &'static str) -> impl FnOnce(E) -> ApiError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| {
        unavailable(format!("{what} unavailable"))
            .without_code()
            .caused_by(e)
    }
}

async fn version(State(edge): Ctx) -> Response {
    Json(json!({ "version": edge.version })).into_response()
}

/// Serves JSON through the read coalescer: concurrent identical requests share one load.
async fn cached<T, F, Fut>(edge: &FrustEdge, key: &'static str, load: F) -> Response
where
    T: serde::Serialize,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let answer = edge
        .rest_cache
        .get(key, REST_CACHE_TTL, || async {
            let value = load().await?;
            serde_json::to_vec(&value)
                .map(Bytes::from)
                .map_err(failed(key))
        })
        .await;
    match answer {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn latest_clicks(State(edge): Ctx) -> Response {
    let today = day_start(edge.clock.now());
    cached(&edge, "latest_clicks", || async {
        edge.store
            .clicks_since(today, LATEST_LIMIT)
            .await
            .map_err(failed("latest_clicks"))
    })
    .await
}

async fn latest_events(State(edge): Ctx) -> Response {
    let today = day_start(edge.clock.now());
    cached(&edge, "latest_events", || async {
        edge.store
            .events_since(today, LATEST_LIMIT)
            .await
            .map_err(failed("latest_events"))
    })
    .await
}

async fn latest_hours(State(edge): Ctx) -> Response {
    let now = edge.clock.now();
    let from = day_start(now) - 6 * DAY;
    cached(&edge, "latest_hours", || async {
        let (totals, hours) = switchyard_store::served_counts(&*edge.store, from)
            .await
            .map_err(failed("latest_hours"))?;
        let hours: Vec<(i64, i64, i64)> = hours
            .into_iter()
            .map(|h| (h.hour, h.clicks, h.events))
            .collect();
        Ok(hour_series(
            from,
            hour_start(now),
            &hours,
            totals.clicks,
            totals.events,
        ))
    })
    .await
}

async fn users(State(edge): Ctx) -> Response {
    cached(&edge, "users", || async {
        switchyard_store::served_users(&*edge.store)
            .await
            .map_err(failed("users"))
    })
    .await
}

async fn online_users(State(edge): Ctx) -> Response {
    cached(&edge, "online_users", || async {
        edge.bus
            .request_to(&topics::RPC_FRUST_ONLINE, &Empty, QUERY_TIMEOUT)
            .await
            .map(|OnlineUsers(users)| users)
            .map_err(failed("online_users"))
    })
    .await
}

async fn current_stats(State(edge): Ctx) -> Response {
    cached(&edge, "current_stats", || async {
        edge.current_stats().await.map_err(failed("current_stats"))
    })
    .await
}
