// Chat API helpers: a server started with chat configuration, HS256 JWTs minted here, a recording
// websocket client for `/chat`, and REST helpers for `/api/chat`.
//
// Contract (implemented by the server), beyond lib/server.mjs:
//   env SWITCHYARD_JWT_SECRET (HS256 secret), SWITCHYARD_ADMIN_TOKEN (opaque operator token),
//   optional SWITCHYARD_CHAT_MAX_FRAME (bytes, default 65536).
//   ws://host/chat?token=<jwt> or header `Authorization: Bearer <jwt>`; bad/missing token → 401.
//   Packets: JSON text frames {"type", "payload"}.

import crypto from 'node:crypto';
import http from 'node:http';
import { execFile } from 'node:child_process';
import WebSocket from 'ws';
import { startServer, BIN } from './server.mjs';
import { Recorder, show } from './recorder.mjs';

/** Default wait for something that must arrive (generous; never a speed assertion). */
export const WAIT_MS = 5000;
/** How long "nothing arrives" is watched for. */
export const QUIET_MS = 800;

const rnd = () => crypto.randomBytes(6).toString('hex');
export const SECRET = `e2e-chat-secret-${rnd()}`;
export const ADMIN_TOKEN = `e2e-admin-${rnd()}`;

const any = () => true;
export { show };

let uniq = 0;
/** A unique user id, so tests sharing a server never see each other's notifications. */
export const uid = (prefix = 'u') => `${prefix}-${(++uniq).toString(36)}${crypto.randomBytes(3).toString('hex')}`;

// ---------------------------------------------------------------------------------------------
// JWT

export const b64url = (input) => Buffer.from(input).toString('base64url');
export const nowSecs = () => Math.floor(Date.now() / 1000);

/**
 * Mints a JWT. `alg` 'HS256' (default) signs with `secret` (HMAC-SHA256, base64url);
 * 'none' produces an unsigned token `header.payload.` (must be refused by the server).
 * `exp` defaults to an hour from now; `claims` are merged into the payload.
 */
export function mintToken({ sub, exp = nowSecs() + 3600, secret = SECRET, alg = 'HS256', claims = {} } = {}) {
  const header = { alg, typ: 'JWT' };
  const payload = { ...(sub === undefined ? {} : { sub }), ...(exp === null ? {} : { exp }), iat: nowSecs(), ...claims };
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  if (alg === 'none') return `${signingInput}.`;
  if (alg !== 'HS256') throw new Error(`mintToken: unsupported alg ${alg}`);
  const sig = crypto.createHmac('sha256', secret).update(signingInput).digest('base64url');
  return `${signingInput}.${sig}`;
}

/** {header, payload} of a JWT, without verifying it. */
export function decodeJwt(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error(`not a JWT (${parts.length} parts): ${token.slice(0, 80)}`);
  return {
    header: JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')),
  };
}

/** True when `token` carries a valid HS256 signature under `secret`. */
export function verifyHs256(token, secret) {
  const parts = token.split('.');
  if (parts.length !== 3) return false;
  const want = crypto.createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest();
  const got = Buffer.from(parts[2], 'base64url');
  return got.length === want.length && crypto.timingSafeEqual(got, want);
}

