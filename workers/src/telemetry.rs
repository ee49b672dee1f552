//! Every metric the workers export, described once, error counters registered at zero.

use metrics::{describe_counter, describe_histogram, Unit};

/// Call once per process that runs workers, after the recorder is installed.
pub fn describe() {
    describe_histogram!(
        "switchyard_persist_seconds",
        Unit::Seconds,
        "Persisting one inbound packet (retries included), by API"
    );
    describe_counter!(
        "switchyard_worker_retries_total",
        "Store writes and bus publishes the workers retried"
    );
    describe_counter!(
        "switchyard_dead_letters_total",
        "Inbound packets given up on and moved to the DEAD stream, by subject"
    );
    describe_counter!(
        "switchyard_redelivered_total",
        "Inbound packets delivered again by the stream (not acked in time)"
    );
    describe_counter!(
        "switchyard_rejects_total",
        "Packets, connections and requests refused, by API and reason"
    );
    for api in ["frust", "chat"] {
        let _ = metrics::histogram!("switchyard_persist_seconds", "api" => api);
    }
    for subject in switchyard_schema::subjects::inbound_subjects() {
        metrics::counter!("switchyard_dead_letters_total", "subject" => subject).absolute(0);
    }
    metrics::counter!("switchyard_worker_retries_total").absolute(0);
    metrics::counter!("switchyard_redelivered_total").absolute(0);
    metrics::counter!("switchyard_rejects_total", "api" => "bus", "reason" => "decode").absolute(0);
}
