//! One driver session per process, configured once: token-aware routing, LOCAL_QUORUM (and
//! LOCAL_SERIAL for the few conditional writes), a client-side timeout, the driver's default
//! retry policy, and client timestamps that never go backwards within the process.

use std::sync::Arc;
use std::time::Duration;

use ::scylla::client::execution_profile::ExecutionProfile;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::policies::load_balancing::DefaultPolicy;
use ::scylla::policies::retry::DefaultRetryPolicy;
use ::scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use ::scylla::statement::{Consistency, SerialConsistency};

use super::exec::error;
use super::url::ScyllaUrl;
use crate::StoreResult;

pub async fn connect(url: &ScyllaUrl) -> StoreResult<Session> {
    let mut routing = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &url.local_dc {
        // Quorums are local to this DC; sending requests elsewhere would only add latency.
        routing = routing
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(url.request_timeout))
        .load_balancing_policy(routing.build())
        .retry_policy(Arc::new(DefaultRetryPolicy::new()))
        .build();
    SessionBuilder::new()
        .known_nodes(&url.nodes)
        .default_execution_profile_handle(profile.into_handle())
        // A member removed and re-added by the same process must not lose to its own delete.
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .map_err(|e| error("connect", e))
}
