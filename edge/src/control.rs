//! Answers the server API's requests to every edge (`control.edges`), each about this edge's
//! own connections: list them, or disconnect some.

use std::sync::Arc;

use futures::StreamExt;
use switchyard_bus::{Bus, TypedBus};
use switchyard_schema::envelope::{ControlReply, ControlRequest, EdgeConnections};
use switchyard_schema::topics;
use tokio::task::JoinHandle;

use crate::chat::{close, ChatEdge};
use crate::frust::FrustEdge;

pub async fn spawn(
    bus: Arc<dyn Bus>,
    frust: Arc<FrustEdge>,
    chat: Arc<ChatEdge>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut requests = bus.serve(&topics::CONTROL_EDGES).await?;
    Ok(tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let answer = answer(&frust, &chat, request.body.clone());
            if let Err(e) = request.reply(&answer).await {
                tracing::warn!(error = %e, "cannot answer a control request");
            }
        }
    }))
}

/// Bytes of each API's list in one edge's answer: both together stay well under NATS's default
/// 1 MiB message limit, whatever the connection count.
const LIST_BUDGET: usize = 256 * 1024;
/// What an entry costs beyond its strings (MessagePack framing).
const ENTRY_OVERHEAD: usize = 8;

/// The first entries of `list` whose sizes fit in [`LIST_BUDGET`].
fn within_budget<T>(list: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<T> {
    let mut used = 0;
    list.into_iter()
        .take_while(|entry| {
            used += size(entry) + ENTRY_OVERHEAD;
            used <= LIST_BUDGET
        })
        .collect()
}

fn answer(frust: &FrustEdge, chat: &ChatEdge, request: ControlRequest) -> ControlReply {
    let edge = frust.edge_id.clone();
    match request {
        ControlRequest::ListConnections { user } => {
            let wanted = |name: &str| user.as_deref().is_none_or(|u| u == name);
            let frust_sessions: Vec<_> = frust
                .session_list()
                .into_iter()
                .filter(|(_, name)| user.is_none() || name.as_deref().is_some_and(wanted))
                .collect();
            let chat_connections: Vec<_> = chat
                .registry
                .snapshot()
                .into_iter()
                .filter(|(u, _)| wanted(u))
                .collect();
            ControlReply::Connections(EdgeConnections {
                edge,
                frust_matched: frust_sessions.len() as u64,
                chat_matched: chat_connections.len() as u64,
                frust: within_budget(frust_sessions, |(id, name)| {
                    id.len() + name.as_ref().map_or(0, String::len)
                }),
                chat: within_budget(chat_connections, |(u, c)| u.len() + c.len()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_is_cut_to_the_budget() {
        let long: Vec<String> = (0..100_000).map(|i| format!("user-{i:08}")).collect();
        let cut = within_budget(long.clone(), String::len);
        assert!(!cut.is_empty() && cut.len() < long.len());
        assert_eq!(cut[..], long[..cut.len()]);
        let bytes: usize = cut.iter().map(|u| u.len() + ENTRY_OVERHEAD).sum();
        assert!(bytes <= LIST_BUDGET);
        let short = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(within_budget(short.clone(), String::len), short);
    }
}
