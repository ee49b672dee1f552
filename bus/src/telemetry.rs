//! Every metric the bus adapters export, described once, error counters registered at zero.

use metrics::{describe_counter, describe_gauge};

/// Call once per server process, after the recorder is installed.
pub fn describe() {
    describe_counter!(
        "switchyard_bus_durable_failed_total",
        "Durable publishes that failed after every retry within the publish budget"
    );
    describe_counter!(
        "switchyard_bus_durable_retries_total",
        "Durable publish attempts retried (same message id)"
    );
    describe_counter!(
        "switchyard_bus_consumer_restarts_total",
        "Stream consumers re-opened after an error"
    );
    describe_counter!(
        "switchyard_bus_slow_consumer_total",
        "Times NATS dropped messages for this client (slow consumer)"
    );
    describe_counter!(
        "switchyard_bus_dropped_total",
        "In-process bus messages dropped for a full subscriber"
    );
    describe_gauge!(
        "switchyard_consumer_lag",
        "Messages waiting for a durable consumer, by consumer"
    );
    for name in [
        "switchyard_bus_durable_failed_total",
        "switchyard_bus_durable_retries_total",
        "switchyard_bus_consumer_restarts_total",
        "switchyard_bus_slow_consumer_total",
        "switchyard_bus_dropped_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
}
