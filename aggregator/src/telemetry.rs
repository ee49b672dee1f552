//! Every metric the aggregator exports, described once, registered at zero.

use metrics::{describe_counter, describe_gauge};

/// Call once per process that runs the aggregator, after the recorder is installed.
pub fn describe() {
    describe_counter!(
        "switchyard_aggregator_duplicate_facts_total",
        "Facts applied already (late duplicates) and skipped"
    );
    describe_counter!(
        "switchyard_aggregator_stale_facts_total",
        "Facts older than the checkpoint, skipped"
    );
    describe_counter!(
        "switchyard_aggregator_fact_gaps_total",
        "Gaps found in the facts read, re-read from the first unapplied"
    );
    describe_gauge!(
        "switchyard_online_users",
        "Online on each API as its REST API counts them: Frust sessions (api=frust, \
         /api/online_users), chat users with an open connection (api=chat)"
    );
    describe_gauge!(
        "switchyard_alive_edges",
        "Edges whose heartbeats are fresh (heard within SWITCHYARD_EDGE_TIMEOUT_MS)"
    );
    online(0, 0, 0);
    for name in [
        "switchyard_aggregator_duplicate_facts_total",
        "switchyard_aggregator_stale_facts_total",
        "switchyard_aggregator_fact_gaps_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
}

/// The presence gauges: Frust sessions, chat users, edges alive.
pub fn online(frust_sessions: usize, chat_users: usize, alive_edges: usize) {
    metrics::gauge!("switchyard_online_users", "api" => "frust").set(frust_sessions as f64);
    metrics::gauge!("switchyard_online_users", "api" => "chat").set(chat_users as f64);
    metrics::gauge!("switchyard_alive_edges").set(alive_edges as f64);
}
