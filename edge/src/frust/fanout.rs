//! Delivers everything published on `out.frust` to this edge's sockets. One task reads the bus,
//! drops redeliveries and serializes each event once; the shards (see `shards`) emit it to
//! their sockets in parallel.

use std::sync::Arc;

use futures::StreamExt;
use switchyard_bus::TypedBus;
use switchyard_schema::envelope::FrustOut;
use switchyard_schema::topics;
use tokio::task::JoinHandle;

use super::broadcast::Prepared;
use super::FrustEdge;

pub async fn spawn(edge: Arc<FrustEdge>) -> anyhow::Result<JoinHandle<()>> {
    let mut fanouts = edge.bus.subscribe_to(&topics::OUT_FRUST).await?;
    Ok(tokio::spawn(async move {
        while let Some(fanout) = fanouts.next().await {
            if let Some(id) = &fanout.dedup {
                if !edge.recent.first_time(id) {
                    metrics::counter!("switchyard_fanout_duplicates_total", "api" => "frust")
                        .increment(1);
                    continue;
                }
            }
            for out in &fanout.outs {
                if let Some(prepared) = prepare(out) {
                    edge.sockets.deliver(Arc::new(prepared)).await;
                }
            }
        }
    }))
}

/// The event's payload as clients get it (without the enum's tag).
fn prepare(out: &FrustOut) -> Option<Prepared> {
    let name = out.event_name();
    let prepared = match out {
        FrustOut::Click(c) => Prepared::new(name, c),
        FrustOut::Event(e) => Prepared::new(name, e),
        FrustOut::Stats(s) => Prepared::new(name, s),
        FrustOut::Status(s) => Prepared::new(name, s),
        FrustOut::Message(m) => Prepared::new(name, m),
    };
    prepared
        .map_err(|e| tracing::error!(error = %e, event = name, "fan-out payload not serializable"))
        .ok()
}
