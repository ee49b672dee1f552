//! Imports an original-shaped database, awkward rows included, into a SQLite store and checks
//! the counters clients would be served, in both modes, and that a second run stores nothing.

use rusqlite::Connection;
use switchyard_schema::clock::{day_start, hour_start, HOUR};
use switchyard_store::{served_counts, served_users, SqliteStore, Store};

use super::*;

const NOW: i64 = 1_700_000_000;

/// The original's tables (as SQLAlchemy created them), with its own counters written as an
/// original would have, then disturbed.
fn original_db(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("db.sqlite");
    let db = Connection::open(&path).unwrap();
    db.execute_batch(
        "CREATE TABLE clicks (id INTEGER PRIMARY KEY, user VARCHAR(15), comment VARCHAR(75),
                              style VARCHAR, timestamp INTEGER);
         CREATE TABLE events (id INTEGER PRIMARY KEY, user VARCHAR(15), name VARCHAR(75),
                              timestamp INTEGER);
         CREATE TABLE users (name VARCHAR(15) PRIMARY KEY, clicks INTEGER, events INTEGER);
         CREATE TABLE hours (timestamp INTEGER PRIMARY KEY, clicks INTEGER, events INTEGER,
                             clicks_total INTEGER, events_total INTEGER);",
    )
    .unwrap();
    let (h1, h2) = (hour_start(NOW) - 30 * HOUR, hour_start(NOW));
    let click = |user: Option<&str>, comment: Option<&str>, t: i64| {
        db.execute(
            "INSERT INTO clicks (user, comment, style, timestamp) VALUES (?1, ?2, NULL, ?3)",
            rusqlite::params![user, comment, t],
        )
        .unwrap();
    };
    click(Some("ann"), Some("argh"), h1 + 5);
    click(Some("ann"), None, h1 + 6);
    click(Some("bob"), Some(""), h2 + 1);
    click(Some(" bob "), Some(&"c".repeat(90)), h2 + 2); // stripped, comment cut
    click(None, None, h2 + 3); // skipped: no user
    click(Some("  "), None, h2 + 3); // skipped: empty user
    click(Some("carl"), None, NOW + 3600); // skipped: future
    click(Some("averyveryverylongname"), None, h2 + 4); // cut to 15
    db.execute_batch(&format!(
        "INSERT INTO events (user, name, timestamp) VALUES ('ann', 'rage', {});
         INSERT INTO events (user, name, timestamp) VALUES ('bob', NULL, {});",
        h2 + 7,
        h2 + 8
    ))
    .unwrap();
    // The original's counters: hour 1 as its rows; hour 2 with 2 ephemeral events (no rows)
    // but one click fewer than its rows; ann's count off by one; a user with no rows.
    db.execute_batch(&format!(
        "INSERT INTO hours VALUES ({h1}, 2, 0, 2, 0);
         INSERT INTO hours VALUES ({h2}, 2, 3, 4, 3);
         INSERT INTO users VALUES ('ann', 3, 1);
         INSERT INTO users VALUES ('bob', 2, 0);
         INSERT INTO users VALUES ('ghost', 4, 0);"
    ))
    .unwrap();
    path
}

fn args(path: PathBuf, counters: Trust) -> FrustSqliteArgs {
    FrustSqliteArgs {
        path,
        counters,
        batch: 3, // several batches even for a few rows
    }
}

async fn served(store: &dyn Store) -> (i64, i64, Vec<(i64, i64, i64)>, Vec<(String, i64, i64)>) {
    let (totals, hours) = served_counts(store, i64::MIN).await.unwrap();
    let hours = hours.iter().map(|h| (h.hour, h.clicks, h.events)).collect();
    let users = served_users(store)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.name, u.click_count, u.event_count))
        .collect();
    (totals.clicks, totals.events, hours, users)
}

