//! The store contract: every operation the roles use, written once against the `Store` port.
//! Runs against SQLite always; the ScyllaDB half runs when `SWITCHYARD_SCYLLA_NODES` is set
//! (`host:9042[,host:9042…]`), in a fresh keyspace that is dropped afterwards. Extra URL
//! options for that keyspace come from `SWITCHYARD_SCYLLA_OPTIONS` (default `replication=1`;
//! e.g. `replication=3&tablets=false`).

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use switchyard_schema::chat::{ChatMessage, HistoryQuery, Order, Room};
use switchyard_schema::frust::{Click, Event, UserRow};
use switchyard_store::{
    CountedFact, CounterUpdate, HourCount, ImportedCounters, ImportedCounts, Page, SqliteStore,
    Store, StoreError, StoredChatMessage, StoredClick, StoredEvent, Totals,
};

const DAY: i64 = 86_400;
/// The ScyllaDB adapter's message bucket (10 days), in ms: messages on either side of it land in
/// different partitions there. SQLite has no buckets; the answers must be the same.
const BUCKET_MS: i64 = 10 * DAY * 1000;

fn click(id: &str, user: &str, t: i64) -> StoredClick {
    StoredClick {
        id: id.into(),
        click: Click {
            user: user.into(),
            comment: Some("'; DROP TABLE frust_clicks; --".into()),
            style: None,
            timestamp: t,
        },
    }
}

fn event(id: &str, user: &str, t: i64) -> StoredEvent {
    StoredEvent {
        id: id.into(),
        event: Event {
            user: user.into(),
            name: "<b>boom</b>".into(),
            timestamp: t,
        },
    }
}

/// Every check runs in this order on one store: later checks rely on the rows of earlier ones
/// (a recount counts what the inserts stored), and each uses its own days, rooms and ids.
async fn contract(store: Arc<dyn Store>) {
    let store = &*store;
    inserts_are_idempotent_and_read_newest_first(store).await;
    counters_round_trip_with_checkpoint(store).await;
    counted_marks_keep_the_first_sequence(store).await;
    imported_rows_and_counters_stay_apart(store).await;
    rebuild_recounts_from_rows(store).await;
    reads_cross_midnight_both_ways(store).await;
    reads_span_many_pages_in_order(store).await;
    rooms_and_membership(store).await;
    room_mates_are_the_members_of_shared_rooms(store).await;
    room_lists_page_by_cursor(store).await;
    chat_history_pages_by_skip_and_cursor(store).await;
    chat_history_crosses_buckets(store).await;
    deleting_a_room_removes_it_everywhere(store).await;
}

async fn inserts_are_idempotent_and_read_newest_first(store: &dyn Store) {
    let day = DAY * 20_000;
    assert!(store
        .insert_click(&click("01-a", "alice", day - 1))
        .await
        .unwrap());
    assert!(store
        .insert_click(&click("02-b", "alice", day))
        .await
        .unwrap());
    assert!(store
        .insert_click(&click("03-c", "bob", day + 5))
        .await
        .unwrap());
    assert!(
        !store
            .insert_click(&click("02-b", "alice", day))
            .await
            .unwrap(),
        "re-insert is a no-op"
    );
    assert!(store
        .insert_event(&event("04-d", "bob", day + 6))
        .await
        .unwrap());
    assert!(!store
        .insert_event(&event("04-d", "bob", day + 6))
        .await
        .unwrap());

    let today = store.clicks_since(day, 10_000).await.unwrap();
    let got: Vec<(&str, i64)> = today
        .iter()
        .map(|c| (c.user.as_str(), c.timestamp))
        .collect();
    assert_eq!(
        got,
        vec![("bob", day + 5), ("alice", day)],
        "day boundary and order"
    );
    assert_eq!(
        today[0].comment.as_deref(),
        Some("'; DROP TABLE frust_clicks; --")
    );
    assert_eq!(
        store.clicks_since(day, 1).await.unwrap().len(),
        1,
        "limit applies"
    );
    assert!(store.clicks_since(day, 0).await.unwrap().is_empty());
    let events = store.events_since(day, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, "<b>boom</b>", "stored verbatim");
}

