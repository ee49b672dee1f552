//! Per-room fan-out subscriptions: an edge listens on `out.chat.room.<id>` only while one of
//! the room's members is connected to it, so room traffic reaches only the edges that need it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures::StreamExt;
use parking_lot::Mutex;
use switchyard_bus::TypedBus;
use switchyard_schema::envelope::ChatOut;
use switchyard_schema::topics;
use tokio::task::JoinHandle;

use super::room_order::{RoomOrder, Verdict};
use super::{fanout, ChatEdge};

#[derive(Default)]
pub struct RoomSubscriptions {
    active: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Serializes refreshes, so two of them cannot both subscribe (or unsubscribe) a room.
    refreshing: tokio::sync::Mutex<()>,
}

impl RoomSubscriptions {
    /// Subscribes to the room if a local connection belongs to it, unsubscribes otherwise.
    pub async fn refresh(&self, chat: &Arc<ChatEdge>, room_id: &str) {
        let _one_at_a_time = self.refreshing.lock().await;
        let wanted = match chat.rooms.members(room_id).await {
            Ok(Some(members)) => members.iter().any(|m| chat.registry.has_user(m)),
            Ok(None) => false,
            Err(e) => return tracing::warn!(error = %e, "cannot refresh room subscription"),
        };
        let subscribed = self.active.lock().contains_key(room_id);
        if wanted && !subscribed {
            match chat.bus.subscribe_to(&topics::out_chat_room(room_id)).await {
                Ok(messages) => {
                    let task = tokio::spawn(deliver_room(Arc::downgrade(chat), messages));
                    self.active.lock().insert(room_id.to_owned(), task);
                    metrics::gauge!("switchyard_chat_room_subscriptions").increment(1.0);
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to a room"),
            }
        } else if !wanted && subscribed {
            if let Some(task) = self.active.lock().remove(room_id) {
                task.abort();
                metrics::gauge!("switchyard_chat_room_subscriptions").decrement(1.0);
            }
        }
    }

    /// Refreshes every room `user` belongs to (after they connected or left).
    pub async fn refresh_rooms_of(&self, chat: &Arc<ChatEdge>, user: &str) {
        match chat.store.rooms_of(user).await {
            Ok(rooms) => {
                for room in rooms {
                    self.refresh(chat, &room.room_id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read rooms for subscriptions"),
        }
    }

    pub fn stop_all(&self) {
        for (_, task) in self.active.lock().drain() {
            task.abort();
        }
    }
}

/// Delivers one room's fan-out in history order (see [`RoomOrder`]). Holds the edge weakly:
/// the edge owns it.
async fn deliver_room(
    chat: Weak<ChatEdge>,
    mut messages: futures::stream::BoxStream<'static, ChatOut>,
) {
    let mut order = RoomOrder::default();
    while let Some(out) = messages.next().await {
        let Some(chat) = chat.upgrade() else { return };
        match order.admit(out.position) {
            Verdict::Deliver => fanout::deliver(&chat, out).await,
            Verdict::Repeat => {
                metrics::counter!("switchyard_fanout_duplicates_total", "api" => "chat")
                    .increment(1);
            }
            Verdict::Late => {
                metrics::counter!("switchyard_chat_fanout_late_total").increment(1);
                tracing::debug!(position = ?out.position, "late room message not shown live");
            }
        }
    }
}
