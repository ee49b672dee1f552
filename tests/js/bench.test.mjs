// `switchyard bench`, the built-in load generator: tiny scenarios against a real server must
// report well-formed results in which every expected delivery arrived (the server is idle, so
// this is a correctness check of the generator's counting, never a timing assertion), and the
// results of two concurrent bench processes must merge into their sums.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, withLogs, BIN } from './lib/server.mjs';

const SECRET = `bench-e2e-${crypto.randomBytes(6).toString('hex')}`;
const BENCH_TIMEOUT_MS = 60_000;

let srv;
let dir;
before(async () => {
  srv = await startServer({ name: 'bench', env: { SWITCHYARD_JWT_SECRET: SECRET } });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-bench-'));
});
after(async () => {
  await srv?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const it = (name, fn) => test(name, { timeout: 120_000 }, withLogs(() => [srv], fn));

/** Runs `switchyard bench …args`; resolves {stdout, stderr}, rejects on a non-zero exit. */
function bench(args, { env = {} } = {}) {
  return new Promise((resolve, reject) => {
    execFile(
      BIN,
      ['bench', ...args],
      { env: { ...process.env, RUST_LOG: 'warn', ...env }, timeout: BENCH_TIMEOUT_MS, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`switchyard bench ${args.join(' ')} failed (${err.code ?? err.signal}):\n${stderr}\n${stdout}`));
        else resolve({ stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));
const jsonPath = (name) => path.join(dir, `${name}.json`);

/** Asserts the shape shared by every report, and that nothing went wrong. */
function checkWellFormed(r, what) {
  assert.equal(r.schema, 'switchyard-bench/1', `${what}: schema`);
  for (const key of ['params', 'processes', 'connect', 'sends', 'deliveries', 'latency', 'errors', 'memory', 'warnings']) {
    assert.ok(key in r, `${what}: has ${key}`);
  }
  assert.equal(r.errors.total, 0, `${what}: no errors (${JSON.stringify(r.errors)})`);
  assert.equal(r.connect.failed, 0, `${what}: every client connected`);
  assert.equal(r.connect.connected, r.params.clients, `${what}: connected = clients`);
  assert.ok(r.connect.total_ms > 0, `${what}: connect time measured`);
  assert.ok(r.connect.p50_ms <= r.connect.p99_ms && r.connect.p99_ms <= r.connect.max_ms, `${what}: connect percentiles ordered`);
  assert.ok(r.sends.sent > 0, `${what}: something was sent`);
  assert.equal(r.sends.accepted, r.sends.sent, `${what}: every send accepted`);
  assert.equal(r.sends.rejected, 0, `${what}: nothing rejected`);
  assert.equal(r.sends.unacked, 0, `${what}: nothing unacknowledged`);
  const d = r.deliveries;
  assert.ok(d.expected > 0, `${what}: deliveries expected`);
  assert.equal(d.delivered, d.expected, `${what}: every expected delivery arrived`);
  assert.equal(d.share, 1, `${what}: share`);
  assert.ok(d.per_s > 0, `${what}: deliveries per second`);
  const l = r.latency;
  assert.ok(l.count >= d.delivered, `${what}: a latency sample per receipt`);
  for (const k of ['p50_ms', 'p99_ms', 'p999_ms', 'max_ms', 'mean_ms']) {
    assert.equal(typeof l[k], 'number', `${what}: latency ${k} is a number`);
    assert.ok(l[k] >= 0, `${what}: latency ${k} ≥ 0`);
  }
  assert.ok(l.p50_ms <= l.p99_ms && l.p99_ms <= l.p999_ms && l.p999_ms <= l.max_ms,
    `${what}: p50 ≤ p99 ≤ p999 ≤ max (${JSON.stringify(l)})`);
  for (const h of [r.connect.histogram, l.histogram]) {
    assert.match(h, /^[A-Za-z0-9+/]+=*$/, `${what}: histograms are base64`);
  }
}

for (const protocol of ['v4', 'v3']) {
  it(`frust over Engine.IO ${protocol}: 5 clients, 2 senders, 20 clicks/s for 1 s; every click reaches every client`, async () => {
    const file = jsonPath(`frust-${protocol}`);
    const { stdout } = await bench([
      '--target', srv.url, '--api', 'frust', '--protocol', protocol,
      '--clients', '5', '--senders', '2', '--rate', '20', '--duration', '1s', '--run-id', `f${protocol}`,
      '--json', file,
    ]);
    assert.match(stdout, /latency/, 'the table is printed');
    const r = readJson(file);
    checkWellFormed(r, `frust ${protocol}`);
    assert.deepEqual(
      { api: r.params.api, protocol: r.params.protocol, clients: r.params.clients, senders: r.params.senders, rate: r.params.rate, duration_s: r.params.duration_s, run_ids: r.params.run_ids },
      { api: 'frust', protocol, clients: 5, senders: 2, rate: 20, duration_s: 1, run_ids: [`f${protocol}`] },
      'parameters echoed',
    );
    assert.ok(r.sends.sent >= 15 && r.sends.sent <= 25, `about 20 clicks sent (${r.sends.sent})`);
    // Clicks are broadcast to every client, the sender's own socket included.
    assert.equal(r.deliveries.expected, r.sends.accepted * 5, 'expected = accepted × clients');
    assert.equal(r.deliveries.by_run[`f${protocol}`], r.deliveries.delivered);
  });
}

it('chat: 2 rooms of 3, one sender per room; every message reaches every member of its room', async () => {
  const { stdout } = await bench([
    '--target', srv.url, '--api', 'chat', '--rooms', '2', '--room-size', '3',
    '--rate', '20', '--duration', '1s', '--json', '-',
  ], { env: { SWITCHYARD_JWT_SECRET: SECRET } });
  const r = JSON.parse(stdout); // `--json -`: stdout is the JSON alone
  checkWellFormed(r, 'chat');
  assert.equal(r.params.api, 'chat');
  assert.equal(r.params.rooms, 2);
  assert.equal(r.params.room_size, 3);
  assert.equal(r.params.clients, 6);
  assert.equal(r.params.senders, 2);
  assert.equal(r.deliveries.expected, r.sends.accepted * 3, 'expected = accepted × room members');
});

it('idle: connections only, with the server\'s memory per connection', async () => {
  const file = jsonPath('idle');
  await bench([
    '--target', srv.url, '--idle', '--clients', '20', '--duration', '500ms',
    '--server-pid', String(srv.child.pid), '--json', file,
  ]);
  const r = readJson(file);
  assert.equal(r.params.idle, true);
  assert.equal(r.connect.connected, 20);
  assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
  assert.equal(r.sends.sent, 0);
  assert.equal(r.deliveries.expected, 0);
  assert.equal(r.deliveries.share, null);
  assert.equal(r.memory.server_pid, srv.child.pid);
  assert.ok(r.memory.server_rss_before > 0 && r.memory.server_rss_connected > 0, JSON.stringify(r.memory));
  assert.equal(typeof r.memory.server_bytes_per_connection, 'number');
});

it('two concurrent bench processes merge into their sums', async () => {
  const [a, b] = [jsonPath('p1'), jsonPath('p2')];
  // One start time for both: each listens through the other's whole send window.
  const startAt = (Date.now() / 1000 + 3).toFixed(3);
  const common = ['--target', srv.url, '--api', 'frust', '--rate', '20', '--duration', '1s', '--start-at', startAt];
  await Promise.all([
    bench([...common, '--clients', '4', '--senders', '2', '--run-id', 'p1', '--json', a]),
    bench([...common, '--clients', '3', '--senders', '1', '--protocol', 'v3', '--run-id', 'p2', '--json', b]),
  ]);
  const [ra, rb] = [readJson(a), readJson(b)];
  for (const [r, name, other] of [[ra, 'p1', 'p2'], [rb, 'p2', 'p1']]) {
    // Alone, a process counts its own clicks; the other's arrive too, as "foreign".
    checkWellFormed(r, name);
    assert.ok(r.deliveries.foreign > 0, `${name} saw the other process's clicks`);
    assert.equal(r.deliveries.by_run[other], r.deliveries.foreign);
  }

  const merged = jsonPath('merged');
  const { stdout } = await bench(['merge', a, b, '--json', merged]);
  assert.match(stdout, /2 processes/);
  const m = readJson(merged);
  checkWellFormed(m, 'merged');
  assert.deepEqual(m.warnings, [], 'the send windows overlapped');
  assert.equal(m.processes.length, 2);
  assert.deepEqual([...m.params.run_ids].sort(), ['p1', 'p2']);
  assert.equal(m.params.clients, 7);
  assert.equal(m.params.senders, 3);
  assert.equal(m.params.protocol, null, 'mixed protocols');
  assert.equal(m.connect.attempted, ra.connect.attempted + rb.connect.attempted);
  assert.equal(m.connect.connected, 7);
  assert.equal(m.sends.sent, ra.sends.sent + rb.sends.sent);
  assert.equal(m.sends.accepted, ra.sends.accepted + rb.sends.accepted);
  // Every click of either process reached all 7 clients of both.
  assert.equal(m.deliveries.expected, m.sends.accepted * 7);
  assert.equal(m.deliveries.delivered, ra.deliveries.delivered + ra.deliveries.foreign + rb.deliveries.delivered + rb.deliveries.foreign);
  assert.equal(m.deliveries.foreign, 0);
  assert.equal(m.latency.count, ra.latency.count + rb.latency.count);
  assert.equal(m.latency.count, m.deliveries.delivered);
  assert.ok(m.latency.max_ms === Math.max(ra.latency.max_ms, rb.latency.max_ms), 'max of the maxima');
});