async fn counters_round_trip_with_checkpoint(store: &dyn Store) {
    assert_eq!(
        store.totals().await.unwrap(),
        Totals::default(),
        "no checkpoint yet"
    );
    let update = CounterUpdate {
        totals: Totals {
            applied_seq: 42,
            clicks: 7,
            events: 2,
        },
        hours: vec![
            HourCount {
                hour: 3600,
                clicks: 3,
                events: 1,
            },
            HourCount {
                hour: 7200,
                clicks: 4,
                events: 1,
            },
        ],
        users: vec![
            UserRow {
                name: "alice".into(),
                click_count: 7,
                event_count: 2,
            },
            UserRow {
                name: "carol".into(),
                click_count: 0,
                event_count: 0,
            },
        ],
        counted: vec![],
    };
    store.save_counters(&update).await.unwrap();
    // Absolute values: saving again (a retried flush) changes nothing.
    store.save_counters(&update).await.unwrap();
    assert_eq!(store.totals().await.unwrap(), update.totals);
    let mut hours = store.hours_since(7200).await.unwrap();
    hours.sort_by_key(|h| h.hour);
    assert_eq!(
        hours,
        vec![HourCount {
            hour: 7200,
            clicks: 4,
            events: 1
        }]
    );
    assert_eq!(store.users().await.unwrap(), update.users);

    // A later flush carries only what changed; it overwrites those and moves the checkpoint.
    let later = CounterUpdate {
        totals: Totals {
            applied_seq: 50,
            clicks: 8,
            events: 2,
        },
        hours: vec![HourCount {
            hour: 7200,
            clicks: 5,
            events: 1,
        }],
        users: vec![UserRow {
            name: "alice".into(),
            click_count: 8,
            event_count: 2,
        }],
        counted: vec![],
    };
    store.save_counters(&later).await.unwrap();
    assert_eq!(store.totals().await.unwrap(), later.totals);
    let mut hours = store.hours_since(i64::MIN).await.unwrap();
    hours.sort_by_key(|h| h.hour);
    assert_eq!(
        hours.iter().map(|h| (h.hour, h.clicks)).collect::<Vec<_>>(),
        vec![(3600, 3), (7200, 5)],
        "untouched hours stay, changed ones are overwritten"
    );
    let users = store.users().await.unwrap();
    assert_eq!(
        users
            .iter()
            .map(|u| (u.name.as_str(), u.click_count))
            .collect::<Vec<_>>(),
        vec![("alice", 8), ("carol", 0)],
        "users by name"
    );
    // Hours far apart (other partitions on ScyllaDB) are all found, and `since` filters.
    let far = CounterUpdate {
        totals: later.totals,
        hours: vec![
            HourCount {
                hour: 400 * DAY,
                clicks: 1,
                events: 0,
            },
            HourCount {
                hour: 20_000 * DAY,
                clicks: 2,
                events: 0,
            },
        ],
        users: vec![],
        counted: vec![],
    };
    store.save_counters(&far).await.unwrap();
    let mut recent: Vec<i64> = store
        .hours_since(365 * DAY)
        .await
        .unwrap()
        .iter()
        .map(|h| h.hour)
        .collect();
    recent.sort();
    assert_eq!(recent, vec![400 * DAY, 20_000 * DAY]);
    assert_eq!(store.hours_since(0).await.unwrap().len(), 4);
}

/// The aggregator's defence against a fact published twice beyond the stream's duplicate
/// window: the marks say at which sequence each id was counted.
async fn counted_marks_keep_the_first_sequence(store: &dyn Store) {
    let mark = |id: &str, seq| CountedFact { id: id.into(), seq };
    let totals = store.totals().await.unwrap();
    let flush = |counted| CounterUpdate {
        totals,
        hours: vec![],
        users: vec![],
        counted,
    };
    let ids: Vec<String> = ["mark-a", "mark-b", "mark-c"].map(String::from).into();
    assert!(store.counted_facts(&ids).await.unwrap().is_empty());
    store
        .save_counters(&flush(vec![mark("mark-a", 60), mark("mark-b", 61)]))
        .await
        .unwrap();
    // A retried flush changes nothing. (A duplicate's mark is never written: the aggregator
    // skips the duplicate, so there is one mark per id.)
    store
        .save_counters(&flush(vec![mark("mark-a", 60), mark("mark-b", 61)]))
        .await
        .unwrap();
    let counted = store.counted_facts(&ids).await.unwrap();
    assert_eq!(counted.len(), 2, "only counted ids are marked: {counted:?}");
    assert_eq!((counted["mark-a"], counted["mark-b"]), (60, 61));
    // Many ids at once (SQLite binds them in chunks; ScyllaDB reads them concurrently).
    let many: Vec<CountedFact> = (0..1200)
        .map(|i| mark(&format!("many-{i}"), 100 + i))
        .collect();
    store.save_counters(&flush(many.clone())).await.unwrap();
    let ids: Vec<String> = many.iter().map(|m| m.id.clone()).collect();
    let counted = store.counted_facts(&ids).await.unwrap();
    assert_eq!(counted.len(), 1200);
    assert!(many.iter().all(|m| counted[&m.id] == m.seq));
    assert_eq!(
        store.totals().await.unwrap(),
        totals,
        "marks move no counter"
    );
}

