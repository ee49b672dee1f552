// The chaos suite's machinery: a seeded schedule of faults (SIGKILL, SIGTERM, SIGSTOP/SIGCONT of
// edges, workers, the aggregator and NATS nodes, chosen by role, by the NATS node a role is
// attached to, and by JetStream stream and consumer leadership), mixed load while the faults
// run (Frust clicks from Socket.IO 2.x and 4.x clients with and without acks, over websocket and
// polling; chat messages in many rooms), and the checks made afterwards from outside: REST and
// what every client received.
//
// Everything random comes from one seed (SWITCHYARD_CHAOS_SEED, else random, always printed):
// the whole schedule of every round is drawn up front, so the same seed gives the same faults in
// the same order at the same offsets. Which NATS node "the aggregator's node" or "the IN leader"
// is gets resolved when the fault fires (that is cluster state, not the seed).
//
// The checks are cumulative: every click and message of every round of one cluster is in the
// ledger, and after each round the whole stored state is compared with it, so something that
// turns up late (a redelivery after the ack wait) is judged in the next round.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { getJson, sleep, hourStart, dayStart, HOUR, DAY } from './server.mjs';
import { connect } from './clients.mjs';
import { connectChat, createRoom, ADMIN_TOKEN } from './chat.mjs';
import { startCluster, emitWithAck } from './cluster.mjs';

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: a small, fast PRNG; `seed` a uint32. Returns a function giving floats in [0, 1). */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A PRNG with helpers: float(), int(lo, hi) (inclusive), pick(list), chance(p), shuffle(list). */
export function makeRng(seed) {
  const next = mulberry32(seed);
  const rng = {
    float: next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (list) => list[Math.floor(next() * list.length)],
    chance: (p) => next() < p,
    shuffle: (list) => {
      const out = [...list];
      for (let i = out.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [out[i], out[j]] = [out[j], out[i]];
      }
      return out;
    },
    /** A new uint32 seed for an independent stream. */
    seed: () => (Math.floor(next() * 4294967296) >>> 0) || 1,
  };
  return rng;
}

/**
 * A deck: draws every item once in a seeded order before any repeats, so a short schedule
 * still covers every kind of fault.
 */
function deck(rng, items) {
  let pile = [];
  return () => {
    if (!pile.length) pile = rng.shuffle(items);
    return pile.pop();
  };
}

// ---------------------------------------------------------------------------------------------
// Configuration

const num = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v} is not a non-negative number`);
  return n;
};

/**
 * The run's settings, from the environment (`defaults` are the caller's: the test file's short
 * schedule or scripts/chaos.sh's soak).
 */
export function chaosConfig(defaults = {}) {
  const seedEnv = process.env.SWITCHYARD_CHAOS_SEED;
  const seed = seedEnv ? Number(seedEnv) >>> 0 : crypto.randomInt(1, 2 ** 32 - 1);
  if (seedEnv && String(seed) !== seedEnv.trim()) throw new Error(`SWITCHYARD_CHAOS_SEED=${seedEnv}: want an integer in 1..4294967295`);
  const replicasEnv = process.env.SWITCHYARD_CHAOS_REPLICAS ?? defaults.replicas ?? '3';
  return {
    seed,
    rounds: num('SWITCHYARD_CHAOS_ROUNDS', defaults.rounds ?? 3),
    /** Run only rounds from this one on (the schedule of the earlier ones is still drawn). */
    fromRound: num('SWITCHYARD_CHAOS_FROM_ROUND', 1),
    /** How long clients send in each round while the faults run. */
    loadMs: num('SWITCHYARD_CHAOS_LOAD_MS', defaults.loadMs ?? 20_000),
    /** Faults per lane per round, at most (one lane for NATS nodes, one for switchyard processes). */
    faultsPerLane: num('SWITCHYARD_CHAOS_FAULTS_PER_LANE', defaults.faultsPerLane ?? 2),
    /** Clicks per second each Frust client sends. */
    clickRate: num('SWITCHYARD_CHAOS_CLICK_RATE', defaults.clickRate ?? 6),
    frustClients: 8,
    chatUsers: num('SWITCHYARD_CHAOS_CHAT_USERS', 12),
    chatRooms: num('SWITCHYARD_CHAOS_CHAT_ROOMS', 8),
    /** Pause between one chat connection's messages (each waits for its answer first). */
    chatGapMs: num('SWITCHYARD_CHAOS_CHAT_GAP_MS', 400),
    edges: num('SWITCHYARD_CHAOS_EDGES', 2),
    workers: num('SWITCHYARD_CHAOS_WORKERS', 2),
    /** SWITCHYARD_NATS_REPLICAS for the cluster; 'default' leaves it unset (the binary decides). */
    replicas: replicasEnv === 'default' ? null : Number(replicasEnv),
    /**
     * How long a client waits for an ack or its own message: longer than the edge's publish
     * budget (the issue asks for ~30 s), so a held packet is judged by its real answer.
     */
    ackMs: num('SWITCHYARD_CHAOS_ACK_MS', 40_000),
    /** Bound on waiting for the cluster to settle after a round (ack wait 30 s + margin). */
    quiesceMs: num('SWITCHYARD_CHAOS_QUIESCE_MS', 60_000),
    /** The state must hold still this long (and every consumer be drained) to count as settled. */
    stableMs: num('SWITCHYARD_CHAOS_STABLE_MS', 3_000),
    /** latest_clicks shows at most 10,000 rows: a cluster whose ledger could pass this is replaced. */
    maxClicksPerCluster: 9_000,
  };
}

/** The command that replays a run up to `round` (and the one that runs only that round). */
export function replayHint(config, round) {
  const extra = [
    config.loadMs !== 20_000 ? `SWITCHYARD_CHAOS_LOAD_MS=${config.loadMs}` : '',
    config.faultsPerLane !== 2 ? `SWITCHYARD_CHAOS_FAULTS_PER_LANE=${config.faultsPerLane}` : '',
    config.replicas === null ? 'SWITCHYARD_CHAOS_REPLICAS=default' : config.replicas !== 3 ? `SWITCHYARD_CHAOS_REPLICAS=${config.replicas}` : '',
  ].filter(Boolean).join(' ');
  const cmd = 'node --test --test-concurrency=1 tests/js/chaos.test.mjs';
  return `replay: SWITCHYARD_CHAOS_SEED=${config.seed} SWITCHYARD_CHAOS_ROUNDS=${round} ${extra ? `${extra} ` : ''}${cmd}\n` +
    `  only this round's faults: SWITCHYARD_CHAOS_SEED=${config.seed} SWITCHYARD_CHAOS_ROUNDS=${round} ` +
    `SWITCHYARD_CHAOS_FROM_ROUND=${round} ${extra ? `${extra} ` : ''}${cmd}`;
}

// ---------------------------------------------------------------------------------------------
// The schedule

