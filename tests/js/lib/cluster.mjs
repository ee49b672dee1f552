// Cluster mode under test: a real 3-node NATS JetStream cluster on free loopback ports, and the
// switchyard binary as separate `aggregator`, `worker` and `edge` processes over it, all sharing
// one SQLite store file. Plus acknowledged emits for the Socket.IO clients of lib/clients.mjs.
//
// Contract (implemented by the server), beyond lib/server.mjs and lib/chat.mjs:
//   `switchyard edge|worker|aggregator` with SWITCHYARD_NATS=<comma-separated nats:// URLs>,
//   SWITCHYARD_NATS_REPLICAS (3 here), SWITCHYARD_STORE=sqlite://<shared file>,
//   SWITCHYARD_LISTEN=127.0.0.1:<own port> (every process answers GET /healthz with 200 once up;
//   edges also serve the APIs), SWITCHYARD_HEARTBEAT_MS, SWITCHYARD_EDGE_TIMEOUT_MS,
//   SWITCHYARD_JWT_SECRET, SWITCHYARD_ADMIN_TOKEN. SIGTERM → exit code 0 within 10 s.
//   Socket.IO `click`/`event` with an ack callback are answered {ok: true} once durably
//   accepted, {ok: false, error} when not.
//
// lib/server.mjs's startServer always runs `switchyard all` with a store of its own, so the
// role processes are started here, through the same launcher (lib/process.mjs: readiness on
// GET /healthz, log tails, clean stop), as are the nats-server nodes.
//
// nats-server: as the testkit crate finds it ($NATS_SERVER_BIN, else on PATH; see `nats-cluster`).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, REPO_ROOT, freePort, sleep, midHourClock } from './server.mjs';
import { SECRET, ADMIN_TOKEN, mintToken } from './chat.mjs';
import { exited, processHandle, spawnTracked } from './process.mjs';

/** Presence settings every switchyard process of a test cluster gets. */
export const HEARTBEAT_MS = 300;
export const EDGE_TIMEOUT_MS = 1500;
/**
 * How long after an edge dies its sessions may still count: the edge timeout plus a couple of
 * heartbeats, plus 1 s for the aggregator's broadcast to reach a client and for test scheduling.
 */
export const EDGE_DEATH_BOUND_MS = EDGE_TIMEOUT_MS + 2 * HEARTBEAT_MS + 1000;

/** Waiting for something to cross the cluster (generous; never a speed assertion). */
export const WAIT_MS = 10_000;

const READY_TIMEOUT_MS = Number(process.env.SWITCHYARD_E2E_READY_MS) || 30_000;
const NATS_READY_TIMEOUT_MS = 30_000;

async function httpStatus(url, ms = 1000) {
  const res = await fetch(url, { signal: AbortSignal.timeout(ms) });
  const body = await res.text();
  return { status: res.status, body };
}

// ---------------------------------------------------------------------------------------------
// nats-server: the testkit crate's `nats-cluster` binary plans the cluster (free ports, store
// dirs, each node's argv, the nats-server executable) and checks a node's readiness, as for the
// Rust tests and scripts/bench.sh; the nodes are spawned here, so tests can kill, freeze and
// restart each one.

const NATS_CLUSTER_BUILD = 'cargo build --release -p switchyard-testkit --bin nats-cluster';

let natsClusterBin;
/** The `nats-cluster` executable: $NATS_CLUSTER_BIN, else target/release, else next to BIN. */
function natsCluster() {
  if (natsClusterBin) return natsClusterBin;
  const env = process.env.NATS_CLUSTER_BIN;
  if (env) {
    if (!fs.existsSync(env)) throw new Error(`NATS_CLUSTER_BIN=${env} does not exist (build it with \`${NATS_CLUSTER_BUILD}\`)`);
    natsClusterBin = env;
    return env;
  }
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR) : path.join(REPO_ROOT, 'target');
  const candidates = [path.join(targetDir, 'release', 'nats-cluster'), path.join(path.dirname(BIN), 'nats-cluster')];
  natsClusterBin = candidates.find((c) => fs.existsSync(c));
  if (!natsClusterBin) {
    throw new Error(`nats-cluster not found at ${candidates.join(' or ')}: build it with \`${NATS_CLUSTER_BUILD}\` (scripts/test.sh does), or set NATS_CLUSTER_BIN`);
  }
  return natsClusterBin;
}

