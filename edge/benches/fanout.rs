//! Fan-out of one click to N local Socket.IO sockets: the edge's sharded per-socket path
//! (`shards`: K tasks, each emitting to its own sockets, so it can tell whose queue is full)
//! against socketioxide's room broadcast (`io.emit`, one task, which encodes the packet once
//! but cannot tell). This runs for every click on every edge, so its time per message is the
//! edge's fan-out budget. `shards_1` is the sequential path (one task for every socket);
//! `shards_K` has one shard per core, as the edge runs. `one_task_listing` is the fan-out before
//! the shards, for reference: list the namespace's sockets (`io.sockets()`), then emit to each
//! on the calling task.
//!
//! Sockets are socketioxide's transport-less test sockets. They live on a runtime of their own
//! that only runs while their queues are drained (untimed, every `DRAIN_EVERY` broadcasts, well
//! before they fill), so what is timed is the emitting, and no iteration takes the full-queue
//! path. Every variant emits from a multi-thread runtime's worker threads (one per core), as the
//! edge does, and is timed from handing the message over until the work is done: a one-task
//! variant is spawned and joined; a sharded broadcast lasts until every shard has recorded its
//! pass (`switchyard_fanout_seconds`, seen by the metrics recorder installed here). So each
//! includes waking a worker and being woken back (µs: it dominates at 10 sockets).
//!
//! `cargo bench -p switchyard-edge --bench fanout`

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::future::join_all;
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use socketioxide::SocketIo;
use switchyard_edge::broadcast::{self, Prepared};
use switchyard_edge::shards::Shards;
use switchyard_schema::frust::Click;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

const SOCKETS: [usize; 4] = [10, 100, 1000, 5000];
const QUEUE: usize = 64;
const DRAIN_EVERY: u64 = 16;

/// What the shards report through `metrics`: passes done, packets delivered, queues found full.
#[derive(Clone, Default)]
struct Probe {
    passes: Arc<Passes>,
    delivered: Arc<AtomicU64>,
    full: Arc<AtomicU64>,
}

impl Probe {
    /// Waits (untimed) for the shards' last counter updates: a pass is timed before counted.
    fn delivered_reaches(&self, expected: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(50));
        }
        assert_eq!(self.delivered.load(Ordering::Relaxed), expected);
    }
}

struct Passes(Semaphore);

impl Default for Passes {
    fn default() -> Self {
        Self(Semaphore::new(0))
    }
}

impl Passes {
    async fn wait(&self, shards: usize) {
        self.0.acquire_many(shards as u32).await.unwrap().forget();
    }
}

impl HistogramFn for Passes {
    fn record(&self, _: f64) {
        self.0.add_permits(1);
    }
}

impl metrics::Recorder for Probe {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match key.name() {
            "switchyard_packets_out_total" => Counter::from_arc(self.delivered.clone()),
            "switchyard_fanout_errors_total" => Counter::from_arc(self.full.clone()),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match key.name() {
            "switchyard_fanout_seconds" => Histogram::from_arc(self.passes.clone()),
            _ => Histogram::noop(),
        }
    }
}

/// Receives exactly `packets` packets on every socket.
async fn drain<Tx, P>(socks: &mut [(Tx, tokio::sync::mpsc::Receiver<P>)], packets: u64) {
    for (_, rx) in socks.iter_mut() {
        for _ in 0..packets {
            rx.recv().await.expect("socket closed");
        }
    }
}

fn fanout(c: &mut Criterion) {
    let probe = Probe::default();
    metrics::set_global_recorder(probe.clone()).expect("the only recorder");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    // No I/O driver: waking a socket's task from a shard is then just a queue push.
    let socks_rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let click = Arc::new(Click {
        user: "schrödinger".into(),
        comment: Some("Die Katze ist gleichzeitig lebendig und tot, bis jemand klickt.".into()),
        style: Some("color: #ff6600; font-weight: bold; text-shadow: 0 0 4px #222".into()),
        timestamp: 1_724_250_600,
    });

    let mut g = c.benchmark_group("fanout_click");
    for n in SOCKETS {
        let (_svc, io) = SocketIo::builder().max_buffer_size(QUEUE).build_svc();
        io.ns("/", async || ());
        let mut socks = socks_rt.block_on(async {
            let mut socks = join_all((0..n).map(|_| io.new_dummy_sock("/", ()))).await;
            drain(&mut socks, 1).await; // the CONNECT reply
            socks
        });
        assert_eq!(io.sockets().len(), n);
        g.throughput(Throughput::Elements(n as u64));

        g.bench_function(BenchmarkId::new("one_task_listing", n), |b| {
            b.iter_custom(|iters| {
                timed(&rt, &socks_rt, &mut socks, iters, async || {
                    let (io, click) = (io.clone(), click.clone());
                    let out = on_a_worker(async move {
                        let msg = Prepared::new("click", black_box(&*click)).unwrap();
                        broadcast::to_each(&io.sockets(), &msg)
                    })
                    .await;
                    assert_eq!(out.delivered, n as u64);
                })
            })
        });
        for k in [1, cores] {
            let (shards, _tasks) = rt.block_on(async { Shards::spawn(k) });
            let _members: Vec<_> = io.sockets().into_iter().map(|s| shards.join(s)).collect();
            let id = BenchmarkId::new(format!("shards_{k}"), n);
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let delivered = probe.delivered.load(Ordering::Relaxed);
                    let took = timed(&rt, &socks_rt, &mut socks, iters, async || {
                        let msg = Prepared::new("click", black_box(&*click)).unwrap();
                        shards.deliver(Arc::new(msg)).await;
                        probe.passes.wait(k).await;
                    });
                    probe.delivered_reaches(delivered + iters * n as u64);
                    took
                })
            });
            shards.close();
        }
        g.bench_function(BenchmarkId::new("room_broadcast", n), |b| {
            b.iter_custom(|iters| {
                timed(&rt, &socks_rt, &mut socks, iters, async || {
                    let (io, click) = (io.clone(), click.clone());
                    on_a_worker(async move { io.emit("click", black_box(&*click)).await })
                        .await
                        .unwrap();
                })
            })
        });
    }
    g.finish();
    assert_eq!(probe.full.load(Ordering::Relaxed), 0, "no queue ever full");
}

/// Runs a one-task fan-out as the edge would: a task on a worker thread (not on the thread
/// whose drains just warmed the sockets' queues into its core's cache).
async fn on_a_worker<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    tokio::spawn(work).await.unwrap()
}

/// Runs `emit` `iters` times on `rt` and returns the time spent in it; every `DRAIN_EVERY`
/// broadcasts the sockets' runtime drains their queues, untimed.
fn timed<Tx, P>(
    rt: &Runtime,
    socks_rt: &Runtime,
    socks: &mut [(Tx, tokio::sync::mpsc::Receiver<P>)],
    iters: u64,
    mut emit: impl AsyncFnMut(),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(DRAIN_EVERY);
        total += rt.block_on(async {
            let mut took = Duration::ZERO;
            for _ in 0..batch {
                let start = Instant::now();
                emit().await;
                took += start.elapsed();
            }
            took
        });
        socks_rt.block_on(drain(socks, batch));
        left -= batch;
    }
    total
}

criterion_group!(benches, fanout);
criterion_main!(benches);
