//! Delivers chat fan-out to this edge's connections: room messages to the room's members,
//! user-addressed packets to those users; room-change notices refresh the membership cache
//! and the room subscriptions.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use switchyard_schema::envelope::{self, ChatOut, ChatTarget};
use switchyard_schema::subjects::{CHAT_ROOM_CHANGED, OUT_CHAT_USERS};
use tokio::task::JoinHandle;

use super::ChatEdge;

pub async fn spawn(chat: Arc<ChatEdge>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut users = chat.bus.subscribe(OUT_CHAT_USERS).await?;
    let mut changes = chat.bus.subscribe(CHAT_ROOM_CHANGED).await?;
    let deliveries = {
        let chat = chat.clone();
        tokio::spawn(async move {
            while let Some(msg) = users.next().await {
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
                chat.subscriptions.refresh(&chat, room_id).await;
            }
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
