//! The worker's publish pipeline against a scripted bus: fact confirmations come back late, out
//! of order and sometimes not at all, and every delivery must still be acked only once its fact
//! is stored, with facts and fan-out sent in stream order.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use switchyard_bus::{Acker, Bus, BusError, ConsumerSpec, Delivery, Message, PendingAck};
use switchyard_schema::envelope::{self, FrustFanout};
use switchyard_schema::subjects::IN_FRUST_ALL;
use switchyard_workers::Worker;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use common::{click, temp_store};

#[derive(Default)]
struct Log {
    /// Facts in the order they were first sent.
    facts_sent: Vec<String>,
    /// How often each fact was stored (confirmed).
    stored: HashMap<String, usize>,
    fan_out: Vec<String>,
    acked: Vec<String>,
    /// Deliveries acked while their fact was not stored.
    early_acks: Vec<String>,
    unconfirmed: usize,
    max_unconfirmed: usize,
}

struct ScriptedBus {
    log: Arc<Mutex<Log>>,
    inbound: Mutex<Option<mpsc::UnboundedReceiver<Delivery>>>,
}

fn number(id: &str) -> u64 {
    id.trim_start_matches("p-").parse().unwrap()
}

#[async_trait]
impl Bus for ScriptedBus {
    async fn publish_durable(
        &self,
        _subject: &str,
        msg_id: &str,
        _payload: Bytes,
    ) -> Result<(), BusError> {
        *self
            .log
            .lock()
            .unwrap()
            .stored
            .entry(msg_id.to_owned())
            .or_default() += 1;
        Ok(())
    }

    async fn publish_durable_send(
        &self,
        _subject: &str,
        msg_id: &str,
        _payload: Bytes,
    ) -> Result<PendingAck, BusError> {
        let n = number(msg_id);
        {
            let mut log = self.log.lock().unwrap();
            log.facts_sent.push(msg_id.to_owned());
            log.unconfirmed += 1;
            log.max_unconfirmed = log.max_unconfirmed.max(log.unconfirmed);
        }
        // Confirmations in a scrambled order; every tenth is lost (not stored).
        let delay = Duration::from_millis(n * 7919 % 23);
        let lost = n % 10 == 3;
        let (log, id) = (self.log.clone(), msg_id.to_owned());
        Ok(Box::pin(async move {
            tokio::time::sleep(delay).await;
            let mut log = log.lock().unwrap();
            log.unconfirmed -= 1;
            if lost {
                return Err(BusError::Unconfirmed("scripted: no PubAck".into()));
            }
            *log.stored.entry(id).or_default() += 1;
            Ok(())
        }))
    }

    async fn replay(
        &self,
        _stream: &str,
        _from: u64,
    ) -> Result<BoxStream<'static, Delivery>, BusError> {
        Ok(futures::stream::pending().boxed())
    }

    async fn remove(&self, _stream: &str, _seq: u64) -> Result<(), BusError> {
        Ok(())
    }

    async fn consume(
        &self,
        spec: &ConsumerSpec<'_>,
    ) -> Result<BoxStream<'static, Delivery>, BusError> {
        if spec.filter != IN_FRUST_ALL {
            return Ok(futures::stream::pending().boxed());
        }
        let rx = self
            .inbound
            .lock()
            .unwrap()
            .take()
            .expect("one frust reader");
        Ok(
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|d| (d, rx)) })
                .boxed(),
        )
    }

    async fn publish(&self, _subject: &str, payload: Bytes) -> Result<(), BusError> {
        let fanout: FrustFanout = envelope::decode(&payload).unwrap();
        self.log.lock().unwrap().fan_out.push(fanout.dedup.unwrap());
        Ok(())
    }

    async fn subscribe(&self, _pattern: &str) -> Result<BoxStream<'static, Message>, BusError> {
        Err(BusError::Closed)
    }

    async fn request(
        &self,
        subject: &str,
        _payload: Bytes,
        _timeout: Duration,
    ) -> Result<Bytes, BusError> {
        Err(BusError::NoResponder(subject.into()))
    }

    async fn gather(
        &self,
        _subject: &str,
        _payload: Bytes,
        _wait: Duration,
    ) -> Result<Vec<Bytes>, BusError> {
        Ok(Vec::new())
    }
}

struct CheckingAcker {
    id: String,
    log: Arc<Mutex<Log>>,
}

#[async_trait]
impl Acker for CheckingAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        let mut log = self.log.lock().unwrap();
        if !log.stored.contains_key(&self.id) {
            log.early_acks.push(self.id.clone());
        }
        log.acked.push(self.id);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_wait_for_stored_facts_and_sends_keep_stream_order() {
    const N: u64 = 500;
    let (_dir, store) = temp_store().await;
    let log = Arc::new(Mutex::new(Log::default()));
    let (tx, rx) = mpsc::unbounded_channel();
    let bus = Arc::new(ScriptedBus {
        log: log.clone(),
        inbound: Mutex::new(Some(rx)),
    });
    let ids: Vec<String> = (0..N).map(|n| format!("p-{n:04}")).collect();
    for (n, id) in ids.iter().enumerate() {
        tx.send(Delivery {
            subject: "in.frust.click".into(),
            payload: click(id, n as u64),
            seq: n as u64 + 1,
            acker: Box::new(CheckingAcker {
                id: id.clone(),
                log: log.clone(),
            }),
        })
        .unwrap();
    }
    // Shutdown requested at once: run() returns only once everything taken is acked.
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(Worker::new(bus, store).run(shutdown.clone()));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker drains in time")
        .unwrap()
        .unwrap();

    let log = log.lock().unwrap();
    assert!(
        log.early_acks.is_empty(),
        "acked before stored: {:?}",
        log.early_acks
    );
    assert_eq!(log.facts_sent, ids, "facts sent in stream order");
    assert_eq!(log.fan_out, ids, "fan-out sent in stream order");
    let mut acked = log.acked.clone();
    acked.sort();
    assert_eq!(acked, ids, "every delivery acked once");
    let not_once: Vec<_> = log.stored.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        not_once.is_empty(),
        "facts not stored exactly once: {not_once:?}"
    );
    assert_eq!(log.stored.len(), ids.len());
    assert!(
        (2..=256).contains(&log.max_unconfirmed),
        "confirmations overlap, boundedly: {}",
        log.max_unconfirmed
    );
    drop(tx);
}
