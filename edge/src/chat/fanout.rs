//! Delivers chat fan-out to this edge's connections: room messages to the room's members,
//! user-addressed packets to those users; room-change notices refresh the membership cache
//! and the room subscriptions.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use switchyard_bus::TypedBus;
use switchyard_schema::envelope::{ChatOut, ChatTarget, RoomChanged};
use switchyard_schema::topics;
use tokio::task::JoinHandle;

use super::ChatEdge;

pub async fn spawn(chat: Arc<ChatEdge>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut users = chat.bus.subscribe_to(&topics::OUT_CHAT_USERS).await?;
    let mut changes = chat.bus.subscribe_to(&topics::CHAT_ROOM_CHANGED).await?;
    let deliveries = {
        let chat = chat.clone();
        tokio::spawn(async move {
            while let Some(out) = users.next().await {
                deliver(&chat, out).await;
            }
        })
    };
    let invalidations = tokio::spawn(async move {
        while let Some(RoomChanged(room_id)) = changes.next().await {
            chat.rooms.invalidate(&room_id);
            chat.subscriptions.refresh(&chat, &room_id).await;
        }
    });
    Ok(vec![deliveries, invalidations])
}

pub async fn deliver(chat: &ChatEdge, out: ChatOut) {
    if let Some(id) = &out.dedup {
        if !chat.recent.first_time(id) {
            metrics::counter!("switchyard_fanout_duplicates_total", "api" => "chat").increment(1);
            return;
        }
    }
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
    metrics::histogram!("switchyard_fanout_seconds", "api" => "chat").record(started.elapsed());
    metrics::counter!("switchyard_packets_out_total", "api" => "chat").increment(delivered);
}
