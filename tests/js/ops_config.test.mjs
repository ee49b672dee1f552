// Configuration checks itself, and errors are one clear line: what an operator sees when a
// setting is mistyped, out of range or inconsistent, when NATS is not there, and what the logs
// look like in a pipe (no colour codes) and as JSON (flat, with role and version).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, freePort, sleep } from './lib/server.mjs';
import { startNatsCluster } from './lib/cluster.mjs';

/** The environment without any SWITCHYARD_* or RUST_LOG of the caller, plus `env`. */
function cleanEnv(env = {}) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHYARD_') && k !== 'RUST_LOG'));
  return { ...base, RUST_BACKTRACE: '1', ...env };
}

function runFailing(args, env) {
  const res = spawnSync(BIN, args, { env: cleanEnv(env), encoding: 'utf8', timeout: 20_000 });
  return { code: res.status, lines: res.stderr.split('\n').filter(Boolean), stdout: res.stdout };
}

/** Runs `switchyard args` for `ms`, then SIGTERM; resolves its stderr lines. */
async function runFor(args, env, ms) {
  const child = spawn(BIN, args, { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (c) => { err += c; });
  await sleep(ms);
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([done, sleep(15_000).then(() => child.kill('SIGKILL'))]);
  return err.split('\n').filter(Boolean);
}

test('a mistyped SWITCHYARD_* variable is warned about at start, in one line naming it and the closest known one', async () => {
  // Warned, not refused: platforms inject variables of their own (Kubernetes service links).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-cfg-'));
  const lines = await runFor(['all'], {
    SWITCHYARD_STOER: 'sqlite:///tmp/x.sqlite',
    SWITCHYARD_STORE: `sqlite://${dir}/db.sqlite`,
    SWITCHYARD_LISTEN: `127.0.0.1:${await freePort()}`,
  }, 2000);
  fs.rmSync(dir, { recursive: true, force: true });
  const warned = lines.filter((l) => l.includes('SWITCHYARD_STOER'));
  assert.equal(warned.length, 1, lines.join('\n'));
  assert.match(warned[0], /WARN.*SWITCHYARD_STOER is ignored.*did you mean SWITCHYARD_STORE\?/);
});

test('a burst below its rate is raised to the rate, with a warning naming both', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-cfg-'));
  const lines = await runFor(['all'], {
    SWITCHYARD_RATE_CONN: '50',
    SWITCHYARD_RATE_CONN_BURST: '10',
    SWITCHYARD_STORE: `sqlite://${dir}/db.sqlite`,
    SWITCHYARD_LISTEN: `127.0.0.1:${await freePort()}`,
  }, 2000);
  fs.rmSync(dir, { recursive: true, force: true });
  assert.ok(lines.some((l) => /WARN.*SWITCHYARD_RATE_CONN_BURST \(10\) is below SWITCHYARD_RATE_CONN \(50\)/.test(l)), lines.join('\n'));
});

test('values out of range and inconsistent values are refused in one line naming the variable, no backtrace', () => {
  for (const [env, pattern] of [
    [{ SWITCHYARD_SIO_SEND_QUEUE: '8' }, /SWITCHYARD_SIO_SEND_QUEUE.*8 is below the minimum, 16$/],
    [{ SWITCHYARD_HEARTBEAT_MS: '0' }, /SWITCHYARD_HEARTBEAT_MS/],
  ]) {
    const { code, lines } = runFailing(['edge'], env);
    assert.equal(code, 1, JSON.stringify(env));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0], pattern);
  }
});

test('an unusable store path is one line naming it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-cfg-'));
  const file = path.join(dir, 'not-a-dir');
  fs.writeFileSync(file, '');
  const url = `sqlite://${file}/db.sqlite`;
  const { code, lines } = runFailing(['all'], { SWITCHYARD_STORE: url, SWITCHYARD_LISTEN: '127.0.0.1:0' });
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(code, 1);
  const last = lines.at(-1);
  assert.ok(last.includes(file), last);
  // What failed, on which path, and the system's reason once.
  assert.match(last, /cannot create the directory .*not-a-dir/);
  assert.equal(last.split('os error').length - 1, 1, last);
  assert.ok(!lines.some((l) => /stack backtrace|^\s+\d+: /.test(l)), lines.join('\n'));
});

