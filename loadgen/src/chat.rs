//! The chat API from a client's side: rooms over REST, and the `/chat` packets
//! the bench sends and reads (read by substring: no JSON value per message).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::marker::{self, Marker};
use crate::net::Target;

/// Waits for the server's REST rate limit before creating a room fails.
const MAX_RATE_WAITS: u32 = 30;

/// `/chat?token=…` (JWTs are base64url and dots: nothing to escape).
pub fn ws_path(token: &str) -> String {
    format!("/chat?token={token}")
}

/// One keep-alive HTTP/1.1 connection for REST calls.
pub struct Rest {
    target: Target,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Rest {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    async fn sender(&mut self) -> anyhow::Result<&mut http1::SendRequest<Full<Bytes>>> {
        let stale = self.sender.as_ref().is_none_or(|s| s.is_closed());
        if stale {
            let stream = tokio::net::TcpStream::connect(self.target.addr).await?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("just set");
        sender.ready().await?;
        Ok(sender)
    }

    /// POSTs JSON with a bearer token; returns the status, the `Retry-After` seconds (if any)
    /// and the body.
    pub async fn post_json(
        &mut self,
        path: &str,
        bearer: &str,
        body: String,
    ) -> anyhow::Result<(u16, Option<u64>, Bytes)> {
        let response = self.send("POST", path, bearer, Some(body)).await?;
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, retry_after, body))
    }

    /// Any method, with a bearer token and an optional JSON body: the status and the body.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<String>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let response = self.send(method, path, bearer, body).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<String>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.target.authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {bearer}"));
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        Ok(self.sender().await?.send_request(request).await?)
    }

    /// Creates a room as `owner` (who becomes a member) with `members`; returns its id.
    pub async fn create_room(
        &mut self,
        owner_token: &str,
        name: &str,
        members: &[String],
    ) -> anyhow::Result<String> {
        #[derive(Deserialize)]
        struct Created {
            room_id: String,
        }
        let body = serde_json::json!({ "name": name, "members": members }).to_string();
        // The server's chat REST rate limit (SWITCHYARD_CHAT_REST_RATE_IP): wait as told.
        let mut waited = 0;
        let (status, body) = loop {
            let (status, retry_after, reply) = self
                .post_json("/api/chat/rooms", owner_token, body.clone())
                .await?;
            match retry_after {
                Some(secs) if status == 429 && waited < MAX_RATE_WAITS => {
                    if waited == 0 {
                        eprintln!(
                            "bench: room creation rate-limited by the server; waiting {secs} s \
                             (raise SWITCHYARD_CHAT_REST_RATE_IP and _BURST)"
                        );
                    }
                    waited += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(secs.max(1))).await;
                }
                _ => break (status, reply),
            }
        };
        if status == 401 {
            anyhow::bail!(
                "POST /api/chat/rooms → 401: the server does not accept the bench's tokens \
                 (give the server's SWITCHYARD_JWT_SECRET with --jwt-secret)"
            );
        }
        if status != 201 {
            anyhow::bail!(
                "POST /api/chat/rooms → HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(serde_json::from_slice::<Created>(&body)?.room_id)
    }
}

/// `message-send` carrying the marker as its text.
pub fn encode_send(out: &mut String, room_id: &str, m: &Marker<'_>) {
    out.clear();
    out.push_str(r#"{"type":"message-send","payload":{"room_id":""#);
    out.push_str(room_id);
    out.push_str(r#"","message":""#);
    m.write(out);
    out.push_str(r#""}}"#);
}

/// Asks for one message of history: the answer proves the server has subscribed this
/// connection to its rooms (it reads packets only after that).
pub fn readiness_probe(room_id: &str) -> String {
    format!(r#"{{"type":"list-message-request","payload":{{"room_id":"{room_id}","limit":1}}}}"#)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// `message-receive`, with the bench marker if its text is one.
    Receive(Option<Marker<'a>>),
    History,
    /// `error` with its code.
    Error(String),
    Other,
}

/// The `"type"` of a server packet. The server writes `type` first; anything else is read
/// the slow way.
fn packet_type(text: &str) -> Option<&str> {
    if let Some(rest) = text.strip_prefix(r#"{"type":""#) {
        return rest.split_once('"').map(|(t, _)| t);
    }
    None
}

pub fn classify(text: &str) -> Incoming<'_> {
    match packet_type(text) {
        Some("message-receive") => Incoming::Receive(marker::find(text, r#""message":""#)),
        Some("list-message-response") => Incoming::History,
        Some("error") => Incoming::Error(error_code(text)),
        Some(_) => Incoming::Other,
        None => slow_classify(text),
    }
}

fn error_code(text: &str) -> String {
    #[derive(Deserialize)]
    struct Packet {
        payload: Payload,
    }
    #[derive(Deserialize)]
    struct Payload {
        code: String,
    }
    serde_json::from_str::<Packet>(text)
        .map(|p| p.payload.code)
        .unwrap_or_else(|_| "unreadable error".to_owned())
}

fn slow_classify(text: &str) -> Incoming<'_> {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: String,
    }
    match serde_json::from_str::<Typed>(text).map(|t| t.kind) {
        Ok(kind) if kind == "message-receive" => {
            Incoming::Receive(marker::find(text, r#""message":""#))
        }
        Ok(kind) if kind == "list-message-response" => Incoming::History,
        Ok(kind) if kind == "error" => Incoming::Error(error_code(text)),
        _ => Incoming::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_packet_is_valid_json() {
        let m = Marker {
            run: "r1",
            sender: 2,
            seq: 3,
            sent_us: 4,
        };
        let mut out = String::new();
        encode_send(&mut out, "room-1", &m);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["type"], "message-send");
        assert_eq!(v["payload"]["room_id"], "room-1");
        assert_eq!(v["payload"]["message"], "sy:r1:2:3:4");
        let v: serde_json::Value = serde_json::from_str(&readiness_probe("room-1")).unwrap();
        assert_eq!(v["payload"]["limit"], 1);
    }

    #[test]
    fn classifies_server_packets() {
        let got = r#"{"type":"message-receive","payload":{"id":"x","room_id":"r","sender_id":"u","message":"sy:r1:2:3:4","timestamp":"2026-01-01T00:00:00Z"}}"#;
        assert_eq!(
            classify(got),
            Incoming::Receive(Some(Marker {
                run: "r1",
                sender: 2,
                seq: 3,
                sent_us: 4
            }))
        );
        let plain = r#"{"type":"message-receive","payload":{"message":"hello"}}"#;
        assert_eq!(classify(plain), Incoming::Receive(None));
        let err = r#"{"type":"error","payload":{"code":"rate_limited","message":"slow down"}}"#;
        assert_eq!(classify(err), Incoming::Error("rate_limited".into()));
        let history = r#"{"type":"list-message-response","payload":{"room_id":"r","messages":[],"total_count":0}}"#;
        assert_eq!(classify(history), Incoming::History);
        let reordered = r#"{"payload":{"code":"forbidden","message":"no"},"type":"error"}"#;
        assert_eq!(classify(reordered), Incoming::Error("forbidden".into()));
        assert_eq!(
            classify(r#"{"type":"chat-join-notify","payload":{}}"#),
            Incoming::Other
        );
        assert_eq!(classify("not json"), Incoming::Other);
    }
}
