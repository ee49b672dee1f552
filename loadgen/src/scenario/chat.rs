//! Chat: `--rooms` rooms of `--room-size` members, created over REST, every member connected
//! to `/chat`; S members send `message-send` with the marker as text. The server delivers each
//! message to every connection of every member of the room, the sender's included.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::SinkExt;
use tokio::time::Duration;
use tokio_tungstenite::tungstenite::Message;

use super::{next_send, SendRole, Shared};
use crate::args::RunArgs;
use crate::chat::{self as api, Incoming, Rest};
use crate::marker::{unix_micros, Marker};
use crate::net::{self, ConnectError, Target, Ws};
use crate::stats::{LatencyRecorder, Tally};

/// REST calls in flight while creating rooms.
const ROOM_CREATORS: usize = 16;

pub struct Plan {
    room_ids: Vec<String>,
    room_size: usize,
    tokens: Vec<String>,
    senders: usize,
    rate: f64,
}

impl Plan {
    /// Mints a token per member and creates the rooms.
    pub async fn prepare(
        args: &RunArgs,
        secret: &str,
        run_id: &str,
        targets: &[Target],
    ) -> anyhow::Result<Self> {
        let (rooms, room_size) = (args.rooms as usize, args.room_size as usize);
        if rooms == 0 || room_size == 0 {
            anyhow::bail!("--rooms and --room-size must be at least 1");
        }
        let clients = rooms * room_size;
        if let Some(n) = args.clients {
            if n as usize != clients {
                anyhow::bail!("chat connects --rooms × --room-size = {clients} clients; drop --clients or make it {clients}");
            }
        }
        let senders = args.senders.map_or(rooms, |s| s as usize);
        if senders > clients {
            anyhow::bail!("--senders ({senders}) cannot exceed the {clients} members");
        }
        if !args.idle && senders == 0 {
            anyhow::bail!("--senders must be at least 1 (or use --idle)");
        }
        // Valid well past the run; a bench never outlives a day.
        let ttl = args.duration.as_secs() + args.settle.as_secs() + 86_400;
        let users: Vec<String> = (0..clients)
            .map(|i| format!("bench-{run_id}-{i}"))
            .collect();
        let tokens = users
            .iter()
            .map(|u| switchyard_schema::token::mint_hs256(secret, u, ttl))
            .collect::<Result<Vec<_>, _>>()?;

        eprintln!("bench: creating {rooms} rooms of {room_size}");
        let users = Arc::new(users);
        let tokens = Arc::new(tokens);
        let next = Arc::new(AtomicUsize::new(0));
        let mut creators = Vec::new();
        for w in 0..ROOM_CREATORS.min(rooms) {
            let mut rest = Rest::new(targets[w % targets.len()].clone());
            let (users, tokens, next) = (users.clone(), tokens.clone(), next.clone());
            let run_id = run_id.to_owned();
            creators.push(tokio::spawn(async move {
                let mut made = Vec::new();
                loop {
                    let room = next.fetch_add(1, Ordering::Relaxed);
                    if room >= rooms {
                        return anyhow::Ok(made);
                    }
                    let first = room * room_size;
                    let members = &users[first + 1..first + room_size];
                    let name = format!("bench-{run_id}-{room}");
                    let id = rest.create_room(&tokens[first], &name, members).await?;
                    made.push((room, id));
                }
            }));
        }
        let mut room_ids = vec![String::new(); rooms];
        for creator in creators {
            for (room, id) in creator.await?? {
                room_ids[room] = id;
            }
        }
        Ok(Self {
            room_ids,
            room_size,
            tokens: Arc::try_unwrap(tokens).unwrap_or_else(|t| (*t).clone()),
            senders,
            rate: args.rate,
        })
    }

    fn room_of(&self, client: usize) -> usize {
        client / self.room_size
    }
}

impl super::Plan for Plan {
    fn clients(&self) -> usize {
        self.tokens.len()
    }

    fn senders(&self) -> usize {
        self.senders
    }

