//! The cluster adapter: durable streams on NATS JetStream, pub/sub and request/reply on core
//! NATS. The client reconnects by itself; what this module adds is that callers never see a
//! half-done operation: a durable publish is Ok only once a stream acknowledged it, and a
//! consumer stream outlives node loss by re-opening its pull subscription.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::{CreateStreamErrorKind, PublishError, PublishErrorKind};
use async_nats::jetstream::message::{Acker as JsAcker, PublishMessage};
use async_nats::jetstream::stream::{
    Config as StreamConfig, ConsumerErrorKind, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, ConnectOptions, Event, RequestErrorKind, ServerAddr, Subject};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use switchyard_schema::backoff::Backoff;
use switchyard_schema::subjects::{stream_of, STREAM_DEAD, STREAM_FACTS, STREAM_IN};
use switchyard_schema::topics::Stream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::{
    Acker, BoxError, Bus, BusError, ConsumerSpec, Delivery, InContext, Message, PendingAck, Replier,
};

/// Default dedup window for `Nats-Msg-Id`: longer than any publisher's retry loop. (A packet
/// published again later is stored twice; the workers' and the aggregator's idempotence on the
/// packet id covers that.)
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// FACTS is a log for the aggregator; a week covers any outage it must catch up from.
const FACTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default total time a durable publish may take before the caller hears it failed (for a
/// pipelined send: counted from its first failed attempt). It outlasts a JetStream leader
/// election on a loaded cluster, so nothing is refused while a quorum is up.
pub const DEFAULT_PUBLISH_BUDGET: Duration = Duration::from_secs(30);
/// Default wait for a first NATS server at start (SWITCHYARD_NATS_CONNECT_TIMEOUT_SECS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Dead letters wait this long for an operator.
const DEAD_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Replicas when none are configured: min(this, servers in the cluster).
const DEFAULT_MAX_REPLICAS: usize = 3;
/// One publish attempt; short so a leader change leaves room for a retry.
const PUBLISH_ATTEMPT: Duration = Duration::from_secs(2);
/// JetStream API calls (stream and consumer management).
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// Streams may take a while on a cluster that is still electing its meta leader.
const SETUP_BUDGET: Duration = Duration::from_secs(30);
/// Time a reader has to ack before the delivery goes to another reader.
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Pull requests: a short expiry and heartbeat notice a dead server in seconds.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a replay waits for its next message before it asks the stream whether one is
/// there. The ordered consumer behind a replay is a single replica that dies with its node, and
/// async-nats notices that only after two missed 15 s heartbeats (up to a minute's stall).
const REPLAY_STALL_PROBE: Duration = Duration::from_secs(3);
/// Messages fetched ahead never exceed this, whatever `max_in_flight` says.
const MAX_BATCH: usize = 256;
/// The readiness probe's stream request; readiness is polled every few seconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A durable publish that failed for good keeps the bus unready this long unless one succeeds:
/// long enough for a load balancer to notice, short enough to recover once traffic is gone.
const FAILED_PUBLISH_UNREADY: Duration = Duration::from_secs(30);

pub struct NatsOptions {
    /// Seed servers (`nats://host:port`); the rest of a cluster is discovered.
    pub urls: Vec<String>,
    /// Copies of each stream; `None`: min(3, servers in the cluster).
    pub replicas: Option<usize>,
    /// Connection name, shown in the server's monitoring.
    pub name: String,
    /// How long a durable publish keeps retrying (same msg id) before it fails.
    pub publish_budget: Duration,
    /// The streams' `Nats-Msg-Id` dedup window (tests shorten it).
    pub duplicate_window: Duration,
    /// How long `connect` waits for a first server to answer before it fails
    /// ([`BusError::Unreachable`]); once connected, the client reconnects by itself for ever.
    pub connect_timeout: Duration,
}

impl NatsOptions {
    /// Options with the defaults for everything but the servers and the connection name.
    pub fn new(urls: Vec<String>, name: impl Into<String>) -> Self {
        Self {
            urls,
            replicas: None,
            name: name.into(),
            publish_budget: DEFAULT_PUBLISH_BUDGET,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Clones share one connection; consumer streams end once every clone is dropped or
/// [`NatsBus::close`] is called.
#[derive(Clone)]
pub struct NatsBus {
    client: Client,
    /// Stream and consumer management.
    admin: Context,
    /// Durable publishes, with the per-attempt ack timeout.
    publisher: Context,
    publish_budget: Duration,
    ack_wait: Duration,
    closed: Arc<watch::Sender<bool>>,
    /// The seed URLs, for messages that must say which NATS is meant.
    servers: Arc<str>,
    outcomes: Arc<Outcomes>,
}

/// When durable publishes last succeeded and last failed for good (ms since `epoch`, 0 never).
struct Outcomes {
    epoch: std::time::Instant,
    last_ok: AtomicU64,
    last_failed: AtomicU64,
}

impl Outcomes {
    fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            last_ok: AtomicU64::new(0),
            last_failed: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn ok(&self) {
        self.last_ok.store(self.now(), Ordering::Relaxed);
    }

    fn failed(&self) {
        self.last_failed.store(self.now(), Ordering::Relaxed);
    }

    /// How long ago the last publish failed, if none succeeded since and it is recent.
    fn failing(&self) -> Option<Duration> {
        let failed = self.last_failed.load(Ordering::Relaxed);
        if failed == 0 || self.last_ok.load(Ordering::Relaxed) > failed {
            return None;
        }
        let ago = Duration::from_millis(self.now().saturating_sub(failed));
        (ago < FAILED_PUBLISH_UNREADY).then_some(ago)
    }
}

impl NatsBus {
    /// Connects (waiting up to `connect_timeout` for a first server) and makes sure IN, FACTS
    /// and DEAD exist.
    pub async fn connect(opts: NatsOptions) -> Result<Self, BusError> {
        let addrs = opts
            .urls
            .iter()
            .map(|url| url.parse::<ServerAddr>().map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(BusError::Backend("no NATS url given".into()));
        }
        let servers: Arc<str> = opts.urls.join(",").into();
        let client =
            connect_client(addrs, &opts.name, servers.clone(), opts.connect_timeout).await?;
        let admin = jetstream::ContextBuilder::new()
            .timeout(API_TIMEOUT)
            .build(client.clone());
        let publisher = jetstream::ContextBuilder::new()
            .timeout(PUBLISH_ATTEMPT)
            .build(client.clone());
        let bus = Self {
            client,
            admin,
            publisher,
            publish_budget: opts.publish_budget,
            ack_wait: DEFAULT_ACK_WAIT,
            closed: Arc::new(watch::channel(false).0),
            servers,
            outcomes: Arc::new(Outcomes::new()),
        };
        let replicas = bus.choose_replicas(opts.replicas, &opts.urls).await;
        bus.ensure_streams(replicas, opts.duplicate_window).await?;
        Ok(bus)
    }

    /// Ack wait of consumers this bus creates (an existing consumer keeps its own).
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// Ends every consumer stream of this bus and flushes what is still queued.
    pub async fn close(&self) {
        self.closed.send_replace(true);
        if let Err(err) = self.client.drain().await {
            warn!(%err, "draining the NATS connection failed");
        }
    }

    fn check_open(&self) -> Result<(), BusError> {
        if *self.closed.borrow() {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    /// Publishes until the stream acks or the publish budget is spent; `failed` is an attempt
    /// the caller already made.
    async fn publish_retrying(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
        mut failed: Option<PublishError>,
    ) -> Result<(), BusError> {
        let deadline = Instant::now() + self.publish_budget;
        let mut attempt = 0;
        // Whether any attempt may have reached the stream without its ack reaching us.
        let mut maybe_stored = false;
        loop {
            let err = match failed.take() {
                Some(err) => err,
                None => match self
                    .publish_once(subject, msg_id, payload.clone(), deadline)
                    .await
                {
                    Ok(()) => {
                        self.outcomes.ok();
                        return Ok(());
                    }
                    Err(err) => err,
                },
            };
            if err.kind() == PublishErrorKind::MaxPayloadExceeded {
                return Err(backend(err));
            }
            // Refusals the stream answered mean "not stored"; a timeout or a broken connection
            // leaves it open.
            maybe_stored |= !matches!(
                err.kind(),
                PublishErrorKind::StreamNotFound
                    | PublishErrorKind::MaxAckPending
                    | PublishErrorKind::WrongLastMessageId
                    | PublishErrorKind::WrongLastSequence
            );
            attempt += 1;
            let pause = BACKOFF.delay(attempt);
            if Instant::now() + pause >= deadline {
                metrics::counter!("switchyard_bus_durable_failed_total").increment(1);
                self.outcomes.failed();
                let why = InContext::boxed(
                    format!("publish to `{subject}` not acknowledged after {attempt} attempts"),
                    err,
                );
                return Err(if maybe_stored {
                    BusError::Unconfirmed(why)
                } else {
                    BusError::Backend(why)
                });
            }
            debug!(subject, attempt, %err, "durable publish retry");
            metrics::counter!("switchyard_bus_durable_retries_total").increment(1);
            tokio::time::sleep(pause).await;
        }
    }

    /// One publish attempt, awaiting its ack.
    async fn publish_once(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<(), PublishError> {
        // Same msg id on every attempt: the stream stores a retried packet once.
        let message = PublishMessage::build().payload(payload).message_id(msg_id);
        let budget = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(budget.min(PUBLISH_ATTEMPT), async {
            self.publisher
                .send_publish(subject.to_owned(), message)
                .await?
                .await
        })
        .await
        .unwrap_or_else(|_| Err(PublishError::new(PublishErrorKind::TimedOut)))
        .map(drop)
    }

    /// The configured replicas, or min(3, cluster size): a 3-node cluster gets streams that
    /// survive a node's loss without anyone asking for it. The cluster size is what the server
    /// advertises (its peers' client URLs) or the URLs given, whichever is larger.
    async fn choose_replicas(&self, configured: Option<usize>, urls: &[String]) -> usize {
        // The first round trip: server_info is filled in once connected.
        if let Err(err) = tokio::time::timeout(SETUP_BUDGET, self.client.flush()).await {
            warn!(%err, "NATS not reachable yet; sizing streams from the configured URLs");
        }
        let advertised = self.client.server_info().connect_urls.len();
        let mut distinct: Vec<&String> = urls.iter().collect();
        distinct.sort();
        distinct.dedup();
        let cluster = advertised.max(distinct.len()).max(1);
        match configured {
            Some(n) => {
                let n = n.max(1);
                if n == 1 && cluster > 1 {
                    warn!(
                        cluster,
                        "SWITCHYARD_NATS_REPLICAS=1 on a {cluster}-node NATS cluster: \
                         losing one node stops intake; unset it (default min(3, cluster)) or set 3"
                    );
                }
                n
            }
            None => {
                let n = cluster.min(DEFAULT_MAX_REPLICAS);
                info!(
                    cluster,
                    replicas = n,
                    "stream replicas chosen from the cluster size"
                );
                n
            }
        }
    }

    async fn ensure_streams(
        &self,
        replicas: usize,
        duplicate_window: Duration,
    ) -> Result<(), BusError> {
        let base = StreamConfig {
            storage: StorageType::File,
            num_replicas: replicas,
            duplicate_window,
            ..Default::default()
        };
        let streams = [
            StreamConfig {
                name: STREAM_IN.into(),
                subjects: vec![stream_subjects(STREAM_IN).into()],
                // Acked packets are done with; non-overlapping consumers split the rest.
                retention: RetentionPolicy::WorkQueue,
                ..base.clone()
            },
            StreamConfig {
                name: STREAM_FACTS.into(),
                subjects: vec![stream_subjects(STREAM_FACTS).into()],
                retention: RetentionPolicy::Limits,
                max_age: FACTS_MAX_AGE,
                ..base.clone()
            },
            StreamConfig {
                name: STREAM_DEAD.into(),
                subjects: vec![stream_subjects(STREAM_DEAD).into()],
                retention: RetentionPolicy::Limits,
                max_age: DEAD_MAX_AGE,
                ..base
            },
        ];
        for config in streams {
            let name = config.name.clone();
            self.report_replica_change(&name, replicas).await;
            retry_until(SETUP_BUDGET, &format!("stream {name}"), || {
                let config = config.clone();
                async move {
                    self.admin
                        .create_or_update_stream(config)
                        .await
                        .map_err(|err| match err.kind() {
                            CreateStreamErrorKind::JetStream(js) => SetupError::from_api(&js),
                            _ => SetupError::retry(err),
                        })
                }
            })
            .await?;
            debug!(stream = %name, replicas, "stream ready");
        }
        Ok(())
    }

    /// One clear line when an existing stream's replicas differ from what is configured (the
    /// update that follows changes them).
    async fn report_replica_change(&self, name: &str, replicas: usize) {
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(API_TIMEOUT, self.admin.get_stream(name)).await
        else {
            return; // absent (it is created next) or not reachable yet
        };
        if let Ok(info) = stream.info().await {
            let current = info.config.num_replicas;
            if current != replicas {
                warn!(
                    stream = name,
                    current,
                    configured = replicas,
                    "stream {name} has {current} replicas, configured {replicas}: updating it"
                );
            }
        }
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn flush(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(backend)
    }

    async fn unready(&self) -> Option<String> {
        if self.client.connection_state() != State::Connected {
            return Some(format!("NATS unreachable ({})", self.servers));
        }
        if let Some(ago) = self.outcomes.failing() {
            return Some(format!(
                "durable publishes to JetStream failed {} s ago and none succeeded since",
                ago.as_secs()
            ));
        }
        match tokio::time::timeout(PROBE_TIMEOUT, self.admin.get_stream(STREAM_IN)).await {
            Ok(Ok(stream)) => stream.cached_info().cluster.as_ref().and_then(no_quorum),
            Ok(Err(err)) => Some(format!(
                "JetStream stream {STREAM_IN} does not answer: {err}"
            )),
            Err(_) => Some(format!(
                "JetStream stream {STREAM_IN} does not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
        }
    }

    async fn publish_durable(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<(), BusError> {
        stream_of(subject).ok_or_else(|| BusError::NotDurable(subject.into()))?;
        self.check_open()?;
        self.publish_retrying(subject, msg_id, payload, None).await
    }

    async fn publish_durable_send(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<PendingAck, BusError> {
        stream_of(subject).ok_or_else(|| BusError::NotDurable(subject.into()))?;
        self.check_open()?;
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(msg_id);
        let sent = tokio::time::timeout(
            PUBLISH_ATTEMPT,
            self.publisher.send_publish(subject.to_owned(), message),
        )
        .await
        .unwrap_or_else(|_| Err(PublishError::new(PublishErrorKind::TimedOut)));
        let ack = match sent {
            Ok(ack) => ack,
            // Not sent: retry before returning, so later sends stay behind this one.
            Err(err) => {
                self.publish_retrying(subject, msg_id, payload, Some(err))
                    .await?;
                return Ok(Box::pin(futures::future::ready(Ok(()))));
            }
        };
        let bus = self.clone();
        let (subject, msg_id) = (subject.to_owned(), msg_id.to_owned());
        Ok(Box::pin(async move {
            match ack.await {
                Ok(_) => {
                    bus.outcomes.ok();
                    Ok(())
                }
                Err(err) => {
                    bus.publish_retrying(&subject, &msg_id, payload, Some(err))
                        .await
                }
            }
        }))
    }

    async fn consume(
        &self,
        spec: &ConsumerSpec<'_>,
    ) -> Result<BoxStream<'static, Delivery>, BusError> {
        self.check_open()?;
        let stream = known_stream(spec.stream)?;
        let filter = match spec.filter {
            ">" | "" => stream_subjects(stream),
            filter => filter,
        };
        let in_flight = spec.max_in_flight.max(1);
        let config = pull::Config {
            durable_name: Some(spec.name.to_owned()),
            filter_subject: filter.to_owned(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_ack_pending: i64::try_from(in_flight).unwrap_or(i64::MAX),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        };
        let mut reader = Reader {
            admin: self.admin.clone(),
            stream,
            name: spec.name.to_owned(),
            config,
            // The server hands out no more than max_in_flight anyway; fetching more would
            // only hold messages in this process.
            batch: in_flight.min(MAX_BATCH),
            messages: None,
            failures: 0,
        };
        // The first open brings the consumer in line with the spec and reports
        // misconfiguration (e.g. overlapping filters on IN) to the caller, after riding out a
        // meta leader election (up to ~10 s); later failures are node loss, which the stream
        // rides out for as long as the bus lives.
        let label = format!("consumer {stream}/{}", spec.name);
        let messages = retry_until(SETUP_BUDGET, &label, || reader.open(true)).await?;
        reader.messages = Some(messages);
        let closed = self.closed.subscribe();
        Ok(
            futures::stream::unfold((reader, closed), |(mut reader, mut closed)| async move {
                let delivery = tokio::select! {
                    biased;
                    _ = closed.wait_for(|closed| *closed) => None,
                    delivery = reader.next() => Some(delivery),
                };
                delivery.map(|delivery| (delivery, (reader, closed)))
            })
            .boxed(),
        )
    }

    async fn replay(
        &self,
        stream: &str,
        from: u64,
    ) -> Result<BoxStream<'static, Delivery>, BusError> {
        self.check_open()?;
        let mut replayer = Replayer {
            admin: self.admin.clone(),
            stream: known_stream(stream)?,
            next: from.max(1),
            messages: None,
            failures: 0,
            reopened_at_last: 0,
        };
        let label = format!("replay of {stream} from {from}");
        let (admin, name, next) = (&replayer.admin, replayer.stream, replayer.next);
        let messages = retry_until(SETUP_BUDGET, &label, || open_replay(admin, name, next)).await?;
        replayer.messages = Some(messages);
        let closed = self.closed.subscribe();
        Ok(futures::stream::unfold(
            (replayer, closed),
            |(mut replayer, mut closed)| async move {
                let delivery = tokio::select! {
                    biased;
                    _ = closed.wait_for(|closed| *closed) => None,
                    delivery = replayer.next() => Some(delivery),
                };
                delivery.map(|delivery| (delivery, (replayer, closed)))
            },
        )
        .boxed())
    }

    async fn remove(&self, stream: &str, seq: u64) -> Result<(), BusError> {
        self.check_open()?;
        let stream = self
            .admin
            .get_stream_no_info(known_stream(stream)?)
            .await
            .map_err(backend)?;
        stream.delete_message(seq).await.map_err(backend)?;
        Ok(())
    }

    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        self.check_open()?;
        self.client
            .publish(subject.to_owned(), payload)
            .await
            .map_err(backend)
    }

    async fn subscribe(&self, pattern: &str) -> Result<BoxStream<'static, Message>, BusError> {
        self.check_open()?;
        let subscriber = self
            .client
            .subscribe(pattern.to_owned())
            .await
            .map_err(backend)?;
        let client = self.client.clone();
        Ok(subscriber
            .map(move |msg| Message {
                subject: msg.subject.to_string(),
                payload: msg.payload,
                reply: msg.reply.map(|to| {
                    Box::new(NatsReplier {
                        client: client.clone(),
                        to,
                    }) as Box<dyn Replier>
                }),
            })
            .boxed())
    }

    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, BusError> {
        self.check_open()?;
        let request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(timeout));
        match self.client.send_request(subject.to_owned(), request).await {
            Ok(reply) => Ok(reply.payload),
            Err(err) => Err(match err.kind() {
                RequestErrorKind::TimedOut => BusError::Timeout(subject.into()),
                RequestErrorKind::NoResponders => BusError::NoResponder(subject.into()),
                _ => backend(err),
            }),
        }
    }

    async fn gather(
        &self,
        subject: &str,
        payload: Bytes,
        wait: Duration,
    ) -> Result<Vec<Bytes>, BusError> {
        self.check_open()?;
        let inbox = self.client.new_inbox();
        // Subscribed before the request leaves: the server handles one connection's commands
        // in order, so no answer can come before the inbox exists.
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(backend)?;
        self.client
            .publish_with_reply(subject.to_owned(), inbox, payload)
            .await
            .map_err(backend)?;
        // How many edges there are is nobody's to know here: collect for the whole wait.
        let deadline = tokio::time::Instant::now() + wait;
        let mut replies = Vec::new();
        while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
            match answer.status {
                None => replies.push(answer.payload),
                // The server's word that nobody subscribes: no answer will come.
                Some(async_nats::StatusCode::NO_RESPONDERS) => break,
                Some(_) => {}
            }
        }
        let _ = answers.unsubscribe().await;
        Ok(replies)
    }
}

/// Silence after which a stream replica counts as gone: peers hear from the leader every second,
/// and the server itself calls a replica not current only after 10 s.
const REPLICA_SILENT: Duration = Duration::from_secs(4);

/// Why a stream cannot store right now although something answered for it: no leader, or a
/// leader that cannot reach a majority of the replicas (it keeps answering for a while before
/// it steps down, and stores nothing meanwhile).
fn no_quorum(cluster: &jetstream::stream::ClusterInfo) -> Option<String> {
    let Some(leader) = &cluster.leader else {
        return Some(format!("JetStream stream {STREAM_IN} has no leader"));
    };
    let size = 1 + cluster.replicas.len();
    let reachable = 1 + cluster
        .replicas
        .iter()
        .filter(|peer| !peer.offline && peer.active < REPLICA_SILENT)
        .count();
    (reachable <= size / 2).then(|| {
        format!(
            "JetStream stream {STREAM_IN} has no quorum: its leader {leader} reaches \
             {reachable} of {size} replicas"
        )
    })
}

/// One reader of a durable consumer: a pull subscription re-opened whenever it fails.
struct Reader {
    admin: Context,
    stream: &'static str,
    name: String,
    config: pull::Config,
    batch: usize,
    messages: Option<pull::Stream>,
    failures: u32,
}

impl Reader {
    /// Opens a pull subscription. `apply_spec` creates or updates the consumer to match the
    /// spec (needs the meta leader); otherwise an existing consumer is used as it is, which
    /// needs only the consumer's own leader and so works sooner after a node loss.
    async fn open(&self, apply_spec: bool) -> Result<pull::Stream, SetupError> {
        let stream = self
            .admin
            .get_stream_no_info(self.stream)
            .await
            .map_err(SetupError::fail)?;
        let consumer = if apply_spec {
            stream.create_consumer(self.config.clone()).await
        } else {
            stream
                .get_or_create_consumer(&self.name, self.config.clone())
                .await
        };
        let consumer = consumer.map_err(|err| match err.kind() {
            ConsumerErrorKind::JetStream(js) => SetupError::from_api(&js),
            ConsumerErrorKind::InvalidName | ConsumerErrorKind::InvalidConsumerType => {
                SetupError::fail(err)
            }
            _ => SetupError::retry(err),
        })?;
        // Known from the start (and after each re-open), not only once a message arrives.
        metrics::gauge!("switchyard_consumer_lag", "consumer" => self.name.clone())
            .set(consumer.cached_info().num_pending as f64);
        consumer
            .stream()
            .max_messages_per_batch(self.batch)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(SetupError::retry)
    }

    /// The next delivery; waits (re-opening with backoff) for as long as it takes.
    async fn next(&mut self) -> Delivery {
        loop {
            let messages = match &mut self.messages {
                Some(messages) => messages,
                None => match self.open(false).await {
                    Ok(messages) => self.messages.insert(messages),
                    Err(err) => {
                        self.pause(&err.to_string()).await;
                        continue;
                    }
                },
            };
            match messages.next().await {
                Some(Ok(message)) => {
                    self.failures = 0;
                    if let Ok(info) = message.info() {
                        // Messages the consumer has not handed out yet: its backlog.
                        metrics::gauge!("switchyard_consumer_lag", "consumer" => self.name.clone())
                            .set(info.pending as f64);
                    }
                    if let Some(delivery) = to_delivery(message) {
                        return delivery;
                    }
                }
                Some(Err(err)) => {
                    self.messages = None;
                    self.pause(&err.to_string()).await;
                }
                None => {
                    self.messages = None;
                    self.pause("pull stream ended").await;
                }
            }
        }
    }

    async fn pause(&mut self, why: &str) {
        self.failures += 1;
        let pause = BACKOFF.delay(self.failures);
        warn!(
            stream = self.stream,
            consumer = %self.name,
            why,
            retry_in_ms = pause.as_millis() as u64,
            "re-opening consumer"
        );
        metrics::counter!("switchyard_bus_consumer_restarts_total").increment(1);
        tokio::time::sleep(pause).await;
    }
}

/// One replay of a stream: an ordered consumer (the client re-creates it where it left off when
/// it sees a gap or misses heartbeats), opened again from the next sequence whenever it fails.
struct Replayer {
    admin: Context,
    stream: &'static str,
    /// The sequence to resume from: one past the last delivered.
    next: u64,
    messages: Option<pull::Ordered>,
    failures: u32,
    /// The stream's last sequence when a stall last re-opened the replay: the tail it could not
    /// read may be deleted messages, and those are not worth a re-open every probe.
    reopened_at_last: u64,
}

/// An ordered consumer of `stream` from `next` on. (A free function: the replayer holding the
/// open stream is not `Sync`, so it cannot be borrowed across these awaits.)
async fn open_replay(
    admin: &Context,
    stream: &'static str,
    next: u64,
) -> Result<pull::Ordered, SetupError> {
    let config = pull::OrderedConfig {
        filter_subject: stream_subjects(stream).to_owned(),
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: next,
        },
        ..Default::default()
    };
    admin
        .get_stream_no_info(stream)
        .await
        .map_err(SetupError::retry)?
        .create_consumer(config)
        .await
        .map_err(SetupError::retry)?
        .messages()
        .await
        .map_err(SetupError::retry)
}

impl Replayer {
    async fn next(&mut self) -> Delivery {
        loop {
            let messages = match &mut self.messages {
                Some(messages) => messages,
                None => match open_replay(&self.admin, self.stream, self.next).await {
                    Ok(messages) => self.messages.insert(messages),
                    Err(err) => {
                        self.pause(&err.to_string()).await;
                        continue;
                    }
                },
            };
            let Ok(message) = tokio::time::timeout(REPLAY_STALL_PROBE, messages.next()).await
            else {
                if self.stalled().await {
                    self.messages = None;
                }
                continue;
            };
            match message {
                Some(Ok(message)) => {
                    self.failures = 0;
                    if let Some(delivery) = to_delivery(message) {
                        if delivery.seq < self.next {
                            continue; // already delivered before a re-open
                        }
                        self.next = delivery.seq + 1;
                        return Delivery {
                            acker: Box::new(NoAck),
                            ..delivery
                        };
                    }
                }
                Some(Err(err)) => {
                    self.messages = None;
                    self.pause(&err.to_string()).await;
                }
                None => {
                    self.messages = None;
                    self.pause("replay ended").await;
                }
            }
        }
    }

    /// Whether the stream holds a message at or past the one this replay waits for, which its
    /// consumer has not delivered within the probe (it died with its node). Once per last
    /// sequence; an unanswered probe (no connection, no stream leader) says no, and the next
    /// probe asks again.
    async fn stalled(&mut self) -> bool {
        let last = match self.admin.get_stream(self.stream).await {
            Ok(stream) => stream.cached_info().state.last_sequence,
            Err(_) => return false,
        };
        if last < self.next || last == self.reopened_at_last {
            return false;
        }
        self.reopened_at_last = last;
        warn!(
            stream = self.stream,
            from = self.next,
            last,
            "replay stalled with messages waiting; re-opening it"
        );
        metrics::counter!("switchyard_bus_consumer_restarts_total").increment(1);
        true
    }

    async fn pause(&mut self, why: &str) {
        self.failures += 1;
        let pause = BACKOFF.delay(self.failures);
        warn!(
            stream = self.stream,
            from = self.next,
            why,
            retry_in_ms = pause.as_millis() as u64,
            "re-opening replay"
        );
        metrics::counter!("switchyard_bus_consumer_restarts_total").increment(1);
        tokio::time::sleep(pause).await;
    }
}

/// Replays are not acknowledged: the reader keeps its own position.
struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }
}

fn to_delivery(message: jetstream::Message) -> Option<Delivery> {
    let seq = match message.info() {
        Ok(info) => info.stream_sequence,
        Err(err) => {
            warn!(%err, subject = %message.subject, "not a JetStream delivery; skipped");
            return None;
        }
    };
    let (message, acker) = message.split();
    Some(Delivery {
        subject: message.subject.to_string(),
        payload: message.payload,
        seq,
        acker: Box::new(NatsAcker(acker)),
    })
}

struct NatsAcker(JsAcker);

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0.ack().await.map_err(backend)
    }
}

struct NatsReplier {
    client: Client,
    to: Subject,
}

#[async_trait]
impl Replier for NatsReplier {
    async fn reply(self: Box<Self>, payload: Bytes) -> Result<(), BusError> {
        self.client.publish(self.to, payload).await.map_err(backend)
    }
}

/// The subjects a durable stream owns; `>` in a consumer filter means all of them.
fn stream_subjects(stream: &str) -> &'static str {
    Stream::named(stream).map_or("facts.>", Stream::subjects)
}

fn known_stream(name: &str) -> Result<&'static str, BusError> {
    Stream::named(name)
        .map(Stream::name)
        .ok_or_else(|| BusError::NotDurable(name.into()))
}

