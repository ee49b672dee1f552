//! The bus contract: what the roles rely on, written once against the `Bus` port (through the
//! typed layer, as the roles use it) and run against both adapters: in-process, and NATS with a
//! real nats-server. Where the adapters differ by design (one process keeps no stream history
//! and has no reader that can die on its own), the check says what each promises instead.
//! Adapter-specific behaviour (node loss, leader moves, pipelined acks) stays in `nats.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use switchyard_bus::TypedBus;
use switchyard_bus::{Bus, BusError, ConsumerSpec, Decoded, InProcessBus, NatsBus, NatsOptions};
use switchyard_schema::envelope::{
    ChatOut, ChatTarget, ControlReply, ControlRequest, Empty, Fact, FrustFanout, FrustOut, Inbound,
    OnlineUsers,
};
use switchyard_schema::frust::{OnlineUser, Status};
use switchyard_schema::subjects::chat_partition;
use switchyard_schema::topics;
use switchyard_testkit::{inbound_click, start_cluster, Server, WAIT};

/// One adapter under the contract.
struct Adapter {
    bus: Arc<dyn Bus>,
    /// Streams keep what they stored: a replay reads the past and `remove` deletes (NATS). In
    /// one process the streams start with the process: a replay reads from its opening on.
    keeps_history: bool,
    /// Two further connections whose consumers redeliver what was not acked within a second
    /// (NATS). In one process no reader dies without the whole process.
    redelivery: Option<(Arc<dyn Bus>, Arc<dyn Bus>)>,
}

/// Every check, in this order on one bus; each uses its own consumers and subjects (NATS
/// refuses two consumers of IN with overlapping filters).
async fn contract(adapter: Adapter) {
    let bus = &*adapter.bus;
    durable_publishes_are_consumed_in_order_once_acked(bus).await;
    only_durable_subjects_are_durable(bus).await;
    readers_with_one_name_split_the_work(bus).await;
    poison_deliveries_reach_their_reader_as_errors(bus).await;
    match adapter.redelivery {
        Some((first, second)) => unacked_deliveries_come_back(first, second).await,
        None => say("in-process: no redelivery to check (no reader dies alone)"),
    }
    replays_read_in_sequence_from_where_asked(bus, adapter.keeps_history).await;
    pubsub_follows_wildcards_and_drops_poison(bus).await;
    requests_get_one_answer(bus).await;
    gather_collects_every_answer(bus).await;
    bus.flush().await.expect("flush");
}

fn say(line: &str) {
    eprintln!("{line}");
}

fn fact(id: &str) -> Fact {
    Fact::FrustClick {
        id: id.to_owned(),
        session: "s".into(),
        user: "u".into(),
        timestamp: 1_700_000_000,
    }
}

/// A room whose inbound chat lands in `partition`.
fn room_in(partition: u32) -> String {
    (0..)
        .map(|i| format!("room-{i}"))
        .find(|r| chat_partition(r) == partition)
        .unwrap()
}

async fn next<T>(stream: &mut BoxStream<'static, T>) -> T {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("something in time")
        .expect("stream open")
}

async fn silent<T>(stream: &mut BoxStream<'static, T>, quiet: Duration) -> bool {
    tokio::time::timeout(quiet, stream.next()).await.is_err()
}