test('server flags only on server subcommands: `bench --help` and `token --help` are short', () => {
  const help = (args) => spawnSync(BIN, args, { env: cleanEnv(), encoding: 'utf8' }).stdout;
  const token = help(['token', '--help']);
  assert.ok(token.split('\n').length < 30, token);
  assert.ok(!token.includes('--rate-conn'));
  const bench = help(['bench', '--help']);
  assert.ok(!bench.includes('--rate-conn') && !bench.includes('--listen'), bench);
  assert.ok(help(['edge', '--help']).includes('--rate-conn'));
  assert.match(help(['--version']), /^switchyard \d+\.\d+\.\d+ \(commit \S+\)/);
});

test('NATS unreachable: a few lines naming the URL, not one per retry', { timeout: 60_000 }, async () => {
  const url = `nats://127.0.0.1:${await freePort()}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-nats-'));
  const lines = await runFor(['edge'], {
    SWITCHYARD_NATS: url, SWITCHYARD_LISTEN: `127.0.0.1:${await freePort()}`, SWITCHYARD_STORE: `sqlite://${dir}/db.sqlite`,
  }, 8000);
  fs.rmSync(dir, { recursive: true, force: true });
  const nats = lines.filter((l) => /nats/i.test(l));
  assert.ok(nats.some((l) => l.includes(url)), lines.join('\n'));
  assert.ok(lines.length <= 6, `${lines.length} lines in 8 s:\n${lines.join('\n')}`);
});

test('text logs in a pipe carry no colour codes; JSON logs are flat with role and version', { timeout: 60_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-log-'));
  const base = { SWITCHYARD_STORE: `sqlite://${dir}/db.sqlite` };
  const text = await runFor(['all'], { ...base, SWITCHYARD_LISTEN: `127.0.0.1:${await freePort()}` }, 1500);
  assert.ok(text.some((l) => l.includes('switchyard running')), text.join('\n'));
  assert.ok(!text.some((l) => l.includes('\x1b[')), 'ANSI escape in piped logs');

  const json = await runFor(['edge'], {
    ...base, SWITCHYARD_LOG_FORMAT: 'json', SWITCHYARD_NATS: `nats://127.0.0.1:${await freePort()}`,
  }, 1500);
  fs.rmSync(dir, { recursive: true, force: true });
  assert.ok(json.length > 0);
  for (const line of json) {
    const record = JSON.parse(line);
    assert.equal(typeof record.message, 'string', line);
    assert.equal(record.role, 'edge', line);
    assert.match(record.version, /^\d+\.\d+\.\d+/);
    assert.equal(record.fields, undefined, 'flat, not nested under fields');
  }
});

test('NATS unreachable at start: after SWITCHYARD_NATS_CONNECT_TIMEOUT_SECS, exit 1 with one line naming the URL', { timeout: 60_000 }, async () => {
  const url = `nats://127.0.0.1:${await freePort()}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-nats-'));
  const { code, lines } = runFailing(['worker'], {
    SWITCHYARD_NATS: url, SWITCHYARD_NATS_CONNECT_TIMEOUT_SECS: '1', SWITCHYARD_STORE: `sqlite://${dir}/db.sqlite`,
  });
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(code, 1, lines.join('\n'));
  const last = lines.at(-1);
  assert.ok(last.startsWith(`switchyard: cannot reach NATS at ${url}: `), last);
  assert.match(last, /refused/i, 'says why');
  assert.ok(!lines.some((l) => /stack backtrace|^\s+\d+: /.test(l)), lines.join('\n'));
  // Out of range is refused like every other number.
  const bad = runFailing(['worker'], { SWITCHYARD_NATS: url, SWITCHYARD_NATS_CONNECT_TIMEOUT_SECS: '0' });
  assert.equal(bad.code, 1);
  assert.match(bad.lines.at(-1), /SWITCHYARD_NATS_CONNECT_TIMEOUT_SECS.*not in 1\.\.=3600/);
});