/** Switchyard process faults: the role; the index among its processes is drawn too. */
const PROC_TARGETS = ['edge', 'worker', 'aggregator'];
/**
 * NATS node faults, by what the node is to the cluster when the fault fires: the node a role's
 * process is connected to, or the leader of a stream or of a consumer.
 */
const NATS_TARGETS = ['attached:aggregator', 'attached:worker', 'attached:edge', 'leader:IN', 'leader:FACTS', 'leader:consumer'];
const SIGNALS = ['SIGKILL', 'SIGTERM', 'SIGSTOP'];

/**
 * Draws the faults of every round. Two lanes run side by side in a round, each one fault at a
 * time: NATS nodes (so a quorum — two of three — is always up) and switchyard processes (so one
 * edge, one worker or the aggregator is down at a time; the other edge keeps serving).
 * Each fault: {lane, at (ms after the load started, earliest), target, index, signal, holdMs}
 * — holdMs is how long it stays down before the restart, or frozen before SIGCONT.
 */
export function drawSchedule(config) {
  const rng = makeRng(config.seed);
  const natsTarget = deck(rng, NATS_TARGETS);
  const procTarget = deck(rng, PROC_TARGETS);
  const natsSignal = deck(rng, SIGNALS);
  const procSignal = deck(rng, SIGNALS);
  const rounds = [];
  for (let r = 1; r <= config.rounds; r++) {
    const faults = [];
    for (const lane of ['nats', 'proc']) {
      // A restart takes a few seconds; leave the last one room to finish inside the load window.
      let t = rng.int(1500, 4000);
      for (let i = 0; i < config.faultsPerLane && (i === 0 || t < config.loadMs - 5000); i++) {
        const signal = lane === 'nats' ? natsSignal() : procSignal();
        const target = lane === 'nats' ? natsTarget() : procTarget();
        const holdMs = signal === 'SIGSTOP' ? rng.int(2000, 8000) : rng.int(500, 4000);
        faults.push({ lane, at: t, target, index: rng.int(0, 1000), signal, holdMs });
        t += holdMs + (signal === 'SIGSTOP' ? 0 : 3000) + rng.int(1000, 3000);
      }
    }
    rounds.push({ round: r, faults, loadSeed: rng.seed() });
  }
  return rounds;
}

export const describeFault = (f) => `${f.lane === 'nats' ? `NATS ${f.target}` : `${f.target}[${f.index}]`} ${f.signal} ${
  f.signal === 'SIGSTOP' ? `frozen ${(f.holdMs / 1000).toFixed(1)} s` : `down ${(f.holdMs / 1000).toFixed(1)} s`} at ≥+${(f.at / 1000).toFixed(1)} s`;

// ---------------------------------------------------------------------------------------------
// The cluster under chaos

/** Time-stamped notes of one round, printed with its result. */
class Timeline {
  constructor() {
    this.t0 = Date.now();
    this.lines = [];
  }

  note(what) {
    this.lines.push(`+${((Date.now() - this.t0) / 1000).toFixed(1)} s ${what}`);
  }
}

/** A promise that rejects after `ms` saying `what`. */
const within = (p, ms, what) => {
  let timer;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms); }),
  ]);
};

/** The live switchyard process of `role` chosen by `index` (modulo those alive), if any. */
function procOf(cl, role, index) {
  const list = role === 'edge' ? cl.edges : role === 'worker' ? cl.workers : [cl.aggregator];
  const alive = list.filter((p) => p.alive() && !p.paused);
  return alive.length ? alive[index % alive.length] : undefined;
}

/** What each NATS node is right now: attached roles and leaderships, for the timeline. */
async function natsRoles(cl) {
  const js = await cl.nats.jetstream();
  const roles = new Map(cl.nats.nodes.map((n) => [n.serverName(), []]));
  for (const [name, st] of Object.entries(js.streams)) roles.get(st.leader)?.push(`leads ${name} (R${st.replicas})`);
  for (const p of [cl.aggregator, ...cl.workers, ...cl.edges]) {
    const conn = p.connectionName();
    if (!conn) continue;
    const node = await cl.nats.nodeWithConnection(conn);
    if (node) roles.get(node.serverName()).push(`${p.name.replace(/^.*?-/, '')}`);
  }
  return { js, roles };
}

/**
 * Resolves a NATS fault's target to a node: the node `role`'s process is attached to (via the
 * servers' /connz and the process's connection name), or the leader of a stream or consumer.
 * Falls back to a node by index, saying so.
 */
async function resolveNatsTarget(cl, f) {
  const nodes = cl.nats.nodes.filter((n) => n.alive() && !n.paused);
  const fallback = (why) => ({ node: nodes[f.index % nodes.length], why: `${why}; fell back to a node by index` });
  const [kind, what] = f.target.split(':');
  if (kind === 'attached') {
    const proc = procOf(cl, what, f.index);
    if (!proc) return fallback(`no live ${what}`);
    const node = await cl.nats.nodeWithConnection(proc.connectionName());
    return node ? { node, why: `${proc.name} is attached to it` } : fallback(`${proc.name} is attached to no live node`);
  }
  const js = await cl.nats.jetstream();
  if (what === 'consumer') {
    // One of: the aggregator's FACTS consumer, the workers' Frust consumer, a chat partition.
    const facts = js.consumers.filter((c) => c.stream === 'FACTS');
    const chat = js.consumers.filter((c) => c.stream === 'IN' && /chat/i.test(c.name));
    const other = js.consumers.filter((c) => c.stream === 'IN' && !/chat/i.test(c.name));
    const groups = [facts, other, chat].filter((g) => g.length);
    if (!groups.length) return fallback('no consumers listed');
    const group = groups[f.index % groups.length];
    const c = group[Math.floor(f.index / groups.length) % group.length];
    const node = c.leader && cl.nats.byServerName(c.leader);
    return node?.alive() ? { node, why: `it leads consumer ${c.stream}/${c.name}` } : fallback(`consumer ${c.name} has no live leader`);
  }
  const leader = js.streams[what]?.leader;
  const node = leader && cl.nats.byServerName(leader);
  return node?.alive() ? { node, why: `it leads stream ${what}` } : fallback(`stream ${what} has no live leader`);
}

/**
 * Runs one fault and undoes it (restart, or SIGCONT). Problems that are findings in their own
 * right (a SIGTERM that did not end in a clean exit, a restart that failed) go to `problems`.
 */
