//! The Frust click-counter API: Socket.IO at `/api/socket.io` and REST under `/api`.

pub mod broadcast;
mod fanout;
mod inbox;
mod rest;
pub mod shards;
mod socket;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use axum::Router;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{ParserConfig, SocketIo};
use switchyard_bus::{Bus, BusError, TypedBus};
use switchyard_schema::envelope::{FrustFanout, FrustOut, Presence};
use switchyard_schema::frust::Stats;
use switchyard_schema::topics;
use switchyard_schema::{clock, Clock};
use switchyard_store::{Store, StoreResult};
use tokio::task::JoinHandle;

use crate::EdgeConfig;

pub const SOCKET_IO_PATH: &str = "/api/socket.io";

/// Per-connection websocket read buffer: every idle connection holds one (engineioxide's
/// default is 4 KiB). Frust's packets are under 256 B (a click is ~60); a bigger frame grows
/// it, up to the payload cap.
const WS_READ_BUFFER: usize = 256;

/// Everything the Frust handlers share.
pub struct FrustEdge {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    pub edge_id: String,
    pub version: String,
    pub ephemeral_events: Vec<String>,
    pub io: SocketIo,
    /// Sockets connected to this edge (for metrics and per-recipient counts).
    pub local_sockets: AtomicI64,
    pub limits: Arc<crate::limits::Limits>,
    /// Coalesces identical REST reads.
    pub rest_cache: crate::coalesce::Coalescer,
    /// Fan-out already shown here (at-least-once delivery from workers).
    pub recent: crate::dedup::RecentIds,
    /// This edge's sessions by id, for presence heartbeats and the server API.
    pub sessions: parking_lot::Mutex<std::collections::HashMap<String, LocalSession>>,
    /// This edge's sockets, sharded for fan-out (so it never has to list the namespace).
    pub sockets: shards::Shards,
    /// Sessions open here, capped in total and per client.
    pub session_slots: Arc<crate::occupancy::Occupancy>,
    /// Packets waiting for the durable stream's confirmation, bounded for the whole edge.
    pub held: crate::held::Held,
}

pub async fn start(
    config: &EdgeConfig,
    limits: Arc<crate::limits::Limits>,
    held: crate::held::Held,
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
) -> anyhow::Result<(Arc<FrustEdge>, Router, SocketIoLayer, Vec<JoinHandle<()>>)> {
    let sio = &config.socket_io;
    // Every inbound size is capped by one number, checked before anything is buffered whole:
    // engineioxide counts polling bodies as they stream in, tungstenite refuses a websocket
    // frame or message by its header. Frust packets are a few hundred bytes. The same number
    // caps a polling response, and engineioxide never sends a packet bigger than it: what the
    // server emits must stay well below it (Frust's packets are under 1 KiB).
    let parser = ParserConfig::common()
        .max_incoming_binaries(sio.max_attachments)
        .max_incoming_binary_buf_size(sio.max_payload)
        // Checked by socketioxide when the next attachment arrives (not by a timer): a stalled
        // packet holds at most `max_payload` until its socket closes.
        .packet_completion_timeout(sio.handshake_timeout);
    let (layer, io) = SocketIo::builder()
        .req_path(SOCKET_IO_PATH)
        .max_buffer_size(sio.send_queue)
        .ping_interval(sio.ping_interval)
        // Inbound packets are small; a bigger frame grows the buffer, and tungstenite keeps it
        // at its largest (measured: +8.4 KiB per socket after one 8 KB message), which the
        // payload cap bounds.
        .ws_read_buffer_size(WS_READ_BUFFER)
        .max_payload(sio.max_payload as u64)
        .ws_max_message_size(sio.max_payload)
        .ws_max_frame_size(sio.max_payload)
        // A session that never joins the namespace (v5) or never finishes its upgrade is
        // closed after this, not socketioxide's 45 s.
        .connect_timeout(sio.handshake_timeout)
        .upgrade_timeout(sio.handshake_timeout)
        .with_parser(parser)
        .build_layer();
    // One fan-out shard per worker thread: emitting is CPU-bound and never awaits.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let (sockets, mut tasks) = shards::Shards::spawn(workers);
    let edge = Arc::new(FrustEdge {
        bus,
        store,
        clock: config.clock,
        edge_id: config.edge_id.clone(),
        version: config.version.clone(),
        ephemeral_events: config.ephemeral_events.clone(),
        io: io.clone(),
        local_sockets: AtomicI64::new(0),
        sessions: Default::default(),
        sockets,
        recent: crate::dedup::RecentIds::new(crate::DEDUP_WINDOW),
        limits,
        rest_cache: Default::default(),
        session_slots: crate::occupancy::Occupancy::new(sio.max_sessions, sio.max_sessions_per_ip),
        held,
    });
    socket::register(&edge);
    tasks.push(fanout::spawn(edge.clone()).await?);
    let router = rest::routes(edge.clone());
    Ok((edge, router, layer, tasks))
}

