//! Operational endpoints every process serves: `/healthz`, `/readyz`, `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Turns false when a drain starts, so load balancers stop sending new clients.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
}

pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5,
        ])?
        // Batch sizes are counts, not seconds: they get their own buckets.
        .set_buckets_for_metric(
            Matcher::Full("switchyard_store_batch_size".into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        )?
        .install_recorder()?;
    spawn_upkeep(handle.clone());
    Ok(handle)
}

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The recorder keeps every histogram sample until the next render; without a scraper that is
/// a leak of a few bytes per packet. Upkeep folds them away on its own schedule, in every role;
/// the task ends with the runtime at shutdown.
fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

pub fn routes(metrics: PrometheusHandle, ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(ready): State<Readiness>| async move {
                if ready.0.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "draining")
                }
            }),
        )
        .with_state(ready)
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
}
