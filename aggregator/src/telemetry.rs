//! Every metric the aggregator exports, described once, registered at zero.

use metrics::describe_counter;

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
    for name in [
        "switchyard_aggregator_duplicate_facts_total",
        "switchyard_aggregator_stale_facts_total",
        "switchyard_aggregator_fact_gaps_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
}
