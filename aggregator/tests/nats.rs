//! The aggregator against a real `nats-server`: a fact published again after the stream's
//! duplicate window (stored twice in FACTS, at two sequences) is counted once, also by an
//! aggregator that restarted in between; the checkpoint covers every fact.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchyard_aggregator::{Aggregator, AggregatorConfig};
use switchyard_bus::{Bus, NatsBus, NatsOptions};
use switchyard_schema::envelope::{self, Fact};
use switchyard_schema::Clock;
use switchyard_store::Store;
use switchyard_testkit::{stored, Server};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
/// Short, so the test can publish past it.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(1);

fn fact(id: &str, user: &str) -> Bytes {
    let fact = Fact::FrustClick {
        id: id.into(),
        session: "s".into(),
        user: user.into(),
        timestamp: 1_700_000_000,
    };
    Bytes::from(envelope::encode(&fact).unwrap())
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start(bus: &NatsBus, store: &Arc<dyn Store>) -> Running {
    let config = AggregatorConfig {
        clock: Clock::system(),
        status_window: Duration::from_millis(50),
        status_window_max: Duration::from_millis(50),
        rebuild_on_start: false,
        edge_timeout: Duration::from_secs(5),
    };
    let stop = CancellationToken::new();
    let aggregator = Aggregator::new(Arc::new(bus.clone()), store.clone(), config);
    let task = tokio::spawn(aggregator.run(stop.clone()));
    Running { stop, task }
}

async fn stop(running: Running) {
    running.stop.cancel();
    tokio::time::timeout(WAIT, running.task)
        .await
        .expect("drains")
        .unwrap()
        .unwrap();
}

/// Waits until the checkpoint includes `seq`; returns the click total then.
async fn clicks_once_applied(store: &dyn Store, seq: u64) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let totals = store.totals().await.unwrap();
        if totals.applied_seq >= seq {
            return totals.clicks;
        }
        assert!(Instant::now() < deadline, "checkpoint stuck at {totals:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fact_published_again_after_the_duplicate_window_counts_once() {
    let server = Server::start(&[]);
    let bus = NatsBus::connect(NatsOptions {
        replicas: Some(1),
        duplicate_window: DUPLICATE_WINDOW,
        ..NatsOptions::new(vec![server.url()], "aggregator-test")
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("agg.sqlite").display());
    let store = switchyard_store::open(&url).await.unwrap();

    let aggregator = start(&bus, &store);
    for (id, user) in [("a", "alice"), ("b", "bob")] {
        bus.publish_durable("facts.frust", id, fact(id, user))
            .await
            .unwrap();
    }
    assert_eq!(clicks_once_applied(&*store, 2).await, 2);

    // A worker that stalled past the window publishes `a`'s fact again: a new sequence.
    tokio::time::sleep(DUPLICATE_WINDOW + Duration::from_millis(500)).await;
    bus.publish_durable("facts.frust", "a", fact("a", "alice"))
        .await
        .unwrap();
    assert_eq!(
        stored(&server.url(), "FACTS").await,
        3,
        "stored twice by the stream"
    );
    assert_eq!(clicks_once_applied(&*store, 3).await, 2, "counted once");

    // Again, to a restarted aggregator (its memory of the batch is gone; the marks are not).
    stop(aggregator).await;
    tokio::time::sleep(DUPLICATE_WINDOW + Duration::from_millis(500)).await;
    bus.publish_durable("facts.frust", "a", fact("a", "alice"))
        .await
        .unwrap();
    bus.publish_durable("facts.frust", "c", fact("c", "carol"))
        .await
        .unwrap();
    let aggregator = start(&bus, &store);
    assert_eq!(
        clicks_once_applied(&*store, 5).await,
        3,
        "the duplicate skipped, `c` counted"
    );
    let users = store.users().await.unwrap();
    let alice = users.iter().find(|u| u.name == "alice").unwrap();
    assert_eq!(alice.click_count, 1, "per user too");
    stop(aggregator).await;
}