/// Imported rows are stored like live ones but counted only through the imported counters;
/// an ephemeral event's tally row is never listed (the recount below counts it).
async fn imported_rows_and_counters_stay_apart(store: &dyn Store) {
    use switchyard_schema::id::{imported_click_id, imported_event_id};
    let old = DAY * 10_000;
    let clicks = [
        click(&imported_click_id(1), "ann", old + 1),
        click(&imported_click_id(2), "ann", old + 3601),
    ];
    let events = [event(&imported_event_id(1), "ann", old + 2)];
    assert_eq!(store.insert_imported(&clicks, &events).await.unwrap(), 3);
    assert_eq!(store.insert_imported(&clicks, &events).await.unwrap(), 0);
    assert_eq!(store.clicks_since(old, 10).await.unwrap().len(), 2 + 3);

    let user = |name: &str, c, e| UserRow {
        name: name.into(),
        click_count: c,
        event_count: e,
    };
    let hour = |hour, clicks, events| HourCount {
        hour,
        clicks,
        events,
    };
    let first = ImportedCounters {
        counts: ImportedCounts {
            clicks: 9,
            events: 9,
            hours: vec![hour(old - 3600, 9, 9)],
        },
        users: vec![user("zed", 9, 9)],
    };
    store.save_imported(&first).await.unwrap();
    let second = ImportedCounters {
        counts: ImportedCounts {
            clicks: 2,
            events: 2,
            hours: vec![hour(old, 1, 2), hour(old + 3600, 1, 0)],
        },
        users: vec![user("ann", 2, 1)],
    };
    store.save_imported(&second).await.unwrap();
    let counts = store.imported_counts(old).await.unwrap();
    let mut hours = counts.hours.clone();
    hours.sort_by_key(|h| h.hour);
    assert_eq!(
        (counts.clicks, counts.events),
        (2, 2),
        "replaced, not added"
    );
    assert_eq!(hours, second.counts.hours, "the old hours are gone");
    assert_eq!(
        store.imported_counts(old + 3600).await.unwrap().hours.len(),
        1
    );
    assert_eq!(store.imported_users().await.unwrap(), second.users);

    let day = DAY * 20_000;
    let rickroll = event("04-e", "bob", day + 7);
    assert!(store.insert_ephemeral_event(&rickroll).await.unwrap());
    assert!(!store.insert_ephemeral_event(&rickroll).await.unwrap());
    let listed = store.events_since(day, 10).await.unwrap();
    assert!(
        listed.iter().all(|e| e.timestamp != day + 7),
        "never listed"
    );
}

async fn rebuild_recounts_from_rows(store: &dyn Store) {
    store.rebuild_counters().await.unwrap();
    let totals = store.totals().await.unwrap();
    assert_eq!(
        totals,
        Totals {
            applied_seq: 0,
            clicks: 3,
            events: 2
        },
        "the rows and the ephemeral tally; the imported rows have counters of their own"
    );
    let users = store.users().await.unwrap();
    assert_eq!(
        users,
        vec![
            UserRow {
                name: "alice".into(),
                click_count: 2,
                event_count: 0
            },
            UserRow {
                name: "bob".into(),
                click_count: 1,
                event_count: 1
            },
        ],
        "recounted, and users without rows (carol) are gone"
    );
    let mut hours = store.hours_since(i64::MIN).await.unwrap();
    hours.sort_by_key(|h| h.hour);
    let day = DAY * 20_000;
    assert_eq!(
        hours,
        vec![
            HourCount {
                hour: day - 3600,
                clicks: 1,
                events: 0
            },
            HourCount {
                hour: day,
                clicks: 2,
                events: 2
            },
        ],
        "hours without rows are gone"
    );
}

async fn reads_cross_midnight_both_ways(store: &dyn Store) {
    let day = DAY * 30_000;
    for (id, t) in [
        ("m-1", day - 1),           // 23:59:59 of the day before
        ("m-2", day),               // 00:00:00
        ("m-3", day + DAY - 1),     // 23:59:59
        ("m-4", day + DAY),         // 00:00:00 of the next day
        ("m-5", day + 3 * DAY + 1), // a day with nothing in between
    ] {
        assert!(store.insert_click(&click(id, "mid", t)).await.unwrap());
        assert!(store.insert_event(&event(id, "mid", t)).await.unwrap());
    }
    let times = |v: Vec<Click>| v.into_iter().map(|c| c.timestamp).collect::<Vec<_>>();
    assert_eq!(
        times(store.clicks_since(day, 100).await.unwrap()),
        vec![day + 3 * DAY + 1, day + DAY, day + DAY - 1, day],
        "from midnight on, newest first, across days"
    );
    assert_eq!(
        times(store.clicks_since(day - 1, 100).await.unwrap()).last(),
        Some(&(day - 1)),
        "one second before midnight is the day before"
    );
    assert_eq!(
        times(store.clicks_since(day + 1, 100).await.unwrap()),
        vec![day + 3 * DAY + 1, day + DAY, day + DAY - 1]
    );
    assert_eq!(
        times(store.clicks_since(day, 2).await.unwrap()),
        vec![day + 3 * DAY + 1, day + DAY],
        "the limit stops in a later day"
    );
    assert_eq!(
        times(store.clicks_since(day, 3).await.unwrap()),
        vec![day + 3 * DAY + 1, day + DAY, day + DAY - 1],
        "the limit stops across a midnight"
    );
    let events = store.events_since(day + DAY, 100).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.timestamp).collect::<Vec<_>>(),
        vec![day + 3 * DAY + 1, day + DAY]
    );
}