test('check-config: one line per check, exit 0 when a start would work, and it changes nothing', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-check-'));
  const db = path.join(dir, 'data', 'db.sqlite');
  const res = spawnSync(BIN, ['check-config'], {
    env: cleanEnv({ SWITCHYARD_STORE: `sqlite://${db}`, SWITCHYARD_JWT_SECRET: 'x'.repeat(32) }), encoding: 'utf8', timeout: 20_000,
  });
  assert.equal(res.status, 0, res.stdout + res.stderr);
  const lines = res.stdout.split('\n').filter(Boolean);
  for (const check of ['values', 'store', 'bus', 'chat limits', 'jwt']) {
    assert.ok(lines.some((l) => l.startsWith(`ok   ${check}:`)), `${check}:\n${res.stdout}`);
  }
  assert.ok(!fs.existsSync(path.join(dir, 'data')), 'no store created');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('check-config: every problem is a FAIL line naming what to fix (store path, NATS URL, JWT key, limits), exit 1', { timeout: 60_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-check-'));
  const file = path.join(dir, 'not-a-dir');
  fs.writeFileSync(file, '');
  const key = path.join(dir, 'key.pem');
  fs.writeFileSync(key, '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n');
  const url = `nats://127.0.0.1:${await freePort()}`;
  const res = spawnSync(BIN, ['check-config', '--role', 'edge'], {
    env: cleanEnv({
      SWITCHYARD_STORE: `sqlite://${file}/db.sqlite`,
      SWITCHYARD_NATS: url,
      SWITCHYARD_NATS_CONNECT_TIMEOUT_SECS: '1',
      SWITCHYARD_JWT_PUBLIC_KEY: key,
      SWITCHYARD_CHAT_PING_INTERVAL_MS: '1000',
      SWITCHYARD_CHAT_IDLE_TIMEOUT_MS: '500',
      SWITCHYARD_STOER: 'typo',
    }),
    encoding: 'utf8',
    timeout: 30_000,
  });
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(res.status, 1, res.stdout + res.stderr);
  const fails = res.stdout.split('\n').filter((l) => l.startsWith('FAIL '));
  assert.equal(fails.length, 4, res.stdout);
  assert.ok(fails.some((l) => l.startsWith('FAIL store:') && l.includes(file) && l.includes('not a directory')), res.stdout);
  assert.ok(fails.some((l) => l.startsWith(`FAIL bus: cannot reach NATS at ${url}:`)), res.stdout);
  assert.ok(fails.some((l) => l.startsWith('FAIL chat limits:') && l.includes('SWITCHYARD_CHAT_IDLE_TIMEOUT_MS')), res.stdout);
  assert.ok(fails.some((l) => l.startsWith('FAIL jwt:') && l.includes('PEM')), res.stdout);
  assert.ok(res.stdout.split('\n').some((l) => /^warn values: .*SWITCHYARD_STOER/.test(l)), res.stdout);
  assert.equal(res.stderr.trim(), 'switchyard: check-config: 4 problems (the FAIL lines above)');
});

test('check-config against a real NATS: the server is reached and described, and no stream is created', { timeout: 60_000 }, async () => {
  const nats = await startNatsCluster({ name: 'check-config' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-check-'));
  try {
    const res = spawnSync(BIN, ['check-config', '--role', 'worker'], {
      env: cleanEnv({ SWITCHYARD_STORE: `sqlite://${dir}/db.sqlite`, SWITCHYARD_NATS: nats.urls }), encoding: 'utf8', timeout: 30_000,
    });
    assert.equal(res.status, 0, res.stdout + res.stderr);
    assert.ok(res.stdout.split('\n').some((l) => l.startsWith(`ok   bus: NATS at ${nats.urls} answers:`) && l.includes('JetStream enabled')), res.stdout);
    // JetStream's account info: no stream was created by the check.
    const info = await fetch(`${nats.nodes[0].monitorUrl}/jsz`).then((r) => r.json());
    assert.equal(info.streams, 0, JSON.stringify(info));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await nats.close();
  }
});
