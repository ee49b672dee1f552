//! Room membership as this edge sees it: read from the store on first use, dropped when a
//! `chat.room.changed` notice says the room changed. The cache is bounded in bytes (an estimate
//! of the heap an entry holds); when a new room does not fit, the least recently used rooms are
//! evicted one at a time until it does. Unknown rooms are not cached, so probing random ids
//! costs a read but no memory; a room larger than the whole budget is served uncached.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashlink::LinkedHashMap;
use parking_lot::Mutex;
use switchyard_store::{Store, StoreResult};

/// What the edge needs of a room to authorize packets and deliver to its members.
#[derive(Debug)]
pub struct CachedRoom {
    pub owner: Option<String>,
    pub members: HashSet<String>,
}

impl CachedRoom {
    pub fn contains(&self, user: &str) -> bool {
        self.members.contains(user)
    }

    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.members.iter()
    }
}

pub type Members = Arc<CachedRoom>;

/// Estimated heap bytes of one cached room: the entry's fixed part (map node, `Arc`, key and set
/// headers), the key, the owner, the set's buckets (a `String` and a control byte each, at
/// hashbrown's 7/8 load) and every member id.
fn estimated_bytes(room_id: &str, room: &CachedRoom) -> usize {
    const ENTRY: usize = 160;
    const BUCKET: usize = std::mem::size_of::<String>() + 1;
    let buckets = room.members.capacity() * 8 / 7 + 1;
    ENTRY
        + room_id.len()
        + room.owner.as_ref().map_or(0, String::capacity)
        + buckets * BUCKET
        + room.members.iter().map(String::capacity).sum::<usize>()
}

/// Rooms in least-recently-used order (front = next to go), with their sizes.
#[derive(Default)]
struct Lru {
    rooms: LinkedHashMap<String, (Members, usize)>,
    bytes: usize,
}

impl Lru {
    fn remove(&mut self, room_id: &str) {
        if let Some((_, size)) = self.rooms.remove(room_id) {
            self.bytes -= size;
        }
    }
}

pub struct RoomCache {
    store: Arc<dyn Store>,
    budget: usize,
    lru: Mutex<Lru>,
    /// Bumped by every invalidation: a read that started before one may have read the old
    /// membership, so it is served but not cached.
    generation: AtomicU64,
}

impl RoomCache {
    /// A cache holding at most `budget` estimated bytes.
    pub fn new(store: Arc<dyn Store>, budget: usize) -> Self {
        Self {
            store,
            budget,
            lru: Mutex::new(Lru::default()),
            generation: AtomicU64::new(0),
        }
    }

