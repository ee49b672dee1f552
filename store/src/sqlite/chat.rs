//! Chat reads on SQLite: rooms with members, history pages by skip or cursor.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use switchyard_schema::chat::{ChatMessage, HistoryQuery, Order, Room};

pub fn room(c: &Connection, room_id: &str) -> rusqlite::Result<Option<Room>> {
    let name: Option<Option<String>> = c
        .prepare_cached("SELECT name FROM chat_rooms WHERE room_id = ?1")?
        .query_row([room_id], |r| r.get(0))
        .optional()?;
    let Some(name) = name else { return Ok(None) };
    let members = c
        .prepare_cached("SELECT user_id FROM chat_members WHERE room_id = ?1 ORDER BY user_id")?
        .query_map([room_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Some(Room {
        room_id: room_id.to_owned(),
        name,
        members,
    }))
}

pub fn rooms_of(c: &Connection, user_id: &str) -> rusqlite::Result<Vec<Room>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.room_id, r.name, m.user_id
         FROM chat_members mine
         JOIN chat_rooms r ON r.room_id = mine.room_id
         JOIN chat_members m ON m.room_id = mine.room_id
         WHERE mine.user_id = ?1
         ORDER BY r.created_ms, r.room_id, m.user_id",
    )?;
    let mut rooms: BTreeMap<String, Room> = BTreeMap::new();
    let mut order = Vec::new();
    let rows = stmt.query_map([user_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (room_id, name, member) = row?;
        rooms
            .entry(room_id.clone())
            .or_insert_with(|| {
                order.push(room_id.clone());
                Room {
                    room_id,
                    name,
                    members: Vec::new(),
                }
            })
            .members
            .push(member);
    }
    Ok(order
        .into_iter()
        .filter_map(|id| rooms.remove(&id))
        .collect())
}

pub fn history(c: &Connection, q: &HistoryQuery) -> rusqlite::Result<Vec<ChatMessage>> {
    // Read from the cursor outwards (nearest first), then present in the requested order.
    let (bound, nearest_first_desc) = match (&q.before, &q.after) {
        (Some(_), _) => (
            "AND seq < (SELECT seq FROM chat_messages WHERE id = ?2 AND room_id = ?1)",
            true,
        ),
        (None, Some(_)) => (
            "AND seq > (SELECT seq FROM chat_messages WHERE id = ?2 AND room_id = ?1)",
            false,
        ),
        (None, None) => ("AND ?2 IS NULL", q.order == Order::Desc),
    };
    let direction = if nearest_first_desc { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT id, room_id, sender_id, message, timestamp FROM chat_messages
         WHERE room_id = ?1 {bound} ORDER BY seq {direction} LIMIT ?3 OFFSET ?4"
    );
    let cursor = q.before.as_ref().or(q.after.as_ref());
    let mut messages = c
        .prepare_cached(&sql)?
        .query_map(params![q.room_id, cursor, q.limit, q.skip], |r| {
            Ok(ChatMessage {
                id: r.get(0)?,
                room_id: r.get(1)?,
                sender_id: r.get(2)?,
                message: r.get(3)?,
                timestamp: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if nearest_first_desc != (q.order == Order::Desc) {
        messages.reverse();
    }
    Ok(messages)
}

pub fn message_count(c: &Connection, room_id: &str) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT COUNT(*) FROM chat_messages WHERE room_id = ?1")?
        .query_row([room_id], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}
