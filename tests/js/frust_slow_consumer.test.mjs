// Backpressure on Socket.IO: clients (2.x and 4.x) that stop reading are counted as slow
// consumers and disconnected once their bounded send queue is full, while a client that keeps
// reading receives every click and stays connected.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, eventually, midHourClock } from './lib/server.mjs';
import { connect, closeAllClients } from './lib/clients.mjs';

after(() => closeAllClients());

const SENDERS = 4;
const BATCH = 50; // per sender: within its in-flight limit, and all senders' batches within the reader's queue
const MAX_CLICKS = 60_000;

async function slowConsumers(server) {
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const m = metrics.match(/switchyard_slow_consumer_disconnects_total\{api="frust"\} (\d+)/);
  return m ? Number(m[1]) : 0;
}

test('Socket.IO clients that stop reading are cut loose; a reading client gets every click', { timeout: 120_000 }, async () => {
  const server = await startServer({
    name: 'sio-slow-consumer',
    clockStart: midHourClock(),
    env: {
      SWITCHYARD_SIO_SEND_QUEUE: '512',
      SWITCHYARD_SIO_PING_INTERVAL_MS: '2000',
      // The sender is a load source here, not a flood under test.
      SWITCHYARD_RATE_CONN: '100000',
      SWITCHYARD_RATE_CONN_BURST: '100000',
      SWITCHYARD_RATE_IP: '100000',
      SWITCHYARD_RATE_IP_BURST: '100000',
    },
  });
  try {
    const senders = await Promise.all(Array.from({ length: SENDERS }, (_, i) => connect(server, 4, 'websocket', { label: `sender-${i}` })));
    const reader = await connect(server, 2, 'websocket', { label: 'reader' });
    const sleepers = [await connect(server, 4, 'websocket', { label: 'sleeper-v4' }), await connect(server, 2, 'websocket', { label: 'sleeper-v2' })];
    for (const s of sleepers) s.socket.io.engine.transport.ws._socket.pause(); // stops reading

    const comment = 'c'.repeat(75);
    const style = 's'.repeat(100);
    let sent = 0;
    while (sent < MAX_CLICKS && (await slowConsumers(server)) < sleepers.length) {
      for (const sender of senders) {
        for (let i = 0; i < BATCH; i++) sender.socket.emit('click', { user: 'loadsource', comment, style });
      }
      sent += BATCH * SENDERS;
      await eventually(() => assert.ok(reader.received.click.length >= sent, `reader has ${reader.received.click.length}/${sent}`), { timeoutMs: 10_000, intervalMs: 2, what: 'reader keeps up' });
    }
    assert.equal(await slowConsumers(server), sleepers.length, `both sleepers counted after ${sent} clicks`);
    assert.equal(reader.received.click.length, sent, 'the reading client got every click');

    // Their queue stays bounded; once they read again (or the heartbeat gives up) they are gone.
    for (const s of sleepers) s.socket.io.engine.transport.ws._socket.resume();
    await eventually(() => assert.ok(sleepers.every((s) => !s.connected), 'sleepers disconnected'), { timeoutMs: 20_000, what: 'sleepers disconnected' });
    assert.ok(reader.connected && senders.every((s) => s.connected), 'the others stay connected');
    senders[0].socket.emit('click', { user: 'loadsource', comment: 'after' });
    await eventually(() => assert.equal(reader.latest('click')?.comment, 'after'), { timeoutMs: 5000, what: 'reader still served' });
  } finally {
    closeAllClients();
    await server.close();
  }
});
