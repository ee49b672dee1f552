// Socket.IO acknowledgements: a client that passes an ack callback learns whether its packet was
// durably accepted ({ok: true}) or refused and why ({ok: false, error}). Both client lines.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { withServer, getJson, eventually, midHourClock } from './lib/server.mjs';
import { connect, closeAllClients } from './lib/clients.mjs';

after(() => closeAllClients());

/** Emits with an ack callback on either client line; rejects if no ack comes back. */
function emitWithAck(client, event, payload, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${client.label}: no ack for ${event} within ${ms} ms`)), ms);
    client.socket.emit(event, payload, (res) => {
      clearTimeout(timer);
      resolve(res);
    });
  });
}

for (const version of [2, 4]) {
  test(`v${version} client: accepted packets are acked ok, refused ones say why`, async () => {
    await withServer({ clockStart: midHourClock(), name: `ack-v${version}` }, async (server) => {
      const client = await connect(server, version, 'websocket');
      assert.deepEqual(await emitWithAck(client, 'click', { user: 'acker', comment: 'one' }), { ok: true });
      assert.deepEqual(await emitWithAck(client, 'event', { user: 'acker', name: 'boom' }), { ok: true });
      assert.deepEqual(await emitWithAck(client, 'auth', 'acker'), { ok: true });

      const badClick = await emitWithAck(client, 'click', { user: 'x'.repeat(16) });
      assert.equal(badClick.ok, false);
      assert.match(badClick.error, /user/, 'the reason names the field');
      const badEvent = await emitWithAck(client, 'event', { user: 'acker' });
      assert.equal(badEvent.ok, false);
      assert.match(badEvent.error, /name/);

      // What was acked ok is exactly what got counted.
      await eventually(async () => {
        const stats = await getJson(server, '/api/current_stats');
        assert.equal(stats.click_count_total, 1);
        assert.equal(stats.event_count_total, 1);
      }, { what: 'acked packets counted once' });
      client.close();
    });
  });
}
