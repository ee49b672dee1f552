//! Chat: rooms with their members (both directions, kept together by logged batches), messages
//! in (room, 10-day bucket) partitions ordered by their position in the room, history pages
//! read from the cursor outwards across buckets.

use ::scylla::response::query_result::QueryResult;
use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::batch::{Batch, BatchType};
use ::scylla::value::{CqlValue, MaybeUnset, Row};
use futures::stream::{self, StreamExt, TryStreamExt};
use switchyard_schema::chat::{ChatMessage, HistoryQuery, Order, Room};

use super::keys::{chat_bucket, next_position};
use super::ScyllaStore;
use crate::{Page, Placement, StoreError, StoreResult, StoredChatMessage};

type Values = Box<dyn SerializeRow + Send + Sync>;

/// Rooms of one user read at once.
const ROOM_READS: usize = 16;
/// Member entries deleted per batch when a room is deleted (batches stay well under the
/// cluster's batch size thresholds).
const DELETES_PER_BATCH: usize = 100;

/// A room's message state: its last position and how many messages it has.
#[derive(Debug, Clone, Copy)]
struct RoomState {
    last_position: i64,
    count: i64,
}

/// What `INSERT … IF NOT EXISTS` on a message id found.
enum Claim {
    New,
    /// The id was claimed before, by this room (or, for a foreign id, by another) at `position`.
    Taken {
        room_id: Option<String>,
        position: Option<i64>,
    },
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn logged() -> Batch {
    let mut batch = Batch::new(BatchType::Logged);
    // Plain inserts and deletes under fixed keys: re-sending the batch changes nothing.
    batch.set_is_idempotent(true);
    batch
}

impl ScyllaStore {
    /// The room partition and every member's reverse entry, in one logged batch so the two
    /// directions of membership are written together or not at all.
    pub(super) async fn put_room(&self, room: &Room) -> StoreResult<()> {
        let mut batch = logged();
        let mut values: Vec<Values> = Vec::new();
        batch.append_statement(self.st.room_insert.clone());
        // No name: unset, not a null (which would be a tombstone).
        let name = MaybeUnset::from_option(room.name.clone());
        let owner = MaybeUnset::from_option(room.owner.clone());
        values.push(Box::new((room.room_id.clone(), name, owner, now_ms())));
        for member in &room.members {
            batch.append_statement(self.st.member_insert.clone());
            values.push(Box::new((room.room_id.clone(), member.clone())));
            batch.append_statement(self.st.user_room_insert.clone());
            values.push(Box::new((member.clone(), room.room_id.clone())));
        }
        self.db.batch("create_room", &batch, &values).await
    }

    pub(super) async fn join(&self, room_id: &str, user_id: &str) -> StoreResult<()> {
        let mut batch = logged();
        batch.append_statement(self.st.member_insert.clone());
        batch.append_statement(self.st.user_room_insert.clone());
        self.db
            .batch(
                "add_member",
                &batch,
                &((room_id, user_id), (user_id, room_id)),
            )
            .await
    }

    pub(super) async fn leave(&self, room_id: &str, user_id: &str) -> StoreResult<()> {
        let mut batch = logged();
        batch.append_statement(self.st.member_delete.clone());
        batch.append_statement(self.st.user_room_delete.clone());
        self.db
            .batch(
                "remove_member",
                &batch,
                &((room_id, user_id), (user_id, room_id)),
            )
            .await
    }

    /// A room with its members (sorted by id) and its creation time; `None` when the room was
    /// never created, even if stray member rows exist (as SQLite's join ignores them).
    pub(super) async fn room_with_time(
        &self,
        op: &'static str,
        room_id: &str,
    ) -> StoreResult<Option<(Room, i64)>> {
        type RoomRow = (Option<String>, Option<i64>, Option<String>, Option<String>);
        let rows: Vec<RoomRow> = self.db.all(op, &self.st.room_read, (room_id,)).await?;
        let Some((name, Some(created_ms), owner, _)) = rows.first().cloned() else {
            return Ok(None);
        };
        let mut members: Vec<String> = rows.into_iter().filter_map(|(.., m)| m).collect();
        members.sort();
        let room = Room {
            room_id: room_id.to_owned(),
            name,
            owner,
            members,
        };
        Ok(Some((room, created_ms)))
    }

