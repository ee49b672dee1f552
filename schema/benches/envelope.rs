//! The MessagePack envelope of the bus hot path. Every accepted click is encoded once at the edge
//! (`Inbound`) and decoded by a worker; its fan-out (`FrustFanout`) is encoded once by the worker
//! and decoded by every edge; every chat message does the same with `ChatOut`. Decoding on the
//! edges therefore runs once per packet per edge.
//!
//! `cargo bench -p switchyard-schema --bench envelope`

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use serde::{de::DeserializeOwned, Serialize};
use std::hint::black_box;
use switchyard_schema::chat::{ChatMessage, ServerPacket};
use switchyard_schema::envelope::{self, ChatOut, ChatTarget, FrustFanout, FrustOut, Inbound};
use switchyard_schema::frust::Click;

type Group<'a> = BenchmarkGroup<'a, WallTime>;

const PACKET_ID: &str = "0191f2a4-8d11-7c40-a2b3-c4d5e6f70812";

fn click() -> Click {
    Click {
        user: "schrödinger".into(),
        comment: Some("Die Katze ist gleichzeitig lebendig und tot, bis jemand klickt.".into()),
        style: Some("color: #ff6600; font-weight: bold; text-shadow: 0 0 4px #222".into()),
        timestamp: 1_724_250_600,
    }
}

fn chat_out() -> ChatOut {
    let message = ChatMessage {
        id: PACKET_ID.into(),
        room_id: "0191f2a4-7c3e-7b21-9d4e-5a6b7c8d9e0f".into(),
        sender_id: "user-4711".into(),
        message: "Hat jemand die Folien von gestern? Ich finde sie nicht im Raum.".into(),
        timestamp: "2024-08-21T14:30:00.123Z".into(),
    };
    ChatOut {
        target: ChatTarget::Room {
            room_id: message.room_id.clone(),
            except_user: None,
        },
        json: ServerPacket::MessageReceive(message).to_json(),
        dedup: Some(PACKET_ID.into()),
        position: Some(1_724_250_600_123_000),
    }
}

/// Benchmarks `encode` and `decode` of `body`; the id carries the encoded size.
fn round_trip<T: Serialize + DeserializeOwned>(g: &mut Group<'_>, name: &str, body: &T) {
    let bytes = envelope::encode(body).unwrap();
    let id = |op| BenchmarkId::new(op, format!("{name}/{}B", bytes.len()));
    g.bench_function(id("encode"), |b| {
        b.iter(|| envelope::encode(black_box(body)).unwrap())
    });
    g.bench_function(id("decode"), |b| {
        b.iter(|| envelope::decode::<T>(black_box(&bytes)).unwrap())
    });
}

fn envelopes(c: &mut Criterion) {
    let inbound = Inbound::FrustClick {
        id: PACKET_ID.into(),
        session: "aBcD3fGh1jKlMnOp".into(),
        click: click(),
        session_clicks: 42,
    };
    let fanout = FrustFanout {
        dedup: Some(PACKET_ID.into()),
        outs: vec![FrustOut::Click(click())],
    };
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(1));
    round_trip(&mut g, "inbound_click", &inbound);
    round_trip(&mut g, "frust_fanout_click", &fanout);
    round_trip(&mut g, "chat_out", &chat_out());
    g.finish();
}

criterion_group!(benches, envelopes);
criterion_main!(benches);