impl FrustEdge {
    pub async fn close(&self) {
        // Fan-out stops first: the queues of closing sockets are never read again (they would
        // fill up and count as slow consumers), and the shards let go of every socket.
        self.sockets.close();
        // Closing the transports makes clients reconnect (elsewhere: admission is closed).
        self.io.close().await;
        // Closing the server does not run socketioxide's disconnect handlers.
        let sessions: Vec<_> = self
            .sessions
            .lock()
            .values()
            .map(|s| s.live.clone())
            .collect();
        for live in sessions {
            live.end();
        }
    }

    /// Stats as of now, from the aggregator's stored counters plus the imported ones.
    pub async fn current_stats(&self) -> StoreResult<Stats> {
        let now = self.clock.now();
        let (totals, hours) =
            switchyard_store::served_counts(&*self.store, clock::day_start(now)).await?;
        let hours: Vec<(i64, i64, i64)> = hours
            .into_iter()
            .map(|h| (h.hour, h.clicks, h.events))
            .collect();
        Ok(switchyard_schema::frust::stats_at(
            now,
            totals.clicks,
            totals.events,
            &hours,
        ))
    }

    /// Sends something to every Frust client on every edge.
    pub async fn broadcast(&self, out: &FrustOut) -> Result<(), BusError> {
        self.bus
            .publish_to(&topics::OUT_FRUST, &FrustFanout::once(out.clone()))
            .await
    }

    pub async fn presence(&self, p: &Presence) {
        if let Err(e) = self.bus.publish_to(&topics::PRESENCE_FRUST, p).await {
            tracing::warn!(error = %e, "presence publish failed");
        }
    }

    /// The heartbeat that keeps this edge's sessions online cluster-wide.
    pub fn heartbeat(&self) -> Presence {
        Presence::Heartbeat {
            edge: self.edge_id.clone(),
            sessions: self.session_list(),
        }
    }

    /// This edge's sessions: (id, name).
    pub fn session_list(&self) -> Vec<(String, Option<String>)> {
        let sessions = self.sessions.lock();
        sessions
            .iter()
            .map(|(id, local)| (id.clone(), local.name.clone()))
            .collect()
    }

    /// Disconnects the session `id` if it is on this edge (its client is told the server
    /// closed it, and socket.io clients do not reconnect on their own after that).
    pub fn disconnect_session(&self, id: &str) -> bool {
        let sid = self.sessions.lock().get(id).map(|local| local.sid);
        let socket = sid.and_then(|sid| self.io.get_socket(sid));
        socket.is_some_and(|s| s.disconnect().is_ok())
    }
}

/// A session on this edge: the name it authenticated with, its socket and the session.
pub struct LocalSession {
    pub name: Option<String>,
    pub sid: socketioxide::socket::Sid,
    live: Arc<socket::LiveSession>,
}
