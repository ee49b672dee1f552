//! The worker against a real `nats-server`: inbound packets in, fan-out and facts out in order,
//! each fact stored once, and every delivery acked (IN empty) once a drain returns.

mod common;
#[path = "../../bus/tests/support/nats_server.rs"]
mod nats_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchyard_bus::{Bus, ConsumerSpec, NatsBus, NatsOptions};
use switchyard_schema::envelope::{self, Fact, FrustFanout};
use switchyard_schema::subjects::{FACTS_FRUST, OUT_FRUST};
use switchyard_workers::Worker;

use common::{click, temp_store};
use nats_server::{stored, Server};
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