/** Runs `<bin> token …args` with `env` merged over the process env; resolves {code, stdout, stderr}. */
export function runCli(args, { env = {}, timeoutMs = 15_000 } = {}) {
  return new Promise((resolve) => {
    execFile(BIN, args, { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr), err });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Server

/**
 * startServer (lib/server.mjs) with the chat configuration: SWITCHYARD_JWT_SECRET and
 * SWITCHYARD_ADMIN_TOKEN set (plus `env`). The handle gains `secret`, `adminToken`,
 * `token(sub, opts)` and `wsUrl()`. `restart()` keeps the env (and thus secret and admin token).
 */
export async function startChatServer({ env = {}, name = 'chat', storeDir, secret = SECRET, adminToken = ADMIN_TOKEN } = {}) {
  const server = await startServer({
    name,
    storeDir,
    env: { SWITCHYARD_JWT_SECRET: secret, SWITCHYARD_ADMIN_TOKEN: adminToken, ...env },
  });
  server.secret = secret;
  server.adminToken = adminToken;
  server.token = (sub, opts = {}) => mintToken({ sub, secret, ...opts });
  server.wsUrl = () => `${server.url.replace(/^http/, 'ws')}/chat`;
  return server;
}

// ---------------------------------------------------------------------------------------------
// Websocket client

const open = new Set();
let counter = 0;

/**
 * One `/chat` connection. Records every packet the server sent, in arrival order, as
 * {type, payload, seq, at, raw}; frames that are not JSON objects are recorded with type
 * '<not-json>' (a server bug, asserted against by `assertAllJson`).
 */
export class ChatConn extends Recorder {
  constructor(ws, { label, user } = {}) {
    super(label ?? `${user ?? 'chat'}#${++counter}`, { key: 'type', waitMs: WAIT_MS, quietMs: QUIET_MS });
    this.ws = ws;
    this.user = user;
    this.closed = null; // {code, reason} once closed
    ws.on('message', (data, isBinary) => this.#record(data, isBinary));
    ws.on('error', (err) => { this.lastError = err; });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: String(reason ?? '') };
      open.delete(this);
      this.end(this.closed);
    });
  }

  #record(data, isBinary) {
    const raw = isBinary ? data : data.toString('utf8');
    let type = '<not-json>';
    let payload = raw;
    if (!isBinary) {
      try {
        const v = JSON.parse(raw);
        if (v && typeof v === 'object' && !Array.isArray(v) && typeof v.type === 'string') {
          type = v.type;
          payload = v.payload;
        }
      } catch { /* recorded as <not-json> */ }
    } else {
      type = '<binary>';
    }
    this.record(type, payload, { raw });
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** What this connection got, for error messages. */
  describe(type) {
    const entries = type ? this.log.filter((e) => e.type === type || e.type === 'error') : this.log;
    const shown = entries.slice(-30).map((e) => `  #${e.seq} ${e.type} ${show(e.payload)}`);
    return `${this.label} received ${entries.length} ${type ? `'${type}'/'error'` : ''} packets${
      entries.length > 30 ? ' (last 30)' : ''}${shown.length ? `:\n${shown.join('\n')}` : ''}${
      this.closed ? `\n  closed: ${show(this.closed)}` : ''}`;
  }

  send(packet) {
    this.sendRaw(JSON.stringify(packet));
  }

  sendRaw(text) {
    if (!this.isOpen) throw new Error(`${this.label}: send on a connection that is not open (${show(this.closed)})`);
    this.ws.send(text);
  }

  /**
   * Sends `packet` (an object, or a raw string) and resolves with the first `responseType`
   * packet matching `predicate` that arrives afterwards. An `error` packet arriving first
   * rejects with its code, so a refused request reads clearly in the failure.
   */
  request(packet, responseType, predicate = any, ms = WAIT_MS) {
    const from = this.mark();
    const done = this.waitFor(responseType, predicate, ms, { from });
    const failed = this.waitFor('error', any, ms + 1000, { from }).then((err) => {
      throw new Error(`${this.label}: got error ${show(err)} instead of '${responseType}' for ${show(packet)}`);
    });
    failed.catch(() => {}); // only matters if it wins the race
    if (typeof packet === 'string') this.sendRaw(packet);
    else this.send(packet);
    return Promise.race([done, failed]);
  }

  /** Sends `packet` (object or raw string) and resolves with the next `error` payload. */
  async sendExpectError(packet, ms = WAIT_MS) {
    const from = this.mark();
    if (typeof packet === 'string') this.sendRaw(packet);
    else this.send(packet);
    return this.waitFor('error', any, ms, { from });
  }

  /** message-send; resolves with this connection's own `message-receive` of it. */
  sendMessage(room_id, message, ms = WAIT_MS) {
    return this.request(
      { type: 'message-send', payload: { room_id, message } },
      'message-receive',
      (p) => p?.room_id === room_id && p?.message === message && p?.sender_id === this.user,
      ms,
    );
  }

  /** list-message-request; resolves with the `list-message-response` payload for that room. */
  history(payload, ms = WAIT_MS) {
    return this.request({ type: 'list-message-request', payload }, 'list-message-response', (p) => p?.room_id === payload.room_id, ms);
  }

  /** Resolves with {code, reason} once the connection is closed (by either side). */
  waitClosed(ms = WAIT_MS) {
    return this.waitEnded(ms);
  }

  /** Closes (normal closure) and resolves once closed; terminates if the close handshake stalls. */
  async close(ms = 3000) {
    if (this.closed) return this.closed;
    try {
      this.ws.close(1000, 'test done');
    } catch { /* not open */ }
    try {
      return await this.waitClosed(ms);
    } catch {
      this.ws.terminate();
      return this.waitClosed(ms).catch(() => null);
    }
  }
}