async function runFault(cl, f, tl, problems) {
  let handle;
  let why = '';
  if (f.lane === 'nats') {
    ({ node: handle, why } = await resolveNatsTarget(cl, f));
  } else {
    handle = procOf(cl, f.target, f.index);
    if (!handle) {
      tl.note(`skip ${describeFault(f)}: no live ${f.target}`);
      return;
    }
  }
  if (!handle) {
    tl.note(`skip ${describeFault(f)}: no live NATS node`);
    return;
  }
  const label = `${f.signal} ${handle.name}${why ? ` (${why})` : ''}`;
  if (f.signal === 'SIGSTOP') {
    handle.pause();
    tl.note(`${label}: frozen`);
    await sleep(f.holdMs);
    handle.resume();
    tl.note(`SIGCONT ${handle.name} after ${(f.holdMs / 1000).toFixed(1)} s`);
    return;
  }
  const t = Date.now();
  if (f.signal === 'SIGKILL') {
    await handle.kill('SIGKILL');
  } else if (f.lane === 'nats') {
    // nats-server shuts down on SIGTERM; a node that hangs is a finding, then killed.
    try {
      await within(handle.kill('SIGTERM'), 15_000, `${handle.name} exit after SIGTERM`);
    } catch (err) {
      problems.push({ invariant: 'clean-exit', message: err.message });
      await handle.kill('SIGKILL');
    }
  } else {
    try {
      await handle.stop(); // asserts exit code 0 within the drain bound
    } catch (err) {
      problems.push({ invariant: 'clean-exit', message: `${handle.name} after SIGTERM: ${err.message.split('\n')[0]}`, log: err.message });
    }
  }
  tl.note(`${label}: exited after ${Date.now() - t} ms`);
  await sleep(f.holdMs);
  for (let attempt = 1; ; attempt++) {
    try {
      await handle.start();
      tl.note(`${handle.name} restarted (ready)`);
      return;
    } catch (err) {
      problems.push({ invariant: 'restart', message: `${handle.name} restart #${attempt} failed: ${err.message.split('\n')[0]}`, log: err.message });
      if (attempt >= 2) throw err;
      await sleep(1000);
    }
  }
}

