// REST under load: a burst of identical requests is served from one store read (the
// switchyard_store_reads_total counter tells how many reads the burst cost).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withServer, getJson } from './lib/server.mjs';

async function readsOf(server, op) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`switchyard_store_reads_total{op="${op}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

test('a burst of 500 identical REST requests costs one store read per route', async () => {
  await withServer({ name: 'coalesce' }, async (server) => {
    for (const route of ['users', 'current_stats', 'latest_hours']) {
      const before = await readsOf(server, route);
      const started = Date.now();
      const bodies = await Promise.all(
        Array.from({ length: 500 }, () => getJson(server, `/api/${route}`)),
      );
      const elapsed = Date.now() - started;
      const after = await readsOf(server, route);
      assert.ok(bodies.every((b) => JSON.stringify(b) === JSON.stringify(bodies[0])), `${route}: one answer`);
      // An answer lives 200 ms, so however long the burst took, at most one read per 200 ms
      // (plus the first) may happen — not one per request.
      const allowed = 1 + Math.ceil(elapsed / 200);
      const reads = after - before;
      assert.ok(reads >= 1 && reads <= allowed, `${route}: ${reads} store reads for 500 requests in ${elapsed} ms (allowed ${allowed})`);
    }
  });
});