/** `nats-cluster plan`: the layout of a `size`-node cluster under `dir`. Throws saying why not. */
function planNatsCluster(size, dir, name) {
  const args = ['plan', '--nodes', String(size), '--dir', dir, '--name', name];
  try {
    return JSON.parse(execFileSync(natsCluster(), args, { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch (err) {
    throw new Error(`nats-cluster ${args.join(' ')} failed: ${err.stderr?.trim() || err.message}`);
  }
}

/**
 * Starts a `size`-node NATS JetStream cluster (cluster name `sy`) on free loopback ports, each
 * node with its own store dir. Resolves once every node answers /healthz, sees every other node
 * as a route, and the JetStream meta group has a leader.
 * Returns {nodes, size, urls (comma-separated), urlList, close()}; each node has
 * {name, url, port, kill(signal), start(), restart(), tail(), alive}.
 */
export async function startNatsCluster({ size = 3, name = 'nats' } = {}) {
  const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-nats-'));
  let plan;
  try {
    plan = planNatsCluster(size, baseDir, name);
  } catch (err) {
    fs.rmSync(baseDir, { recursive: true, force: true });
    throw err;
  }
  // Spawning, log tail, exit tracking, kill, pause/resume: lib/process.mjs.
  const nodes = plan.nodes.map((p) => Object.assign(processHandle(p.name), {
    index: p.index,
    port: p.port,
    clusterPort: p.clusterPort,
    monitorPort: p.monitorPort,
    dir: p.dir,
    url: p.url,
    monitorUrl: p.monitorUrl,
    argv: p.argv,
  }));
  const cluster = {
    nodes,
    size,
    baseDir,
    urlList: nodes.map((n) => n.url),
    urls: plan.urls,
  };

  for (const node of nodes) {
    const [bin, ...args] = node.argv;
    /** The server name JetStream reports as a leader (`-n`). */
    const serverName = plan.nodes[node.index].serverName;
    node.serverName = () => serverName;
    node.spawn = () => node.launch(bin, args);

    /**
     * Waits until this node is healthy, routed to every other live node, and JetStream has a meta
     * leader (`nats-cluster wait-ready`; asked again if a peer dies or comes back meanwhile).
     */
    node.waitReady = async (timeoutMs = NATS_READY_TIMEOUT_MS) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const peers = () => nodes.filter((n) => n !== node && n.alive()).map((n) => n.serverName()).join(',');
        const wanted = peers();
        const check = spawnTracked(natsCluster(), [
          'wait-ready', '--monitor', node.monitorUrl, '--peers', wanted, '--timeout-ms', String(Math.max(0, deadline - Date.now())),
        ], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        check.stderr.setEncoding('utf8');
        check.stderr.on('data', (chunk) => { stderr += chunk; });
        const done = exited(check);
        let result;
        while (!(result = await Promise.race([done, sleep(100).then(() => null)]))) {
          if (node.exit || peers() !== wanted) break;
        }
        if (!result) {
          check.kill('SIGKILL');
          await done;
          if (node.exit) throw new Error(`${node.name} exited before becoming ready (${JSON.stringify(node.exit)})\n${node.tail()}`);
          continue; // the live peers changed: ask for the new set
        }
        if (result.code === 0) return;
        const why = stderr.trim().replace(/^nats-cluster wait-ready: /, '') || JSON.stringify(result);
        throw new Error(`${node.name} ${why}\n${node.tail()}`);
      }
    };

    /** GET `route` of this node's monitoring port, parsed; throws on a dead or frozen node. */
    node.monitor = async (route, ms = 1500) => {
      const res = await httpStatus(`${node.monitorUrl}${route}`, ms);
      if (res.status !== 200) throw new Error(`${node.name} ${route}: HTTP ${res.status}`);
      return JSON.parse(res.body);
    };

    /** Starts the node again on the same ports and store dir; resolves once it is ready. */
    node.start = async () => {
      if (node.alive()) throw new Error(`${node.name} is still running`);
      node.spawn();
      await node.waitReady();
      return node;
    };
    node.restart = async (signal = 'SIGKILL') => {
      await node.kill(signal);
      return node.start();
    };
  }

  /**
   * Which live node each JetStream stream and consumer has as leader, with the consumers'
   * backlog, merged from every node that answers (a frozen one does not).
   * {streams: {IN: {leader, messages}}, consumers: [{stream, name, leader, pending, ackPending}]}
   */
  cluster.jetstream = async () => {
    const streams = {};
    const consumers = new Map();
    for (const node of nodes.filter((n) => n.alive() && !n.paused)) {
      let jsz;
      try {
        jsz = await node.monitor('/jsz?accounts=true&streams=true&consumers=true');
      } catch { continue; }
      for (const acc of jsz.account_details ?? []) {
        for (const st of acc.stream_detail ?? []) {
          const leader = st.cluster?.leader;
          // Every replica reports the leader; only the leader's numbers are current.
          if (leader && (!streams[st.name] || leader === node.serverName())) {
            streams[st.name] = {
              leader, messages: st.state?.messages, lastSeq: st.state?.last_seq, replicas: 1 + (st.cluster?.replicas?.length ?? 0),
            };
          }
          for (const c of st.consumer_detail ?? []) {
            const key = `${st.name}/${c.name}`;
            const cLeader = c.cluster?.leader;
            if (!consumers.has(key) || cLeader === node.serverName()) {
              consumers.set(key, {
                stream: st.name, name: c.name, leader: cLeader,
                pending: c.num_pending ?? 0, ackPending: c.num_ack_pending ?? 0, redelivered: c.num_redelivered ?? 0,
                delivered: c.delivered?.stream_seq, ackFloor: c.ack_floor?.stream_seq,
              });
            }
          }
        }
      }
    }
    return { streams, consumers: [...consumers.values()] };
  };
  /** The node whose server name is `serverName` ('n1'…). */
  cluster.byServerName = (serverName) => nodes.find((n) => n.serverName() === serverName);
  /**
   * The live node that has a client connection named `name` (switchyard names its connection
   * `switchyard-<role>-<pid>`), or undefined.
   */
  cluster.nodeWithConnection = async (name) => {
    for (const node of nodes.filter((n) => n.alive() && !n.paused)) {
      try {
        const connz = await node.monitor('/connz?limit=1024');
        if ((connz.connections ?? []).some((c) => c.name === name)) return node;
      } catch { /* dead or frozen: ask the next one */ }
    }
    return undefined;
  };

  cluster.close = async () => {
    for (const n of nodes) if (n.paused) n.resume();
    await Promise.all(nodes.map((n) => n.kill('SIGKILL')));
    if (!process.env.SWITCHYARD_KEEP_STORE) fs.rmSync(baseDir, { recursive: true, force: true });
  };

  try {
    // All at once: JetStream needs a quorum of the cluster before any node is healthy.
    for (const node of nodes) node.spawn();
    await Promise.all(nodes.map((n) => n.waitReady()));
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}

// ---------------------------------------------------------------------------------------------
// switchyard processes

/**
 * One switchyard process of `role` ('edge' | 'worker' | 'aggregator'). Not started: call start().
 * `envFn()` gives the environment of each launch (so the NATS URLs and clock are current).
 * Handle: {name, role, url, port, start(), stop(), kill(signal), restart(), tail(), alive(), now()}.
 * Edges also have secret, adminToken, token(sub, opts) and wsUrl(), so the helpers of
 * lib/chat.mjs (connectChat, createRoom, rest…) and lib/clients.mjs (connect) take them as is.
 */
function makeProcess({ role, name, envFn, now, ops = false }) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`switchyard binary not found at ${BIN} (build it with \`cargo build --release\` or set SWITCHYARD_BIN)`);
  }
  // Spawning, log tail, exit tracking, stop, kill, pause/resume: lib/process.mjs.
  const proc = Object.assign(processHandle(name), {
    role,
    port: 0,
    url: '',
    /** True once the test killed it on purpose (close() then leaves it alone). */
    killed: false,
    now,
  });

  proc.start = async () => {
    if (proc.alive()) throw new Error(`${name} is still running`);
    // The same port on a restart, so a handle's URL stays valid.
    if (!proc.port) {
      proc.port = await freePort();
      proc.url = `http://127.0.0.1:${proc.port}`;
      // With `ops`, /metrics, /healthz and /readyz are on a listener of their own.
      proc.opsPort = ops ? await freePort() : proc.port;
      proc.opsUrl = `http://127.0.0.1:${proc.opsPort}`;
    }
    proc.killed = false;
    const env = {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG ?? 'info',
      RUST_BACKTRACE: process.env.SWITCHYARD_E2E_RUST_BACKTRACE ?? '0',
      ...envFn(),
      SWITCHYARD_LISTEN: `127.0.0.1:${proc.port}`,
      ...(ops ? { SWITCHYARD_OPS_LISTEN: `127.0.0.1:${proc.opsPort}` } : {}),
    };
    proc.launch(BIN, [role], {
      env,
      banner: `starting \`switchyard ${role}\` on ${proc.url} (nats ${env.SWITCHYARD_NATS}, store ${
        env.SWITCHYARD_STORE}${env.SWITCHYARD_CLOCK_START ? `, clock ${env.SWITCHYARD_CLOCK_START}` : ''})`,
    });
    await proc.waitHealthy(`${proc.opsUrl}/healthz`, { timeoutMs: READY_TIMEOUT_MS, what: `${name} (\`switchyard ${role}\`)` });
    return proc;
  };

  /** Sends `signal` (default SIGKILL) and resolves once the process has exited. */
  const kill = proc.kill;
  proc.kill = async (signal = 'SIGKILL') => {
    if (proc.alive()) proc.killed = true;
    return kill(signal);
  };

  /** The name of this process's NATS connection (what a node's /connz lists). */
  proc.connectionName = () => (proc.alive() ? `switchyard-${role}-${proc.child.pid}` : undefined);

  /** Clean stop (SIGTERM, exit 0) — or `signal` if given — then a new process of the same role. */
  proc.restart = async ({ signal } = {}) => {
    if (proc.alive()) {
      if (signal) await proc.kill(signal);
      else await proc.stop();
    }
    return proc.start();
  };

  if (role === 'edge') {
    proc.secret = SECRET;
    proc.adminToken = ADMIN_TOKEN;
    proc.token = (sub, opts = {}) => mintToken({ sub, secret: SECRET, ...opts });
    proc.wsUrl = () => `${proc.url.replace(/^http/, 'ws')}/chat`;
  }
  return proc;
}

/**
 * A whole cluster: NATS (a fresh 3-node cluster unless `nats` is given), then the aggregator, the
 * workers and the edges, one after another, all on one shared SQLite file.
 *
 * `clock`: 'mid-hour' (default) starts every process's clock a minute into the current real hour
 * (SWITCHYARD_CLOCK_START, as the single-process tests do), so no hour rollover can land in a
 * test; launches are aligned to whole seconds so all processes tell the same time. 'real' leaves
 * the clock alone; a number (Unix seconds) starts the cluster clock there.
 * `replicas`: SWITCHYARD_NATS_REPLICAS (default: the NATS cluster size); null leaves it unset.
 *
 * `ops`: every process serves /metrics, /healthz, /readyz on an ops listener of its own
 * (`proc.opsUrl`; SWITCHYARD_OPS_LISTEN).
 *
 * Returns {nats, storePath, aggregator, workers, edges, all(), addWorker(), addEdge(), now(), close()}.
 */
export async function startCluster({
  edges = 2, workers = 1, env = {}, nats, name = 'sy', clock = 'mid-hour', replicas, ops = false,
} = {}) {
  const ownNats = !nats;
  const natsCluster = nats ?? (await startNatsCluster({ name: `${name}-nats` }));
  const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-cluster-'));
  const storePath = path.join(storeDir, 'db.sqlite');

  // Cluster clock: virtual = clockBase + (Date.now() - realBase) / 1000, with realBase a whole second.
  const realBase = Math.ceil(Date.now() / 1000) * 1000;
  const clockBase = clock === 'real' ? undefined : typeof clock === 'number' ? clock : midHourClock();
  const now = () => (clockBase === undefined ? Date.now() / 1000 : clockBase + (Date.now() - realBase) / 1000);

  const cl = {
    nats: natsCluster,
    storeDir,
    storePath,
    env,
    aggregator: null,
    workers: [],
    edges: [],
    now,
  };

  const envFn = () => {
    const e = {
      SWITCHYARD_NATS: natsCluster.urls,
      SWITCHYARD_NATS_REPLICAS: String(replicas ?? natsCluster.size),
      SWITCHYARD_STORE: `sqlite://${storePath}`,
      SWITCHYARD_HEARTBEAT_MS: String(HEARTBEAT_MS),
      SWITCHYARD_EDGE_TIMEOUT_MS: String(EDGE_TIMEOUT_MS),
      SWITCHYARD_JWT_SECRET: SECRET,
      SWITCHYARD_ADMIN_TOKEN: ADMIN_TOKEN,
      // The failure burst sends hundreds of clicks per second per client from one address;
      // rate limits have their own tests (limits_*.test.mjs).
      SWITCHYARD_RATE_CONN: '100000',
      SWITCHYARD_RATE_CONN_BURST: '100000',
      SWITCHYARD_RATE_IP: '100000',
      SWITCHYARD_RATE_IP_BURST: '100000',
      ...cl.env,
    };
    if (clockBase !== undefined) e.SWITCHYARD_CLOCK_START = String(Math.round(now()));
    // replicas: null leaves the variable unset: the binary's own default is under test.
    if (replicas === null) delete e.SWITCHYARD_NATS_REPLICAS;
    return e;
  };

  // Every start (restart too) of a process goes through this wrapper.
  const make = (role, procName) => {
    const proc = makeProcess({ role, name: procName, envFn, now, ops });
    const plainStart = proc.start;
    proc.start = async () => {
      // Spawn just after a whole virtual second, so the integer clock start carries no offset.
      if (clockBase !== undefined) await sleep(1000 - ((Date.now() - realBase) % 1000) + 5);
      return plainStart();
    };
    return proc;
  };

  cl.all = () => [cl.aggregator, ...cl.workers, ...cl.edges, ...natsCluster.nodes].filter(Boolean);

  /** Starts one more worker (e.g. to replace a killed one). */
  cl.addWorker = async () => {
    const w = make('worker', `${name}-worker${cl.workers.length + 1}`);
    cl.workers.push(w);
    await w.start();
    return w;
  };
  /** Starts one more edge. */
  cl.addEdge = async () => {
    const e = make('edge', `${name}-edge${cl.edges.length + 1}`);
    cl.edges.push(e);
    await e.start();
    return e;
  };

  /**
   * Stops every process the test did not kill with SIGTERM (edges first, then workers, then the
   * aggregator), kills NATS and removes the temp dirs. Throws afterwards if a process did not
   * exit cleanly (code 0 within 10 s) or had died on its own.
   */
  cl.close = async () => {
    for (const p of [cl.aggregator, ...cl.workers, ...cl.edges]) if (p?.paused) p.resume();
    const errors = [];
    const stopAll = async (procs) => {
      await Promise.all(procs.map(async (p) => {
        if (!p || !p.child) return;
        if (p.exit) {
          if (!p.killed) errors.push(new Error(`${p.name} had died on its own (${JSON.stringify(p.exit)})\n${p.tail()}`));
          return;
        }
        try {
          await p.stop();
        } catch (err) {
          errors.push(err);
        }
      }));
    };
    try {
      await stopAll(cl.edges);
      await stopAll(cl.workers);
      await stopAll([cl.aggregator]);
    } finally {
      for (const p of [cl.aggregator, ...cl.workers, ...cl.edges]) {
        if (p?.alive()) p.child.kill('SIGKILL');
      }
      if (ownNats) await natsCluster.close();
      if (!process.env.SWITCHYARD_KEEP_STORE) fs.rmSync(storeDir, { recursive: true, force: true });
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} processes did not stop cleanly:\n${errors.map((e) => e.message).join('\n\n')}`);
  };

  try {
    // Consumers first, so nothing an edge accepts finds no reader.
    cl.aggregator = make('aggregator', `${name}-aggregator`);
    await cl.aggregator.start();
    for (let i = 0; i < workers; i++) await cl.addWorker();
    for (let i = 0; i < edges; i++) await cl.addEdge();
  } catch (err) {
    await cl.close().catch(() => {});
    throw err;
  }
  return cl;
}

// ---------------------------------------------------------------------------------------------
// Socket.IO acknowledgements

export const ACK_MS = 15_000;

/**
 * Emits `event` with an ack callback on either client line and never rejects. Resolves
 * {status, res, ms}: 'ok' for {ok: true}; 'failed' for {ok: false, error: string}; 'unknown'
 * for {ok: false, unconfirmed: true} (the bus never answered: the click may still be stored);
 * 'malformed' for any other answer (a server bug); 'unknown' when no answer came within `ms` or the socket
 * disconnected first (the packet may or may not have been accepted).
 */
export function emitWithAck(client, event, payload, ms = ACK_MS) {
  const socket = client.socket;
  const started = Date.now();
  return new Promise((resolve) => {
    let settled = false;
    let timer;
    const onDisconnect = () => settle('unknown', undefined, 'disconnected');
    const settle = (status, res, why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('disconnect', onDisconnect);
      resolve({ status, res, why, ms: Date.now() - started });
    };
    const onAck = (res) => {
      if (res && res.ok === true) settle('ok', res);
      else if (res && res.ok === false && res.unconfirmed === true && typeof res.error === 'string') settle('unknown', res, res.error);
      else if (res && res.ok === false && typeof res.error === 'string') settle('failed', res);
      else settle('malformed', res);
    };
    if (!socket.connected) {
      settle('unknown', undefined, 'not connected');
      return;
    }
    socket.on('disconnect', onDisconnect);
    if (typeof socket.timeout === 'function') {
      // socket.io-client 4.x: the callback gets an error on timeout (or disconnect).
      socket.timeout(ms).emit(event, payload, (err, res) => {
        if (err) settle('unknown', undefined, err.message ?? String(err));
        else onAck(res);
      });
    } else {
      // socket.io-client 2.3.0: no timeout of its own.
      timer = setTimeout(() => settle('unknown', undefined, `no ack within ${ms} ms`), ms);
      socket.emit(event, payload, onAck);
    }
  });
}
