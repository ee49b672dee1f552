//! Every metric the edge exports, described once (HELP text and unit), and the counters an alert
//! or a panel watches registered at zero, so `rate()` sees the first increment and a healthy
//! edge shows 0 rather than "No data".

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use switchyard_schema::chat::ErrorCode;

/// Call once per process that runs an edge, after the recorder is installed.
pub fn describe() {
    describe_gauge!(
        "switchyard_connections",
        "Open client connections, by API (frust: Socket.IO sessions, chat: websockets)"
    );
    describe_counter!(
        "switchyard_connections_total",
        "Client connections accepted, by API and protocol"
    );
    describe_counter!(
        "switchyard_packets_in_total",
        "Packets received from clients, by API and type"
    );
    describe_counter!(
        "switchyard_packets_out_total",
        "Packets delivered to local clients, by API and type"
    );
    describe_counter!(
        "switchyard_rejects_total",
        "Packets, connections and requests refused, by API and reason"
    );
    describe_counter!(
        "switchyard_fanout_errors_total",
        "Deliveries dropped because a client's send queue was full, by API"
    );
    describe_counter!(
        "switchyard_fanout_duplicates_total",
        "Fan-out messages seen twice (redeliveries) and dropped, by API"
    );
    describe_counter!(
        "switchyard_chat_fanout_late_total",
        "Chat room messages that reached this edge after a later one of their room and were not \
         shown live (they are in history)"
    );
    describe_counter!(
        "switchyard_slow_consumer_disconnects_total",
        "Clients disconnected because they did not read fast enough, by API"
    );
    describe_counter!(
        "switchyard_flood_disconnects_total",
        "Clients disconnected for sending past the rate limit, by API"
    );
    describe_counter!(
        "switchyard_abuse_disconnects_total",
        "Clients disconnected for repeated bad packets, by API"
    );
    describe_counter!(
        "switchyard_chat_closes_total",
        "Chat connections closed by the server, by reason"
    );
    describe_gauge!(
        "switchyard_chat_room_cache_bytes",
        Unit::Bytes,
        "Estimated heap bytes of the room membership cache"
    );
    describe_counter!(
        "switchyard_chat_room_cache_evictions_total",
        "Rooms evicted from the membership cache"
    );
    describe_gauge!(
        "switchyard_chat_room_subscriptions",
        "Chat rooms this edge listens to on the bus"
    );
    describe_gauge!("switchyard_held_bytes", Unit::Bytes, "Bytes of inbound packets held until the stream confirms them (SWITCHYARD_HELD_BYTES caps it)");
    describe_counter!(
        "switchyard_store_reads_total",
        "REST reads that went to the store (after coalescing), by endpoint"
    );
    describe_histogram!(
        "switchyard_publish_seconds",
        Unit::Seconds,
        "Inbound packet to durable-stream acknowledgement, by API"
    );
    describe_histogram!(
        "switchyard_fanout_seconds",
        Unit::Seconds,
        "One fan-out pass over local sockets (per shard), by API"
    );

    metrics::counter!("switchyard_chat_fanout_late_total").absolute(0);
    for api in ["frust", "chat"] {
        metrics::gauge!("switchyard_connections", "api" => api).increment(0.0);
        // Registered (empty) so the latency panels and rules have a series from the start.
        let _ = metrics::histogram!("switchyard_publish_seconds", "api" => api);
        let _ = metrics::histogram!("switchyard_fanout_seconds", "api" => api);
        metrics::counter!("switchyard_fanout_duplicates_total", "api" => api).absolute(0);
        for name in [
            "switchyard_fanout_errors_total",
            "switchyard_slow_consumer_disconnects_total",
            "switchyard_flood_disconnects_total",
        ] {
            metrics::counter!(name, "api" => api).absolute(0);
        }
    }
    metrics::counter!("switchyard_abuse_disconnects_total", "api" => "chat").absolute(0);
    metrics::counter!("switchyard_packets_out_total", "api" => "chat").absolute(0);
    metrics::counter!("switchyard_packets_out_total", "api" => "frust", "type" => "click")
        .absolute(0);
    for protocol in ["socket.io-v4", "socket.io-v5"] {
        metrics::counter!("switchyard_connections_total", "api" => "frust", "protocol" => protocol)
            .absolute(0);
    }
    metrics::gauge!("switchyard_chat_room_subscriptions").increment(0.0);
    for kind in ["click", "event"] {
        metrics::counter!("switchyard_packets_in_total", "api" => "frust", "type" => kind)
            .absolute(0);
    }
    metrics::counter!("switchyard_packets_in_total", "api" => "chat", "type" => "message-send")
        .absolute(0);
    let frust = ["validation", "publish", "held_full", "rate", "flood"];
    let chat = [
        ErrorCode::Unavailable.as_str(),
        ErrorCode::RateLimited.as_str(),
        ErrorCode::FrameTooLarge.as_str(),
        "auth",
        "held_full",
    ];
    let reasons = frust
        .iter()
        .map(|r| ("frust", *r))
        .chain(chat.iter().map(|r| ("chat", *r)))
        .chain([
            ("chat_rest", "auth"),
            ("connect", "rate"),
            ("edge", "draining"),
        ]);
    for (api, reason) in reasons {
        metrics::counter!("switchyard_rejects_total", "api" => api, "reason" => reason).absolute(0);
    }
    metrics::gauge!("switchyard_held_bytes").increment(0.0);
}