async fn reads_span_many_pages_in_order(store: &dyn Store) {
    // 150 clicks over two days, two per second (same timestamp: the id breaks the tie), inserted
    // out of order; the ScyllaDB half runs with a page size of 3.
    let start = DAY * 40_000 + DAY - 40;
    let mut expected: Vec<(i64, String)> = (0..150)
        .map(|i| (start + i / 2, format!("p-{:03}", (i * 37) % 150)))
        .collect();
    for (t, id) in expected.iter().rev() {
        assert!(store.insert_click(&click(id, id, *t)).await.unwrap());
    }
    expected.sort_by(|a, b| b.cmp(a));
    let got: Vec<(i64, String)> = store
        .clicks_since(start, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.timestamp, c.user))
        .collect();
    assert_eq!(got, expected, "timestamp then id, both descending");
    let first: Vec<(i64, String)> = store
        .clicks_since(start, 37)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.timestamp, c.user))
        .collect();
    assert_eq!(first, expected[..37]);
}

async fn rooms_and_membership(store: &dyn Store) {
    let room = Room {
        room_id: "room-a".into(),
        name: Some("Physics".into()),
        owner: Some("ann".into()),
        members: vec!["ann".into(), "ben".into()],
    };
    store.create_room(&room).await.unwrap();
    store
        .create_room(&Room {
            room_id: "room-b".into(),
            name: None,
            owner: None,
            members: vec!["ann".into()],
        })
        .await
        .unwrap();
    let empty = Room {
        room_id: "room-e".into(),
        name: Some("Nobody".into()),
        owner: Some("zed".into()),
        members: vec![],
    };
    store.create_room(&empty).await.unwrap();
    assert_eq!(store.room("room-a").await.unwrap(), Some(room.clone()));
    assert_eq!(store.room("room-e").await.unwrap(), Some(empty));
    assert_eq!(store.room("nope").await.unwrap(), None);
    let anns: Vec<String> = store
        .rooms_of("ann")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.room_id)
        .collect();
    assert_eq!(anns, vec!["room-a", "room-b"], "oldest room first");
    store.add_member("room-b", "cid").await.unwrap();
    store.add_member("room-b", "cid").await.unwrap(); // idempotent
    store.add_member("room-b", "abe").await.unwrap();
    assert_eq!(
        store.room("room-b").await.unwrap().unwrap().members,
        vec!["abe", "ann", "cid"],
        "members by id"
    );
    store.remove_member("room-a", "ben").await.unwrap();
    store.remove_member("room-a", "ben").await.unwrap(); // idempotent
    store.remove_member("room-a", "zed").await.unwrap(); // never a member
    assert!(store.rooms_of("ben").await.unwrap().is_empty());
    assert_eq!(
        store.rooms_of("cid").await.unwrap(),
        vec![Room {
            room_id: "room-b".into(),
            name: None,
            owner: None,
            members: vec!["abe".into(), "ann".into(), "cid".into()],
        }]
    );
    // Re-joining after leaving counts: the later write wins.
    store.add_member("room-a", "ben").await.unwrap();
    assert_eq!(store.rooms_of("ben").await.unwrap().len(), 1);
    // The last member leaving does not delete the room.
    store.remove_member("room-a", "ann").await.unwrap();
    store.remove_member("room-a", "ben").await.unwrap();
    assert_eq!(
        store.room("room-a").await.unwrap().map(|r| r.members),
        Some(vec![])
    );
    // A member row for a room that was never created is no room.
    store.add_member("ghost", "ann").await.unwrap();
    assert_eq!(store.room("ghost").await.unwrap(), None);
    let anns: Vec<String> = store
        .rooms_of("ann")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.room_id)
        .collect();
    assert_eq!(anns, vec!["room-b"]);
}

