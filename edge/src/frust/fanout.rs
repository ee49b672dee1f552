//! Delivers everything published on `out.frust` to this edge's sockets. Each message is
//! serialized once for all recipients (see `broadcast`).

use std::sync::Arc;

use futures::StreamExt;
use socketioxide::SocketIo;
use switchyard_schema::envelope::{self, FrustFanout, FrustOut};
use switchyard_schema::subjects::OUT_FRUST;
use tokio::task::JoinHandle;

use super::{broadcast, FrustEdge};

pub async fn spawn(edge: Arc<FrustEdge>) -> anyhow::Result<JoinHandle<()>> {
    let mut messages = edge.bus.subscribe(OUT_FRUST).await?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = messages.next().await {
            match envelope::decode::<FrustFanout>(&msg.payload) {
                Ok(fanout) => {
                    if let Some(id) = &fanout.dedup {
                        if !edge.recent.first_time(id) {
                            metrics::counter!("switchyard_fanout_duplicates_total", "api" => "frust")
                                .increment(1);
                            continue;
                        }
                    }
                    for out in &fanout.outs {
                        deliver(&edge, out);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "undecodable fan-out message dropped"),
            }
        }
    }))
}

fn deliver(edge: &FrustEdge, out: &FrustOut) {
    let started = std::time::Instant::now();
    let outcome = emit(&edge.io, out);
    metrics::histogram!("switchyard_fanout_seconds").record(started.elapsed());
    metrics::counter!("switchyard_packets_out_total", "api" => "frust", "type" => out.event_name())
        .increment(outcome.delivered);
    if outcome.full > 0 {
        metrics::counter!("switchyard_fanout_errors_total", "api" => "frust")
            .increment(outcome.full);
    }
    if outcome.newly_slow > 0 {
        tracing::info!(
            sockets = outcome.newly_slow,
            "disconnecting slow Socket.IO consumers"
        );
        metrics::counter!("switchyard_slow_consumer_disconnects_total", "api" => "frust")
            .increment(outcome.newly_slow);
    }
}

fn emit(io: &SocketIo, out: &FrustOut) -> broadcast::Outcome {
    let name = out.event_name();
    match out {
        FrustOut::Click(c) => broadcast::to_all(io, name, c),
        FrustOut::Event(e) => broadcast::to_all(io, name, e),
        FrustOut::Stats(s) => broadcast::to_all(io, name, s),
        FrustOut::Status(s) => broadcast::to_all(io, name, s),
        FrustOut::Message(m) => broadcast::to_all(io, name, m),
    }
}
