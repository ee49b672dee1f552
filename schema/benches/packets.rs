//! Client packets at the edge: every Frust `click`/`event` and every chat frame is validated here
//! before it is published, and every delivered click or chat message is encoded to JSON once. These
//! run once per inbound packet (validation) or once per fan-out (encoding), so they bound how many
//! packets per second one edge core can accept.
//!
//! `cargo bench -p switchyard-schema --bench packets`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use std::hint::black_box;
use switchyard_schema::chat::{ChatMessage, ClientPacket, ServerPacket};
use switchyard_schema::frust::{Click, ClickIn, EventIn};

/// A click as the frontend sends it: a padded name (stripped), a 63-char comment, a CSS style.
fn click_json() -> Value {
    json!({
        "user": "  schrödinger ",
        "comment": "Die Katze ist gleichzeitig lebendig und tot, bis jemand klickt.",
        "style": "color: #ff6600; font-weight: bold; text-shadow: 0 0 4px #222",
    })
}

fn frust(c: &mut Criterion) {
    let click = click_json();
    let click_text = click.to_string();
    let event = json!({"user": "heisenberg", "name": "uncertainty"});
    let event_text = event.to_string();
    let oversize = json!({"user": "bob", "comment": "x".repeat(500)});
    let wrong_type = json!({"user": 42, "comment": "hi"});
    let outbound = Click {
        user: "schrödinger".into(),
        comment: Some("Die Katze ist gleichzeitig lebendig und tot, bis jemand klickt.".into()),
        style: Some("color: #ff6600; font-weight: bold; text-shadow: 0 0 4px #222".into()),
        timestamp: 1_724_250_600,
    };

    let mut g = c.benchmark_group("frust");
    g.throughput(Throughput::Elements(1));
    g.bench_function("click_parse_value", |b| {
        b.iter(|| ClickIn::parse(black_box(&click)).unwrap())
    });
    g.bench_function("click_parse_text", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_str(black_box(&click_text)).unwrap();
            ClickIn::parse(&v).unwrap()
        })
    });
    g.bench_function("event_parse_value", |b| {
        b.iter(|| EventIn::parse(black_box(&event)).unwrap())
    });
    g.bench_function("event_parse_text", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_str(black_box(&event_text)).unwrap();
            EventIn::parse(&v).unwrap()
        })
    });
    g.bench_function("reject_oversize_comment", |b| {
        b.iter(|| ClickIn::parse(black_box(&oversize)).unwrap_err())
    });
    g.bench_function("reject_wrong_type", |b| {
        b.iter(|| ClickIn::parse(black_box(&wrong_type)).unwrap_err())
    });
    g.bench_function("click_encode", |b| {
        b.iter(|| serde_json::to_string(black_box(&outbound)).unwrap())
    });
    g.finish();
}

fn chat(c: &mut Criterion) {
    let send = r#"{"type":"message-send","payload":{"room_id":"0191f2a4-7c3e-7b21-9d4e-5a6b7c8d9e0f","message":"Hat jemand die Folien von gestern? Ich finde sie nicht im Raum."}}"#;
    let receive = ServerPacket::MessageReceive(ChatMessage {
        id: "0191f2a4-8d11-7c40-a2b3-c4d5e6f70812".into(),
        room_id: "0191f2a4-7c3e-7b21-9d4e-5a6b7c8d9e0f".into(),
        sender_id: "user-4711".into(),
        message: "Hat jemand die Folien von gestern? Ich finde sie nicht im Raum.".into(),
        timestamp: "2024-08-21T14:30:00.123Z".into(),
    });

    let mut g = c.benchmark_group("chat");
    g.throughput(Throughput::Elements(1));
    g.bench_function("message_send_parse", |b| {
        b.iter(|| ClientPacket::parse(black_box(send)).unwrap())
    });
    g.bench_function("message_receive_to_json", |b| {
        b.iter(|| black_box(&receive).to_json())
    });
    g.finish();
}

criterion_group!(benches, frust, chat);
criterion_main!(benches);
