//! This edge's Socket.IO sockets, split over K fan-out shards with one task each, so fan-out
//! uses K cores instead of one (emitting is per socket: socketioxide encodes the packet anew for
//! each). A socket stays in one shard, whose task emits every message to its sockets in order:
//! each socket sees the fan-out in bus order while the shards run in parallel.
//!
//! Each shard task owns its sockets; joins and leaves reach it over a channel, so neither a
//! connect nor a fan-out pass ever waits on a lock held by the other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::broadcast::{self, Prepared};

/// Messages a shard may have waiting. A little slack absorbs scheduling jitter between shards;
/// a real backlog belongs in the bus subscription (see `deliver`).
const SHARD_QUEUE: usize = 256;

pub struct Shards {
    shards: Vec<Shard>,
    /// Round robin over joins: even shards (leaves may skew them a little; new joins still spread).
    next: AtomicUsize,
    /// Cancelled by a drain: shards stop emitting and let go of their sockets.
    stop: CancellationToken,
}

struct Shard {
    messages: mpsc::Sender<Arc<Prepared>>,
    /// Unbounded: at most one join and one leave per connection.
    changes: mpsc::UnboundedSender<Change>,
}

enum Change {
    Join(SocketRef),
    Leave(Sid),
}

/// A socket's place in its shard; dropping it takes the socket out.
pub struct Member {
    changes: mpsc::UnboundedSender<Change>,
    sid: Sid,
}

impl Drop for Member {
    fn drop(&mut self) {
        // Fails only once the shard has stopped, and then it holds no sockets.
        let _ = self.changes.send(Change::Leave(self.sid));
    }
}

impl Shards {
    /// Starts `count` (at least one) shard tasks on the current runtime.
    pub fn spawn(count: usize) -> (Self, Vec<JoinHandle<()>>) {
        let stop = CancellationToken::new();
        let (shards, tasks) = (0..count.max(1))
            .map(|_| {
                let (messages, messages_rx) = mpsc::channel(SHARD_QUEUE);
                let (changes, changes_rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(run(messages_rx, changes_rx, stop.clone()));
                (Shard { messages, changes }, task)
            })
            .unzip();
        let shards = Self {
            shards,
            next: AtomicUsize::new(0),
            stop,
        };
        (shards, tasks)
    }

    /// Adds a socket to the fan-out until the returned `Member` is dropped.
    pub fn join(&self, socket: SocketRef) -> Member {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let changes = self.shards[i].changes.clone();
        let sid = socket.id;
        // A stopped shard drops the socket at once (the edge is draining).
        let _ = changes.send(Change::Join(socket));
        Member { changes, sid }
    }

    /// Hands one message to every shard. A full shard is awaited rather than skipped: skipping
    /// would silently lose the message for all of that shard's sockets, while waiting just
    /// stops reading the bus, as the single fan-out task used to when busy. The backlog then
    /// builds in the bus subscription, whose overflow the bus counts
    /// (`switchyard_bus_dropped_total` / `switchyard_bus_slow_consumer_total`), and shards stay
    /// within `SHARD_QUEUE` messages of each other.
    pub async fn deliver(&self, msg: Arc<Prepared>) {
        for shard in &self.shards {
            // Fails only once the shard has stopped (drain): nobody is left to tell.
            let _ = shard.messages.send(msg.clone()).await;
        }
    }

    /// Stops every shard: nothing more is emitted and every socket is let go.
    pub fn close(&self) {
        self.stop.cancel();
    }
}

/// One shard: applies joins and leaves as they come, then emits each message to its sockets.
async fn run(
    mut messages: mpsc::Receiver<Arc<Prepared>>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    stop: CancellationToken,
) {
    let mut members = Members::default();
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            // Before any message waiting alongside: a socket gets what is sent after it joined.
            Some(change) = changes.recv() => members.apply(change),
            msg = messages.recv() => {
                let Some(msg) = msg else { break };
                let started = Instant::now();
                let outcome = broadcast::to_each(&members.sockets, &msg);
                outcome.record(msg.event(), started.elapsed());
            }
        }
    }
}

