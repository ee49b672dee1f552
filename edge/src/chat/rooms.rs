//! Room membership as this edge sees it: read from the store on first use, dropped when a
//! `chat.room.changed` notice says the room changed. Unknown rooms are not cached, so probing
//! random ids costs a read but no memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use switchyard_store::{Store, StoreResult};

/// Past this many cached rooms the cache starts over (memory stays bounded).
const MAX_CACHED_ROOMS: usize = 100_000;

pub type Members = Arc<HashSet<String>>;

pub struct RoomCache {
    store: Arc<dyn Store>,
    members: Mutex<HashMap<String, Members>>,
}

impl RoomCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            members: Mutex::new(HashMap::new()),
        }
    }

    /// The members of a room, or `None` if there is no such room.
    pub async fn members(&self, room_id: &str) -> StoreResult<Option<Members>> {
        if let Some(m) = self.members.lock().get(room_id) {
            return Ok(Some(m.clone()));
        }
        let Some(room) = self.store.room(room_id).await? else {
            return Ok(None);
        };
        let members: Members = Arc::new(room.members.into_iter().collect());
        let mut cache = self.members.lock();
        if cache.len() >= MAX_CACHED_ROOMS {
            cache.clear();
        }
        cache.insert(room_id.to_owned(), members.clone());
        Ok(Some(members))
    }

    pub async fn is_member(&self, room_id: &str, user: &str) -> StoreResult<bool> {
        Ok(self
            .members(room_id)
            .await?
            .is_some_and(|m| m.contains(user)))
    }

    pub fn invalidate(&self, room_id: &str) {
        self.members.lock().remove(room_id);
    }
}
