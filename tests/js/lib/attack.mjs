// Hostile clients for the attack suites, each bounded in count and time and loopback only: raw
// TCP connections that never (or barely) speak, oversize websocket messages, handshake floods;
// plus what the suites measure — the server's resident memory from /proc and its /metrics — and
// a polite Socket.IO client that must be served while an attack runs.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import WebSocket from 'ws';
import { sleep } from './server.mjs';
import { connect, clickAndWait, uid, SOCKET_PATH } from './clients.mjs';

/** Attackers use 127.0.0.1; the polite client another loopback address, so it is another client. */
export const ATTACKER = '127.0.0.1';
export const POLITE = '127.0.0.2';

/** Refuses to aim at anything but this machine. */
export function assertLoopback(server) {
  const host = new URL(server.url).hostname.replace(/^\[|\]$/g, '');
  assert.ok(host === '::1' || /^127\./.test(host), `attacks go to loopback only, not ${host}`);
}

/** VmRSS of the server process, in bytes. */
export function rssBytes(server) {
  const status = fs.readFileSync(`/proc/${server.child.pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  assert.ok(Number.isFinite(kb), 'VmRSS readable');
  return kb * 1024;
}

export const MiB = 1024 * 1024;
export const mib = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`;

/**
 * Sum of the samples of `name` whose labels include `labels` in the server's /metrics (asked
 * from the polite address: the attacker's may be over its connection cap).
 */
export async function metric(server, name, labels = {}) {
  const res = await httpGet(server, '/metrics');
  assert.equal(res.status, 200, `/metrics answered ${res.status}`);
  const text = res.body;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{([^}]*)\})? ([0-9.e+-]+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[4]);
  }
  return sum;
}

/**
 * Opens `count` TCP connections from `localAddress` (at most `parallel` connecting at once).
 * Each entry: {socket, closed (promise of the ms it stayed open), isClosed()}. Connections the
 * server refused or reset count as closed at once. `onOpen(socket)` may start writing.
 */
export async function openTcp(server, count, { localAddress = ATTACKER, parallel = 200, onOpen } = {}) {
  assertLoopback(server);
  const { hostname, port } = new URL(server.url);
  const conns = [];
  const one = () => new Promise((resolve) => {
    const opened = Date.now();
    const socket = net.connect({ host: hostname, port: Number(port), localAddress });
    let closed = false;
    const entry = {
      socket,
      isClosed: () => closed,
      received: '',
      closed: new Promise((done) => socket.once('close', () => { closed = true; done(Date.now() - opened); })),
    };
    socket.setEncoding('latin1');
    socket.on('data', (d) => { if (entry.received.length < 4096) entry.received += d; });
    socket.on('error', () => {});
    socket.once('connect', () => { onOpen?.(socket); resolve(entry); });
    socket.once('close', () => resolve(entry));
    conns.push(entry);
  });
  for (let i = 0; i < count; i += parallel) {
    await Promise.all(Array.from({ length: Math.min(parallel, count - i) }, one));
  }
  return conns;
}

/** Resolves with how many of `conns` the server closed within `ms`; never waits longer. */
export async function closedWithin(conns, ms) {
  let timer;
  const deadline = new Promise((resolve) => { timer = setTimeout(resolve, ms); });
  await Promise.race([Promise.all(conns.map((c) => c.closed)), deadline]);
  clearTimeout(timer);
  return conns.filter((c) => c.isClosed()).length;
}

export function destroyAll(conns) {
  for (const c of conns) c.socket.destroy();
}

/**
 * Slowloris: starts a request head on each connection and drips one more header line every
 * `everyMs`, never finishing, until the server closes it or `maxMs` passed.
 */