/// A shard's sockets: a vector to emit over, indexed by id for leaves.
#[derive(Default)]
struct Members {
    sockets: Vec<SocketRef>,
    index: HashMap<Sid, usize>,
}

impl Members {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Join(socket) => {
                self.index.insert(socket.id, self.sockets.len());
                self.sockets.push(socket);
            }
            Change::Leave(sid) => {
                let Some(i) = self.index.remove(&sid) else {
                    return;
                };
                self.sockets.swap_remove(i);
                if let Some(moved) = self.sockets.get(i) {
                    self.index.insert(moved.id, i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketioxide::SocketIo;
    use std::time::Duration;

    /// Transport-less sockets (socketioxide's test harness), each with what it was sent.
    async fn sockets<P: std::fmt::Debug>(
        io: &SocketIo,
        n: usize,
        connect: impl AsyncFn() -> (mpsc::Sender<P>, mpsc::Receiver<P>),
    ) -> Vec<(SocketRef, mpsc::Receiver<P>)> {
        let mut socks = Vec::new();
        for _ in 0..n {
            let (_tx, mut rx) = connect().await;
            // The CONNECT reply names the socket: `0{"sid":"…"}`.
            let reply = format!("{:?}", rx.recv().await.expect("the CONNECT reply"));
            let at = reply.find(r#"sid\":\""#).expect(&reply) + 8;
            let sid: Sid = reply[at..at + 16].parse().expect(&reply);
            socks.push((io.get_socket(sid).expect("connected"), rx));
        }
        socks
    }

    fn click(n: u32) -> Arc<Prepared> {
        Arc::new(Prepared::new("click", &serde_json::json!({ "n": n })).unwrap())
    }

    async fn received<P: std::fmt::Debug>(rx: &mut mpsc::Receiver<P>) -> Option<String> {
        tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .ok()
            .flatten()
            .map(|p| format!("{p:?}"))
    }

    #[tokio::test]
    async fn every_member_gets_every_message_in_order_until_it_leaves() {
        let (_svc, io) = SocketIo::new_svc();
        io.ns("/", async || ());
        let mut socks = sockets(&io, 5, async || io.new_dummy_sock("/", ()).await).await;
        let (shards, tasks) = Shards::spawn(2);
        let mut members: Vec<_> = socks.iter().map(|(s, _)| shards.join(s.clone())).collect();
        for n in 0..3 {
            shards.deliver(click(n)).await;
        }
        for (_, rx) in &mut socks {
            for n in 0..3 {
                let packet = received(rx).await.expect("a click");
                assert!(packet.contains(&format!(r#"{{\"n\":{n}}}"#)), "{packet}");
            }
        }

        // The first socket leaves; the others (one moved within its shard) still get it all.
        drop(members.remove(0));
        shards.deliver(click(3)).await;
        assert_eq!(received(&mut socks[0].1).await, None);
        for (_, rx) in &mut socks[1..] {
            assert!(received(rx).await.expect("a click").contains(r#"\"n\":3"#));
        }

        // A drain stops the shards: they end, letting go of their sockets, and send nothing.
        shards.close();
        for task in tasks {
            task.await.unwrap();
        }
        shards.deliver(click(4)).await;
        drop(members);
        for (_, rx) in &mut socks {
            assert_eq!(received(rx).await, None);
        }
    }

    #[tokio::test]
    async fn sockets_are_spread_evenly() {
        let (_svc, io) = SocketIo::new_svc();
        io.ns("/", async || ());
        let socks = sockets(&io, 7, async || io.new_dummy_sock("/", ()).await).await;
        let (shards, _tasks) = Shards::spawn(3);
        let shard_of = |m: &Member| {
            (0..3)
                .find(|&i| shards.shards[i].changes.same_channel(&m.changes))
                .unwrap()
        };
        let members: Vec<_> = socks.iter().map(|(s, _)| shards.join(s.clone())).collect();
        let mut per_shard = [0; 3];
        for m in &members {
            per_shard[shard_of(m)] += 1;
        }
        assert_eq!(per_shard, [3, 2, 2]);
    }
}