async fn durable_publishes_are_consumed_in_order_once_acked(bus: &dyn Bus) {
    let mut deliveries = bus
        .consume_from(&topics::IN_FRUST_ALL, "contract-order", 8)
        .await
        .unwrap();
    let sent: Vec<Inbound> = (0..5)
        .map(|i| inbound_click(&format!("order-{i}"), i))
        .collect();
    for packet in &sent {
        bus.publish_durable_to(&topics::IN_FRUST_CLICK, packet.id(), packet)
            .await
            .unwrap();
    }
    let mut seqs = Vec::new();
    for packet in &sent {
        let Decoded { body, delivery } = next(&mut deliveries).await;
        assert_eq!(&body.unwrap(), packet, "in publish order");
        assert_eq!(delivery.subject, topics::IN_FRUST_CLICK.subject());
        seqs.push(delivery.seq);
        delivery.ack().await.unwrap();
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(
        silent(&mut deliveries, Duration::from_millis(1500)).await,
        "acked deliveries do not come back"
    );
}

async fn only_durable_subjects_are_durable(bus: &dyn Bus) {
    let fanout = FrustFanout::once(FrustOut::Status(Status { user_count: 1 }));
    assert!(matches!(
        bus.publish_durable_to(&topics::OUT_FRUST, "x", &fanout)
            .await,
        Err(BusError::NotDurable(_))
    ));
    assert!(matches!(
        bus.consume_from(&topics::OUT_FRUST, "x", 1).await,
        Err(BusError::NotDurable(_))
    ));
    let spec = ConsumerSpec {
        stream: "OUT",
        name: "x",
        filter: ">",
        max_in_flight: 1,
    };
    assert!(matches!(
        bus.consume(&spec).await,
        Err(BusError::NotDurable(_))
    ));
    assert!(matches!(
        bus.remove("OUT", 1).await,
        Err(BusError::NotDurable(_))
    ));
}

async fn readers_with_one_name_split_the_work(bus: &dyn Bus) {
    const N: usize = 40;
    let partition = 3;
    let topic = topics::in_chat_partition_all(partition);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for reader in 0..2 {
        let mut deliveries = bus.consume_from(&topic, "contract-split", 4).await.unwrap();
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Decoded { body, delivery }) = deliveries.next().await {
                // Slow enough that the other reader gets its share.
                tokio::time::sleep(Duration::from_millis(5)).await;
                tx.send((reader, body.unwrap().id().to_owned())).unwrap();
                delivery.ack().await.unwrap();
            }
        }));
    }
    let room = topics::in_chat_message(&room_in(partition));
    for i in 0..N {
        bus.publish_durable_to(
            &room,
            &format!("split-{i}"),
            &inbound_click(&format!("split-{i}"), 0),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut by_reader = [0; 2];
    while seen.len() < N {
        let (reader, id) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        by_reader[reader] += 1;
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), N, "each delivery goes to one reader, once");
    assert!(
        by_reader.iter().all(|n| *n > 0),
        "both readers worked: {by_reader:?}"
    );
    for r in readers {
        r.abort();
    }
}

async fn poison_deliveries_reach_their_reader_as_errors(bus: &dyn Bus) {
    let partition = 7;
    let mut deliveries = bus
        .consume_from(
            &topics::in_chat_partition_all(partition),
            "contract-poison",
            1,
        )
        .await
        .unwrap();
    let room = topics::in_chat_message(&room_in(partition));
    bus.publish_durable(room.subject(), "poison", Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let good = inbound_click("after-poison", 0);
    bus.publish_durable_to(&room, good.id(), &good)
        .await
        .unwrap();
    let poison = next(&mut deliveries).await;
    assert!(poison.body.is_err(), "handed over, to be dead-lettered");
    assert_eq!(
        &poison.delivery.payload[..],
        b"garbage",
        "with its raw bytes"
    );
    poison.delivery.ack().await.unwrap();
    let after = next(&mut deliveries).await;
    assert_eq!(after.body.unwrap(), good);
    after.delivery.ack().await.unwrap();
}

async fn unacked_deliveries_come_back(first: Arc<dyn Bus>, second: Arc<dyn Bus>) {
    let partition = 5;
    let topic = topics::in_chat_partition_all(partition);
    let room = topics::in_chat_message(&room_in(partition));
    let mut deliveries = first
        .consume_from(&topic, "contract-redeliver", 8)
        .await
        .unwrap();
    for i in 0..3 {
        let packet = inbound_click(&format!("redeliver-{i}"), i);
        first
            .publish_durable_to(&room, packet.id(), &packet)
            .await
            .unwrap();
    }
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(next(&mut deliveries).await.delivery.seq);
    }
    // The reader dies without acking.
    drop(deliveries);
    drop(first);
    let mut deliveries = second
        .consume_from(&topic, "contract-redeliver", 8)
        .await
        .unwrap();
    let mut again = Vec::new();
    for _ in 0..3 {
        let d = next(&mut deliveries).await;
        again.push(d.delivery.seq);
        d.delivery.ack().await.unwrap();
    }
    again.sort_unstable();
    assert_eq!(again, seqs, "the same stream positions come back");
    assert!(silent(&mut deliveries, Duration::from_millis(1500)).await);
}

