//! Delivers everything published on `out.frust` to this edge's sockets. Each message is
//! serialized once by Socket.IO for all recipients.

use std::sync::Arc;

use futures::StreamExt;
use socketioxide::SocketIo;
use switchyard_schema::envelope::{self, FrustFanout, FrustOut};
use switchyard_schema::subjects::OUT_FRUST;
use tokio::task::JoinHandle;

use super::FrustEdge;

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
                        deliver(&edge, out).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "undecodable fan-out message dropped"),
            }
        }
    }))
}

async fn deliver(edge: &FrustEdge, out: &FrustOut) {
    let started = std::time::Instant::now();
    let result = emit(&edge.io, out).await;
    metrics::histogram!("switchyard_fanout_seconds").record(started.elapsed());
    metrics::counter!("switchyard_packets_out_total", "api" => "frust", "type" => out.event_name())
        .increment(edge.local_socket_count());
    if let Err(e) = result {
        tracing::debug!(error = %e, "some sockets could not take a broadcast");
        metrics::counter!("switchyard_fanout_errors_total", "api" => "frust").increment(1);
    }
}

async fn emit(io: &SocketIo, out: &FrustOut) -> Result<(), socketioxide::BroadcastError> {
    // After a drain closed the namespace there is nobody left to tell.
    let Some(io) = io.of("/") else {
        return Ok(());
    };
    let name = out.event_name();
    match out {
        FrustOut::Click(c) => io.emit(name, c).await,
        FrustOut::Event(e) => io.emit(name, e).await,
        FrustOut::Stats(s) => io.emit(name, s).await,
        FrustOut::Status(s) => io.emit(name, s).await,
        FrustOut::Message(m) => io.emit(name, m).await,
    }
}
