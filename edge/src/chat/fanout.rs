//! Delivers chat fan-out to this edge's connections: room messages to the room's members,
//! user-addressed packets to those users, and room-change notices to the membership cache.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use switchyard_schema::envelope::{self, ChatOut, ChatTarget};
use switchyard_schema::subjects::{CHAT_ROOM_CHANGED, OUT_CHAT_ROOM_ALL, OUT_CHAT_USERS};
use tokio::task::JoinHandle;

use super::ChatEdge;

pub async fn spawn(chat: Arc<ChatEdge>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut rooms = chat.bus.subscribe(OUT_CHAT_ROOM_ALL).await?;
    let mut users = chat.bus.subscribe(OUT_CHAT_USERS).await?;
    let mut changes = chat.bus.subscribe(CHAT_ROOM_CHANGED).await?;
    let deliveries = {
        let chat = chat.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = rooms.next() => m,
                    m = users.next() => m,
                };
                let Some(msg) = msg else { break };
                match envelope::decode::<ChatOut>(&msg.payload) {
                    Ok(out) => deliver(&chat, out).await,
                    Err(e) => tracing::warn!(error = %e, "undecodable chat fan-out dropped"),
                }
            }
        })
    };
    let invalidations = tokio::spawn(async move {
        while let Some(msg) = changes.next().await {
            if let Ok(room_id) = std::str::from_utf8(&msg.payload) {
                chat.rooms.invalidate(room_id);
            }
        }
    });
    Ok(vec![deliveries, invalidations])
}

async fn deliver(chat: &ChatEdge, out: ChatOut) {
    let text = Utf8Bytes::from(out.json);
    let started = std::time::Instant::now();
    let mut delivered = 0;
    match out.target {
        ChatTarget::Users(users) => {
            for user in &users {
                delivered += chat.registry.deliver(user, &text);
            }
        }
        ChatTarget::Room {
            room_id,
            except_user,
        } => {
            let members = match chat.rooms.members(&room_id).await {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => return tracing::error!(error = %e, "cannot read room members"),
            };
            for member in members.iter().filter(|m| Some(*m) != except_user.as_ref()) {
                delivered += chat.registry.deliver(member, &text);
            }
        }
    }
    metrics::histogram!("switchyard_fanout_seconds").record(started.elapsed());
    metrics::counter!("switchyard_packets_out_total", "api" => "chat").increment(delivered);
}
