//! Shared test fixtures, for dev-dependencies only: the nats-server launcher (one node or a
//! three-node JetStream cluster) that every crate's integration tests start their servers with,
//! and the `nats-cluster` binary through which the JS tests and scripts/bench.sh plan and check
//! the same clusters; and the packets several crates' tests publish.

pub mod cluster;
pub mod fixtures;
pub mod nats_server;

pub use cluster::{check_ready, plan_cluster, wait_ready, ClusterPlan, NodePlan};
pub use fixtures::inbound_click;
pub use nats_server::{
    free_ports, nats_server, nats_server_bin, start_cluster, stored, Server, WAIT,
};
