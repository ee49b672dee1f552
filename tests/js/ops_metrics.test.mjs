// Monitoring works in every deployment shape: the real binary, scraped at start (nothing has
// happened yet), exports every metric the alert rules and the dashboard read, each family with
// HELP text, and `switchyard_build_info{role}` that the rules key on instead of job names. With
// promtool on PATH (Debian/Ubuntu: `apt-get install prometheus`) the scrape passes
// `promtool check metrics` and the rule unit tests run; without it those two checks are skipped.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, REPO_ROOT, eventually } from './lib/server.mjs';
import { startCluster } from './lib/cluster.mjs';
import { connect, closeAllClients } from './lib/clients.mjs';
import { startChatServer, connectChat, closeAllChats, uid } from './lib/chat.mjs';

const PROM_DIR = path.join(REPO_ROOT, 'deploy', 'prometheus');
const DASHBOARD = path.join(REPO_ROOT, 'deploy', 'grafana', 'dashboards', 'switchyard.json');
/** Series from outside switchyard that rules may read. */
const EXTERNAL = new Set(['kube_pod_deletion_timestamp']);

const cleanup = [];
after(async () => {
  for (const close of cleanup.reverse()) await close();
});

function promtool() {
  const found = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  return found.status === 0 ? 'promtool' : null;
}

