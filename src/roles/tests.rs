//! The drain in-process: the embedded roles on a bound listener, a Socket.IO client over
//! long-polling (plain HTTP, no client library), and a shutdown future the test completes.

use std::time::Duration;

use clap::Parser;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{run, start, Listeners, Roles};
use crate::config::Cli;

#[tokio::test]
async fn a_drain_completes_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("drain.db").display());
    let args = [
        "switchyard",
        "--store",
        &store_url,
        "--drain-notice-ms",
        "0",
        "--drain-timeout-secs",
        "10",
    ];
    let common = Cli::try_parse_from(args).unwrap().common;
    // A recorder of its own: the global one belongs to the process, not to a test.
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    let started = start(common, Roles::ALL, metrics).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listeners = Listeners {
        public: Some(listener),
        ops: None,
    };
    let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(run(started, listeners, async {
        let _ = shutdown_rx.await;
    }));

    let client = Polling::open(addr).await;
    client
        .post(r#"421["click",{"user":"drainer","comment":"kept"}]"#)
        .await;
    client.wait_for(r#"431[{"ok":true}]"#).await;

    shutdown.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("the drain finishes within its bound")
        .unwrap()
        .unwrap();
    assert!(
        TcpListener::bind(addr).await.is_ok(),
        "the listener is closed after the drain"
    );

    let store = switchyard_store::open(&store_url).await.unwrap();
    let clicks = store.clicks_since(0, 10).await.unwrap();
    assert_eq!(clicks.len(), 1, "the acknowledged click is stored");
    assert_eq!(clicks[0].user, "drainer");
    assert_eq!(store.totals().await.unwrap().clicks, 1, "and counted");
}

/// An Engine.IO v4 long-polling session, one HTTP/1.1 request per connection.
struct Polling {
    addr: std::net::SocketAddr,
    sid: String,
}

impl Polling {
    async fn open(addr: std::net::SocketAddr) -> Self {
        let open = http(addr, "GET", "/api/socket.io/?EIO=4&transport=polling", "").await;
        let sid = open
            .split(r#""sid":""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no sid in {open:?}"))
            .to_owned();
        let polling = Polling { addr, sid };
        polling.post("40").await;
        polling.wait_for("40{").await;
        polling
    }

    fn path(&self) -> String {
        format!("/api/socket.io/?EIO=4&transport=polling&sid={}", self.sid)
    }

    async fn post(&self, packet: &str) {
        let answer = http(self.addr, "POST", &self.path(), packet).await;
        assert_eq!(answer, "ok", "posting {packet}");
    }

    /// Polls until a packet starting with `prefix` arrives.
    async fn wait_for(&self, prefix: &str) {
        let polls = async {
            loop {
                let body = http(self.addr, "GET", &self.path(), "").await;
                if body.split('\x1e').any(|packet| packet.starts_with(prefix)) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), polls)
            .await
            .unwrap_or_else(|_| panic!("no {prefix} packet within 10 s"));
    }
}

/// One request on its own connection; the body of a 200 answer.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{method} {path}: {head}");
    match head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        true => dechunk(body),
        false => body.to_owned(),
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}
