//! Frust: N Socket.IO clients; S of them emit `click` with an ack, carrying the marker in
//! `comment`. The server broadcasts each accepted click to every client, the sender included.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::SinkExt;
use tokio::time::{Duration, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use super::{next_send, tick, Schedule, SendRole, Shared};
use crate::args::{Protocol, RunArgs};
use crate::marker::{self, unix_micros, Marker};
use crate::net;
use crate::sio::{self, Frame};
use crate::stats::{LatencyRecorder, Tally};

const COMMENT_KEY: &str = r#""comment":""#;

pub struct Plan {
    protocol: Protocol,
    clients: usize,
    senders: usize,
    rate: f64,
}

impl Plan {
    pub fn new(args: &RunArgs) -> anyhow::Result<Self> {
        let clients = args.clients.unwrap_or(10) as usize;
        let senders = args.senders.unwrap_or(1) as usize;
        if clients == 0 {
            anyhow::bail!("--clients must be at least 1");
        }
        if senders > clients {
            anyhow::bail!("--senders ({senders}) cannot exceed --clients ({clients})");
        }
        if !args.idle && senders == 0 {
            anyhow::bail!("--senders must be at least 1 (or use --idle)");
        }
        Ok(Self {
            protocol: args.protocol,
            clients,
            senders,
            rate: args.rate,
        })
    }
}

impl super::Plan for Plan {
    fn clients(&self) -> usize {
        self.clients
    }

    fn senders(&self) -> usize {
        self.senders
    }

    /// The first S clients send (round-robin targets spread them over the edges too).
    fn role(&self, client: usize) -> Option<SendRole> {
        (client < self.senders)
            .then(|| SendRole::new(client as u32, self.senders as u32, self.rate))
    }

    fn connection(
        self: Arc<Self>,
        shared: Arc<Shared>,
        index: usize,
        role: Option<SendRole>,
    ) -> BoxFuture<'static, Tally> {
        Box::pin(connection(self, shared, index, role))
    }

    /// Every accepted click reaches every connected client of this process.
    fn expected(&self, tallies: &[Tally]) -> u64 {
        let accepted: u64 = tallies.iter().map(|t| t.accepted).sum();
        let receivers = tallies.iter().filter(|t| t.connected).count() as u64;
        accepted * receivers
    }
}

async fn connection(
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    index: usize,
    role: Option<SendRole>,
) -> Tally {
    let mut tally = Tally::default();
    let (target, source, protocol) = (shared.target(index), shared.source(index), plan.protocol);
    let attempt = async {
        let ws = net::open(target, source, sio::path(protocol)).await?;
        sio::handshake(ws, protocol).await
    };
    let Some(sio::Session { mut ws, ping_every }) = shared.connect(&mut tally, attempt).await
    else {
        return tally;
    };

    let mut latency = LatencyRecorder::new(shared.latency.clone());
    let mut go = shared.go.clone();
    let mut awaiting_go = role.is_some();
    let mut schedule: Option<Schedule> = None;
    // v3: the client keeps the connection alive.
    let mut ping = ping_every.map(|every| {
        let mut t = tokio::time::interval_at(Instant::now() + every, every);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    let user = role
        .map(|r| format!("bench-{}", r.index))
        .unwrap_or_default();
    let (mut packet, mut payload) = (String::new(), String::new());
    let mut seq = 0u32;
    let mut pending_acks = 0u64;

    loop {
        tokio::select! {
            biased;
            text = net::next_text(&mut ws, &mut tally, &shared.stop) => {
                let Some(text) = text else { break };
                match sio::decode(&text) {
                    Frame::Event { body, .. } => {
                        if sio::is_event(body, "click") {
                            if let Some(m) = marker::find(body, COMMENT_KEY) {
                                tally.receipt(&m, &shared.run_id, unix_micros(), &mut latency);
                            }
                        }
                    }
                    Frame::Ack { body, .. } => {
                        pending_acks = pending_acks.saturating_sub(1);
                        match sio::ack_outcome(body) {
                            Ok(()) => tally.accepted += 1,
                            Err(why) => tally.reject(why),
                        }
                    }
                    Frame::Ping => {
                        if ws.send(Message::text("3")).await.is_err() {
                            tally.disconnected = true;
                            break;
                        }
                    }
                    Frame::Close | Frame::Disconnect => {
                        tally.disconnected = true;
                        break;
                    }
                    Frame::Open(_) | Frame::ConnectError(_) => tally.protocol_errors += 1,
                    Frame::Pong | Frame::Connect | Frame::Other => {}
                }
            }
            changed = go.changed(), if awaiting_go => {
                awaiting_go = false;
                if let (Ok(()), Some(window), Some(role)) = (changed, *go.borrow(), role.as_ref()) {
                    schedule = Some(Schedule::new(window, role));
                }
            }
            due = next_send(&mut schedule) => {
                if !due {
                    continue;
                }
                seq += 1;
                payload.clear();
                payload.push_str(r#"{"user":""#);
                payload.push_str(&user);
                payload.push_str(r#"","comment":""#);
                Marker { run: &shared.run_id, sender: role.map_or(0, |r| r.index), seq, sent_us: unix_micros() }
                    .write(&mut payload);
                payload.push_str(r#""}"#);
                sio::encode_event(&mut packet, Some(u64::from(seq)), "click", &payload);
                if ws.send(Message::text(packet.as_str())).await.is_err() {
                    tally.disconnected = true;
                    break;
                }
                tally.sent += 1;
                pending_acks += 1;
            }
            _ = tick(&mut ping) => {
                if ws.send(Message::text("2")).await.is_err() {
                    tally.disconnected = true;
                    break;
                }
            }
        }
    }
    tally.unacked = pending_acks;
    drop(latency);
    // A polite close; a server that does not answer in time is simply dropped.
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    tally
}
