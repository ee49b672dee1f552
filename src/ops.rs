//! Operational endpoints every process serves: `/healthz`, `/readyz`, `/metrics`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::roles::Roles;

/// Whether this process can do its job: serving (false before start and from the start of a
/// drain, so load balancers stop sending new clients) and no bus problem (the probe below).
#[derive(Clone, Default)]
pub struct Readiness(Arc<ReadinessState>);

#[derive(Default)]
struct ReadinessState {
    /// STARTING, SERVING or DRAINING.
    phase: AtomicU8,
    problem: parking_lot::Mutex<Option<String>>,
    /// The public listener's connection places: none left is "full".
    capacity: std::sync::OnceLock<Arc<switchyard_edge::occupancy::Occupancy>>,
}

const STARTING: u8 = 0;
const SERVING: u8 = 1;
const DRAINING: u8 = 2;

impl Readiness {
    /// Start serving (true) or start draining (false).
    pub fn set(&self, serving: bool) {
        let phase = if serving { SERVING } else { DRAINING };
        self.0.phase.store(phase, Ordering::SeqCst);
    }

    /// `None` when ready, else the one-line reason `/readyz` answers with.
    pub fn reason(&self) -> Option<String> {
        match self.0.phase.load(Ordering::SeqCst) {
            STARTING => Some("starting".into()),
            DRAINING => Some("draining".into()),
            _ => self.0.problem.lock().clone().or_else(|| self.full()),
        }
    }

    /// Reports "full" while every place of `slots` is taken (SWITCHYARD_MAX_CONNECTIONS): a
    /// load balancer then sends new clients to edges that can take them.
    pub fn watch_capacity(&self, slots: Arc<switchyard_edge::occupancy::Occupancy>) {
        let _ = self.0.capacity.set(slots);
    }

    fn full(&self) -> Option<String> {
        let slots = self.0.capacity.get()?;
        let (held, max) = (slots.total(), slots.max_total());
        (held >= max).then(|| {
            format!("full: {held} of {max} connections are open (SWITCHYARD_MAX_CONNECTIONS)")
        })
    }

    /// Probes the bus every [`PROBE_EVERY`] and keeps its answer; logs each change once.
    pub fn watch_bus(&self, bus: Arc<dyn switchyard_bus::Bus>) {
        let state = self.0.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let problem = bus.unready().await;
                let mut current = state.problem.lock();
                if *current != problem {
                    match &problem {
                        Some(why) => tracing::warn!(reason = %why, "not ready: {why}"),
                        None => tracing::info!("ready again: the bus answers"),
                    }
                    *current = problem;
                }
            }
        });
    }
}

/// How often readiness asks the bus; a load balancer checking every 2-5 s sees a change within
/// about one of its intervals.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Installs the Prometheus recorder with per-family buckets, describes every metric of the
/// roles this process runs (HELP text, counters at zero) and sets `switchyard_build_info`.
pub fn install_metrics(roles: Roles, publish_budget: Duration) -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0,
        ])?
        // A fan-out pass over local sockets takes microseconds.
        .set_buckets_for_metric(
            Matcher::Full("switchyard_fanout_seconds".into()),
            &[
                1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
                1e-2, 2.5e-2, 0.1,
            ],
        )?
        // A publish is retried for up to the publish budget: buckets reach past it, so a p99
        // near the budget shows as such instead of saturating at the last bucket.
        .set_buckets_for_metric(
            Matcher::Full("switchyard_publish_seconds".into()),
            &publish_buckets(publish_budget),
        )?
        // Persisting retries with backoff while the store is down.
        .set_buckets_for_metric(
            Matcher::Full("switchyard_persist_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ],
        )?
        // Batch sizes are counts, not seconds.
        .set_buckets_for_metric(
            Matcher::Full("switchyard_store_batch_size".into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        )?
        .install_recorder()?;
    spawn_upkeep(handle.clone());

    // One place per crate declares its metrics; a process declares those of what it runs.
    switchyard_bus::telemetry::describe();
    switchyard_store::describe_metrics();
    crate::serve::describe_metrics();
    crate::process_stats::describe();
    if roles.edge {
        switchyard_edge::telemetry::describe();
    }
    if roles.worker {
        switchyard_workers::telemetry::describe();
    }
    if roles.aggregator {
        switchyard_aggregator::telemetry::describe();
    }
    metrics::describe_gauge!(
        "switchyard_build_info",
        "Always 1: the version, commit and role of this process (`all` in embedded mode)"
    );
    metrics::gauge!(
        "switchyard_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => crate::COMMIT,
        "role" => roles.label(),
    )
    .set(1.0);
    Ok(handle)
}

/// The default bounds up to 10 s, then the budget's quarter, half, whole and double.
fn publish_buckets(budget: Duration) -> Vec<f64> {
    let budget = budget.as_secs_f64();
    let mut buckets = vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    buckets.extend([budget / 4.0, budget / 2.0, budget, budget * 2.0]);
    buckets.sort_by(f64::total_cmp);
    buckets.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    buckets
}

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

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
                match ready.reason() {
                    None => (StatusCode::OK, "ready\n".to_owned()),
                    Some(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                }
            }),
        )
        .with_state(ready)
        .route(
            "/metrics",
            get(move || {
                crate::process_stats::record();
                std::future::ready(metrics.render())
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_edge::occupancy::Occupancy;

    #[test]
    fn unready_while_every_connection_place_is_taken() {
        let ready = Readiness::default();
        ready.set(true);
        let slots = Occupancy::new(2, 2);
        ready.watch_capacity(slots.clone());
        let _first = slots.try_hold(None).unwrap();
        assert_eq!(ready.reason(), None);
        let second = slots.try_hold(None).unwrap();
        let why = ready.reason().expect("full");
        assert!(why.starts_with("full: 2 of 2 connections"), "{why}");
        drop(second);
        assert_eq!(ready.reason(), None);
    }
}