#[tokio::test]
async fn imports_the_rows_and_counts_them_by_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let source = original_db(dir.path());
    let store = SqliteStore::open(dir.path().join("sy.sqlite").to_str().unwrap()).unwrap();
    let summary = import(&store, &args(source.clone(), Trust::Rows), NOW)
        .await
        .unwrap();
    assert_eq!(summary.rows, 10);
    assert_eq!((summary.clicks.new, summary.events.new), (5, 1));
    assert_eq!(
        summary.skipped, 4,
        "no user, empty user, future, event without a name"
    );
    assert_eq!(
        summary.repaired, 2,
        "the stripped/cut click and the cut user"
    );
    assert_eq!(summary.ephemeral_events, 2);

    let (h1, h2) = (hour_start(NOW) - 30 * HOUR, hour_start(NOW));
    let (clicks, events, hours, users) = served(&store).await;
    assert_eq!(
        (clicks, events),
        (5, 3),
        "rows, plus the ephemeral events of the hours"
    );
    assert_eq!(hours, vec![(h1, 2, 0), (h2, 3, 3)]);
    assert_eq!(
        users,
        vec![
            ("ann".into(), 2, 1),
            ("averyveryveryl".to_owned() + "o", 1, 0),
            ("bob".into(), 2, 0),
        ]
    );
    let today = store.clicks_since(day_start(NOW), 100).await.unwrap();
    assert_eq!(today.len(), 3);
    assert_eq!(today[1].user, "bob");
    assert_eq!(today[1].comment.as_ref().map(|c| c.len()), Some(75));
    assert_eq!(today[2].comment, None, "an empty comment is null");

    let again = import(&store, &args(source, Trust::Rows), NOW)
        .await
        .unwrap();
    assert_eq!((again.clicks.new, again.clicks.present), (0, 5));
    assert_eq!((again.events.new, again.events.present), (0, 1));
    assert_eq!(
        served(&store).await.0,
        5,
        "a second run counts nothing twice"
    );
}

#[tokio::test]
async fn keeps_the_original_counters_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let source = original_db(dir.path());
    let store = SqliteStore::open(dir.path().join("sy.sqlite").to_str().unwrap()).unwrap();
    let summary = import(&store, &args(source, Trust::Original), NOW)
        .await
        .unwrap();
    assert!(summary.disagreements >= 4, "{summary:?}");
    let (h1, h2) = (hour_start(NOW) - 30 * HOUR, hour_start(NOW));
    let (clicks, events, hours, users) = served(&store).await;
    assert_eq!((clicks, events), (4, 3), "the original's last hour totals");
    assert_eq!(hours, vec![(h1, 2, 0), (h2, 2, 3)]);
    let users: Vec<_> = users.iter().map(|(n, c, e)| (n.as_str(), *c, *e)).collect();
    assert!(users.contains(&("ann", 3, 1)));
    assert!(users.contains(&("ghost", 4, 0)));
    assert!(
        users.contains(&("averyveryverylo", 1, 0)),
        "no counter of its own: its rows"
    );
}

#[tokio::test]
async fn live_counts_and_recounts_stay_apart_from_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let source = original_db(dir.path());
    let store = SqliteStore::open(dir.path().join("sy.sqlite").to_str().unwrap()).unwrap();
    import(&store, &args(source, Trust::Rows), NOW)
        .await
        .unwrap();
    let live = switchyard_store::StoredClick {
        id: switchyard_schema::id::new_packet_id(),
        click: switchyard_schema::frust::Click {
            user: "ann".into(),
            comment: None,
            style: None,
            timestamp: NOW,
        },
    };
    store.insert_click(&live).await.unwrap();
    // Embedded mode recounts the aggregator's counters from the rows at every start: the
    // imported rows must not be counted there, or they would count twice.
    store.rebuild_counters().await.unwrap();
    let totals = store.totals().await.unwrap();
    assert_eq!((totals.clicks, totals.events), (1, 0));
    let (clicks, _, _, users) = served(&store).await;
    assert_eq!(clicks, 6, "the live click on top of the imported five");
    assert_eq!(users[0], ("ann".into(), 3, 1));
}