/**
 * Opens a raw websocket to `/chat`. `token` goes into `?token=` (via 'query', default) or the
 * `Authorization: Bearer` header (via 'header'); `token: null` sends none. Resolves
 * {ws, status: 101} when upgraded, or {status, body} when the upgrade was refused.
 */
export function openRaw(server, { token, via = 'query', headers = {}, timeoutMs = WAIT_MS, wsOptions = {} } = {}) {
  let url = server.wsUrl();
  const hdrs = { ...headers };
  if (token !== null && token !== undefined) {
    if (via === 'query') url += `?token=${encodeURIComponent(token)}`;
    else if (via === 'header') hdrs.Authorization = `Bearer ${token}`;
    else throw new Error(`unknown via ${via}`);
  }
  const ws = new WebSocket(url, { headers: hdrs, handshakeTimeout: timeoutMs, ...wsOptions });
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (fn) => {
      if (settled) return;
      settled = true;
      fn();
    };
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { if (body.length < 2000) body += c; });
      const done = () => settle(() => {
        ws.terminate();
        resolve({ status: res.statusCode, body, headers: res.headers });
      });
      res.on('end', done);
      res.on('error', done);
      setTimeout(done, 1000); // a refusal without a complete body still counts
    });
    ws.once('open', () => settle(() => resolve({ ws, status: 101 })));
    ws.on('error', (err) => settle(() => reject(new Error(`websocket to ${url.replace(/token=[^&]*/, 'token=…')} failed: ${err.message}`))));
  });
}

/**
 * Connects `user` (a user id; a token is minted for it unless `token` is given) and resolves
 * with a ChatConn. Rejects if the upgrade is refused. `wsOptions` go to the `ws` client (e.g.
 * `{ autoPong: false }` for a client that never answers pings).
 */
export async function connectChat(server, user, { token, via = 'query', label, wsOptions } = {}) {
  const tok = token ?? server.token(user);
  const res = await openRaw(server, { token: tok, via, wsOptions });
  if (!res.ws) throw new Error(`${label ?? user}: /chat upgrade refused with HTTP ${res.status}: ${res.body?.slice(0, 300)}`);
  const conn = new ChatConn(res.ws, { user, label });
  open.add(conn);
  return conn;
}

/** Closes every connection still open (for `after` hooks and `finally` blocks). */
export async function closeAllChats() {
  await Promise.all([...open].map((c) => c.close().catch(() => {})));
}

/** Runs `fn(conns)` and closes the given connections afterwards, whatever happens. */
export async function closing(conns, fn) {
  try {
    return await fn(conns);
  } finally {
    await Promise.all(conns.map((c) => c?.close().catch(() => {})));
  }
}

// ---------------------------------------------------------------------------------------------
// REST

/**
 * One REST call. `token` → `Authorization: Bearer <token>`; `authorization` sets the raw
 * header; `body` is sent as JSON (or as is when `rawBody`); `localAddress` (e.g. '127.0.0.2')
 * sends it from another loopback address, i.e. as another client IP. Resolves
 * {status, json, text, headers}.
 */
export async function rest(server, method, route, { token, authorization, body, rawBody, localAddress } = {}) {
  const headers = {};
  if (authorization !== undefined) headers.Authorization = authorization;
  else if (token !== undefined && token !== null) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (rawBody !== undefined) {
    payload = rawBody;
    headers['Content-Type'] = 'application/json';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  const res = localAddress
    ? await requestFrom(localAddress, `${server.url}${route}`, { method, headers, body: payload })
    : await fetch(`${server.url}${route}`, { method, headers, body: payload, signal: AbortSignal.timeout(WAIT_MS) });
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers, what: `${method} ${route} → HTTP ${res.status}: ${text.slice(0, 300)}` };
}

/** A fetch-like response for a request sent from `localAddress` (another loopback client IP). */
function requestFrom(localAddress, url, { method, headers, body }) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, localAddress, timeout: WAIT_MS }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode,
          headers: new Headers(Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)])),
          text: async () => text,
        });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`timeout after ${WAIT_MS} ms`)));
    req.end(body);
  });
}

export const roomsRoute = '/api/chat/rooms';
export const roomRoute = (roomId) => `${roomsRoute}/${encodeURIComponent(roomId)}`;
export const membersRoute = (roomId) => `/api/chat/rooms/${encodeURIComponent(roomId)}/members`;
export const memberRoute = (roomId, userId) => `${membersRoute(roomId)}/${encodeURIComponent(userId)}`;

