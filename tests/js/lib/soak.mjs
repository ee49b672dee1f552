// The memory soak: drives connection churn, clicks and chat against one switchyard process for a
// given time, with nothing scraping /metrics, samples the process's RssAnon every second, and
// reports what stays retained after a warm-up, per operation, per connection and per packet.
// `scripts/soak.mjs` runs it for minutes (embedded mode or one cluster edge); the test command
// runs a short one (`tests/js/soak.test.mjs`) that fails on a leak.
//
// The clients here keep nothing of what they receive: only the server's memory is measured, and
// a long soak must not grow the driver either.

import fs from 'node:fs';
import { spawn } from 'node:child_process';
import io2 from 'sio2';
import { io as io4 } from 'sio4';
import WebSocket from 'ws';
import { SOCKET_PATH } from './clients.mjs';
import { BIN, sleep } from './server.mjs';
import { mintToken, createRoom } from './chat.mjs';

export const MiB = 1024 * 1024;

/** Anonymous resident memory of a process (heap and stacks: what a leak grows), in bytes. */
export function rssAnon(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^RssAnon:\s+(\d+)\s+kB/m.exec(status);
  if (!kb) throw new Error(`no RssAnon in /proc/${pid}/status`);
  return Number(kb[1]) * 1024;
}

/** Source addresses for churn, so per-client state (rate limiter keys, caps) is churned too. */
const churnAddress = (i) => `127.0.${1 + (Math.floor(i / 250) % 200)}.${1 + (i % 250)}`;

// Socket.IO: a client of each kind the frontends use. Polling cannot pick a source address.
const KINDS = [
  { version: 4, transport: 'websocket' },
  { version: 2, transport: 'websocket' },
  { version: 4, transport: 'polling' },
  { version: 2, transport: 'default' }, // polling, then the upgrade
];

function sioConnect(url, { version, transport }, { localAddress, timeoutMs = 5000 } = {}) {
  const opts = { path: SOCKET_PATH, forceNew: true, reconnection: false, timeout: timeoutMs };
  if (transport === 'websocket') {
    opts.transports = ['websocket'];
    if (localAddress) opts.localAddress = localAddress;
  } else if (transport === 'polling') {
    opts.transports = ['polling'];
  }
  const socket = version === 2 ? io2(url, opts) : io4(url, opts);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('connect timeout')), timeoutMs);
    const fail = (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('connect_error', fail);
    if (version === 2) socket.once('error', fail);
  });
}

/**
 * Resolves when `emitter` (a Socket.IO socket or a websocket) emits `event` with a payload
 * `matches` accepts; rejects after `timeoutMs`.
 */
function arrival(emitter, event, matches, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`${what} not received`)), timeoutMs);
    const listener = (payload) => matches(payload) && done();
    const done = (err) => {
      clearTimeout(timer);
      emitter.off(event, listener);
      if (err) reject(err);
      else resolve();
    };
    emitter.on(event, listener);
  });
}

/** Waits for `socket` to receive the broadcast of its own click (comment `tag`). */
const ownClick = (socket, tag, timeoutMs) => arrival(socket, 'click', (c) => c?.comment === tag, timeoutMs, 'own click');

/** What the loads did so far; sampled with the memory. */
export class Counts {
  constructor() {
    this.connections = 0; // connections opened and closed again (churn)
    this.clicks = 0; // clicks sent (churn and persistent senders)
    this.chatMessages = 0; // chat messages sent
    this.failures = 0;
    this.lastFailure = '';
  }

  get packets() {
    return this.clicks + this.chatMessages;
  }

  fail(what, err) {
    this.failures += 1;
    this.lastFailure = `${what}: ${err?.message ?? err}`;
  }

  snapshot() {
    return { connections: this.connections, clicks: this.clicks, chatMessages: this.chatMessages, failures: this.failures };
  }
}

/** Waves of Socket.IO clients of every kind: connect, auth, one click, wait for it, close. */
async function frustChurn(url, { wave, stop, counts }) {
  let n = 0;
  while (!stop.done) {
    await Promise.all(Array.from({ length: wave }, async () => {
      const i = n++;
      const kind = KINDS[i % KINDS.length];
      let socket;
      try {
        socket = await sioConnect(url, kind, { localAddress: churnAddress(i) });
        const user = `soak${i % 5000}`;
        const tag = `churn-${i}`;
        socket.emit('auth', user);
        const seen = ownClick(socket, tag, 10_000);
        socket.emit('click', { user, comment: tag, style: 'soak' });
        counts.clicks += 1;
        await seen;
        counts.connections += 1;
      } catch (err) {
        counts.fail(`churn v${kind.version}/${kind.transport}`, err);
      } finally {
        socket?.close();
      }
    }));
  }
}