async fn room_mates_are_the_members_of_shared_rooms(store: &dyn Store) {
    let room = |id: &str, members: &[&str]| Room {
        room_id: id.into(),
        name: None,
        owner: None,
        members: members.iter().map(|m| m.to_string()).collect(),
    };
    store
        .create_room(&room("mates-1", &["mate-mia", "mate-oli", "mate-noa"]))
        .await
        .unwrap();
    store
        .create_room(&room("mates-2", &["mate-noa", "mate-pia", "mate-mia"]))
        .await
        .unwrap();
    store
        .create_room(&room("mates-3", &["mate-rex"]))
        .await
        .unwrap();
    // A member row for a room that was never created makes no room-mates.
    store.add_member("mates-ghost", "mate-mia").await.unwrap();
    store.add_member("mates-ghost", "mate-quin").await.unwrap();
    let mates = |user: &'static str| async move { store.room_mates(user).await.unwrap() };
    assert_eq!(
        mates("mate-mia").await,
        vec!["mate-noa", "mate-oli", "mate-pia"],
        "by id, each once, not the user"
    );
    assert_eq!(mates("mate-pia").await, vec!["mate-mia", "mate-noa"]);
    assert!(mates("mate-rex").await.is_empty(), "alone in a room");
    assert!(
        mates("mate-quin").await.is_empty(),
        "only in a room never created"
    );
    assert!(mates("mate-nobody").await.is_empty(), "in no room");
    store.remove_member("mates-2", "mate-pia").await.unwrap();
    assert_eq!(mates("mate-mia").await, vec!["mate-noa", "mate-oli"]);
}