async fn replays_read_in_sequence_from_where_asked(bus: &dyn Bus, keeps_history: bool) {
    // Opened before anything is stored, so both adapters see every fact.
    let mut whole = bus.replay_from(topics::FACTS, 1).await.unwrap();
    let mut from_second = bus.replay_from(topics::FACTS, 2).await.unwrap();
    let chat = Fact::ChatMessage {
        id: "f-2".into(),
        room_id: "r1".into(),
    };
    let facts = [fact("f-1"), chat, fact("f-3")];
    let on = [
        &topics::FACTS_FRUST,
        &topics::FACTS_CHAT,
        &topics::FACTS_FRUST,
    ];
    for (i, (f, topic)) in facts.iter().zip(on).enumerate() {
        bus.publish_durable_to(topic, &format!("f-{}", i + 1), f)
            .await
            .unwrap();
    }
    for (i, f) in facts.iter().enumerate() {
        let d = next(&mut whole).await;
        assert_eq!(d.delivery.seq, i as u64 + 1);
        assert_eq!(&d.body.unwrap(), f);
    }
    for (i, f) in facts.iter().enumerate().skip(1) {
        let d = next(&mut from_second).await;
        assert_eq!(d.delivery.seq, i as u64 + 1, "from the sequence asked for");
        assert_eq!(&d.body.unwrap(), f);
    }
    let stream = topics::FACTS.stream.name();
    if keeps_history {
        let mut later = bus.replay_from(topics::FACTS, 1).await.unwrap();
        for seq in 1..=3 {
            assert_eq!(next(&mut later).await.delivery.seq, seq, "the past is kept");
        }
        bus.remove(stream, 2).await.unwrap();
        let mut after_remove = bus.replay_from(topics::FACTS, 1).await.unwrap();
        let seqs = [
            next(&mut after_remove).await.delivery.seq,
            next(&mut after_remove).await.delivery.seq,
        ];
        assert_eq!(seqs, [1, 3], "a removed message is gone; the jump shows it");
    } else {
        assert!(matches!(
            bus.remove(stream, 2).await,
            Err(BusError::Backend(_))
        ));
    }
}