/** Persistent Socket.IO connections clicking at `rate` per second in total, without acks. */
async function frustClicks(url, { clients, rate, stop, counts }) {
  const sockets = await Promise.all(Array.from({ length: clients }, (_, i) => sioConnect(url, KINDS[i % 2])));
  const users = sockets.map((s, i) => {
    const user = `steady${i}`;
    s.emit('auth', user);
    return user;
  });
  let i = 0;
  const every = 1000 / rate;
  const started = Date.now();
  while (!stop.done) {
    const k = i % sockets.length;
    sockets[k].emit('click', { user: users[k], comment: `steady-${i}`, style: 'soak' });
    counts.clicks += 1;
    i += 1;
    const ahead = started + i * every - Date.now();
    if (ahead > 0) await sleep(ahead);
  }
  for (const s of sockets) s.close();
}

function chatOpen(server, user) {
  const token = mintToken({ sub: user, secret: server.secret });
  const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/chat?token=${token}`);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('chat connect timeout')); }, 5000);
    ws.once('open', () => { clearTimeout(timer); resolve(ws); });
    ws.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

/** Resolves when `ws` receives the message-receive of `text`. */
const chatEcho = (ws, text, timeoutMs) => arrival(ws, 'message', (data) => String(data).includes(text), timeoutMs, 'own message');

const chatSend = (ws, roomId, text) => ws.send(JSON.stringify({ type: 'message-send', payload: { room_id: roomId, message: text } }));

/**
 * Chat: `rooms` rooms of `members`, each member connected for the whole run; one message per
 * `gapMs` per room, each waiting for its own echo; and chat connection churn (a member of a room
 * connects, joins, sends one message, waits for it, leaves), one at a time.
 */
async function chat(server, { rooms, members, gapMs, stop, counts }) {
  const owners = [];
  const roomIds = [];
  for (let r = 0; r < rooms; r++) {
    const users = Array.from({ length: members }, (_, m) => `soak-r${r}-m${m}`);
    roomIds.push((await createRoom(server, users[0], { name: `soak ${r}`, members: users.slice(1) })).room_id);
    owners.push(users);
  }
  const steady = await Promise.all(owners.map((users) => Promise.all(users.slice(1).map((u) => chatOpen(server, u)))));
  // The window fill may have left a backlog in the rooms' partitions (a cluster's worker takes
  // chat one message at a time per partition): one echo per room first, however long it takes.
  await Promise.all(roomIds.map((roomId, r) => {
    const echo = chatEcho(steady[r][0], `soak probe ${r}`, 180_000);
    chatSend(steady[r][0], roomId, `soak probe ${r}`);
    return echo;
  }));
  const rooms_ = roomIds.map((roomId, r) => (async () => {
    let i = 0;
    while (!stop.done) {
      const ws = steady[r][i % steady[r].length];
      const text = `soak steady ${r} ${i++}`;
      try {
        const echo = chatEcho(ws, text, 10_000);
        chatSend(ws, roomId, text);
        counts.chatMessages += 1;
        await echo;
      } catch (err) {
        counts.fail('chat message', err);
      }
      await sleep(gapMs);
    }
  })());
  const churn = (async () => {
    let i = 0;
    while (!stop.done) {
      const r = i % rooms;
      let ws;
      try {
        ws = await chatOpen(server, owners[r][0]);
        ws.send(JSON.stringify({ type: 'chat-join', payload: {} }));
        const text = `soak churn ${i}`;
        const echo = chatEcho(ws, text, 10_000);
        chatSend(ws, roomIds[r], text);
        counts.chatMessages += 1;
        await echo;
        counts.connections += 1;
      } catch (err) {
        counts.fail('chat churn', err);
      } finally {
        ws?.close();
      }
      i += 1;
    }
  })();
  await Promise.all([...rooms_, churn]);
  for (const ws of steady.flat()) ws.close();
}

/**
 * Fills the bounded per-packet windows before measuring: each edge remembers the last 65,536
 * fan-out ids of each API to drop repeats, and until that is full its growth is the window
 * filling, not a leak. Done with the built-in load generator: 70,000 clicks, then 70,000 chat
 * messages.
 */
export async function fillWindows(server, { packets = 70_000, rate = 3000 } = {}) {
  const seconds = Math.ceil(packets / rate);
  const common = ['--target', server.url, '--rate', String(rate), '--duration', `${seconds}s`, '--settle', '2s'];
  await bench(server, [...common, '--clients', '10', '--senders', '10']);
  await bench(server, [...common, '--api', 'chat', '--rooms', '20', '--room-size', '2']);
}

function bench(server, args) {
  const env = { ...process.env, SWITCHYARD_JWT_SECRET: server.secret ?? '', SWITCHYARD_ADMIN_TOKEN: server.adminToken ?? '' };
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['bench', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`bench ${args.join(' ')} exited ${code}:\n${out.slice(-2000)}`))));
  });
}

export const SOAK_DEFAULTS = {
  durationMs: 60_000,
  warmupMs: 20_000,
  sampleMs: 1000,
  churnWave: 20,
  steadyClients: 10,
  clickRate: 200,
  chatRooms: 4,
  chatMembers: 3,
  chatGapMs: 100,
};

/**
 * Runs every load for `durationMs` against `server` (a handle with `url` and `secret`, from
 * startChatServer or a cluster edge) while sampling `pid`'s RssAnon; resolves with the samples
 * and their analysis. `onSample` sees each sample as it is taken.
 */
export async function soak(server, pid, options = {}) {
  const o = { ...SOAK_DEFAULTS, ...options };
  const counts = new Counts();
  const stop = { done: false };
  const samples = [];
  const t0 = Date.now();
  const take = () => {
    const s = { t: Date.now() - t0, rss: rssAnon(pid), ...counts.snapshot() };
    samples.push(s);
    o.onSample?.(s, counts);
  };
  take();
  const sampler = setInterval(take, o.sampleMs);
  const loads = [
    frustChurn(server.url, { wave: o.churnWave, stop, counts }),
    frustClicks(server.url, { clients: o.steadyClients, rate: o.clickRate, stop, counts }),
    chat(server, { rooms: o.chatRooms, members: o.chatMembers, gapMs: o.chatGapMs, stop, counts }),
  ];
  const timer = setTimeout(() => { stop.done = true; }, o.durationMs);
  try {
    await Promise.all(loads);
  } finally {
    stop.done = true;
    clearTimeout(timer);
    clearInterval(sampler);
  }
  take();
  return { samples, counts, analysis: analyse(samples, o.warmupMs) };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * What stayed retained after the warm-up: the median RssAnon of the last tenth of the samples
 * minus that of the first tenth after the warm-up (medians, so one allocator burst does not
 * decide), divided by what was done in between; and the least-squares slope after the warm-up.
 */
export function analyse(samples, warmupMs) {
  const after = samples.filter((s) => s.t >= warmupMs);
  if (after.length < 6) throw new Error(`only ${after.length} samples after the warm-up`);
  const k = Math.max(3, Math.floor(after.length / 10));
  const head = after.slice(0, k);
  const tail = after.slice(-k);
  const mid = (xs, f) => median(xs.map(f));
  const growth = mid(tail, (s) => s.rss) - mid(head, (s) => s.rss);
  const done = (f) => mid(tail, f) - mid(head, f);
  const connections = done((s) => s.connections);
  const packets = done((s) => s.clicks + s.chatMessages);
  const n = after.length;
  const mt = after.reduce((a, s) => a + s.t, 0) / n;
  const mr = after.reduce((a, s) => a + s.rss, 0) / n;
  const slope = after.reduce((a, s) => a + (s.t - mt) * (s.rss - mr), 0) / after.reduce((a, s) => a + (s.t - mt) ** 2, 0);
  return {
    start: mid(head, (s) => s.rss),
    end: mid(tail, (s) => s.rss),
    peak: Math.max(...samples.map((s) => s.rss)),
    growth,
    connections,
    packets,
    perOperation: growth / Math.max(1, connections + packets),
    perConnection: growth / Math.max(1, connections),
    perPacket: growth / Math.max(1, packets),
    slopePerMinute: slope * 60_000,
    measuredMs: tail.at(-1).t - head[0].t,
  };
}

/** One paragraph for logs and BENCHMARKS.md. */
export function describe(a, counts) {
  const kib = (b) => `${(b / 1024).toFixed(1)} KiB`;
  const mib = (b) => `${(b / MiB).toFixed(1)} MiB`;
  return [
    `RssAnon after warm-up ${mib(a.start)} → ${mib(a.end)} (peak ${mib(a.peak)}): ${a.growth >= 0 ? '+' : ''}${kib(a.growth)} over ${(a.measuredMs / 1000).toFixed(0)} s, slope ${kib(a.slopePerMinute)}/min`,
    `measured: ${a.connections} connections opened and closed, ${a.packets} packets`,
    `retained: ${a.perOperation.toFixed(1)} B per operation (all of it charged to connections: ${a.perConnection.toFixed(1)} B each; to packets: ${a.perPacket.toFixed(1)} B each)`,
    `whole run: ${counts.connections} connections, ${counts.clicks} clicks, ${counts.chatMessages} chat messages, ${counts.failures} failures${counts.failures ? ` (last: ${counts.lastFailure})` : ''}`,
  ].join('\n');
}