/// Walks every page of `read(cursor)`; returns the pages' items.
async fn all_pages<T, F, Fut>(mut read: F) -> Vec<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Page<T>>,
{
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = read(cursor.take()).await;
        pages.push(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

async fn room_lists_page_by_cursor(store: &dyn Store) {
    let ids: Vec<String> = (0..7).map(|i| format!("page-{i:02}")).collect();
    // Created out of id order: pages follow room ids, not creation.
    for i in [3, 0, 6, 1, 5, 2, 4] {
        let room = Room {
            room_id: ids[i].clone(),
            name: Some(format!("p{i}")),
            owner: (i % 2 == 0).then(|| "pat".to_owned()),
            members: vec!["pat".into(), format!("mate-{i}")],
        };
        store.create_room(&room).await.unwrap();
    }
    let pages =
        all_pages(
            |after| async move { store.rooms_page("pat", after.as_deref(), 3).await.unwrap() },
        )
        .await;
    let seen: Vec<Vec<&str>> = pages
        .iter()
        .map(|p| p.iter().map(|r| r.room_id.as_str()).collect())
        .collect();
    assert_eq!(
        seen,
        vec![
            vec!["page-00", "page-01", "page-02"],
            vec!["page-03", "page-04", "page-05"],
            vec!["page-06"],
        ]
    );
    let first = &pages[0][0];
    assert_eq!(first.owner.as_deref(), Some("pat"), "owner stored");
    assert_eq!(
        first.members,
        vec!["mate-0", "pat"],
        "rooms come with members"
    );
    assert_eq!(pages[0][1].owner, None, "no owner (admin-made)");
    // A page that ends exactly at the last room says so.
    let whole = store.rooms_page("pat", None, 7).await.unwrap();
    assert_eq!((whole.items.len(), whole.next), (7, None));
    let past = store.rooms_page("pat", Some("page-06"), 3).await.unwrap();
    assert_eq!((past.items.len(), past.next), (0, None));
    assert!(store
        .rooms_page("nobody", None, 3)
        .await
        .unwrap()
        .items
        .is_empty());

    for m in ["b", "e", "a", "d", "c"] {
        store.add_member("page-06", m).await.unwrap();
    }
    let pages = all_pages(|after| async move {
        store
            .members_page("page-06", after.as_deref(), 2)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        pages,
        vec![
            vec!["a", "b"],
            vec!["c", "d"],
            vec!["e", "mate-6"],
            vec!["pat"]
        ]
    );
    assert!(store
        .members_page("nope", None, 2)
        .await
        .unwrap()
        .items
        .is_empty());

    let users = ["pat".to_owned(), "mate-1".to_owned(), "nobody".to_owned()];
    assert_eq!(store.room_counts(&users).await.unwrap(), vec![7, 1, 0]);
    assert!(store.room_counts(&[]).await.unwrap().is_empty());
}

async fn deleting_a_room_removes_it_everywhere(store: &dyn Store) {
    let room = Room {
        room_id: "room-d".into(),
        name: Some("doomed".into()),
        owner: Some("dee".into()),
        members: vec!["dan".into(), "dee".into()],
    };
    store.create_room(&room).await.unwrap();
    for i in 0..3 {
        let m = chat_at(&format!("d-{i}"), "room-d", "bye", 1 + i * BUCKET_MS);
        assert!(store.insert_chat_message(&m).await.unwrap().newly_stored);
    }
    let h_before = store.room_message_count("room-h").await.unwrap();
    store.delete_room("room-d").await.unwrap();
    store.delete_room("room-d").await.unwrap(); // idempotent
    store.delete_room("never-was").await.unwrap();
    assert_eq!(store.room("room-d").await.unwrap(), None);
    assert!(store.rooms_of("dee").await.unwrap().is_empty());
    assert!(store
        .rooms_page("dan", None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    let users = ["dan".to_owned(), "dee".to_owned()];
    assert_eq!(store.room_counts(&users).await.unwrap(), vec![0, 0]);
    assert_eq!(store.room_message_count("room-d").await.unwrap(), 0);
    let q = HistoryQuery {
        room_id: "room-d".into(),
        limit: 10,
        skip: 0,
        order: Order::Desc,
        before: None,
        after: None,
    };
    assert!(store.chat_history(&q).await.unwrap().is_empty());
    assert_eq!(
        store.room_message_count("room-h").await.unwrap(),
        h_before,
        "other rooms keep their history"
    );
}

fn chat(id: &str, room: &str, text: &str) -> StoredChatMessage {
    chat_at(id, room, text, 1)
}

fn chat_at(id: &str, room: &str, text: &str, sent_at_ms: i64) -> StoredChatMessage {
    StoredChatMessage {
        message: ChatMessage {
            id: id.into(),
            room_id: room.into(),
            sender_id: "ann".into(),
            message: text.into(),
            timestamp: "2024-08-21T14:30:00.000Z".into(),
        },
        sent_at_ms,
    }
}

fn texts(v: Vec<ChatMessage>) -> Vec<String> {
    v.into_iter().map(|m| m.message).collect()
}

async fn chat_history_pages_by_skip_and_cursor(store: &dyn Store) {
    // Insert order is the room's order, whatever the ids look like.
    let ids: Vec<String> = (0..25).map(|i| format!("z{:02}", 25 - i)).collect();
    let mut positions = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let placed = store
            .insert_chat_message(&chat(id, "room-h", &format!("m{i}")))
            .await
            .unwrap();
        assert!(placed.newly_stored);
        positions.push(placed.position.expect("a room position"));
    }
    // Positions follow history order: edges keep live delivery in it by them.
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let again = store
        .insert_chat_message(&chat(&ids[3], "room-h", "again"))
        .await
        .unwrap();
    assert!(!again.newly_stored);
    assert_eq!(
        again.position,
        Some(positions[3]),
        "a redelivery keeps its position"
    );
    let foreign = store
        .insert_chat_message(&chat(&ids[4], "room-x", "an id of another room"))
        .await
        .unwrap();
    assert!(!foreign.newly_stored);
    assert_eq!(foreign.position, None);
    store
        .insert_chat_message(&chat("other", "room-x", "elsewhere"))
        .await
        .unwrap();
    assert_eq!(store.room_message_count("room-h").await.unwrap(), 25);
    assert_eq!(store.room_message_count("room-x").await.unwrap(), 1);
    assert_eq!(store.room_message_count("room-none").await.unwrap(), 0);

    let page = |limit, skip, order, before: Option<usize>, after: Option<usize>| HistoryQuery {
        room_id: "room-h".into(),
        limit,
        skip,
        order,
        before: before.map(|i: usize| ids[i].clone()),
        after: after.map(|i: usize| ids[i].clone()),
    };
    let history = |q: HistoryQuery| async move { texts(store.chat_history(&q).await.unwrap()) };
    assert_eq!(
        history(page(3, 0, Order::Desc, None, None)).await,
        vec!["m24", "m23", "m22"]
    );
    assert_eq!(
        history(page(3, 1, Order::Asc, None, None)).await,
        vec!["m1", "m2", "m3"]
    );
    assert_eq!(
        history(page(3, 0, Order::Desc, Some(10), None)).await,
        vec!["m9", "m8", "m7"]
    );
    assert_eq!(
        history(page(3, 0, Order::Asc, Some(10), None)).await,
        vec!["m7", "m8", "m9"],
        "nearest to the cursor, in the asked order"
    );
    assert_eq!(
        history(page(2, 0, Order::Asc, None, Some(23))).await,
        vec!["m24"]
    );
    assert_eq!(
        history(page(2, 1, Order::Desc, None, Some(3))).await,
        vec!["m6", "m5"],
        "after, skip, then the asked order"
    );
    assert_eq!(
        history(page(100, 0, Order::Desc, None, None)).await.len(),
        25,
        "a page larger than the room (and than a read page)"
    );
    assert!(history(page(0, 0, Order::Desc, None, None))
        .await
        .is_empty());
    assert!(history(page(5, 30, Order::Desc, None, None))
        .await
        .is_empty());
    let foreign = HistoryQuery {
        before: Some("other".into()),
        ..page(5, 0, Order::Desc, None, None)
    };
    assert!(
        history(foreign).await.is_empty(),
        "a cursor from another room"
    );
    let unknown = HistoryQuery {
        after: Some("no-such-id".into()),
        ..page(5, 0, Order::Desc, None, None)
    };
    assert!(history(unknown).await.is_empty(), "an unknown cursor");

    // Walking back with `before` visits every message exactly once; the duplicate insert
    // above changed nothing.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = HistoryQuery {
            before: cursor.clone(),
            ..page(10, 0, Order::Desc, None, None)
        };
        let batch = store.chat_history(&q).await.unwrap();
        let Some(last) = batch.last() else { break };
        cursor = Some(last.id.clone());
        seen.extend(batch.into_iter().map(|m| m.message));
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected);
}

/// Messages sent across the ScyllaDB adapter's bucket boundaries (and one whose sender's clock
/// was behind): history follows insert order across partitions, both ways, with skip and cursor.
async fn chat_history_crosses_buckets(store: &dyn Store) {
    let b = BUCKET_MS * 2000;
    let sent = [
        b - 2,                 // bucket k-1
        b - 1,                 // bucket k-1, the last millisecond
        b,                     // bucket k, the first millisecond
        b - 10,                // persisted after the previous one: a late edge clock
        b + 1,                 // bucket k
        b + BUCKET_MS,         // bucket k+1
        b + BUCKET_MS + 1,     // bucket k+1
        b + 4 * BUCKET_MS + 7, // bucket k+4: k+2 and k+3 stay empty
    ];
    let ids: Vec<String> = (0..sent.len()).map(|i| format!("bk-{}", 7 - i)).collect();
    for (i, (id, at)) in ids.iter().zip(sent).enumerate() {
        let m = chat_at(id, "room-k", &format!("k{i}"), at);
        assert!(store.insert_chat_message(&m).await.unwrap().newly_stored);
    }
    // A redelivery of a message in an older bucket changes nothing.
    let again = chat_at(&ids[3], "room-k", "changed?", sent[3]);
    assert!(
        !store
            .insert_chat_message(&again)
            .await
            .unwrap()
            .newly_stored
    );
    assert_eq!(store.room_message_count("room-k").await.unwrap(), 8);

    let q = |limit, skip, order, before: Option<usize>, after: Option<usize>| HistoryQuery {
        room_id: "room-k".into(),
        limit,
        skip,
        order,
        before: before.map(|i: usize| ids[i].clone()),
        after: after.map(|i: usize| ids[i].clone()),
    };
    let k = |v: &[usize]| v.iter().map(|i| format!("k{i}")).collect::<Vec<_>>();
    let history = |q: HistoryQuery| async move { texts(store.chat_history(&q).await.unwrap()) };

    assert_eq!(
        history(q(100, 0, Order::Desc, None, None)).await,
        k(&[7, 6, 5, 4, 3, 2, 1, 0])
    );
    assert_eq!(
        history(q(100, 0, Order::Asc, None, None)).await,
        k(&[0, 1, 2, 3, 4, 5, 6, 7])
    );
    assert_eq!(
        history(q(3, 2, Order::Desc, None, None)).await,
        k(&[5, 4, 3]),
        "skip into one bucket, read into the next"
    );
    assert_eq!(
        history(q(3, 3, Order::Asc, None, None)).await,
        k(&[3, 4, 5])
    );
    assert_eq!(
        history(q(3, 0, Order::Desc, Some(5), None)).await,
        k(&[4, 3, 2]),
        "before the first message of a bucket"
    );
    assert_eq!(
        history(q(5, 0, Order::Desc, Some(2), None)).await,
        k(&[1, 0])
    );
    assert_eq!(
        history(q(2, 1, Order::Desc, Some(6), None)).await,
        k(&[4, 3]),
        "before, with skip"
    );
    assert_eq!(
        history(q(3, 0, Order::Asc, None, Some(1))).await,
        k(&[2, 3, 4])
    );
    assert_eq!(
        history(q(10, 0, Order::Asc, None, Some(4))).await,
        k(&[5, 6, 7]),
        "after, over the empty buckets"
    );
    assert_eq!(
        history(q(2, 0, Order::Asc, Some(7), None)).await,
        k(&[5, 6]),
        "before across empty buckets, presented oldest first"
    );
    assert_eq!(
        history(q(2, 0, Order::Desc, None, Some(0))).await,
        k(&[2, 1]),
        "after, presented newest first"
    );

    // Paging by cursor both ways visits each message once.
    for (order, forward) in [(Order::Desc, false), (Order::Asc, true)] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = HistoryQuery {
                before: cursor.clone().filter(|_| !forward),
                after: cursor.clone().filter(|_| forward),
                ..q(3, 0, order, None, None)
            };
            let batch = store.chat_history(&page).await.unwrap();
            let Some(last) = batch.last() else { break };
            cursor = Some(last.id.clone());
            seen.extend(texts(batch));
        }
        let mut expected = k(&[0, 1, 2, 3, 4, 5, 6, 7]);
        if !forward {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order:?}");
    }
}

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/db.sqlite");
    let store = switchyard_store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    contract(store).await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let path = path.to_str().unwrap();
    {
        let store = SqliteStore::open(path).unwrap();
        store.insert_click(&click("a", "x", 100)).await.unwrap();
    }
    let store = SqliteStore::open(path).unwrap();
    assert_eq!(store.clicks_since(0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_files_from_before_room_owners_are_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    let path = path.to_str().unwrap();
    {
        // The chat tables as the first release made them: no owner column.
        let old = rusqlite::Connection::open(path).unwrap();
        old.execute_batch(
            "CREATE TABLE chat_rooms (room_id TEXT PRIMARY KEY, name TEXT,
                                      created_ms INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE chat_members (room_id TEXT NOT NULL, user_id TEXT NOT NULL,
                                        PRIMARY KEY (room_id, user_id)) WITHOUT ROWID;
             INSERT INTO chat_rooms VALUES ('old-room', 'legacy', 1);
             INSERT INTO chat_members VALUES ('old-room', 'ann');",
        )
        .unwrap();
    }
    for _ in 0..2 {
        // Twice: the upgrade is idempotent.
        let store = SqliteStore::open(path).unwrap();
        let room = store.room("old-room").await.unwrap().unwrap();
        assert_eq!((room.owner, room.members), (None, vec!["ann".to_owned()]));
    }
    let store = SqliteStore::open(path).unwrap();
    let new = Room {
        room_id: "new-room".into(),
        name: None,
        owner: Some("ann".into()),
        members: vec!["ann".into()],
    };
    store.create_room(&new).await.unwrap();
    assert_eq!(store.room("new-room").await.unwrap(), Some(new));
}

#[tokio::test]
async fn many_concurrent_writes_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(dir.path().join("db.sqlite").to_str().unwrap()).unwrap());
    let tasks: Vec<_> = (0..2000)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_click(&click(&format!("{i:06}"), "u", 50))
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap());
    }
    assert_eq!(store.clicks_since(0, 10_000).await.unwrap().len(), 2000);
}