    /// The members of a room, or `None` if there is no such room.
    pub async fn members(&self, room_id: &str) -> StoreResult<Option<Members>> {
        if let Some((members, _)) = self.lru.lock().rooms.to_back(room_id) {
            return Ok(Some(members.clone()));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(room) = self.store.room(room_id).await? else {
            return Ok(None);
        };
        let members: Members = Arc::new(CachedRoom {
            owner: room.owner,
            members: room.members.into_iter().collect(),
        });
        self.insert(room_id, &members, generation);
        Ok(Some(members))
    }

    fn insert(&self, room_id: &str, members: &Members, generation: u64) {
        let size = estimated_bytes(room_id, members);
        if size > self.budget {
            if let Some(suppressed) = crate::refusals::due("chat", "room_cache") {
                tracing::warn!(
                    room_id,
                    bytes = size,
                    budget = self.budget,
                    suppressed,
                    "chat room too large for the membership cache: served from the store"
                );
            }
            return;
        }
        let mut lru = self.lru.lock();
        // Checked under the lock invalidations take too: none can slip in between.
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        lru.remove(room_id);
        let mut evicted = 0u64;
        while lru.bytes + size > self.budget {
            let Some((_, (_, freed))) = lru.rooms.pop_front() else {
                break;
            };
            lru.bytes -= freed;
            evicted += 1;
        }
        lru.rooms
            .insert(room_id.to_owned(), (members.clone(), size));
        lru.bytes += size;
        metrics::gauge!("switchyard_chat_room_cache_bytes").set(lru.bytes as f64);
        if evicted > 0 {
            metrics::counter!("switchyard_chat_room_cache_evictions_total").increment(evicted);
        }
    }

    pub async fn is_member(&self, room_id: &str, user: &str) -> StoreResult<bool> {
        Ok(self
            .members(room_id)
            .await?
            .is_some_and(|m| m.contains(user)))
    }

    pub fn invalidate(&self, room_id: &str) {
        let mut lru = self.lru.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        lru.remove(room_id);
        metrics::gauge!("switchyard_chat_room_cache_bytes").set(lru.bytes as f64);
    }

    /// Estimated bytes held now (for tests and metrics).
    pub fn bytes(&self) -> usize {
        self.lru.lock().bytes
    }

    #[cfg(test)]
    fn cached(&self, room_id: &str) -> bool {
        self.lru.lock().rooms.contains_key(room_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_schema::chat::Room;

    async fn store_with_rooms(rooms: &[(&str, usize)]) -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = switchyard_store::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        for (id, members) in rooms {
            let room = Room {
                room_id: (*id).to_owned(),
                name: None,
                owner: Some("owner".into()),
                members: (0..*members).map(|i| format!("member-{i:05}")).collect(),
            };
            store.create_room(&room).await.unwrap();
        }
        (dir, store)
    }

    #[tokio::test]
    async fn stays_within_its_byte_budget_by_evicting_the_least_recently_used() {
        let (_dir, store) = store_with_rooms(&[("a", 100), ("b", 100), ("c", 100)]).await;
        let one = {
            let probe = RoomCache::new(store.clone(), usize::MAX);
            probe.members("a").await.unwrap();
            probe.bytes()
        };
        assert!(
            one > 100 * "member-00000".len(),
            "{one} bytes counts the ids"
        );
        // Room for two rooms, not three.
        let cache = RoomCache::new(store.clone(), one * 2 + one / 2);
        cache.members("a").await.unwrap();
        cache.members("b").await.unwrap();
        cache.members("a").await.unwrap(); // a is now the most recently used
        cache.members("c").await.unwrap();
        assert!(cache.bytes() <= one * 2 + one / 2);
        assert!(cache.cached("a") && cache.cached("c"), "recent rooms stay");
        assert!(!cache.cached("b"), "only the least recently used went");
        let members = cache.members("b").await.unwrap().unwrap();
        assert!(members.contains("member-00042"));
        assert_eq!(members.owner.as_deref(), Some("owner"));
    }

    #[tokio::test]
    async fn a_room_bigger_than_the_budget_is_served_but_not_cached() {
        let (_dir, store) = store_with_rooms(&[("small", 1), ("huge", 2000)]).await;
        let cache = RoomCache::new(store, 4096);
        cache.members("small").await.unwrap();
        let huge = cache.members("huge").await.unwrap().unwrap();
        assert_eq!(huge.members.len(), 2000);
        assert!(cache.cached("small"), "nothing was evicted for it");
        assert!(!cache.cached("huge"));
        assert!(cache.members("nope").await.unwrap().is_none());
        assert!(!cache.cached("nope"), "unknown rooms cost no memory");
    }

    #[tokio::test]
    async fn invalidation_drops_one_room_and_its_bytes() {
        let (_dir, store) = store_with_rooms(&[("a", 10), ("b", 10)]).await;
        let cache = RoomCache::new(store.clone(), 1 << 20);
        cache.members("a").await.unwrap();
        cache.members("b").await.unwrap();
        let both = cache.bytes();
        cache.invalidate("a");
        assert!(!cache.cached("a") && cache.cached("b"));
        assert!(cache.bytes() < both && cache.bytes() > 0);
        store.add_member("a", "late").await.unwrap();
        assert!(
            cache.is_member("a", "late").await.unwrap(),
            "re-read after invalidation"
        );
    }
}
