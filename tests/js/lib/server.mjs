// Starting and stopping the switchyard binary under test, plus small REST/polling helpers.
//
// Contract (implemented by the server):
//   spawn(SWITCHYARD_BIN or <repo>/target/release/switchyard, ['all'], {env}) with
//   SWITCHYARD_LISTEN=127.0.0.1:<port>, SWITCHYARD_STORE=sqlite://<abs path>,
//   optional SWITCHYARD_CLOCK_START (unix seconds; the server clock starts there and runs at
//   real speed), SWITCHYARD_STATUS_WINDOW_MS, SWITCHYARD_EPHEMERAL_EVENTS, RUST_LOG.
//   Ready when GET /healthz answers 200. SIGTERM → clean exit (code 0) within 10 s.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { processHandle } from './process.mjs';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = process.env.SWITCHYARD_BIN || path.join(REPO_ROOT, 'target', 'release', 'switchyard');

export const HOUR = 3600;
export const DAY = 86400;
export const hourStart = (t) => t - (t % HOUR);
export const dayStart = (t) => t - (t % DAY);
export const realNow = () => Date.now() / 1000;

const READY_TIMEOUT_MS = 15_000;

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A port that was free a moment ago (listen on 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts a server with its own temp store (unless `storeDir` is given).
 * `env` is merged over the defaults; `clockStart` (unix seconds) sets SWITCHYARD_CLOCK_START.
 * `wrapper` is a command the binary runs under, one that execs it (e.g. `['prlimit', …]`).
 * `ops`: serve /metrics, /healthz, /readyz on a listener of their own (SWITCHYARD_OPS_LISTEN).
 * Returns a handle: {url, opsUrl, port, storePath, storeDir, now(), tail(), stop(), restart(),
 * close()}; `opsUrl` is where the ops routes are (`url` without `ops`).
 */
export async function startServer({ env = {}, clockStart, storeDir, name = 'switchyard', wrapper = [], ops = false } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`switchyard binary not found at ${BIN} (build it with \`cargo build --release\` or set SWITCHYARD_BIN)`);
  }
  const dir = storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-e2e-'));
  const storePath = path.join(dir, 'db.sqlite');
  // Spawning, log tail, watchLogs, exit tracking: lib/process.mjs.
  const server = Object.assign(processHandle(name, { logLines: 300, tailLines: 150 }), {
    storeDir: dir,
    storePath,
    env,
    clockStart,
    port: 0,
    url: '',
    spawnedAt: 0,
  });

  /** The server's clock, estimated: clockStart + time since spawn, or the real clock. */
  server.now = () =>
    server.clockStart === undefined
      ? realNow()
      : server.clockStart + (Date.now() - server.spawnedAt) / 1000;

  // SIGTERM, clean exit (code 0) within 10 s; afterwards there is no child (close() stops once).
  const stop = server.stop;
  server.stop = async () => {
    if (!server.child) return server.exit;
    try {
      return await stop();
    } finally {
      server.child = null;
    }
  };

  /** Stops (cleanly) and starts a new process on the same store; the clock carries on. */
  server.restart = async ({ env: extraEnv } = {}) => {
    const clockNow = server.clockStart === undefined ? undefined : Math.ceil(server.now());
    await server.stop();
    if (clockNow !== undefined) server.clockStart = clockNow;
    if (extraEnv) server.env = { ...server.env, ...extraEnv };
    await launch();
    return server;
  };

  /** Stops (if running) and deletes the temp store. Safe to call twice. */
  server.close = async () => {
    try {
      if (server.child) await server.stop();
    } finally {
      if (!storeDir && !process.env.SWITCHYARD_KEEP_STORE) {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  };

  async function launch() {
    server.port = await freePort();
    server.url = `http://127.0.0.1:${server.port}`;
    server.opsPort = ops ? await freePort() : server.port;
    server.opsUrl = `http://127.0.0.1:${server.opsPort}`;
    const childEnv = {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG ?? 'info',
      // Panic messages stay in the log tail; full backtraces would push everything else out.
      RUST_BACKTRACE: process.env.SWITCHYARD_E2E_RUST_BACKTRACE ?? '0',
      ...server.env,
      SWITCHYARD_LISTEN: `127.0.0.1:${server.port}`,
      SWITCHYARD_STORE: `sqlite://${storePath}`,
    };
    // `ops` may name the variable (an earlier name of it, under test).
    if (ops) childEnv[typeof ops === 'string' ? ops : 'SWITCHYARD_OPS_LISTEN'] = `127.0.0.1:${server.opsPort}`;
    if (server.clockStart !== undefined) childEnv.SWITCHYARD_CLOCK_START = String(Math.floor(server.clockStart));
    const [command, ...args] = [...wrapper, BIN, 'all'];
    server.launch(command, args, {
      env: childEnv,
      banner: `starting on ${server.url} (store ${storePath}${
        server.clockStart !== undefined ? `, clock ${Math.floor(server.clockStart)}` : ''})`,
    });
    server.spawnedAt = Date.now();
    await server.waitHealthy(`${server.opsUrl}/healthz`, { timeoutMs: READY_TIMEOUT_MS });
  }

  await launch();
  return server;
}

/** Attaches the servers' log tails to an error so the test report shows them. */
export function attachLogs(err, servers) {
  const text = servers
    .filter(Boolean)
    .map((s) => `--- ${s.name} log tail (${s.url}) ---\n${s.tail()}`)
    .join('\n');
  if (err && typeof err === 'object') {
    try { err.serverLog = text; } catch { /* frozen */ }
  }
  process.stderr.write(`${text}\n`);
  return err;
}

/**
 * Wraps a test body so a failure carries the log tails of the servers `getServers()` returns.
 * Usage: test('name', withLogs(() => [srv], async (t) => { ... }))
 */
export function withLogs(getServers, fn) {
  return async (t) => {
    try {
      return await fn(t);
    } catch (err) {
      throw attachLogs(err, [].concat(getServers() ?? []));
    }
  };
}

/**
 * Runs `fn(server)` against a fresh server and always stops it. A failure of `fn` carries the
 * server's log tail; a failed clean stop is reported unless `fn` had already failed.
 */
export async function withServer(opts, fn) {
  const server = await startServer(opts);
  let failed = false;
  try {
    return await fn(server);
  } catch (err) {
    failed = true;
    throw attachLogs(err, [server]);
  } finally {
    try {
      await server.close();
    } catch (err) {
      if (!failed) throw err;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// REST

export async function getJson(server, route) {
  const res = await fetch(`${server.url}${route}`, { signal: AbortSignal.timeout(5000) });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`GET ${route} → HTTP ${res.status}: ${body.slice(0, 500)}`);
  const type = res.headers.get('content-type') ?? '';
  if (!type.includes('application/json')) {
    throw new Error(`GET ${route} → content-type ${JSON.stringify(type)}, expected application/json`);
  }
  try {
    return JSON.parse(body);
  } catch {
    throw new Error(`GET ${route} → not JSON: ${body.slice(0, 500)}`);
  }
}

/**
 * Retries `check` (which throws, e.g. an assertion) until it passes or `timeoutMs` elapses;
 * then throws with the last failure. For values served by the asynchronous aggregator.
 * An error with `fatal: true` stops the retrying at once.
 */
export async function eventually(check, { timeoutMs = 3000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (err?.fatal) throw err; // a state that can never turn right (e.g. a double count)
      lastErr = err;
    }
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms; last failure: ${lastErr?.message ?? lastErr}`, {
    cause: lastErr,
  });
}

/** An integer Unix-seconds timestamp within `slackS` of the server's clock. */
export function assertRecent(ts, server, slackS = 5) {
  if (!Number.isInteger(ts)) throw new Error(`timestamp ${JSON.stringify(ts)} is not an integer`);
  const now = server.now();
  if (Math.abs(ts - now) > slackS) {
    throw new Error(`timestamp ${ts} is not within ${slackS} s of the server clock (~${now.toFixed(1)})`);
  }
}

/** A clock start safely inside the current real hour (60 s past its start): no rollover for ~59 min. */
export const midHourClock = () => hourStart(Math.floor(realNow())) + 60;
