// Readiness tells the truth: an edge whose bus cannot take packets answers /readyz with 503 and
// a one-line reason, so a load balancer stops sending it clients; once NATS is back it is ready
// again by itself. Against a real 3-node NATS cluster that loses its quorum, then every node,
// then comes back.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from './lib/server.mjs';
import { startCluster } from './lib/cluster.mjs';

let cl;
after(async () => {
  await cl?.close();
});

async function readyz(proc) {
  const res = await fetch(`${proc.url}/readyz`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

/** Waits until /readyz of `proc` answers `status` with a body matching `body`; returns it. */
async function waitReadyz(proc, status, body, what) {
  let last;
  await eventually(async () => {
    last = await readyz(proc);
    assert.equal(last.status, status, `${what}: ${JSON.stringify(last)}`);
    assert.match(last.body, body);
  }, { timeoutMs: 30_000, intervalMs: 250, what });
  return last;
}

test('an edge is unready while NATS has no quorum or is gone, and ready again when it returns', { timeout: 180_000 }, async () => {
  cl = await startCluster({ name: 'ready', edges: 1, workers: 1 });
  const [edge] = cl.edges;
  const [n1, n2, n3] = cl.nats.nodes;

  assert.deepEqual(await readyz(edge), { status: 200, body: 'ready\n' });

  // Two of three nodes gone: still connected to the third, but the stream has no leader.
  await n2.kill();
  await n3.kill();
  const noQuorum = await waitReadyz(edge, 503, /^not ready: .*JetStream/, 'unready without a quorum');
  assert.equal(noQuorum.body.trim().split('\n').length, 1, 'one line');
  // Liveness is a different question: the process is fine, restarting it would not help.
  assert.equal((await fetch(`${edge.url}/healthz`)).status, 200);

  // Every node gone: the reason names NATS and its URLs.
  await n1.kill();
  const gone = await waitReadyz(edge, 503, /^not ready: NATS unreachable \(nats:\/\/127\.0\.0\.1:\d+/, 'unready without NATS');
  assert.ok(gone.body.includes(n1.url), gone.body);

  await Promise.all([n1, n2, n3].map((n) => { n.spawn(); return n.waitReady(); }));
  await waitReadyz(edge, 200, /^ready\n$/, 'ready again once NATS is back');
  // The log says it once per change, not once per probe.
  const unreadyLines = edge.logs.filter((l) => l.includes('not ready:'));
  assert.ok(unreadyLines.length >= 1 && unreadyLines.length <= 6, `${unreadyLines.length} lines:\n${unreadyLines.join('\n')}`);
  assert.ok(edge.logs.some((l) => l.includes('ready again')), edge.tail());
});

test('an edge whose connection places are all taken is unready until one frees', { timeout: 60_000 }, async () => {
  const { startServer } = await import('./lib/server.mjs');
  const { connect, closeAllClients } = await import('./lib/clients.mjs');
  // /readyz on the ops listener: the probe takes no public place itself.
  const server = await startServer({
    name: 'full', ops: true,
    env: { SWITCHYARD_MAX_CONNECTIONS: '3', SWITCHYARD_MAX_CONNECTIONS_PER_IP: '3' },
  });
  try {
    const ops = { url: server.opsUrl };
    assert.deepEqual(await readyz(ops), { status: 200, body: 'ready\n' });
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await connect(server, 4, 'websocket', { label: `c${i}` }));
    const full = await waitReadyz(ops, 503, /^not ready: full: 3 of 3 connections/, 'unready when full');
    assert.equal(full.body.trim().split('\n').length, 1);
    clients[0].close();
    await waitReadyz(ops, 200, /^ready\n$/, 'ready once a place frees');
    closeAllClients();
  } finally {
    await server.close();
  }
});
