//! Fan-out of one click to N local Socket.IO sockets: the edge's per-socket path
//! (`broadcast::to_all`, which can tell whose queue is full) against socketioxide's room broadcast
//! (`io.emit`, which encodes the packet once but cannot). This runs for every click on every edge,
//! so its cost per delivery times the number of sockets is the edge's fan-out budget.
//!
//! Sockets are socketioxide's transport-less test sockets. The runtime is single-threaded, so
//! nothing drains the queues while a broadcast is timed; they are drained (untimed) every
//! `DRAIN_EVERY` broadcasts, well before they fill, so no iteration takes the full-queue path.
//!
//! `cargo bench -p switchyard-edge --bench fanout`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::future::join_all;
use socketioxide::SocketIo;
use switchyard_edge::broadcast;
use switchyard_schema::frust::Click;
use tokio::runtime::Runtime;

const SOCKETS: [usize; 4] = [10, 100, 1000, 5000];
const QUEUE: usize = 64;
const DRAIN_EVERY: u64 = 16;

/// Receives exactly `packets` packets on every socket.
async fn drain<Tx, P>(socks: &mut [(Tx, tokio::sync::mpsc::Receiver<P>)], packets: u64) {
    for (_, rx) in socks.iter_mut() {
        for _ in 0..packets {
            rx.recv().await.expect("socket closed");
        }
    }
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let click = Click {
        user: "schrödinger".into(),
        comment: Some("Die Katze ist gleichzeitig lebendig und tot, bis jemand klickt.".into()),
        style: Some("color: #ff6600; font-weight: bold; text-shadow: 0 0 4px #222".into()),
        timestamp: 1_724_250_600,
    };

    let mut g = c.benchmark_group("fanout_click");
    for n in SOCKETS {
        let (_svc, io) = SocketIo::builder().max_buffer_size(QUEUE).build_svc();
        io.ns("/", async || ());
        let mut socks = rt.block_on(async {
            let mut socks = join_all((0..n).map(|_| io.new_dummy_sock("/", ()))).await;
            drain(&mut socks, 1).await; // the CONNECT reply
            socks
        });
        assert_eq!(io.sockets().len(), n);

        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("per_socket", n), |b| {
            b.iter_custom(|iters| {
                timed(&rt, &mut socks, iters, async || {
                    let out = broadcast::to_all(&io, "click", black_box(&click));
                    assert_eq!(out.delivered, n as u64);
                })
            })
        });
        g.bench_function(BenchmarkId::new("room_broadcast", n), |b| {
            b.iter_custom(|iters| {
                timed(&rt, &mut socks, iters, async || {
                    io.emit("click", black_box(&click)).await.unwrap();
                })
            })
        });
    }
    g.finish();
}

/// Runs `emit` `iters` times and returns the time spent in it, draining the sockets untimed.
fn timed<Tx, P>(
    rt: &Runtime,
    socks: &mut [(Tx, tokio::sync::mpsc::Receiver<P>)],
    iters: u64,
    mut emit: impl AsyncFnMut(),
) -> Duration {
    rt.block_on(async {
        let mut total = Duration::ZERO;
        let mut pending = 0;
        for _ in 0..iters {
            let start = Instant::now();
            emit().await;
            total += start.elapsed();
            pending += 1;
            if pending == DRAIN_EVERY {
                drain(socks, pending).await;
                pending = 0;
            }
        }
        drain(socks, pending).await;
        total
    })
}

criterion_group!(benches, fanout);
criterion_main!(benches);