    /// The user's rooms, oldest first (then by id), as SQLite orders them.
    pub(super) async fn rooms_of_user(&self, user_id: &str) -> StoreResult<Vec<Room>> {
        let op = "rooms_of";
        let ids: Vec<(String,)> = self
            .db
            .all(op, &self.st.user_rooms_read, (user_id,))
            .await?;
        let mut rooms: Vec<(Room, i64)> = stream::iter(ids)
            .map(|(room_id,)| async move { self.room_with_time(op, &room_id).await })
            .buffer_unordered(ROOM_READS)
            .try_filter_map(|room| async move { Ok(room) })
            .try_collect()
            .await?;
        rooms.sort_by(|(a, at), (b, bt)| at.cmp(bt).then_with(|| a.room_id.cmp(&b.room_id)));
        Ok(rooms.into_iter().map(|(room, _)| room).collect())
    }

    /// A page of the user's rooms by room id (the clustering order of `chat_user_rooms`);
    /// entries of rooms never created are skipped, as SQLite's join skips them.
    pub(super) async fn rooms_page_of_user(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<Room>> {
        let op = "rooms_page";
        let overread = i32::try_from(limit).unwrap_or(i32::MAX - 1) + 1;
        let ids: Vec<(String,)> = self
            .db
            .all(
                op,
                &self.st.user_rooms_page,
                (user_id, after.unwrap_or(""), overread),
            )
            .await?;
        let ids = Page::from_overread(ids, limit, |(id,)| id.clone());
        let rooms: Vec<Room> = stream::iter(ids.items)
            .map(|(room_id,)| async move { self.room_with_time(op, &room_id).await })
            .buffered(ROOM_READS)
            .try_filter_map(|room| async move { Ok(room.map(|(room, _)| room)) })
            .try_collect()
            .await?;
        Ok(Page {
            items: rooms,
            next: ids.next,
        })
    }

    pub(super) async fn members_page_of_room(
        &self,
        room_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<String>> {
        let overread = i32::try_from(limit).unwrap_or(i32::MAX - 1) + 1;
        let members: Vec<(String,)> = self
            .db
            .all(
                "members_page",
                &self.st.members_page,
                (room_id, after.unwrap_or(""), overread),
            )
            .await?;
        let members = members.into_iter().map(|(m,)| m).collect();
        Ok(Page::from_overread(members, limit, String::clone))
    }

    /// One small count per user (a partition of at most the per-user room cap), a few at once.
    pub(super) async fn room_counts_of(&self, user_ids: &[String]) -> StoreResult<Vec<u64>> {
        let op = "room_counts";
        stream::iter(user_ids.to_vec())
            .map(|user| async move {
                let row: Option<(i64,)> = self
                    .db
                    .first(op, &self.st.user_room_count, &(user,))
                    .await?;
                Ok::<_, StoreError>(row.map_or(0, |(n,)| n.max(0) as u64))
            })
            .buffered(ROOM_READS)
            .try_collect()
            .await
    }

    /// Members' reverse entries first, then the room partition, then its history: a retry after
    /// a failure part way finds the members still listed and completes the job. Message ids
    /// (`chat_message_ids`, one tiny row per message) are left: nothing reads them without a
    /// room, and finding them would mean reading every message.
    pub(super) async fn drop_room(&self, room_id: &str) -> StoreResult<()> {
        let op = "delete_room";
        let members: Vec<(String,)> = self
            .db
            .all(op, &self.st.members_page, (room_id, "", i32::MAX))
            .await?;
        for chunk in members.chunks(DELETES_PER_BATCH) {
            let mut batch = logged();
            let mut values: Vec<Values> = Vec::with_capacity(chunk.len());
            for (member,) in chunk {
                batch.append_statement(self.st.user_room_delete.clone());
                values.push(Box::new((member.clone(), room_id.to_owned())));
            }
            self.db.batch(op, &batch, &values).await?;
        }
        self.db
            .execute(op, &self.st.room_delete, &(room_id,))
            .await?;
        let buckets: Vec<(Option<i32>,)> = self
            .db
            .all(op, &self.st.room_buckets_read, (room_id,))
            .await?;
        for bucket in buckets.into_iter().filter_map(|(b,)| b) {
            self.db
                .execute(op, &self.st.bucket_delete, &(room_id, bucket))
                .await?;
        }
        self.db
            .execute(op, &self.st.room_buckets_delete, &(room_id,))
            .await
            .map(drop)
    }

    async fn room_state(&self, op: &'static str, room_id: &str) -> StoreResult<Option<RoomState>> {
        let row: Option<(Option<i64>, Option<i64>)> = self
            .db
            .first(op, &self.st.room_state_read, &(room_id,))
            .await?;
        Ok(match row {
            Some((Some(last_position), count)) => Some(RoomState {
                last_position,
                count: count.unwrap_or(0),
            }),
            _ => None,
        })
    }

    /// Persists a message at the next position of its room; `false` when its id was stored
    /// before.
    ///
    /// The one lightweight transaction of the write path is here, on `chat_message_ids`, and it
    /// is needed for correctness, not just for the answer: a redelivered message would
    /// otherwise get a new position and show twice, and the room's count would be off. The
    /// position itself comes from a plain read of the room state: a room has a single consumer
    /// (chat subjects are partitioned by room, one message in flight each), so no other writer
    /// moves it meanwhile. Should that ever be violated (a redelivery racing a slow first
    /// attempt), the transaction still lets only one of them in.
    ///
    /// Every step after the claim is idempotent, and a retry of a half-done insert completes it:
    /// a claimed id whose message row or room state is missing gets them written, at the
    /// position it was claimed with.
    pub(super) async fn put_message(&self, stored: &StoredChatMessage) -> StoreResult<Placement> {
        let op = "insert_chat_message";
        let m = &stored.message;
        let state = self.room_state(op, &m.room_id).await?;
        let position = next_position(stored.sent_at_ms, state.map(|s| s.last_position));
        let claimed = self
            .db
            .execute(
                op,
                &self.st.message_id_claim,
                &(&m.id, &m.room_id, position),
            )
            .await?;
        match claim_outcome(claimed).map_err(|source| StoreError::Scylla { op, source })? {
            Claim::New => {
                self.write_message(stored, position).await?;
                self.advance_room(&m.room_id, state, position).await?;
                Ok(Placement {
                    newly_stored: true,
                    position: Some(position),
                })
            }
            Claim::Taken {
                room_id: Some(room_id),
                position: Some(position),
            } if room_id == m.room_id => {
                let bucket = chat_bucket(position);
                let stored_row: Option<(String,)> = self
                    .db
                    .first(
                        op,
                        &self.st.message_exists,
                        &(&m.room_id, bucket, position, &m.id),
                    )
                    .await?;
                if stored_row.is_none() {
                    self.write_message(stored, position).await?;
                }
                if state.is_none_or(|s| s.last_position < position) {
                    self.advance_room(&m.room_id, state, position).await?;
                }
                Ok(Placement {
                    newly_stored: false,
                    position: Some(position),
                })
            }
            // The id belongs to a message of another room: leave both alone, as SQLite's
            // INSERT OR IGNORE on the unique id does.
            Claim::Taken { .. } => Ok(Placement {
                newly_stored: false,
                position: None,
            }),
        }
    }

    async fn write_message(&self, stored: &StoredChatMessage, position: i64) -> StoreResult<()> {
        let m = &stored.message;
        let values = (
            &m.room_id,
            chat_bucket(position),
            position,
            &m.id,
            &m.sender_id,
            &m.message,
            &m.timestamp,
            stored.sent_at_ms,
        );
        self.db
            .execute("insert_chat_message", &self.st.message_insert, &values)
            .await
            .map(drop)
    }

    /// The room's new last position and count (absolute values), and its bucket listed. The
    /// write's timestamp is the position, so a stale writer (one that read the state before a
    /// later message moved it) can never move it back.
    async fn advance_room(
        &self,
        room_id: &str,
        before: Option<RoomState>,
        position: i64,
    ) -> StoreResult<()> {
        let count = before.map_or(0, |s| s.count) + 1;
        let values = (room_id, chat_bucket(position), position, count, position);
        self.db
            .execute("insert_chat_message", &self.st.room_state_write, &values)
            .await
            .map(drop)
    }

    pub(super) async fn message_count(&self, room_id: &str) -> StoreResult<u64> {
        let state = self.room_state("room_message_count", room_id).await?;
        Ok(state.map_or(0, |s| s.count.max(0) as u64))
    }

    /// One page of history, with the SQLite adapter's semantics: read from the cursor outwards
    /// (nearest first; without a cursor from the newest, or the oldest for `asc`), skip `skip`,
    /// take `limit`, then present in the requested order. An unknown cursor, or one from
    /// another room, gives an empty page.
    pub(super) async fn history(&self, q: &HistoryQuery) -> StoreResult<Vec<ChatMessage>> {
        let op = "chat_history";
        let newest_first = match (&q.before, &q.after) {
            (Some(_), _) => true,
            (None, Some(_)) => false,
            (None, None) => q.order == Order::Desc,
        };
        let cursor = match q.before.as_ref().or(q.after.as_ref()) {
            None => None,
            Some(id) => {
                let at: Option<(String, i64)> =
                    self.db.first(op, &self.st.message_id_read, &(id,)).await?;
                match at {
                    Some((room_id, position)) if room_id == q.room_id => {
                        Some((position, id.clone()))
                    }
                    _ => return Ok(Vec::new()),
                }
            }
        };
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let bound = cursor.clone().unwrap_or(if newest_first {
            (i64::MAX, String::new())
        } else {
            (i64::MIN, String::new())
        });
        // The room's buckets, newest first; only those on the reading side of the cursor.
        let mut buckets: Vec<i32> = self
            .db
            .all::<(Option<i32>,), _>(op, &self.st.room_buckets_read, (&q.room_id,))
            .await?
            .into_iter()
            .filter_map(|(b,)| b)
            .collect();
        if !newest_first {
            buckets.reverse();
        }
        if let Some((position, _)) = &cursor {
            let at = chat_bucket(*position);
            buckets.retain(|&b| if newest_first { b <= at } else { b >= at });
        }
        let statement = if newest_first {
            &self.st.history_desc
        } else {
            &self.st.history_asc
        };
        let want = q.limit as usize;
        let mut to_skip = q.skip as usize;
        let mut page = Vec::with_capacity(want.min(1024));
        'buckets: for bucket in buckets {
            let needed = i32::try_from(to_skip + want - page.len()).unwrap_or(i32::MAX);
            let values = (&q.room_id, bucket, bound.0, &bound.1, needed);
            let mut rows = self
                .db
                .rows::<(String, String, String, String), _>(op, statement, values);
            while let Some((id, sender_id, message, timestamp)) = rows.try_next().await? {
                if to_skip > 0 {
                    to_skip -= 1;
                    continue;
                }
                page.push(ChatMessage {
                    id,
                    room_id: q.room_id.clone(),
                    sender_id,
                    message,
                    timestamp,
                });
                if page.len() == want {
                    break 'buckets;
                }
            }
        }
        if newest_first != (q.order == Order::Desc) {
            page.reverse();
        }
        Ok(page)
    }
}

/// Reads `[applied]` and, when not applied, the existing row, by column name: ScyllaDB returns
/// the old row's columns either way, Cassandra only when the condition failed.
fn claim_outcome(result: QueryResult) -> Result<Claim, Box<dyn std::error::Error + Send + Sync>> {
    let rows = result.into_rows_result()?;
    let specs = rows.column_specs();
    let column = |name: &str| specs.get_by_name(name).map(|(i, _)| i);
    let applied_at = column("[applied]").ok_or("conditional insert returned no [applied]")?;
    let (room_at, position_at) = (column("room_id"), column("position"));
    let row: Row = rows.first_row()?;
    let value = |at: Option<usize>| at.and_then(|i| row.columns.get(i).cloned().flatten());
    if let Some(CqlValue::Boolean(true)) = value(Some(applied_at)) {
        return Ok(Claim::New);
    }
    Ok(Claim::Taken {
        room_id: value(room_at).and_then(|v| v.as_text().cloned()),
        position: value(position_at).and_then(|v| v.as_bigint()),
    })
}
