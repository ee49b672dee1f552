//! The worker against a real `nats-server`: inbound packets in, fan-out and facts out in order,
//! each fact stored once, and every delivery acked (IN empty) once a drain returns.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchyard_bus::{Bus, ConsumerSpec, NatsBus, NatsOptions};
use switchyard_schema::envelope::{self, Fact, FrustFanout};
use switchyard_schema::subjects::{FACTS_FRUST, OUT_FRUST};
use switchyard_workers::Worker;

use common::{click, temp_store};
use switchyard_testkit::{stored, Server};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sends_in_order_stores_facts_once_and_acks_everything() {
    const N: u64 = 500;
    let server = Server::start(&[]);
    let bus = NatsBus::connect(NatsOptions {
        replicas: Some(1),
        ..NatsOptions::new(vec![server.url()], "worker-test")
    })
    .await
    .unwrap();
    let (_dir, store) = temp_store().await;
    let mut fan_out = bus.subscribe(OUT_FRUST).await.unwrap();
    let facts_spec = ConsumerSpec {
        stream: "FACTS",
        name: "check",
        filter: FACTS_FRUST,
        max_in_flight: 1000,
    };
    let mut facts = bus.consume(&facts_spec).await.unwrap();

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(Worker::new(Arc::new(bus.clone()), store).run(shutdown.clone()));
    let ids: Vec<String> = (0..N).map(|n| format!("p-{n:04}")).collect();
    let mut pending = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        pending.push(
            bus.publish_durable_send("in.frust.click", id, click(id, n as u64))
                .await
                .unwrap(),
        );
    }
    for p in futures::future::join_all(pending).await {
        p.unwrap();
    }

    let mut shown = Vec::new();
    while shown.len() < ids.len() {
        let m = tokio::time::timeout(WAIT, fan_out.next())
            .await
            .expect("fan-out in time")
            .unwrap();
        let fanout: FrustFanout = envelope::decode(&m.payload).unwrap();
        shown.push(fanout.dedup.unwrap());
    }
    assert_eq!(shown, ids, "fan-out in stream order");

    let mut counted = Vec::new();
    while counted.len() < ids.len() {
        let d = tokio::time::timeout(WAIT, facts.next())
            .await
            .expect("facts in time")
            .unwrap();
        let Fact::FrustClick { id, .. } = envelope::decode(&d.payload).unwrap() else {
            panic!("not a click fact");
        };
        counted.push(id);
        d.ack().await.unwrap();
    }
    assert_eq!(counted, ids, "facts stored once each, in stream order");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), facts.next())
            .await
            .is_err(),
        "no fact stored twice"
    );

    // A drain returns once every delivery is acked: then IN is empty (work queue).
    shutdown.cancel();
    tokio::time::timeout(WAIT, worker)
        .await
        .expect("the worker drains in time")
        .unwrap()
        .unwrap();
    bus.flush().await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = stored(&server.url(), "IN").await;
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} deliveries never acked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A packet the store refuses every time (while the store works for others) goes to the DEAD
/// stream with its error after the configured attempts, and the packets behind it are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_packet_is_dead_lettered_and_the_stream_moves_on() {
    use switchyard_schema::envelope::DeadLetter;
    let server = Server::start(&[]);
    let bus = NatsBus::connect(NatsOptions {
        replicas: Some(1),
        ..NatsOptions::new(vec![server.url()], "poison-test")
    })
    .await
    .unwrap();
    let (dir, store) = temp_store().await;
    // The fault, from outside the process's code: the database refuses this one row.
    let db = rusqlite::Connection::open(dir.path().join("worker.sqlite")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER poison BEFORE INSERT ON frust_clicks WHEN NEW.id = 'p-poison'
         BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let worker = Worker::new(Arc::new(bus.clone()), store.clone()).with_persist_attempts(3);
    let worker = tokio::spawn(worker.run(shutdown.clone()));
    for (n, id) in ["p-before", "p-poison", "p-after"].iter().enumerate() {
        bus.publish_durable("in.frust.click", id, click(id, n as u64))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while store.clicks_since(0, 10).await.unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the packets around the poison are stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut dead = bus.replay("DEAD", 1).await.unwrap();
    let letter = tokio::time::timeout(WAIT, dead.next())
        .await
        .expect("a dead letter in time")
        .unwrap();
    assert_eq!(letter.subject, "dead.in.frust.click");
    let letter: DeadLetter = envelope::decode(&letter.payload).unwrap();
    assert_eq!(letter.id.as_deref(), Some("p-poison"));
    assert_eq!(
        letter.subject, "in.frust.click",
        "re-drivable to where it came from"
    );
    assert!(letter.error.contains("poisoned row"), "{}", letter.error);
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.payload, click("p-poison", 1).to_vec());
    assert_eq!(store.clicks_since(0, 10).await.unwrap().len(), 2);

    // Mended, the letter re-driven: stored once, and the DEAD stream forgets it.
    db.execute_batch("DROP TRIGGER poison").unwrap();
    // (A fresh msg id, as `dead-letters redrive` uses: the original's is still in the window.)
    bus.publish_durable("in.frust.click", "redrive-1", letter.payload.into())
        .await
        .unwrap();
    while store.clicks_since(0, 10).await.unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "the re-driven packet is stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(WAIT, worker)
        .await
        .expect("drains")
        .unwrap()
        .unwrap();
}
