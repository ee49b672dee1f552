//! REST under `/api`, JSON bodies exactly as the original backend served them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;
use switchyard_schema::clock::{day_start, hour_start, DAY};
use switchyard_schema::envelope::{self, OnlineUsers};
use switchyard_schema::frust::hour_series;
use switchyard_schema::subjects::RPC_FRUST_ONLINE;

use super::FrustEdge;

/// The original served at most this many of today's clicks or events.
const LATEST_LIMIT: u32 = 10_000;
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

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

/// A failed dependency: logged, counted, answered with 503 and a JSON reason.
fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what} failed");
    metrics::counter!("switchyard_store_errors_total", "op" => what.to_owned()).increment(1);
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": format!("{what} unavailable") })),
    )
        .into_response()
}

async fn version(State(edge): Ctx) -> Response {
    Json(json!({ "version": edge.version })).into_response()
}

async fn latest_clicks(State(edge): Ctx) -> Response {
    let today = day_start(edge.clock.now());
    match edge.store.clicks_since(today, LATEST_LIMIT).await {
        Ok(clicks) => Json(clicks).into_response(),
        Err(e) => unavailable("latest_clicks", e),
    }
}

async fn latest_events(State(edge): Ctx) -> Response {
    let today = day_start(edge.clock.now());
    match edge.store.events_since(today, LATEST_LIMIT).await {
        Ok(events) => Json(events).into_response(),
        Err(e) => unavailable("latest_events", e),
    }
}

async fn latest_hours(State(edge): Ctx) -> Response {
    let now = edge.clock.now();
    let from = day_start(now) - 6 * DAY;
    let result = async {
        let totals = edge.store.totals().await?;
        let hours = edge.store.hours_since(from).await?;
        Ok::<_, switchyard_store::StoreError>((totals, hours))
    }
    .await;
    match result {
        Ok((totals, hours)) => {
            let hours: Vec<(i64, i64, i64)> = hours
                .into_iter()
                .map(|h| (h.hour, h.clicks, h.events))
                .collect();
            Json(hour_series(
                from,
                hour_start(now),
                &hours,
                totals.clicks,
                totals.events,
            ))
            .into_response()
        }
        Err(e) => unavailable("latest_hours", e),
    }
}

async fn users(State(edge): Ctx) -> Response {
    match edge.store.users().await {
        Ok(users) => Json(users).into_response(),
        Err(e) => unavailable("users", e),
    }
}

async fn online_users(State(edge): Ctx) -> Response {
    let answer = edge
        .bus
        .request(RPC_FRUST_ONLINE, Bytes::new(), QUERY_TIMEOUT)
        .await
        .map_err(|e| e.to_string())
        .and_then(|bytes| envelope::decode::<OnlineUsers>(&bytes).map_err(|e| e.to_string()));
    match answer {
        Ok(OnlineUsers(users)) => Json(users).into_response(),
        Err(e) => unavailable("online_users", e),
    }
}

async fn current_stats(State(edge): Ctx) -> Response {
    match edge.current_stats().await {
        Ok(stats) => Json(stats).into_response(),
        Err(e) => unavailable("current_stats", e),
    }
}