/** Metric families named in the rules and the dashboard (histogram suffixes folded). */
function usedFamilies() {
  const text = fs.readFileSync(path.join(PROM_DIR, 'alerts.yml'), 'utf8')
    + JSON.stringify(JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')).panels);
  const names = new Set();
  for (const [name] of text.matchAll(/\b(?:switchyard|process)_[a-z_]+\b/g)) {
    names.add(name.replace(/_(bucket|sum|count)$/, ''));
  }
  for (const name of EXTERNAL) names.delete(name);
  return names;
}

/** {families: Map(name → {help, type, samples}), samples: [{name, labels, value}]}. */
function parse(text) {
  const families = new Map();
  const family = (name) => {
    if (!families.has(name)) families.set(name, { help: null, type: null, samples: 0 });
    return families.get(name);
  };
  const samples = [];
  for (const line of text.split('\n')) {
    let m;
    if ((m = /^# HELP (\S+) (.*)$/.exec(line))) family(m[1]).help = m[2];
    else if ((m = /^# TYPE (\S+) (\S+)$/.exec(line))) family(m[1]).type = m[2];
    else if ((m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line))) {
      const base = families.has(m[1]) ? m[1] : m[1].replace(/_(bucket|sum|count)$/, '');
      family(base).samples += 1;
      const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      samples.push({ name: m[1], labels, value: Number(m[3]) });
    }
  }
  return { families, samples };
}

async function scrape(url) {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return res.text();
}

function assertEveryFamilyDescribed(families, who) {
  const undescribed = [...families].filter(([, f]) => !f.help).map(([name]) => name);
  assert.deepEqual(undescribed, [], `${who}: families without HELP`);
}

test('embedded `switchyard all` at start: every metric the rules and dashboard read exists, with HELP', { timeout: 60_000 }, async () => {
  const server = await startServer({ name: 'metrics' });
  cleanup.push(() => server.close());
  const text = await scrape(server.url);
  const { families, samples } = parse(text);
  assertEveryFamilyDescribed(families, 'all');
  const missing = [...usedFamilies()].filter((name) => !(families.get(name)?.samples > 0));
  assert.deepEqual(missing, [], 'used by alerts.yml or the dashboard but not exported at start');

  const info = samples.filter((s) => s.name === 'switchyard_build_info');
  assert.equal(info.length, 1);
  assert.equal(info[0].labels.role, 'all');
  assert.match(info[0].labels.version, /^\d+\.\d+\.\d+/);
  assert.ok(info[0].labels.commit, 'commit label');
  // Process metrics against their limits.
  const value = (name) => samples.find((s) => s.name === name)?.value;
  assert.ok(value('process_resident_memory_bytes') > 1e6);
  assert.ok(value('process_open_fds') > 0 && value('process_open_fds') < value('process_max_fds'));
  // Error counters exist at zero, so rate() sees the first failure.
  assert.equal(samples.find((s) => s.name === 'switchyard_store_errors_total' && s.labels.op === 'insert_click')?.value, 0);
  assert.equal(samples.find((s) => s.name === 'switchyard_bus_durable_failed_total')?.value, 0);
  // Presence gauges exist at 0 before anyone connects.
  for (const api of ['frust', 'chat']) {
    assert.equal(samples.find((s) => s.name === 'switchyard_online_users' && s.labels.api === api)?.value, 0, api);
  }
  assert.ok(families.get('switchyard_alive_edges')?.samples === 1, 'switchyard_alive_edges');

  const tool = promtool();
  if (!tool) {
    test.skip?.('promtool not on PATH');
    console.log('# promtool not on PATH: `promtool check metrics` skipped');
  } else {
    const lint = spawnSync(tool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(lint.status, 0, `promtool check metrics:\n${lint.stdout}${lint.stderr}`);
    assert.equal(lint.stdout.trim() + lint.stderr.trim(), '', 'no lint findings');
  }
  await server.close();
});

test('the alert rules pass their promtool unit tests (embedded and cluster shapes)', { timeout: 60_000 }, (t) => {
  const tool = promtool();
  if (!tool) return t.skip('SKIPPED: promtool not on PATH (apt-get install prometheus)');
  const out = execFileSync(tool, ['test', 'rules', 'alerts.test.yml'], { cwd: PROM_DIR, encoding: 'utf8' });
  assert.match(out, /SUCCESS/);
});

test('cluster roles: each process says its role in build_info and describes what it exports', { timeout: 120_000 }, async () => {
  const cl = await startCluster({ name: 'metrics', edges: 1, workers: 1, ops: true });
  cleanup.push(() => cl.close());
  const union = new Set();
  for (const proc of [cl.aggregator, ...cl.workers, ...cl.edges]) {
    const { families, samples } = parse(await scrape(proc.opsUrl));
    assertEveryFamilyDescribed(families, proc.role);
    const info = samples.filter((s) => s.name === 'switchyard_build_info');
    assert.deepEqual(info.map((s) => s.labels.role), [proc.role]);
    for (const [name, f] of families) if (f.samples > 0) union.add(name);
  }
  const missing = [...usedFamilies()].filter((name) => !union.has(name));
  assert.deepEqual(missing, [], 'used by alerts.yml or the dashboard but exported by no role at start');
});

test('online users (per API, as REST counts them) and alive edges follow clients and heartbeats', { timeout: 60_000 }, async () => {
  const server = await startChatServer({ name: 'metrics-online', env: { SWITCHYARD_HEARTBEAT_MS: '200' } });
  cleanup.push(() => server.close());
  const gauges = async () => {
    const { samples } = parse(await scrape(server.url));
    const value = (name, api) => samples.find((s) => s.name === name && (api === undefined || s.labels.api === api))?.value;
    return { frust: value('switchyard_online_users', 'frust'), chat: value('switchyard_online_users', 'chat'), edges: value('switchyard_alive_edges') };
  };
  const frust = [await connect(server, 4, 'websocket'), await connect(server, 2, 'websocket')];
  const user = uid('ann');
  // One user on two connections is one chat user online.
  const chats = [await connectChat(server, user), await connectChat(server, user)];
  await eventually(async () => assert.deepEqual(await gauges(), { frust: 2, chat: 1, edges: 1 }),
    { timeoutMs: 15_000, what: 'frust=2 chat=1 edges=1' });
  const online = await (await fetch(`${server.url}/api/online_users`)).json();
  assert.equal(online.length, 2, 'the gauge counts what /api/online_users lists');
  closeAllClients();
  await closeAllChats();
  await eventually(async () => assert.deepEqual(await gauges(), { frust: 0, chat: 0, edges: 1 }),
    { timeoutMs: 15_000, what: 'frust=0 chat=0, the edge still alive' });
  assert.equal(frust.length + chats.length, 4);
});