/// Why creating a stream or consumer failed, and whether trying again can help.
#[derive(Debug)]
struct SetupError {
    message: String,
    permanent: bool,
}

impl SetupError {
    fn retry(err: impl std::fmt::Display) -> Self {
        Self {
            message: err.to_string(),
            permanent: false,
        }
    }

    fn fail(err: impl std::fmt::Display) -> Self {
        Self {
            message: err.to_string(),
            permanent: true,
        }
    }

    /// The server refused the request itself (400: e.g. a filter outside the stream, or one
    /// overlapping another consumer of IN); anything else may be a leader election. "No
    /// suitable peers" is a 400 too, but only means the cluster has not fully formed yet
    /// (processes starting together with the servers): wait for it.
    fn from_api(err: &jetstream::Error) -> Self {
        let forming = err.error_code() == jetstream::ErrorCode::CLUSTER_NO_PEERS;
        if err.code() == 400 && !forming {
            Self::fail(err)
        } else {
            Self::retry(err)
        }
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SetupError {}

/// Retries `op` with backoff until it succeeds, fails for good, or `budget` is spent.
async fn retry_until<T, F, Fut>(budget: Duration, what: &str, mut op: F) -> Result<T, BusError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SetupError>>,
{
    let deadline = Instant::now() + budget;
    let mut attempt = 0;
    loop {
        let err = match op().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        attempt += 1;
        let pause = BACKOFF.delay(attempt);
        if err.permanent || Instant::now() + pause >= deadline {
            return Err(BusError::Backend(InContext::boxed(what, err)));
        }
        if let Some(more) = switchyard_schema::log_throttle::due("nats", "setup") {
            info!(what, attempt, %err, more_since_last_line = more, "NATS not ready; retrying");
        }
        tokio::time::sleep(pause).await;
    }
}

/// 100 ms doubling up to 2 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// A client connected to one of `addrs`, or [`BusError::Unreachable`] naming `servers` and the
/// last connection error once `timeout` has passed without any server answering.
async fn connect_client(
    addrs: Vec<ServerAddr>,
    name: &str,
    servers: Arc<str>,
    timeout: Duration,
) -> Result<Client, BusError> {
    let for_events = servers.clone();
    let connection = name.to_owned();
    // Why the last attempt failed, for the one line that says NATS is unreachable.
    let last_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let record = last_error.clone();
    let first = addrs.first().map(|a| (a.host().to_owned(), a.port()));
    let client = ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .event_callback(move |event| {
            if let Event::ClientError(err) = &event {
                *record.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
            }
            log_event(connection.clone(), for_events.clone(), event)
        })
        .connect(addrs)
        .await
        .map_err(backend)?;
    // The first round trip waits for a connection: bounded, so a wrong URL or a NATS that is
    // not there ends the start with one line instead of retrying for ever.
    if tokio::time::timeout(timeout, client.flush()).await.is_err() {
        let why = last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| "no answer".into());
        // The client's own error drops its cause ("IO error"): a plain TCP connect names it.
        let why = match first {
            Some(addr) => match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
                Ok(Err(io)) => io.to_string(),
                Ok(Ok(_)) => format!("{why}; the port accepts TCP but no NATS handshake completed (a NATS port? TLS or credentials?)"),
                Err(_) => format!("{why}; a TCP connect gets no answer (firewall or wrong host?)"),
            },
            None => why,
        };
        return Err(BusError::Unreachable(format!(
            "cannot reach NATS at {servers}: {why} (waited {} s, \
             SWITCHYARD_NATS_CONNECT_TIMEOUT_SECS)",
            timeout.as_secs()
        )));
    }
    Ok(client)
}

