//! The one definition of a test NATS JetStream cluster: its layout (ports, store dirs, the
//! argv of every node) and when it is ready. The Rust tests start it through
//! [`crate::start_cluster`]; tests/js/lib/cluster.mjs and scripts/bench.sh ask the `nats-cluster`
//! binary of this crate for the same plan and readiness check, and spawn the nodes themselves
//! (the JS chaos tests kill, freeze and restart single nodes).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nats_server::{free_ports, nats_server};

/// The `--cluster_name` of every test cluster.
pub const CLUSTER_NAME: &str = "sy";

/// How long a cluster may take to form: JetStream needs a quorum and a meta leader, which on a
/// loaded 2-CPU machine can take several seconds.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One node of a planned cluster.
#[derive(Clone, Debug)]
pub struct NodePlan {
    /// 0-based position in the cluster.
    pub index: usize,
    /// A label for logs: `<cluster label>-n<index + 1>`.
    pub name: String,
    /// The server name (`-n`): what routes and JetStream leaders report, `n1`, `n2`, …
    pub server_name: String,
    pub port: u16,
    pub cluster_port: u16,
    pub monitor_port: u16,
    /// The node's store dir (`-sd`), created by [`plan_cluster`].
    pub dir: PathBuf,
    /// The full command line, the nats-server executable first.
    pub argv: Vec<String>,
}

impl NodePlan {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }
}

/// A cluster of nodes routed to each other, on ports that were free while planning.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    pub nats_server: PathBuf,
    pub nats_server_version: String,
    pub dir: PathBuf,
    pub nodes: Vec<NodePlan>,
}

impl ClusterPlan {
    /// Every node's client URL, comma-separated (what SWITCHYARD_NATS takes).
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(NodePlan::url).collect();
        urls.join(",")
    }

    /// The server names of every node but `index`.
    pub fn peers_of(&self, index: usize) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.index != index)
            .map(|n| n.server_name.clone())
            .collect()
    }

    /// The plan as `nats-cluster plan` prints it (camelCase, for the JS side).
    pub fn to_json(&self) -> Value {
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "index": n.index,
                    "name": n.name,
                    "serverName": n.server_name,
                    "port": n.port,
                    "clusterPort": n.cluster_port,
                    "monitorPort": n.monitor_port,
                    "dir": n.dir,
                    "url": n.url(),
                    "monitorUrl": n.monitor_url(),
                    "argv": n.argv,
                })
            })
            .collect();
        json!({
            "natsServer": self.nats_server,
            "natsServerVersion": self.nats_server_version,
            "clusterName": CLUSTER_NAME,
            "dir": self.dir,
            "urls": self.urls(),
            "nodes": nodes,
        })
    }
}

/// Plans a `size`-node JetStream cluster under `dir` (node `i` stores in `dir/n<i + 1>`, made
/// here). `label` prefixes the nodes' log names. Fails if no usable nats-server is found.
pub fn plan_cluster(size: usize, dir: &Path, label: &str) -> Result<ClusterPlan, String> {
    let (bin, version) = nats_server()?;
    let ports = free_ports(size * 3);
    let cluster_url = |i: usize| format!("nats://127.0.0.1:{}", ports[i * 3 + 1]);
    let mut nodes = Vec::with_capacity(size);
    for i in 0..size {
        let (port, cluster_port, monitor_port) = (ports[i * 3], ports[i * 3 + 1], ports[i * 3 + 2]);
        let server_name = format!("n{}", i + 1);
        let node_dir = dir.join(&server_name);
        std::fs::create_dir_all(&node_dir)
            .map_err(|e| format!("create {}: {e}", node_dir.display()))?;
        let routes: Vec<String> = (0..size).filter(|j| *j != i).map(cluster_url).collect();
        let mut argv = vec![bin.display().to_string()];
        argv.extend(
            [
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor_port.to_string(),
                "-sd",
                &node_dir.display().to_string(),
                "-n",
                &server_name,
                "--cluster_name",
                CLUSTER_NAME,
                "--cluster",
                &cluster_url(i),
            ]
            .map(String::from),
        );
        if !routes.is_empty() {
            argv.extend(["--routes".to_owned(), routes.join(",")]);
        }
        nodes.push(NodePlan {
            index: i,
            name: format!("{label}-{server_name}"),
            server_name,
            port,
            cluster_port,
            monitor_port,
            dir: node_dir,
            argv,
        });
    }
    Ok(ClusterPlan {
        nats_server: bin,
        nats_server_version: version,
        dir: dir.to_owned(),
        nodes,
    })
}

