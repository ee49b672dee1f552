//! Answers the server API's requests to every edge (`control.edges`), each about this edge's
//! own connections: list them, or disconnect some.

use std::sync::Arc;

use futures::StreamExt;
use switchyard_bus::Bus;
use switchyard_schema::envelope::{self, ControlReply, ControlRequest, EdgeConnections};
use switchyard_schema::subjects::CONTROL_EDGES;
use tokio::task::JoinHandle;

use crate::chat::{close, ChatEdge};
use crate::frust::{encoded, FrustEdge};

pub async fn spawn(
    bus: Arc<dyn Bus>,
    frust: Arc<FrustEdge>,
    chat: Arc<ChatEdge>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut requests = bus.subscribe(CONTROL_EDGES).await?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            let Some(reply) = msg.reply else { continue };
            let request = match envelope::decode::<ControlRequest>(&msg.payload) {
                Ok(request) => request,
                Err(e) => {
                    tracing::warn!(error = %e, "a control request does not decode");
                    continue;
                }
            };
            if let Err(e) = reply.reply(encoded(&answer(&frust, &chat, request))).await {
                tracing::warn!(error = %e, "cannot answer a control request");
            }
        }
    }))
}

fn answer(frust: &FrustEdge, chat: &ChatEdge, request: ControlRequest) -> ControlReply {
    let edge = frust.edge_id.clone();
    match request {
        ControlRequest::ListConnections => {
            let frust_sessions = frust
                .sessions
                .lock()
                .iter()
                .map(|(id, local)| (id.clone(), local.name.clone()))
                .collect();
            ControlReply::Connections(EdgeConnections {
                edge,
                frust: frust_sessions,
                chat: chat.registry.snapshot(),
            })
        }
        ControlRequest::DisconnectFrustSession { session } => ControlReply::Disconnected {
            edge,
            closed: u64::from(frust.disconnect_session(&session)),
        },
        ControlRequest::DisconnectChatUser { user } => ControlReply::Disconnected {
            edge,
            closed: chat.registry.disconnect_user(&user, close::DISCONNECTED),
        },
    }
}