/// Connects to `urls` as `connect` would, touching nothing (no stream is created or updated),
/// and describes the server that answered: `check-config`.
pub async fn probe(urls: &[String], name: &str, timeout: Duration) -> Result<String, BusError> {
    let addrs = urls
        .iter()
        .map(|url| {
            url.parse::<ServerAddr>()
                .map_err(|e| backend(InContext::boxed(format!("`{url}`"), e)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(BusError::Backend("no NATS url given".into()));
    }
    let client = connect_client(addrs, name, urls.join(",").into(), timeout).await?;
    let info = client.server_info();
    let described = format!(
        "{} (NATS {}{}, JetStream {})",
        info.server_name,
        info.version,
        info.cluster
            .as_deref()
            .map(|c| format!(", cluster {c}"))
            .unwrap_or_default(),
        if info.jetstream {
            "enabled"
        } else {
            "DISABLED"
        }
    );
    if !info.jetstream {
        return Err(backend(format!(
            "NATS at {} answers but has JetStream disabled (start nats-server with -js): {described}",
            urls.join(",")
        )));
    }
    let _ = client.drain().await;
    Ok(described)
}

fn backend(err: impl Into<BoxError>) -> BusError {
    BusError::Backend(err.into())
}

/// Connection events, one line each; a server that stays unreachable is one line per
/// `LOG_INTERVAL` (the shared throttle) naming the URLs, however often the client retries.
async fn log_event(name: String, servers: Arc<str>, event: Event) {
    use switchyard_schema::log_throttle::{due, LOG_INTERVAL};
    match event {
        Event::Connected => info!(connection = %name, %servers, "NATS connected"),
        Event::Disconnected => {
            warn!(connection = %name, %servers, "NATS disconnected; reconnecting")
        }
        Event::ClientError(err) => {
            if let Some(more) = due("nats", "unreachable") {
                warn!(
                    connection = %name,
                    more_since_last_line = more,
                    "NATS at {servers} unreachable ({err}); retrying, logged at most every {} s",
                    LOG_INTERVAL.as_secs()
                );
            }
        }
        Event::SlowConsumer(sid) => {
            metrics::counter!("switchyard_bus_slow_consumer_total").increment(1);
            warn!(connection = %name, sid, "NATS slow consumer: messages dropped");
        }
        other => warn!(connection = %name, event = %other, "NATS event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetstream::stream::{ClusterInfo, PeerInfo};

    fn peer(name: &str, active_ms: u64, offline: bool) -> PeerInfo {
        PeerInfo {
            name: name.into(),
            current: true,
            active: Duration::from_millis(active_ms),
            offline,
            lag: None,
        }
    }

    #[test]
    fn a_leader_without_a_majority_of_replicas_is_no_quorum() {
        let cluster = |replicas| ClusterInfo {
            leader: Some("n1".into()),
            replicas,
            ..Default::default()
        };
        assert_eq!(no_quorum(&cluster(vec![])), None, "one replica");
        let healthy = cluster(vec![peer("n2", 300, false), peer("n3", 900, false)]);
        assert_eq!(no_quorum(&healthy), None);
        let one_gone = cluster(vec![peer("n2", 300, false), peer("n3", 9_000, false)]);
        assert_eq!(no_quorum(&one_gone), None, "2 of 3 is a majority");
        let two_gone = cluster(vec![peer("n2", 6_000, false), peer("n3", 0, true)]);
        let why = no_quorum(&two_gone).expect("1 of 3 is no majority");
        assert!(why.contains("reaches 1 of 3"), "{why}");
        let leaderless = ClusterInfo::default();
        assert!(no_quorum(&leaderless).unwrap().contains("no leader"));
    }
}