/** Runs one lane's faults in order, each no earlier than its offset from `t0`. */
async function runLane(cl, faults, t0, tl, problems) {
  for (const f of faults) {
    const wait = t0 + f.at - Date.now();
    if (wait > 0) await sleep(wait);
    try {
      await runFault(cl, f, tl, problems);
    } catch (err) {
      problems.push({ invariant: 'fault-runner', message: `${describeFault(f)}: ${err.message.split('\n')[0]}`, log: err.message });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Load: Frust

/**
 * The Frust clients: every combination of client line (2.x, 4.x), transport (websocket, polling;
 * 2.x also the default polling-then-upgrade) and ack (with and without), two clients per user.
 */
const FRUST_SPECS = [
  { v: 2, tr: 'default', ack: true },
  { v: 2, tr: 'websocket', ack: false },
  { v: 2, tr: 'polling', ack: true },
  { v: 2, tr: 'websocket', ack: true },
  { v: 4, tr: 'websocket', ack: true },
  { v: 4, tr: 'polling', ack: false },
  { v: 4, tr: 'websocket', ack: false },
  { v: 4, tr: 'polling', ack: true },
];
/** Clicks one acking client has waiting for their ack; below the edge's per-socket queue (64). */
const MAX_IN_FLIGHT = 16;

/** A live, unfrozen edge chosen by `rng`, or undefined. */
const liveEdge = (cl, rng) => {
  const edges = cl.edges.filter((e) => e.alive() && !e.paused);
  return edges.length ? rng.pick(edges) : undefined;
};

class FrustLoad {
  constructor(run) {
    this.run = run;
    const tag = run.tag;
    this.users = Array.from({ length: FRUST_SPECS.length / 2 }, (_, i) => `${tag}u${i}`.slice(0, 15));
    this.clients = FRUST_SPECS.map((spec, i) => ({
      ...spec,
      index: i,
      user: this.users[i % this.users.length],
      conns: [], // every Client (recorder) this logical client ever had
      cur: null,
      seq: 0,
      inFlight: 0,
      pending: new Set(),
    }));
  }

  async ensureConnected(c, rng, stopAt) {
    while (!(c.cur && c.cur.connected)) {
      if (Date.now() > stopAt) return false;
      const edge = liveEdge(this.run.cl, rng);
      if (edge) {
        try {
          const label = `frust${c.index}/v${c.v}/${c.tr}/${c.ack ? 'ack' : 'noack'}#${c.conns.length + 1}@${edge.name}`;
          c.cur = await connect(edge, c.v, c.tr, { timeoutMs: 5000, label });
          c.conns.push(c.cur);
          this.run.stats.frustConnects += 1;
          return true;
        } catch { /* the edge may be going down: try another */ }
      }
      await sleep(300);
    }
    return true;
  }

  /** Sends clicks until `stopAt`; then waits (bounded) for the acks still out. */
  async drive(c, rng, stopAt, round) {
    const ledger = this.run.clicks;
    const periodMs = 1000 / this.run.config.clickRate;
    while (Date.now() < stopAt) {
      if (!(await this.ensureConnected(c, rng, stopAt))) break;
      await sleep(periodMs * (0.7 + 0.6 * rng.float()));
      if (Date.now() >= stopAt) break;
      const client = c.cur;
      if (!client.connected) continue; // noticed at the next pass
      if (c.ack && c.inFlight >= MAX_IN_FLIGHT) {
        this.run.stats.throttled += 1;
        continue;
      }
      const comment = `${this.run.tag}.${round}.${c.index}.${c.seq++}`;
      const entry = { comment, user: c.user, client: c.index, conn: client.label, round, status: c.ack ? 'pending' : 'unacked', sentAt: Date.now() };
      ledger.set(comment, entry);
      if (!c.ack) {
        client.emit('click', { user: c.user, comment });
        continue;
      }
      c.inFlight += 1;
      const p = emitWithAck(client, 'click', { user: c.user, comment }, this.run.config.ackMs).then((r) => {
        c.inFlight -= 1;
        entry.status = r.status; // ok | failed | unknown | malformed
        entry.why = r.res?.error ?? r.why;
        entry.ackMs = r.ms;
        c.pending.delete(p);
      });
      c.pending.add(p);
    }
    await Promise.all([...c.pending]);
  }
}

// ---------------------------------------------------------------------------------------------
// Load: chat

class ChatLoad {
  constructor(run, rng) {
    this.run = run;
    const { chatUsers, chatRooms } = run.config;
    this.users = Array.from({ length: chatUsers }, (_, i) => `${run.tag}-c${i}`);
    // Rooms of 3 members each, dealt round-robin from a seeded order of the users, so every
    // user is in at least one room (two, with the defaults) and rooms overlap.
    const order = rng.shuffle(this.users);
    this.rooms = [];
    for (let r = 0; r < chatRooms; r++) {
      const members = new Set();
      for (let k = 0; members.size < Math.min(3, chatUsers); k++) members.add(order[(3 * r + k) % chatUsers]);
      this.rooms.push({ id: null, members: [...members].sort() });
    }
    // One connection slot per user, two for the first two (a user on both edges at once).
    this.slots = this.users.flatMap((user, i) => (i < 2 ? [0, 1] : [0]).map((k) => ({
      user, k, label: `${user}#${k}`, conns: [], cur: null, seq: 0,
      rooms: this.rooms.filter((room) => room.members.includes(user)),
    })));
  }

  async createRooms() {
    const edge = this.run.cl.edges[0];
    for (const room of this.rooms) {
      // The operator's admin token: the rooms have exactly the drawn members.
      room.id = (await createRoom(edge, { token: ADMIN_TOKEN }, { name: `chaos ${room.members.length}`, members: room.members })).room_id;
    }
  }

  async ensureConnected(s, rng, stopAt) {
    while (!(s.cur && s.cur.isOpen)) {
      if (Date.now() > stopAt) return false;
      const edge = liveEdge(this.run.cl, rng);
      if (edge) {
        try {
          s.cur = await within(connectChat(edge, s.user, { label: `${s.label}/${s.conns.length + 1}@${edge.name}` }), 5000, 'chat connect');
          s.cur.openedAt = Date.now();
          s.conns.push(s.cur);
          this.run.stats.chatConnects += 1;
          return true;
        } catch { /* try another edge */ }
      }
      await sleep(300);
    }
    return true;
  }

  /**
   * One message and its answer: 'ok' once the sender's own message-receive arrives (it is sent
   * only after the message is persisted), 'failed' for an error packet that says it was not
   * accepted, 'unknown' for "not confirmed", no answer in time, or a closed connection.
   * Sends are one at a time per connection, so an error answers this send.
   */
  async send(s, room, text) {
    const conn = s.cur;
    const from = conn.mark();
    try {
      conn.send({ type: 'message-send', payload: { room_id: room.id, message: text } });
    } catch (err) {
      return { status: 'notsent', why: err.message };
    }
    const started = Date.now();
    const own = conn.waitFor('message-receive', (p) => p?.message === text && p?.sender_id === s.user, this.run.config.ackMs, { from })
      .then((m) => ({ status: 'ok', id: m.id }), (err) => ({ status: 'unknown', why: err.message.split('\n')[0] }));
    const error = conn.waitFor('error', () => true, this.run.config.ackMs + 1000, { from })
      .then((e) => ({ status: /not confirmed/i.test(e?.message ?? '') ? 'unknown' : 'failed', why: `${e?.code}: ${e?.message}` }), () => null);
    const r = await Promise.race([own, error.then((e) => e ?? own)]);
    r.ms = Date.now() - started;
    return r;
  }

  async drive(s, rng, stopAt, round) {
    const ledger = this.run.messages;
    while (Date.now() < stopAt) {
      if (!(await this.ensureConnected(s, rng, stopAt))) break;
      const room = rng.pick(s.rooms);
      const text = `${this.run.tag}.${round}.${s.label}.${s.seq++}`;
      const entry = { text, room: room.id, sender: s.user, conn: s.cur.label, round, status: 'pending', sentAt: Date.now() };
      ledger.set(text, entry);
      const r = await this.send(s, room, text);
      Object.assign(entry, { status: r.status, why: r.why, id: r.id, ackMs: r.ms });
      // A connection that did not answer may answer late: a fresh one cannot mix up answers.
      if (r.status === 'unknown' && s.cur?.isOpen) await s.cur.close().catch(() => {});
      await sleep(this.run.config.chatGapMs * (0.5 + rng.float()));
    }
  }

  /** Every room's whole history, oldest first (skip-paged, 100 at a time), via a member's connection. */
  async histories() {
    const out = new Map();
    const rng = makeRng(1);
    for (const room of this.rooms) {
      const slot = this.slots.find((s) => room.members.includes(s.user));
      await this.ensureConnected(slot, rng, Date.now() + 20_000);
      const messages = [];
      let total;
      for (let page = 0; page < 1000; page++) {
        const res = await slot.cur.history({ room_id: room.id, limit: 100, skip: messages.length, order: 'asc' }, 10_000);
        total = res.total_count;
        messages.push(...res.messages);
        if (res.messages.length < 100) break;
      }
      out.set(room.id, { messages, total });
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Reading the state from outside

/**
 * What one edge serves: current_stats, latest_clicks, users and latest_hours, with the cluster
 * clock's hour before and after (a snapshot taken across an hour boundary is not compared per
 * current hour).
 */
export async function frustSnapshot(cl, edge) {
  const hourBefore = hourStart(Math.floor(cl.now()));
  const [stats, latest, users, hours] = await Promise.all([
    getJson(edge, '/api/current_stats'),
    getJson(edge, '/api/latest_clicks'),
    getJson(edge, '/api/users'),
    getJson(edge, '/api/latest_hours'),
  ]);
  const hourAfter = hourStart(Math.floor(cl.now()));
  return { edge: edge.name, stats, latest, users, hours, hour: hourBefore === hourAfter ? hourBefore : null };
}

/** A digest of a snapshot, to tell whether it changed and whether two edges agree. */
const digest = (s) => JSON.stringify([
  s.stats,
  s.latest.length,
  s.latest[0]?.comment,
  [...s.users].map((u) => [u.name, u.click_count]).sort(),
  s.hours.map((h) => [h.timestamp, h.click_count]),
]);

/**
 * Waits (bounded) until every JetStream consumer is drained and every edge serves the same
 * state for `stableMs`. Resolves {settled, snapshots, js, ms, why}.
 */
export async function quiesce(cl, { timeoutMs, stableMs }) {
  const started = Date.now();
  let last;
  let since = 0;
  let why = 'not polled';
  let snapshots = [];
  let js;
  while (Date.now() - started < timeoutMs) {
    try {
      js = await cl.nats.jetstream();
      snapshots = await Promise.all(cl.edges.map((e) => frustSnapshot(cl, e)));
      const busy = js.consumers.filter((c) => c.pending || c.ackPending);
      const d = snapshots.map(digest);
      if (!js.consumers.length) why = 'no consumers listed by NATS';
      else if (busy.length) why = `consumers busy: ${busy.map((c) => `${c.stream}/${c.name} pending ${c.pending} ack-pending ${c.ackPending}`).join(', ')}`;
      else if (new Set(d).size > 1) why = 'edges disagree';
      else why = '';
      if (!why && d[0] === last) {
        if (Date.now() - since >= stableMs) return { settled: true, snapshots, js, ms: Date.now() - started };
      } else {
        last = why ? undefined : d[0];
        since = Date.now();
      }
    } catch (err) {
      why = err.message.split('\n')[0];
      last = undefined;
    }
    await sleep(500);
  }
  return { settled: false, snapshots, js, ms: Date.now() - started, why };
}

// ---------------------------------------------------------------------------------------------
// The invariants

const sample = (list, n = 6) => `${list.slice(0, n).join(', ')}${list.length > n ? `, … (${list.length} in all)` : ''}`;
const countBy = (list, key) => {
  const m = new Map();
  for (const x of list) m.set(key(x), (m.get(key(x)) ?? 0) + 1);
  return m;
};
const entryInfo = (e) => (e ? `${e.comment ?? e.text} [${e.status}${e.why ? `: ${e.why}` : ''}; round ${e.round}; ${e.conn}]` : '?');

/**
 * Frust, from one edge's snapshot and the ledger of every click sent:
 *  stored (latest_clicks) = counted (current_stats, users, latest_hours) = accepted (every click
 *  acked ok stored exactly once; nothing stored twice; nothing refused stored; nothing stored
 *  that was never sent), per user, per hour and in total.
 * `day`: the cluster's current day (latest_clicks holds only that day's clicks).
 */
export function checkFrust(snapshot, ledger, { day, survivors, t0 } = {}) {
  const v = [];
  const at = snapshot.edge;
  const stored = snapshot.latest;
  const seen = countBy(stored, (k) => k.comment);

  // A click without an ack sent on a connection that never dropped reached a running edge:
  // with a NATS quorum up it must be stored (a real Frust client never asks for acks, so a
  // silent refusal is a lost click nobody hears of).
  if (survivors) {
    const lost = [...ledger.values()].filter((e) => e.status === 'unacked' && survivors.has(e.conn) && !seen.has(e.comment));
    if (lost.length) {
      const sent = t0 === undefined ? '' : ` (sent at ${sample([...new Set(lost.map((e) => `+${((e.sentAt - t0) / 1000).toFixed(1)} s`))], 8)} of round ${lost.at(-1).round})`;
      v.push({ invariant: 'unacked-stored-if-connection-held', message: `${at}: ${lost.length} clicks sent without an ack on connections that never dropped are not stored${sent}: ${sample(lost.map(entryInfo), 4)}` });
    }
  }

  const twice = [...seen].filter(([, n]) => n > 1).map(([k, n]) => `${k} ×${n}`);
  if (twice.length) v.push({ invariant: 'stored-at-most-once', message: `${at}: latest_clicks holds ${twice.length} clicks more than once: ${sample(twice)}` });
  const missing = [...ledger.values()].filter((e) => e.status === 'ok' && !seen.has(e.comment));
  if (missing.length) {
    v.push({ invariant: 'acked-ok-stored', message: `${at}: ${missing.length} clicks acked {ok: true} are not stored: ${sample(missing.map(entryInfo), 4)}` });
  }
  const refused = [...seen.keys()].filter((k) => ledger.get(k)?.status === 'failed');
  if (refused.length) v.push({ invariant: 'refused-not-stored', message: `${at}: ${refused.length} clicks acked {ok: false} (not unconfirmed) are stored: ${sample(refused.map((k) => entryInfo(ledger.get(k))), 4)}` });
  const foreign = stored.filter((k) => !ledger.has(k.comment) || ledger.get(k.comment).user !== k.user);
  if (foreign.length) v.push({ invariant: 'stored-was-sent', message: `${at}: ${foreign.length} stored clicks were never sent (or under another user): ${sample(foreign.map((k) => JSON.stringify(k)), 3)}` });

  // Counted = stored, in total, today, per hour, per user.
  const total = stored.length;
  const s = snapshot.stats;
  const counts = [
    ['current_stats.click_count_total', s.click_count_total],
    ['current_stats.click_count_today', s.click_count_today],
    ['latest_hours[-1].click_count_total', snapshot.hours.at(-1)?.click_count_total],
  ];
  for (const [what, n] of counts) {
    if (n !== total) v.push({ invariant: 'counted-total', message: `${at}: ${what} = ${n}, stored ${total} (latest_clicks)` });
  }
  const storedPerHour = countBy(stored, (k) => hourStart(k.timestamp));
  const hourDiffs = [];
  for (const h of snapshot.hours) {
    if (day !== undefined && h.timestamp < day) continue; // older days: latest_clicks cannot show them
    const want = storedPerHour.get(h.timestamp) ?? 0;
    if (h.click_count !== want) hourDiffs.push(`${new Date(h.timestamp * 1000).toISOString().slice(11, 16)}Z counted ${h.click_count} stored ${want}`);
  }
  const hoursListed = new Set(snapshot.hours.map((h) => h.timestamp));
  for (const [h, n] of storedPerHour) if (!hoursListed.has(h)) hourDiffs.push(`${h}: ${n} stored, hour not in latest_hours`);
  if (hourDiffs.length) v.push({ invariant: 'counted-per-hour', message: `${at}: latest_hours ≠ stored clicks per hour: ${hourDiffs.join('; ')}` });
  if (snapshot.hour !== null && snapshot.hour !== undefined) {
    const want = storedPerHour.get(snapshot.hour) ?? 0;
    if (s.click_count_hour !== want) v.push({ invariant: 'counted-per-hour', message: `${at}: current_stats.click_count_hour = ${s.click_count_hour}, stored this hour ${want}` });
  }
  const storedPerUser = countBy(stored, (k) => k.user);
  const counted = new Map(snapshot.users.map((u) => [u.name, u.click_count]));
  const userDiffs = [];
  for (const name of new Set([...storedPerUser.keys(), ...[...ledger.values()].map((e) => e.user)])) {
    const c = counted.get(name) ?? 0;
    const st = storedPerUser.get(name) ?? 0;
    if (c !== st) userDiffs.push(`${name} counted ${c} stored ${st}`);
  }
  if (userDiffs.length) v.push({ invariant: 'counted-per-user', message: `${at}: /api/users ≠ stored clicks per user: ${userDiffs.join('; ')}` });
  return v;
}

/**
 * Invariants known to break today (RELIABILITY.md, "Open"): printed, failing a round only with
 * SWITCHYARD_CHAOS_STRICT=1. None now: chat live order across NATS node freezes (finding 7)
 * holds since edges deliver a room by its history position.
 */
const OPEN_DEFECTS = new Set([]);

/**
 * Frust, from what clients received: no socket receives a click twice, nor one that was refused,
 * nor one never sent. (Live delivery over core NATS is at most once: a click no one saw is
 * reported by the caller, not asserted.)
 */
export function checkFrustDeliveries(recorders, ledger, tagPrefix) {
  const v = [];
  for (const c of recorders) {
    const got = countBy(c.all('click', (x) => typeof x?.comment === 'string' && x.comment.startsWith(tagPrefix)), (k) => k.comment);
    const twice = [...got].filter(([, n]) => n > 1).map(([k, n]) => `${k} ×${n}`);
    if (twice.length) v.push({ invariant: 'delivered-at-most-once', message: `${c.label} received ${twice.length} clicks more than once: ${sample(twice)}` });
    const refused = [...got.keys()].filter((k) => ledger.get(k)?.status === 'failed');
    if (refused.length) v.push({ invariant: 'refused-not-delivered', message: `${c.label} received clicks that were acked {ok: false}: ${sample(refused.map((k) => entryInfo(ledger.get(k))), 3)}` });
    const stray = [...got.keys()].filter((k) => !ledger.has(k));
    if (stray.length) v.push({ invariant: 'delivered-was-sent', message: `${c.label} received clicks never sent: ${sample(stray)}` });
  }
  return v;
}

/**
 * Chat: every message acked ok (its sender got it back) is in its room's history exactly once;
 * no refused or unknown-to-the-ledger message is there; the room's total_count (counted) equals
 * its history (stored); every connection received each message at most once, only stored ones,
 * in history order.
 */
export function checkChat(histories, ledger, recorders) {
  const v = [];
  const position = new Map(); // message id → [room, index]
  for (const [room, h] of histories) {
    const ids = countBy(h.messages, (m) => m.id);
    const texts = countBy(h.messages, (m) => m.message);
    const twice = [...ids].filter(([, n]) => n > 1).map(([k, n]) => `${k} ×${n}`)
      .concat([...texts].filter(([, n]) => n > 1).map(([k, n]) => `"${k}" ×${n}`));
    if (twice.length) v.push({ invariant: 'chat-stored-at-most-once', message: `room ${room}: history holds messages twice: ${sample(twice)}` });
    if (h.total !== h.messages.length) v.push({ invariant: 'chat-counted', message: `room ${room}: total_count ${h.total}, history holds ${h.messages.length}` });
    h.messages.forEach((m, i) => position.set(m.id, [room, i]));
    const foreign = h.messages.filter((m) => { const e = ledger.get(m.message); return !e || e.room !== room || e.sender !== m.sender_id; });
    if (foreign.length) v.push({ invariant: 'chat-stored-was-sent', message: `room ${room}: ${foreign.length} messages in history were never sent there: ${sample(foreign.map((m) => JSON.stringify(m)), 2)}` });
    const refused = h.messages.filter((m) => ledger.get(m.message)?.status === 'failed');
    if (refused.length) v.push({ invariant: 'chat-refused-not-stored', message: `room ${room}: messages answered with an error are in history: ${sample(refused.map((m) => entryInfo(ledger.get(m.message))), 3)}` });
  }
  const inHistory = new Map();
  for (const [room, h] of histories) for (const m of h.messages) inHistory.set(`${room}\u0000${m.message}`, m);
  const missing = [...ledger.values()].filter((e) => e.status === 'ok' && !inHistory.has(`${e.room}\u0000${e.text}`));
  if (missing.length) v.push({ invariant: 'chat-acked-stored', message: `${missing.length} messages acked ok (sender got them back) are not in history: ${sample(missing.map(entryInfo), 4)}` });

  for (const c of recorders) {
    const got = c.all('message-receive', (m) => ledger.has(m?.message) || position.has(m?.id));
    const dup = [...countBy(got, (m) => m.id)].filter(([, n]) => n > 1).map(([k, n]) => `${k} ×${n}`);
    if (dup.length) v.push({ invariant: 'chat-delivered-at-most-once', message: `${c.label} received ${dup.length} messages more than once: ${sample(dup)}` });
    const unstored = got.filter((m) => !position.has(m.id));
    if (unstored.length) v.push({ invariant: 'chat-delivered-is-stored', message: `${c.label} received ${unstored.length} messages that are not in history: ${sample(unstored.map((m) => m.message), 3)}` });
    const lastIndex = new Map();
    const inversions = [];
    for (const m of got) {
      const p = position.get(m.id);
      if (!p) continue;
      const [room, i] = p;
      const prev = lastIndex.get(room);
      if (prev !== undefined && i <= prev) {
        if (i < prev) inversions.push(`room ${room.slice(-6)}: history #${i} "${m.message}" arrived after history #${prev}`);
      } else {
        lastIndex.set(room, i);
      }
    }
    if (inversions.length) v.push({ invariant: 'chat-live-order', message: `${c.label}: live order ≠ history order: ${sample(inversions, 3)}` });
  }
  return v;
}

/**
 * Nothing is refused while a NATS quorum is up (the schedule never takes down two nodes): an
 * ack that says "not accepted" or "not confirmed" is a refusal. A click or message whose
 * connection died before its answer (an edge killed) is not.
 */
export function checkRefusals(clicks, messages, round, t0) {
  const v = [];
  // When they were sent and how long their answer took, to place them on the round's timeline.
  const when = (list) => {
    if (t0 === undefined || !list.length) return '';
    const sent = list.map((e) => (e.sentAt - t0) / 1000);
    const took = list.map((e) => (e.ackMs ?? 0) / 1000);
    return ` (sent +${Math.min(...sent).toFixed(1)}…+${Math.max(...sent).toFixed(1)} s, answered after ${Math.min(...took).toFixed(1)}…${Math.max(...took).toFixed(1)} s)`;
  };
  const refusedClick = [...clicks.values()].filter((e) => e.round === round && (e.status === 'failed' || e.status === 'malformed' || (e.status === 'unknown' && /not confirmed/i.test(e.why ?? ''))));
  if (refusedClick.length) {
    const why = [...countBy(refusedClick, (e) => `${e.status}: ${e.why}`)].map(([k, n]) => `${n}× ${JSON.stringify(k)}`).join('; ');
    v.push({ invariant: 'no-refusal-with-quorum', message: `${refusedClick.length} clicks refused or unconfirmed with a NATS quorum up${when(refusedClick)}: ${why}` });
  }
  const refusedMsg = [...messages.values()].filter((e) => e.round === round && (e.status === 'failed' || (e.status === 'unknown' && /not confirmed/i.test(e.why ?? ''))));
  if (refusedMsg.length) {
    const why = [...countBy(refusedMsg, (e) => e.why)].map(([k, n]) => `${n}× ${JSON.stringify(k)}`).join('; ');
    v.push({ invariant: 'no-refusal-with-quorum', message: `${refusedMsg.length} chat messages refused or unconfirmed with a NATS quorum up${when(refusedMsg)}: ${why}` });
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// A run: clusters, rounds, reports

/** Log lines worth showing with a failure: warnings, errors, panics. */
const ALERT = /\b(WARN|ERROR)\b|panicked|=== .*(exited|test sends)/;
// eslint-disable-next-line no-control-regex
const plain = (line) => line.replace(/\x1b\[[0-9;]*m/g, '');

export class ChaosRun {
  constructor(config) {
    this.config = config;
    this.schedule = drawSchedule(config);
    this.cl = null;
    this.cluster = 0;
    this.runTag = `k${(config.seed % 1679616).toString(36)}`;
  }

  /** The schedule, for the log. */
  describeSchedule() {
    return this.schedule.map((r) => `round ${r.round}: ${r.faults.map(describeFault).join('; ')}`).join('\n');
  }

  /**
   * A fresh cluster (and empty ledgers): at the start, after a failed round (its state would
   * fail every later round too), and before the ledger could outgrow latest_clicks.
   */
  async freshCluster() {
    await this.close();
    this.cluster += 1;
    this.tag = `${this.runTag}${this.cluster.toString(36)}`;
    // The cluster clock starts 100 s before a virtual noon: an hour rollover lands in the first
    // rounds, and no day rollover in 12 h.
    const clock = dayStart(Math.floor(Date.now() / 1000)) + 12 * HOUR - 100;
    this.cl = await startCluster({
      name: `chaos${this.cluster}`, edges: this.config.edges, workers: this.config.workers, clock, replicas: this.config.replicas,
    });
    this.clicks = new Map();
    this.messages = new Map();
    this.stats = { frustConnects: 0, chatConnects: 0, throttled: 0 };
    const rng = makeRng(this.config.seed ^ this.cluster);
    this.frust = new FrustLoad(this);
    this.chat = new ChatLoad(this, rng);
    await this.chat.createRooms();
    this.rounds = 0;
  }

  get expectedClicksPerRound() {
    return Math.ceil(this.config.frustClients * this.config.clickRate * this.config.loadMs / 1000);
  }

  /** Runs round `r` of the schedule; resolves {ok, violations, report}. */
  async round(r) {
    const plan = this.schedule[r - 1];
    if (!this.cl || this.failed || this.clicks.size + this.expectedClicksPerRound * 1.3 > this.config.maxClicksPerCluster) {
      await this.freshCluster();
    }
    this.failed = false;
    this.rounds += 1;
    const { cl, config } = this;
    const tl = new Timeline();
    const problems = [];
    this.stats.throttled = 0;
    const rng = makeRng(plan.loadSeed);
    const roundStart = Date.now();
    // A marker in every log, so a report shows only this round's lines.
    const marker = `=== chaos round ${r} starts`;
    for (const p of cl.all()) p.logs.push(marker);
    this.marker = marker;
    tl.note(`round ${r} on cluster ${this.cluster} (its round ${this.rounds}); NATS now: ${await this.natsPicture()}`);

    // Load from every client, and the two fault lanes, at once.
    const loadStart = Date.now();
    const stopAt = loadStart + config.loadMs;
    const lanes = ['nats', 'proc'].map((lane) => runLane(cl, plan.faults.filter((f) => f.lane === lane), loadStart, tl, problems));
    // A driver that throws is a bug of this suite; it is reported, and the round goes on.
    const guard = (what, p) => p.catch((err) => problems.push({ invariant: 'load-driver', message: `${what}: ${err.stack ?? err}` }));
    const load = [
      ...this.frust.clients.map((c) => guard(`frust client ${c.index}`, this.frust.drive(c, makeRng(rng.seed()), stopAt, r))),
      ...this.chat.slots.map((s) => guard(`chat ${s.label}`, this.chat.drive(s, makeRng(rng.seed()), stopAt, r))),
    ];
    await Promise.all(lanes);
    tl.note('faults done, everything restarted');
    await Promise.all(load);
    tl.note('load stopped, every answer in');
    // A process the schedule did not take down (or could not bring back) is a finding; restart it.
    for (const p of cl.all()) {
      if (p.alive()) continue;
      problems.push({ invariant: 'process-alive', message: `${p.name} is not running (${JSON.stringify(p.exit)}) after the faults were undone`, log: p.tail(40) });
      await p.start().catch((err) => problems.push({ invariant: 'restart', message: `${p.name}: ${err.message.split('\n')[0]}` }));
    }

    const q = await quiesce(cl, { timeoutMs: config.quiesceMs, stableMs: config.stableMs });
    tl.note(q.settled ? `settled after ${(q.ms / 1000).toFixed(1)} s` : `NOT settled after ${(q.ms / 1000).toFixed(1)} s: ${q.why}`);
    const violations = [...problems];
    if (!q.settled) violations.push({ invariant: 'quiescence', message: `the cluster did not settle within ${config.quiesceMs} ms: ${q.why}` });

    // The checks, from outside.
    const day = dayStart(Math.floor(cl.now()));
    const survivors = new Set(this.frust.clients.flatMap((c) => c.conns).filter((c) => c.connected && !c.disconnects.length).map((c) => c.label));
    const digests = new Set(q.snapshots.map(digest));
    if (digests.size === 1) {
      violations.push(...checkFrust({ ...q.snapshots[0], edge: 'every edge' }, this.clicks, { day, survivors, t0: tl.t0 }));
    } else {
      violations.push({ invariant: 'edges-agree', message: `the edges serve different counts: ${q.snapshots.map((x) => `${x.edge} total ${x.stats.click_count_total}, ${x.latest.length} stored`).join('; ')}` });
      for (const snap of q.snapshots) violations.push(...checkFrust(snap, this.clicks, { day, survivors, t0: tl.t0 }));
    }
    const recorders = this.frust.clients.flatMap((c) => c.conns);
    violations.push(...checkFrustDeliveries(recorders, this.clicks, `${this.tag}.`));
    let histories = new Map();
    try {
      histories = await this.chat.histories();
      violations.push(...checkChat(histories, this.messages, this.chat.slots.flatMap((s) => s.conns)));
    } catch (err) {
      violations.push({ invariant: 'chat-history-readable', message: `reading chat history failed: ${err.message.split('\n')[0]}` });
    }
    violations.push(...checkRefusals(this.clicks, this.messages, r, tl.t0));
    // Open defects: checked and printed every round, failing it only with
    // SWITCHYARD_CHAOS_STRICT=1 (the soak's default), so the test command stays a gate for
    // everything that holds. See RELIABILITY.md, "Open".
    const open = [];
    if (process.env.SWITCHYARD_CHAOS_STRICT !== '1') {
      for (let i = violations.length - 1; i >= 0; i -= 1) {
        if (OPEN_DEFECTS.has(violations[i].invariant)) open.unshift(...violations.splice(i, 1));
      }
      for (const o of open) console.log(`# OPEN DEFECT (not failing the round) [${o.invariant}] ${o.message}`);
    }

    // On a failure, what the edges counted as refused (a silent refusal's reason is only there).
    const metrics = violations.length ? await this.edgeMetrics() : [];
    const report = this.report(r, plan, tl, q, histories, Date.now() - roundStart, violations, metrics);
    if (violations.length) this.failed = true;
    this.record({
      seed: config.seed, round: r, cluster: this.cluster, ms: Date.now() - roundStart, faults: plan.faults.map(describeFault),
      timeline: tl.lines, clicks: this.tallyOf(this.clicks, r), messages: this.tallyOf(this.messages, r),
      stored: q.snapshots[0]?.latest.length, counted: q.snapshots[0]?.stats.click_count_total,
      chatStored: [...histories.values()].reduce((n, h) => n + h.messages.length, 0),
      chatLiveGaps: this.chatDeliveryGaps(histories),
      violations: violations.map(({ invariant, message }) => ({ invariant, message })),
    });
    return { ok: violations.length === 0, violations, report };
  }

  /**
   * Not asserted (fan-out over core NATS is at most once), reported: stored messages that a
   * member's connection, open from before the send until now, never received.
   */
  chatDeliveryGaps(histories) {
    let expected = 0;
    let missed = 0;
    let ownMissed = 0;
    const conns = this.chat.slots.flatMap((s) => s.conns).filter((c) => c.isOpen && c.openedAt);
    const got = new Map(conns.map((c) => [c, new Set(c.all('message-receive').map((m) => m?.id))]));
    for (const room of this.chat.rooms) {
      for (const m of histories.get(room.id)?.messages ?? []) {
        const sentAt = this.messages.get(m.message)?.sentAt;
        if (sentAt === undefined) continue;
        for (const c of conns) {
          if (!room.members.includes(c.user) || c.openedAt > sentAt) continue;
          expected += 1;
          if (!got.get(c).has(m.id)) {
            missed += 1;
            if (c.user === m.sender_id) ownMissed += 1;
          }
        }
      }
    }
    return { expected, missed, ownMissed };
  }

  /** Non-zero reject and bus-failure counters of every live edge (since its last start). */
  async edgeMetrics() {
    const out = [];
    for (const e of this.cl.edges.filter((x) => x.alive() && !x.paused)) {
      try {
        const res = await fetch(`${e.url}/metrics`, { signal: AbortSignal.timeout(3000) });
        const lines = (await res.text()).split('\n')
          .filter((l) => /^switchyard_(rejects_total|bus_durable_failed_total|bus_durable_retries_total)\b/.test(l) && !/ 0$/.test(l));
        out.push(`${e.name}: ${lines.join('; ') || 'no rejects'}`);
      } catch (err) {
        out.push(`${e.name}: /metrics unreadable (${err.message})`);
      }
    }
    return out;
  }

  tallyOf(ledger, round) {
    const t = {};
    for (const e of ledger.values()) if (e.round === round) t[e.status] = (t[e.status] ?? 0) + 1;
    return t;
  }

  /** One JSON line per round to $SWITCHYARD_CHAOS_RESULTS, if set (the soak's record). */
  record(result) {
    const file = process.env.SWITCHYARD_CHAOS_RESULTS;
    if (file) fs.appendFileSync(file, `${JSON.stringify({ at: new Date().toISOString(), ...result })}\n`);
  }

  async natsPicture() {
    try {
      const { roles } = await natsRoles(this.cl);
      return [...roles].map(([n, rs]) => `${n}: ${rs.join(', ') || '-'}`).join(' | ');
    } catch (err) {
      return `(unreadable: ${err.message})`;
    }
  }

  report(r, plan, tl, q, histories, ms, violations, metrics = []) {
    const tally = (ledger, round) => Object.entries(this.tallyOf(ledger, round)).map(([k, n]) => `${k} ${n}`).join(', ');
    const clicksThisRound = [...this.clicks.values()].filter((e) => e.round === r).length;
    const msgsThisRound = [...this.messages.values()].filter((e) => e.round === r).length;
    const snap = q.snapshots[0];
    const recorders = this.frust.clients.flatMap((c) => c.conns);
    const okClicks = [...this.clicks.values()].filter((e) => e.status === 'ok');
    const seenLive = new Set(recorders.flatMap((c) => c.all('click').map((x) => x?.comment)));
    const neverSeen = okClicks.filter((e) => !seenLive.has(e.comment)).length;
    const storedMsgs = [...histories.values()].reduce((n, h) => n + h.messages.length, 0);
    const chatGaps = this.chatDeliveryGaps(histories);
    const lines = [
      `chaos round ${r}/${this.config.rounds} (seed ${this.config.seed}, cluster ${this.cluster}, ${(ms / 1000).toFixed(1)} s): ${violations.length ? `FAILED, ${violations.length} violations` : 'ok'}`,
      `  faults drawn: ${plan.faults.map(describeFault).join('; ')}`,
      `  frust: ${clicksThisRound} clicks this round (${tally(this.clicks, r)}); not sent (${MAX_IN_FLIGHT} acks outstanding) ${this.stats.throttled}; ` +
        `cluster total stored ${snap?.latest.length ?? '?'} counted ${snap?.stats.click_count_total ?? '?'}; acked clicks no client saw live: ${neverSeen}/${okClicks.length}`,
      `  chat: ${msgsThisRound} messages this round (${tally(this.messages, r)}); stored ${storedMsgs} in ${histories.size} rooms; ` +
        `live deliveries missed by member connections open throughout: ${chatGaps.missed}/${chatGaps.expected} (senders' own: ${chatGaps.ownMissed})`,
      `  connections so far: ${this.stats.frustConnects} Socket.IO, ${this.stats.chatConnects} chat`,
      ...tl.lines.map((l) => `  ${l}`),
    ];
    if (violations.length) {
      lines.push('  violations:');
      for (const x of violations) lines.push(`    [${x.invariant}] ${x.message}`);
      lines.push(`  ${replayHint(this.config, r)}`);
      if (q.js) {
        const st = Object.entries(q.js.streams).map(([n, x]) => `${n} leader ${x.leader}, ${x.messages} messages, last seq ${x.lastSeq}`).join('; ');
        const cs = q.js.consumers.filter((c) => c.stream === 'FACTS' || c.redelivered || c.pending || c.ackPending)
          .map((c) => `${c.stream}/${c.name} leader ${c.leader} delivered ${c.delivered} ack floor ${c.ackFloor} redelivered ${c.redelivered} pending ${c.pending}/${c.ackPending}`);
        lines.push(`  JetStream at the check: ${st}`, ...cs.map((c) => `    ${c}`));
      }
      if (metrics.length) lines.push(`  edge counters: ${metrics.join(' | ')}`);
      lines.push('  warnings and errors logged by the processes (last 12 each):');
      for (const p of this.cl.all()) {
        const from = p.logs.lastIndexOf(this.marker);
        const alerts = p.logs.slice(Math.max(0, from)).map(plain).filter((l) => ALERT.test(l)).slice(-12);
        if (alerts.length) lines.push(`  --- ${p.name}\n${alerts.map((l) => `    ${l}`).join('\n')}`);
      }
    }
    return lines.join('\n');
  }

  async close() {
    const cl = this.cl;
    this.cl = null;
    if (!cl) return;
    for (const c of this.frust?.clients ?? []) for (const conn of c.conns) conn.close();
    await Promise.all((this.chat?.slots ?? []).flatMap((s) => s.conns.map((c) => c.close().catch(() => {}))));
    // Processes a fault left half-dead are not this close's concern: the round reported them.
    try {
      await cl.close();
    } catch (err) {
      this.closeError = err;
    }
  }
}

export { HOUR, DAY };
