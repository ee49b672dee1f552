//! Chat reads on SQLite: rooms with members, pages of rooms and members by cursor, history
//! pages by skip or cursor.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use switchyard_schema::chat::{ChatMessage, HistoryQuery, Order, Room};

use crate::Page;

pub fn room(c: &Connection, room_id: &str) -> rusqlite::Result<Option<Room>> {
    let head: Option<(Option<String>, Option<String>)> = c
        .prepare_cached("SELECT name, owner FROM chat_rooms WHERE room_id = ?1")?
        .query_row([room_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((name, owner)) = head else {
        return Ok(None);
    };
    let members = c
        .prepare_cached("SELECT user_id FROM chat_members WHERE room_id = ?1 ORDER BY user_id")?
        .query_map([room_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Some(Room {
        room_id: room_id.to_owned(),
        name,
        owner,
        members,
    }))
}

/// Rooms of a user by room id after `after`; rooms never created (stray member rows) are skipped.
pub fn rooms_page(
    c: &Connection,
    user_id: &str,
    after: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Page<Room>> {
    let ids = c
        .prepare_cached(
            "SELECT m.room_id FROM chat_members m JOIN chat_rooms r ON r.room_id = m.room_id
             WHERE m.user_id = ?1 AND m.room_id > ?2 ORDER BY m.room_id LIMIT ?3",
        )?
        .query_map(
            params![user_id, after.unwrap_or(""), limit as i64 + 1],
            |r| r.get::<_, String>(0),
        )?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let ids = Page::from_overread(ids, limit, String::clone);
    let mut rooms = Vec::with_capacity(ids.items.len());
    for id in &ids.items {
        if let Some(room) = room(c, id)? {
            rooms.push(room);
        }
    }
    Ok(Page {
        items: rooms,
        next: ids.next,
    })
}

pub fn members_page(
    c: &Connection,
    room_id: &str,
    after: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Page<String>> {
    let members = c
        .prepare_cached(
            "SELECT user_id FROM chat_members WHERE room_id = ?1 AND user_id > ?2
             ORDER BY user_id LIMIT ?3",
        )?
        .query_map(
            params![room_id, after.unwrap_or(""), limit as i64 + 1],
            |r| r.get::<_, String>(0),
        )?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Page::from_overread(members, limit, String::clone))
}

/// Membership rows per user, as ScyllaDB counts its reverse entries (a stray row of a room
/// never created counts too; the REST API never makes one).
pub fn room_counts(c: &Connection, user_ids: &[String]) -> rusqlite::Result<Vec<u64>> {
    let mut stmt = c.prepare_cached("SELECT COUNT(*) FROM chat_members WHERE user_id = ?1")?;
    user_ids
        .iter()
        .map(|u| {
            stmt.query_row([u], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
        .collect()
}

/// Members of the user's rooms, each once; rooms never created (a stray member row) count
/// not, as in [`rooms_of`].
pub fn room_mates(c: &Connection, user_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT m.user_id
         FROM chat_members mine
         JOIN chat_rooms r ON r.room_id = mine.room_id
         JOIN chat_members m ON m.room_id = mine.room_id
         WHERE mine.user_id = ?1 AND m.user_id <> ?1
         ORDER BY m.user_id",
    )?;
    let rows = stmt.query_map([user_id], |r| r.get::<_, String>(0))?;
    rows.collect()
}

pub fn rooms_of(c: &Connection, user_id: &str) -> rusqlite::Result<Vec<Room>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.room_id, r.name, m.user_id, r.owner
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
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    for row in rows {
        let (room_id, name, member, owner) = row?;
        rooms
            .entry(room_id.clone())
            .or_insert_with(|| {
                order.push(room_id.clone());
                Room {
                    room_id,
                    name,
                    owner,
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