/// GET `url` (plain `http://host:port/path`) with short timeouts, so a frozen node fails fast.
/// Returns (status, body).
pub(crate) fn http_get(url: &str) -> Result<(u16, String), String> {
    const TIMEOUT: Duration = Duration::from_millis(1500);
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(TIMEOUT)).ok();
    tcp.set_write_timeout(Some(TIMEOUT)).ok();
    // HTTP/1.0: the server closes after the body, which is not chunked.
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status from {url}"))?;
    Ok((status, body.to_owned()))
}

fn get_json(url: &str) -> Result<Value, String> {
    let (status, body) = http_get(url)?;
    if status != 200 {
        return Err(format!("{url}: HTTP {status}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{url}: {e}"))
}

/// Whether the node monitored at `monitor_url` is ready: /healthz answers 200, /routez lists a
/// route to every server named in `peers`, and /jsz names a JetStream meta leader. Err says
/// what is still missing.
pub fn check_ready(monitor_url: &str, peers: &[String]) -> Result<(), String> {
    let (status, body) = http_get(&format!("{monitor_url}/healthz"))?;
    if status != 200 {
        let body: String = body.chars().take(200).collect();
        return Err(format!("/healthz HTTP {status}: {body}"));
    }
    let routez = get_json(&format!("{monitor_url}/routez"))?;
    // A set: with route pooling every peer has several routes.
    let routed: std::collections::BTreeSet<&str> = routez["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["remote_name"].as_str())
        .collect();
    if !peers.iter().all(|p| routed.contains(&p.as_str())) {
        let routed = if routed.is_empty() {
            "nobody".to_owned()
        } else {
            Vec::from_iter(routed).join(",")
        };
        return Err(format!("routes to {routed}, want {}", peers.join(",")));
    }
    let jsz = get_json(&format!("{monitor_url}/jsz"))?;
    match jsz["meta_cluster"]["leader"].as_str() {
        Some(leader) if !leader.is_empty() => Ok(()),
        _ => Err("no JetStream meta leader yet".to_owned()),
    }
}

/// Polls [`check_ready`] until it passes or `timeout` elapses (Err: the last reason), giving up
/// early when `gone()` says the node has exited.
pub fn wait_ready(
    monitor_url: &str,
    peers: &[String],
    timeout: Duration,
    mut gone: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(why) = gone() {
            return Err(format!("exited before becoming ready ({why})"));
        }
        let last = match check_ready(monitor_url, peers) {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "not ready within {} ms (last: {last})",
                timeout.as_millis()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_routes_every_node_to_the_others_on_distinct_ports() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_cluster(3, dir.path(), "t").unwrap();
        let mut ports: Vec<u16> = plan
            .nodes
            .iter()
            .flat_map(|n| [n.port, n.cluster_port, n.monitor_port])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 9);
        for node in &plan.nodes {
            assert!(node.dir.is_dir());
            let argv = node.argv.join(" ");
            let own = format!("--cluster nats://127.0.0.1:{}", node.cluster_port);
            assert!(argv.contains(&own), "{argv}");
            assert!(argv.contains(&format!("-n {} --cluster_name sy", node.server_name)));
            let routes = node.argv.last().unwrap();
            for other in plan.nodes.iter().filter(|o| o.index != node.index) {
                assert!(
                    routes.contains(&format!(":{}", other.cluster_port)),
                    "{routes}"
                );
            }
            assert!(!routes.contains(&format!(":{}", node.cluster_port)));
        }
        let json = plan.to_json();
        assert_eq!(json["urls"], plan.urls());
        assert_eq!(json["nodes"][2]["serverName"], "n3");
        assert_eq!(json["nodes"][0]["argv"][0], json["natsServer"]);
    }
}