/** Sorted copy, for comparing member lists as sets. */
export const sorted = (list) => [...list].sort();

function assertOk(res, status) {
  if (res.status !== status) throw new Error(`expected HTTP ${status}: ${res.what}`);
  const type = res.headers.get('content-type') ?? '';
  if (!type.includes('application/json')) throw new Error(`content-type ${JSON.stringify(type)}, expected application/json: ${res.what}`);
  if (!res.json || typeof res.json !== 'object') throw new Error(`body is not a JSON object: ${res.what}`);
  return res.json;
}

/** POST /api/chat/rooms as `owner` (a user id, or {token}); resolves with the 201 body. */
export async function createRoom(server, owner, { name, members = [] } = {}) {
  const token = typeof owner === 'string' ? server.token(owner) : owner.token;
  const body = { members };
  if (name !== undefined) body.name = name;
  return assertOk(await rest(server, 'POST', roomsRoute, { token, body }), 201);
}

/** GET /api/chat/rooms with `token`; resolves with the 200 array. */
export async function listRooms(server, token) {
  const res = await rest(server, 'GET', roomsRoute, { token });
  const json = assertOk(res, 200);
  if (!Array.isArray(json)) throw new Error(`GET ${roomsRoute}: expected an array: ${res.what}`);
  return json;
}

/** POST /api/chat/rooms/{room}/members {user_id} with `token`; resolves with the 200 body. */
export async function addMember(server, token, roomId, userId) {
  return assertOk(await rest(server, 'POST', membersRoute(roomId), { token, body: { user_id: userId } }), 200);
}

/** DELETE /api/chat/rooms/{room} with `token`; asserts 204. */
export async function deleteRoom(server, token, roomId) {
  const res = await rest(server, 'DELETE', roomRoute(roomId), { token });
  if (res.status !== 204) throw new Error(`expected HTTP 204: ${res.what}`);
  return res;
}

/** The `rel="next"` route of a paged list response, or null on the last page. */
export function nextPage(res) {
  const link = res.headers.get('link') ?? '';
  const m = /<([^>]+)>;\s*rel="next"/.exec(link);
  return m ? m[1] : null;
}

/** Every page of a paged list (an array per page), following `Link: rel="next"`. */
export async function allPages(server, token, route, { maxPages = 100 } = {}) {
  const pages = [];
  for (let next = route; next && pages.length < maxPages;) {
    const res = await rest(server, 'GET', next, { token });
    if (res.status !== 200 || !Array.isArray(res.json)) throw new Error(`expected a 200 array: ${res.what}`);
    pages.push(res.json);
    next = nextPage(res);
  }
  return pages;
}

/** DELETE /api/chat/rooms/{room}/members/{user} with `token`; asserts 204. */
export async function removeMember(server, token, roomId, userId) {
  const res = await rest(server, 'DELETE', memberRoute(roomId, userId), { token });
  if (res.status !== 204) throw new Error(`expected HTTP 204: ${res.what}`);
  return res;
}

// ---------------------------------------------------------------------------------------------
// Payload checks

export const MESSAGE_KEYS = ['id', 'room_id', 'sender_id', 'message', 'timestamp'];

/** Asserts the shape shared by `message-receive` and history entries; returns the message. */
export function checkMessageShape(m, who = 'message') {
  if (!m || typeof m !== 'object') throw new Error(`${who}: not an object: ${show(m)}`);
  for (const k of MESSAGE_KEYS) {
    if (typeof m[k] !== 'string') throw new Error(`${who}: field ${k} must be a string: ${show(m)}`);
  }
  if (!m.id) throw new Error(`${who}: empty id: ${show(m)}`);
  checkTimestamp(m.timestamp, who);
  return m;
}

/** RFC 3339 UTC with a `Z` suffix, parseable by Date. */
export function checkTimestamp(ts, who = 'timestamp') {
  const re = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
  if (typeof ts !== 'string' || !re.test(ts)) throw new Error(`${who}: timestamp ${show(ts)} is not RFC 3339 UTC ending in Z`);
  if (Number.isNaN(Date.parse(ts))) throw new Error(`${who}: timestamp ${show(ts)} is not parseable by Date`);
}

/** The fields of a message clients compare (drops any extra fields the server adds). */
export const pick = (m) => Object.fromEntries(MESSAGE_KEYS.map((k) => [k, m?.[k]]));
