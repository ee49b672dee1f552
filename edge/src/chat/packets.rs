//! What each client packet does. Authorization is checked here for every packet that names a
//! room; a refusal is the same whether the room is someone else's or does not exist.

use switchyard_bus::{Encoded, TypedBus};
use switchyard_schema::chat::{
    rfc3339_ms, ChatMessage, ClientPacket, ErrorCode, Rejection, ServerPacket,
};
use switchyard_schema::envelope::{ChatOut, ChatTarget, Inbound};
use switchyard_schema::new_packet_id;
use switchyard_schema::topics::{self, Topic};

use super::outbox::Outbox;
use super::ChatEdge;
use crate::not_accepted::NotAccepted;

pub async fn handle(
    chat: &ChatEdge,
    user: &str,
    reply: &Outbox,
    text: &str,
) -> Result<(), Rejection> {
    let packet = ClientPacket::parse(text)?;
    metrics::counter!("switchyard_packets_in_total", "api" => "chat", "type" => packet.kind())
        .increment(1);
    match packet {
        ClientPacket::MessageSend { room_id, message } => {
            authorize(chat, &room_id, user).await?;
            send_message(chat, room_id, user, message).await?;
        }
        ClientPacket::ChatJoin => {
            let recipients = chat.store.room_mates(user).await.map_err(unavailable)?;
            if !recipients.is_empty() {
                let out = ChatOut {
                    target: ChatTarget::Users(recipients),
                    json: ServerPacket::ChatJoinNotify {
                        participant_id: user.to_owned(),
                    }
                    .to_json(),
                    dedup: None,
                    position: None,
                };
                publish(chat, &topics::OUT_CHAT_USERS, &out).await?;
            }
        }
        ClientPacket::Typing { room_id, is_typing } => {
            authorize(chat, &room_id, user).await?;
            let out = ChatOut {
                target: ChatTarget::Room {
                    room_id: room_id.clone(),
                    except_user: Some(user.to_owned()),
                },
                json: ServerPacket::TypingNotify {
                    room_id: room_id.clone(),
                    participant_id: user.to_owned(),
                    is_typing,
                }
                .to_json(),
                dedup: None,
                position: None,
            };
            publish(chat, &topics::out_chat_room(&room_id), &out).await?;
        }
        ClientPacket::ListMessages(query) => {
            authorize(chat, &query.room_id, user).await?;
            let (messages, total_count) = tokio::try_join!(
                chat.store.chat_history(&query),
                chat.store.room_message_count(&query.room_id)
            )
            .map_err(unavailable)?;
            let response = ServerPacket::ListMessageResponse {
                room_id: query.room_id,
                messages,
                total_count,
            };
            // The client asked for this; if its queue is full it is a slow consumer anyway.
            let _ = reply.try_send(response.to_json().into());
        }
    }
    Ok(())
}

/// Sends a message into a room as `sender` (the caller checked it may): returns once the
/// durable stream has it; the workers store it and fan it out to the room.
pub async fn send_message(
    chat: &ChatEdge,
    room_id: String,
    sender: &str,
    text: String,
) -> Result<ChatMessage, Rejection> {
    let now_ms = chat.clock.now_ms();
    let message = ChatMessage {
        id: new_packet_id(),
        room_id,
        sender_id: sender.to_owned(),
        message: text,
        timestamp: rfc3339_ms(now_ms),
    };
    let topic = topics::in_chat_message(&message.room_id);
    let packet = Inbound::ChatMessage {
        message: message.clone(),
        sent_at_ms: now_ms,
    };
    let started = std::time::Instant::now();
    let payload = Encoded::of(&packet);
    // Held until the stream answers: through an election that can be the whole budget.
    let _hold = chat
        .held
        .try_hold("chat", payload.len())
        .ok_or_else(|| refused(NotAccepted::Overloaded))?;
    chat.bus
        .publish_durable_to(&topic, &message.id, payload)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "chat publish failed");
            refused(NotAccepted::of_publish(&e))
        })?;
    metrics::histogram!("switchyard_publish_seconds", "api" => "chat").record(started.elapsed());
    Ok(message)
}

/// A packet the durable stream did not take, worded for a `/chat` client.
fn refused(why: NotAccepted) -> Rejection {
    let text = match why {
        NotAccepted::Unavailable => "message not accepted; try again",
        NotAccepted::Overloaded => {
            "not accepted: this edge holds too many messages the stream has not confirmed; \
             try again"
        }
        NotAccepted::Unconfirmed => {
            "message not confirmed: the bus did not answer; it may still arrive"
        }
    };
    Rejection::new(ErrorCode::Unavailable, text)
}

async fn authorize(chat: &ChatEdge, room_id: &str, user: &str) -> Result<(), Rejection> {
    if chat
        .rooms
        .is_member(room_id, user)
        .await
        .map_err(unavailable)?
    {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::Forbidden,
            "not a member of this room",
        ))
    }
}

async fn publish(chat: &ChatEdge, topic: &Topic<ChatOut>, out: &ChatOut) -> Result<(), Rejection> {
    chat.bus.publish_to(topic, out).await.map_err(|e| {
        tracing::warn!(error = %e, "chat fan-out publish failed");
        Rejection::new(ErrorCode::Unavailable, "could not deliver; try again")
    })
}

fn unavailable(e: impl std::fmt::Display) -> Rejection {
    tracing::error!(error = %e, "chat store read failed");
    Rejection::new(ErrorCode::Unavailable, "temporarily unavailable")
}
