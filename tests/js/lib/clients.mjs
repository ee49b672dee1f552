// Socket.IO clients of both lines (2.3.0 → Engine.IO v3, 4.x → Engine.IO v4) wrapped so tests
// can wait for what the server sent and assert what it did not send.

import io2 from 'sio2';
import { io as io4 } from 'sio4';
import { Recorder, show } from './recorder.mjs';

export const SOCKET_PATH = '/api/socket.io';
/** Server → client events every wrapper records. */
export const RECORDED = ['click', 'event', 'stats', 'status', 'message'];
/** Client variants: [version, transport]. `default` = polling first, then upgrade. */
export const VARIANTS = [
  [2, 'default'],
  [2, 'websocket'],
  [4, 'websocket'],
  [4, 'polling'],
];

const open = new Set();
let counter = 0;

export class Client extends Recorder {
  constructor(socket, label) {
    super(label, { key: 'event', waitMs: 5000, quietMs: 500 });
    this.socket = socket;
    this.received = Object.fromEntries(RECORDED.map((e) => [e, []]));
    this.disconnects = [];
    for (const event of RECORDED) {
      socket.on(event, (payload) => {
        this.received[event].push(payload);
        this.record(event, payload);
      });
    }
    // A disconnect ends no wait: reconnection is off, so what did not arrive times out.
    socket.on('disconnect', (reason) => this.disconnects.push(reason));
  }

  get connected() {
    return this.socket.connected;
  }

  /** The engine's current transport name: 'polling' or 'websocket'. */
  get transport() {
    return this.socket.io?.engine?.transport?.name;
  }

  latest(event) {
    const list = this.received[event];
    return list[list.length - 1];
  }

  emit(...args) {
    this.socket.emit(...args);
  }

  /** What this client got, for error messages. */
  describe(event) {
    const entries = event ? this.log.filter((e) => e.event === event) : this.log;
    const shown = entries.slice(-25).map((e) => `  #${e.seq} ${e.event} ${show(e.payload)}`);
    return `${this.label} received ${entries.length} ${event ?? 'events'}${
      entries.length > 25 ? ' (last 25)' : ''}${shown.length ? `:\n${shown.join('\n')}` : ''}${
      this.disconnects.length ? `\n  disconnects: ${show(this.disconnects)}` : ''}`;
  }

  /** Resolves once the latest `status` has `user_count === n`. */
  waitForUserCount(n, timeoutMs = 5000) {
    if (this.latest('status')?.user_count === n) return Promise.resolve(this.latest('status'));
    return this.waitFor('status', (s) => s?.user_count === n && this.latest('status') === s, timeoutMs, { from: this.seq });
  }

  /** Resolves once the engine has upgraded to websocket. */
  async waitForUpgrade(timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    while (this.transport !== 'websocket') {
      if (Date.now() > deadline) {
        throw new Error(`${this.label}: transport still ${this.transport} after ${timeoutMs} ms (no upgrade to websocket)`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  close() {
    open.delete(this);
    try {
      this.socket.close();
    } catch { /* already closed */ }
  }
}

/**
 * Connects a client of `version` (2 or 4) over `transport` ('default' | 'websocket' |
 * 'polling') to `server` (a handle from startServer, or a URL). Resolves once connected.
 * Reconnection is off: a dropped connection shows up as a disconnect, never silently heals.
 * `localAddress` (websocket only) picks the client's source address, e.g. another 127.0.0.0/8
 * address, so the server counts it as a different client.
 */
export function connect(server, version, transport = 'default', { timeoutMs = 5000, label, localAddress } = {}) {
  const url = typeof server === 'string' ? server : server.url;
  const opts = { path: SOCKET_PATH, forceNew: true, reconnection: false, timeout: timeoutMs };
  if (localAddress) opts.localAddress = localAddress;
  if (transport === 'websocket') opts.transports = ['websocket'];
  else if (transport === 'polling') opts.transports = ['polling'];
  else if (transport !== 'default') throw new Error(`unknown transport ${transport}`);
  let socket;
  if (version === 2) socket = io2(url, opts);
  else if (version === 4) socket = io4(url, opts);
  else throw new Error(`unknown client version ${version}`);
  const client = new Client(socket, label ?? `v${version}/${transport}#${++counter}`);
  open.add(client);
  return new Promise((resolve, reject) => {
    const fail = (what) => (err) => {
      clearTimeout(timer);
      client.close();
      reject(new Error(`${client.label}: ${what} connecting to ${url}${SOCKET_PATH}: ${err?.message ?? err ?? ''}` +
        `${err?.description ? ` (${show(err.description?.message ?? err.description)})` : ''}`));
    };
    const timer = setTimeout(() => fail('timeout')(`not connected after ${timeoutMs} ms`), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(client);
    });
    socket.once('connect_error', fail('connect_error'));
    if (version === 2) {
      socket.once('error', fail('error'));
      socket.once('connect_timeout', fail('connect_timeout'));
    }
  });
}

/** Closes every client still open (for `after` hooks). */
export function closeAllClients() {
  for (const c of [...open]) c.close();
}

// ---------------------------------------------------------------------------------------------
// Payload checks shared by the test files

export const TOAST_STYLE = 'medium highlight';
export const toast = (text) => ({ text, style: TOAST_STYLE, type: 'toast' });
export const isToast = (text) => (m) => m?.text === text;

export const STATS_KEYS = [
  'click_count_total', 'click_count_today', 'click_count_hour',
  'event_count_total', 'event_count_today', 'event_count_hour',
];

/** Python-style strip; empty → null (what the server does to every text field). */
export const norm = (s) => (typeof s === 'string' && s.trim() !== '' ? s.trim() : null);

let uniq = 0;
/** A short unique name (≤ 15 chars) so tests sharing a server never confuse their users. */
export const uid = (prefix = 'u') => `${prefix}${(++uniq).toString(36)}${Math.random().toString(36).slice(2, 6)}`.slice(0, 15);

/** Emits a valid click and resolves with the sender's own copy of the broadcast. */
export function clickAndWait(client, payload, timeoutMs = 5000) {
  const from = client.mark();
  const want = { user: norm(payload.user), comment: norm(payload.comment), style: norm(payload.style) };
  client.emit('click', payload);
  return client.waitFor(
    'click',
    (c) => c?.user === want.user && c?.comment === want.comment && c?.style === want.style,
    timeoutMs,
    { from },
  );
}

/** Emits a valid event and resolves with the sender's own copy of the broadcast. */
export function eventAndWait(client, payload, timeoutMs = 5000) {
  const from = client.mark();
  const want = { user: norm(payload.user), name: norm(payload.name) };
  client.emit('event', payload);
  return client.waitFor('event', (e) => e?.user === want.user && e?.name === want.name, timeoutMs, { from });
}
