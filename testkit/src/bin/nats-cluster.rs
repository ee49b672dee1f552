//! `nats-cluster`: the test NATS JetStream cluster of `switchyard_testkit::cluster`, for the JS
//! tests (tests/js/lib/cluster.mjs) and scripts/bench.sh, so all three plan and check a cluster
//! the same way.
//!
//!   nats-cluster plan [--nodes 3] --dir D [--name LABEL]
//!       prints the plan as one line of JSON (nats-server path, nodes with ports, store dirs,
//!       URLs and argv); makes the store dirs, starts nothing
//!   nats-cluster run [--nodes 3] [--dir D] [--name LABEL] [--timeout-ms 30000]
//!       starts the nodes (output in D/<serverName>.log), waits until every one is ready,
//!       prints the plan JSON on one line (with the nodes' `pids`), and stays in the
//!       foreground; SIGTERM/SIGINT/SIGHUP (or its own death: the nodes get SIGKILL with it)
//!       stops them. Exits 1 if a node dies.
//!   nats-cluster wait-ready --monitor http://127.0.0.1:M [--peers n2,n3] [--timeout-ms 30000]
//!       waits until that node is healthy, routed to every peer, and JetStream has a meta
//!       leader; exits 1 saying what is missing if not in time
//!
//! Exit status 2: bad usage or no usable nats-server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_testkit::{cluster, plan_cluster, wait_ready, Server};

const USAGE: &str = "usage: nats-cluster plan [--nodes N] --dir D [--name LABEL]
       nats-cluster run [--nodes N] [--dir D] [--name LABEL] [--timeout-ms MS]
       nats-cluster wait-ready --monitor URL [--peers NAME,...] [--timeout-ms MS]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        return usage("no subcommand");
    };
    let flags = match parse_flags(rest) {
        Ok(flags) => flags,
        Err(e) => return usage(&e),
    };
    let result = match command.as_str() {
        "plan" => plan(&flags),
        "run" => run(&flags),
        "wait-ready" => wait(&flags),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => return usage(&format!("unknown subcommand {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => usage(&e),
        Err(Failure::Failed(e)) => {
            eprintln!("nats-cluster {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Failed(String),
}

fn usage(why: &str) -> ExitCode {
    eprintln!("nats-cluster: {why}\n{USAGE}");
    ExitCode::from(2)
}

/// `--key value` pairs.
fn parse_flags(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut flags = HashMap::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let key = arg
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
        let value = args
            .next()
            .ok_or_else(|| format!("--{key} needs a value"))?;
        flags.insert(key.to_owned(), value.clone());
    }
    Ok(flags)
}

fn number(flags: &HashMap<String, String>, key: &str, default: u64) -> Result<u64, Failure> {
    flags.get(key).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| Failure::Usage(format!("--{key} {v:?} is no number")))
    })
}

fn only(flags: &HashMap<String, String>, known: &[&str]) -> Result<(), Failure> {
    match flags.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Failure::Usage(format!("unknown flag --{k}"))),
        None => Ok(()),
    }
}

fn planned(
    flags: &HashMap<String, String>,
    dir: &std::path::Path,
) -> Result<cluster::ClusterPlan, Failure> {
    let nodes = number(flags, "nodes", 3)? as usize;
    if nodes == 0 {
        return Err(Failure::Usage("--nodes must be at least 1".to_owned()));
    }
    let label = flags.get("name").map_or("nats", String::as_str);
    plan_cluster(nodes, dir, label).map_err(Failure::Usage)
}

fn plan(flags: &HashMap<String, String>) -> Result<(), Failure> {
    only(flags, &["nodes", "dir", "name"])?;
    let dir = flags
        .get("dir")
        .ok_or_else(|| Failure::Usage("plan needs --dir".to_owned()))?;
    println!("{}", planned(flags, &PathBuf::from(dir))?.to_json());
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn run(flags: &HashMap<String, String>) -> Result<(), Failure> {
    only(flags, &["nodes", "dir", "name", "timeout-ms"])?;
    let timeout = Duration::from_millis(number(flags, "timeout-ms", 30_000)?);
    // Without --dir: a temporary one, removed when this ends.
    let temp;
    let dir = match flags.get("dir") {
        Some(dir) => PathBuf::from(dir),
        None => {
            temp = tempfile::tempdir().map_err(|e| Failure::Failed(e.to_string()))?;
            temp.path().to_owned()
        }
    };
    let plan = planned(flags, &dir)?;
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
    let log = |node: &cluster::NodePlan| dir.join(format!("{}.log", node.server_name));
    // All at once: JetStream needs a quorum of the cluster before any node is healthy. The
    // servers are SIGKILLed when dropped, whichever way this returns.
    let mut servers = Vec::new();
    for node in &plan.nodes {
        let server = Server::spawn_node(node, &log(node), true)
            .map_err(|e| Failure::Failed(format!("start {}: {e}", node.name)))?;
        servers.push(server);
    }
    for (node, server) in plan.nodes.iter().zip(&mut servers) {
        wait_ready(
            &node.monitor_url(),
            &plan.peers_of(node.index),
            timeout,
            || {
                if STOP.load(Ordering::SeqCst) {
                    return Some("stopped by a signal".to_owned());
                }
                server.exited().map(|status| status.to_string())
            },
        )
        .map_err(|e| {
            Failure::Failed(format!("{}: {e} (see {})", node.name, log(node).display()))
        })?;
    }
    let mut ready = plan.to_json();
    ready["pids"] = servers.iter().map(Server::pid).collect();
    println!("{ready}");
    while !STOP.load(Ordering::SeqCst) {
        for (node, server) in plan.nodes.iter().zip(&mut servers) {
            if let Some(status) = server.exited() {
                return Err(Failure::Failed(format!(
                    "{} exited ({status}; see {})",
                    node.name,
                    log(node).display()
                )));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn wait(flags: &HashMap<String, String>) -> Result<(), Failure> {
    only(flags, &["monitor", "peers", "timeout-ms"])?;
    let monitor = flags
        .get("monitor")
        .ok_or_else(|| Failure::Usage("wait-ready needs --monitor".to_owned()))?;
    let peers: Vec<String> = flags
        .get("peers")
        .map(|p| {
            p.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let timeout = Duration::from_millis(number(flags, "timeout-ms", 30_000)?);
    wait_ready(monitor.trim_end_matches('/'), &peers, timeout, || None).map_err(Failure::Failed)
}