export function drip(conns, { everyMs = 300, maxMs = 15_000 } = {}) {
  const started = Date.now();
  for (const c of conns) {
    if (!c.isClosed()) c.socket.write('GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n');
  }
  const timer = setInterval(() => {
    const over = Date.now() - started > maxMs;
    for (const c of conns) {
      if (c.isClosed()) continue;
      if (over) c.socket.destroy();
      else c.socket.write(`X-Drip-${Date.now()}: ${'a'.repeat(8)}\r\n`);
    }
    if (over || conns.every((c) => c.isClosed())) clearInterval(timer);
  }, everyMs);
  return () => clearInterval(timer);
}

/**
 * A raw Engine.IO websocket (no Socket.IO client), resolved once the server's open packet
 * arrived. `protocol` 4 or 3. Entry: {ws, closed (promise of {code, reason}), isClosed()}.
 */
export function rawEngineSocket(server, { protocol = 4, localAddress = ATTACKER, timeoutMs = 5000 } = {}) {
  assertLoopback(server);
  const url = `${server.url.replace(/^http/, 'ws')}${SOCKET_PATH}/?EIO=${protocol}&transport=websocket`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { localAddress, perMessageDeflate: false });
    let closed = false;
    const entry = {
      ws,
      isClosed: () => closed,
      closed: new Promise((done) => ws.once('close', (code, reason) => { closed = true; done({ code, reason: String(reason) }); })),
    };
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`no open packet within ${timeoutMs} ms`)); }, timeoutMs);
    ws.on('error', () => {});
    ws.once('message', (data) => {
      clearTimeout(timer);
      assert.match(String(data), /^0\{"sid"/, 'the Engine.IO open packet');
      if (protocol === 4) ws.send('40'); // join the namespace (v5); v4 is joined at once
      resolve(entry);
    });
    ws.once('close', () => { clearTimeout(timer); reject(new Error('closed before the open packet')); });
  });
}

/**
 * The polite client: a Socket.IO 4 websocket client from another address that connects, clicks
 * and receives its own click back. Resolves with the client (still connected); throws if it was
 * not served.
 */
export async function politeClick(server, { client, localAddress = POLITE } = {}) {
  const c = client ?? await connect(server, 4, 'websocket', { localAddress, label: 'polite', timeoutMs: 10_000 });
  const user = uid('polite');
  await clickAndWait(c, { user, comment: 'still served' }, 10_000);
  return c;
}

/** Runs `attack()` while a polite client keeps clicking (a click every ~300 ms). */
export async function whilePoliteClicks(server, attack) {
  const polite = await politeClick(server);
  let stop = false;
  let clicks = 0;
  const clicking = (async () => {
    while (!stop) {
      await politeClick(server, { client: polite });
      clicks += 1;
      await sleep(300);
    }
  })();
  try {
    return await attack();
  } finally {
    stop = true;
    await clicking;
    assert.ok(clicks >= 1, 'the polite client clicked during the attack');
    // A newcomer is served too, not only the one already connected.
    (await politeClick(server)).close();
    polite.close();
  }
}

/**
 * Samples the server's RSS every 100 ms while `during` runs; resolves with {result, before,
 * peak} (bytes). The peak is what an attack made the server hold at its worst.
 */
export async function measureRss(server, during) {
  const before = rssBytes(server);
  let peak = before;
  const timer = setInterval(() => {
    try { peak = Math.max(peak, rssBytes(server)); } catch { /* exited: the test fails elsewhere */ }
  }, 100);
  try {
    const result = await during();
    peak = Math.max(peak, rssBytes(server));
    return { result, before, peak };
  } finally {
    clearInterval(timer);
  }
}

/**
 * A GET from a chosen source address (fetch cannot pick one), on a fresh connection. Resolves
 * {status, body, headers}, or {status: 'closed'} when the server closed without an answer.
 */
export function httpGet(server, route, { localAddress = POLITE, timeoutMs = 5000 } = {}) {
  assertLoopback(server);
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve) => {
    const req = http.get(
      { host: hostname, port: Number(port), path: route, localAddress, agent: false, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }));
        res.on('error', () => resolve({ status: 'closed' }));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 'closed' }));
  });
}
