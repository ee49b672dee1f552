//! Shared test fixtures, for dev-dependencies only: the nats-server launcher (one node or a
//! three-node JetStream cluster) that every crate's integration tests start their servers with.

pub mod nats_server;

pub use nats_server::{free_ports, nats_server_bin, start_cluster, stored, Server, WAIT};