    /// Sender j is member j / rooms of room j % rooms: one per room first, then a second
    /// member of each room, and so on.
    fn role(&self, client: usize) -> Option<SendRole> {
        let rooms = self.room_ids.len();
        let (room, member) = (self.room_of(client), client % self.room_size);
        let sender = member * rooms + room;
        (sender < self.senders)
            .then(|| SendRole::new(sender as u32, self.senders as u32, self.rate))
    }

    fn connection(
        self: Arc<Self>,
        shared: Arc<Shared>,
        index: usize,
        role: Option<SendRole>,
    ) -> BoxFuture<'static, Tally> {
        Box::pin(connection(self, shared, index, role))
    }

    /// Each accepted message reaches every connected member of its room.
    fn expected(&self, tallies: &[Tally]) -> u64 {
        let mut members = vec![0u64; self.room_ids.len()];
        for t in tallies.iter().filter(|t| t.connected) {
            if let Some(room) = t.room {
                members[room] += 1;
            }
        }
        tallies
            .iter()
            .filter_map(|t| Some(t.accepted * members[t.room?]))
            .sum()
    }
}

/// Connects and waits for the answer to a history request: from then on the server delivers
/// the room's messages to this connection.
async fn open(
    target: &Target,
    source: Option<std::net::IpAddr>,
    token: &str,
    room_id: &str,
) -> Result<Ws, ConnectError> {
    let mut ws = net::open(target, source, &api::ws_path(token)).await?;
    ws.send(Message::text(api::readiness_probe(room_id)))
        .await
        .map_err(|e| ConnectError::from_ws(&e))?;
    loop {
        match api::classify(&net::next_handshake_text(&mut ws).await?) {
            Incoming::History => return Ok(ws),
            Incoming::Error(code) => return Err(ConnectError::Protocol(code)),
            _ => {}
        }
    }
}

async fn connection(
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    index: usize,
    role: Option<SendRole>,
) -> Tally {
    let room = plan.room_of(index);
    let room_id = plan.room_ids[room].as_str();
    let mut tally = Tally {
        room: Some(room),
        ..Tally::default()
    };
    let attempt = open(
        shared.target(index),
        shared.source(index),
        &plan.tokens[index],
        room_id,
    );
    let Some(mut ws) = shared.connect(&mut tally, attempt).await else {
        return tally;
    };

    let mut latency = LatencyRecorder::new(shared.latency.clone());
    let mut go = shared.go.clone();
    let mut awaiting_go = role.is_some();
    let mut schedule = None;
    let mut packet = String::new();
    let mut seq = 0u32;

    loop {
        tokio::select! {
            biased;
            text = net::next_text(&mut ws, &mut tally, &shared.stop) => {
                let Some(text) = text else { break };
                match api::classify(&text) {
                    Incoming::Receive(Some(m)) => {
                        tally.receipt(&m, &shared.run_id, unix_micros(), &mut latency);
                    }
                    // Only senders send, so an error is the answer to one of their messages.
                    Incoming::Error(code) if role.is_some() => tally.reject(code),
                    Incoming::Error(_) => tally.protocol_errors += 1,
                    Incoming::Receive(None) | Incoming::History | Incoming::Other => {}
                }
            }
            changed = go.changed(), if awaiting_go => {
                awaiting_go = false;
                if let (Ok(()), Some(window), Some(role)) = (changed, *go.borrow(), role.as_ref()) {
                    schedule = Some(super::Schedule::new(window, role));
                }
            }
            due = next_send(&mut schedule) => {
                if !due {
                    continue;
                }
                seq += 1;
                let m = Marker { run: &shared.run_id, sender: role.map_or(0, |r| r.index), seq, sent_us: unix_micros() };
                api::encode_send(&mut packet, room_id, &m);
                if ws.send(Message::text(packet.as_str())).await.is_err() {
                    tally.disconnected = true;
                    break;
                }
                tally.sent += 1;
            }
        }
    }
    let rejected: u64 = tally.rejected.values().sum();
    tally.accepted = tally.sent.saturating_sub(rejected);
    drop(latency);
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    tally
}