async fn pubsub_follows_wildcards_and_drops_poison(bus: &dyn Bus) {
    let mut everything = bus.subscribe("out.>").await.unwrap();
    let mut one_token = bus.subscribe("out.*").await.unwrap();
    let mut fanouts = bus.subscribe_to(&topics::OUT_FRUST).await.unwrap();
    let room = topics::out_chat_room("r1");
    let mut room_outs = bus.subscribe_to(&room).await.unwrap();

    bus.publish(topics::OUT_FRUST.subject(), Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let fanout = FrustFanout::once(FrustOut::Status(Status { user_count: 2 }));
    bus.publish_to(&topics::OUT_FRUST, &fanout).await.unwrap();
    let out = ChatOut {
        target: ChatTarget::Users(vec!["ann".into()]),
        json: "{}".into(),
        dedup: None,
        position: None,
    };
    bus.publish_to(&room, &out).await.unwrap();

    let subjects: Vec<String> = [
        next(&mut everything).await.subject,
        next(&mut everything).await.subject,
        next(&mut everything).await.subject,
    ]
    .into();
    assert_eq!(subjects, ["out.frust", "out.frust", "out.chat.room.r1"]);
    assert_eq!(next(&mut one_token).await.subject, "out.frust");
    assert_eq!(next(&mut one_token).await.subject, "out.frust");
    assert_eq!(next(&mut fanouts).await, fanout, "the poison is dropped");
    assert_eq!(next(&mut room_outs).await, out);
    let quiet = Duration::from_millis(300);
    assert!(silent(&mut one_token, quiet).await);
    assert!(silent(&mut fanouts, quiet).await);
}

async fn requests_get_one_answer(bus: &dyn Bus) {
    let online = OnlineUsers(vec![OnlineUser {
        name: Some("ann".into()),
        click_count_session: 1,
        event_count_session: 0,
        click_count: 5,
        event_count: 2,
    }]);
    let mut requests = bus.serve(&topics::RPC_FRUST_ONLINE).await.unwrap();
    let answer = online.clone();
    let responder = tokio::spawn(async move {
        let request = next(&mut requests).await;
        assert_eq!(request.body, Empty);
        request.reply(&answer).await.unwrap();
    });
    let got = bus
        .request_to(&topics::RPC_FRUST_ONLINE, &Empty, WAIT)
        .await
        .unwrap();
    assert_eq!(got, online);
    responder.await.unwrap();
    assert!(matches!(
        bus.request("rpc.none", Bytes::new(), Duration::from_secs(2))
            .await,
        Err(BusError::NoResponder(_))
    ));
}

async fn gather_collects_every_answer(bus: &dyn Bus) {
    let mut responders = Vec::new();
    for edge in ["edge-a", "edge-b"] {
        let mut requests = bus.serve(&topics::CONTROL_EDGES).await.unwrap();
        responders.push(tokio::spawn(async move {
            let request = next(&mut requests).await;
            let ControlRequest::DisconnectChatUser { user } = &request.body else {
                panic!("asked {:?}", request.body);
            };
            let closed = user.len() as u64;
            let answer = ControlReply::Disconnected {
                edge: edge.into(),
                closed,
            };
            request.reply(&answer).await.unwrap();
        }));
    }
    let request = ControlRequest::DisconnectChatUser { user: "ann".into() };
    let mut answers = bus
        .gather_from(&topics::CONTROL_EDGES, &request, Duration::from_secs(1))
        .await
        .unwrap();
    answers.sort_by_key(|a| format!("{a:?}"));
    let expected: Vec<ControlReply> = ["edge-a", "edge-b"]
        .map(|edge| ControlReply::Disconnected {
            edge: edge.into(),
            closed: 3,
        })
        .into();
    assert_eq!(answers, expected);
    for r in responders {
        r.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_bus_meets_the_contract() {
    contract(Adapter {
        bus: Arc::new(InProcessBus::new()),
        keeps_history: false,
        redelivery: None,
    })
    .await;
}

async fn connect(server: &Server, name: &str) -> NatsBus {
    NatsBus::connect(NatsOptions {
        replicas: Some(1),
        ..NatsOptions::new(vec![server.url()], name)
    })
    .await
    .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_bus_meets_the_contract() {
    let server = Server::start(&[]);
    let short_ack_wait = Duration::from_secs(1);
    let first = connect(&server, "contract-first")
        .await
        .with_ack_wait(short_ack_wait);
    let second = connect(&server, "contract-second")
        .await
        .with_ack_wait(short_ack_wait);
    contract(Adapter {
        bus: Arc::new(connect(&server, "contract").await),
        keeps_history: true,
        redelivery: Some((Arc::new(first), Arc::new(second))),
    })
    .await;
}

/// The same contract on a three-node JetStream cluster with its streams replicated on all three
/// (as deployed), and each connection attached to a different node, so the publisher, the
/// reader and the redelivered reader talk to the stream through routes and its leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_bus_on_a_three_node_cluster_meets_the_contract() {
    let nodes = start_cluster();
    let on = |i: usize, name: &'static str| {
        let url = nodes[i].url();
        async move {
            NatsBus::connect(NatsOptions {
                replicas: Some(3),
                ..NatsOptions::new(vec![url], name)
            })
            .await
            .expect("connect")
        }
    };
    let short_ack_wait = Duration::from_secs(1);
    let first = on(1, "contract-first").await.with_ack_wait(short_ack_wait);
    let second = on(2, "contract-second").await.with_ack_wait(short_ack_wait);
    contract(Adapter {
        bus: Arc::new(on(0, "contract").await),
        keeps_history: true,
        redelivery: Some((Arc::new(first), Arc::new(second))),
    })
    .await;
}