#[tokio::test]
async fn store_urls_are_checked() {
    for (url, why) in [
        ("postgres://x", "supported schemes"),
        ("sqlite://", "missing file path"),
        ("scylla://h1/", "keyspace"),
        ("scylla://h1:99999/ks", "port"),
    ] {
        match switchyard_store::open(url).await {
            Err(StoreError::BadUrl(u, reason)) => {
                assert_eq!(u, url);
                assert!(reason.contains(why), "{url}: {reason}");
            }
            Err(other) => panic!("{url}: expected BadUrl, got {other}"),
            Ok(_) => panic!("{url}: opened"),
        }
    }
}

/// Bypasses the test harness's output capture, so a skipped half is visible in every run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[tokio::test]
async fn scylla_store_meets_the_contract() {
    let Ok(nodes) = std::env::var("SWITCHYARD_SCYLLA_NODES") else {
        say("SKIPPED: ScyllaDB half of the store contract \
             (set SWITCHYARD_SCYLLA_NODES=host:9042 to run it)");
        return;
    };
    let options =
        std::env::var("SWITCHYARD_SCYLLA_OPTIONS").unwrap_or_else(|_| "replication=1".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let keyspace = format!("contract_{}_{nanos}", std::process::id());
    // A tiny page size, so every multi-row read crosses pages.
    let url = format!("scylla://{nodes}/{keyspace}?{options}&page_size=3");
    say(&format!("ScyllaDB half of the store contract on {url}"));

    match switchyard_store::open(&url).await {
        Err(StoreError::SchemaTooOld { found: 0, needed }) => {
            assert_eq!(needed as usize, switchyard_store::scylla::MIGRATIONS.len())
        }
        Err(other) => panic!("expected SchemaTooOld before migrating, got {other}"),
        Ok(_) => panic!("opened a keyspace that was never migrated"),
    }
    let outcome = AssertUnwindSafe(async {
        switchyard_store::migrate(&url).await.unwrap();
        switchyard_store::migrate(&url)
            .await
            .expect("migrating again is a no-op");
        let store = switchyard_store::open(&url).await.unwrap();
        contract(store).await;
    })
    .catch_unwind()
    .await;
    drop_keyspace(&nodes, &keyspace).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn drop_keyspace(nodes: &str, keyspace: &str) {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(nodes.split(','))
        .build()
        .await;
    let dropped = match session {
        Ok(s) => s
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = dropped {
        say(&format!("could not drop test keyspace {keyspace}: {e}"));
    }
}
