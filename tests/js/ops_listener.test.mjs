// The ops listener (SWITCHYARD_OPS_LISTEN): /metrics, /healthz and /readyz on an address of their
// own, off the public listener that a load balancer exposes; roles without an edge then open no
// public listener at all. Without it, the ops routes stay on the public listener.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, eventually } from './lib/server.mjs';
import { startCluster } from './lib/cluster.mjs';

const OPS_ROUTES = ['/metrics', '/healthz', '/readyz'];
const cleanup = [];
after(async () => {
  for (const close of cleanup.reverse()) await close();
});

async function status(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

test('with SWITCHYARD_OPS_LISTEN the ops routes answer there and not on the public port', { timeout: 60_000 }, async () => {
  const server = await startServer({ name: 'ops', ops: true });
  cleanup.push(() => server.close());
  assert.notEqual(server.opsUrl, server.url);
  for (const route of OPS_ROUTES) {
    assert.equal((await status(`${server.opsUrl}${route}`)).status, 200, `ops ${route}`);
    assert.equal((await status(`${server.url}${route}`)).status, 404, `public ${route}`);
  }
  assert.match((await status(`${server.opsUrl}/metrics`)).body, /^switchyard_/m);
  // The client API stays public, and only public.
  assert.equal((await status(`${server.url}/api`)).status, 200);
  assert.equal((await status(`${server.opsUrl}/api`)).status, 404);
  await server.close();
});

test('the earlier name SWITCHYARD_OPS_ADDR still works, with a warning naming the new one', { timeout: 60_000 }, async () => {
  const server = await startServer({ name: 'ops-renamed', ops: 'SWITCHYARD_OPS_ADDR' });
  cleanup.push(() => server.close());
  assert.equal((await status(`${server.opsUrl}/healthz`)).status, 200);
  assert.equal((await status(`${server.url}/healthz`)).status, 404);
  assert.match(server.tail(), /SWITCHYARD_OPS_ADDR is now called SWITCHYARD_OPS_LISTEN/);
  await server.close();
});

test('without it, the public port serves the ops routes (one port, as before)', { timeout: 60_000 }, async () => {
  const server = await startServer({ name: 'no-ops' });
  cleanup.push(() => server.close());
  assert.equal(server.opsUrl, server.url);
  for (const route of OPS_ROUTES) assert.equal((await status(`${server.url}${route}`)).status, 200, route);
  await server.close();
});

test('cluster roles: a worker with an ops address opens no public port; an edge drains with /readyz 503 on its ops port', { timeout: 120_000 }, async () => {
  const cl = await startCluster({ name: 'ops', edges: 1, workers: 1, ops: true });
  cleanup.push(() => cl.close());
  const [worker] = cl.workers;
  const [edge] = cl.edges;
  assert.equal((await status(`${worker.opsUrl}/readyz`)).status, 200);
  await assert.rejects(fetch(`${worker.url}/healthz`, { signal: AbortSignal.timeout(2000) }), 'no public listener on a worker');
  assert.equal((await status(`${edge.url}/api`)).status, 200);
  assert.equal((await status(`${edge.url}/metrics`)).status, 404);

  // Drain: the ops port keeps answering, 503 with the reason, while clients are sent away.
  const seen = [];
  let watching = true;
  const watch = (async () => {
    while (watching) {
      try {
        const r = await status(`${edge.opsUrl}/readyz`);
        if (seen.at(-1)?.body !== r.body) seen.push(r);
      } catch { break; }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await eventually(() => assert.equal(seen.length, 1), { what: 'first answer' });
  const stopped = edge.stop();
  await eventually(() => assert.ok(seen.some((r) => r.status === 503)), { timeoutMs: 10_000, what: 'unready while draining' });
  watching = false;
  await stopped;
  edge.killed = true; // stopped on purpose: close() leaves it alone
  await watch;
  assert.deepEqual(seen.map((r) => r.status), [200, 503]);
  assert.equal(seen[1].body, 'not ready: draining\n');
});
