// Graceful drain: SIGTERM with hundreds of clients connected and clicks in flight. The process
// exits cleanly within the drain bound, every client is told (disconnected, so it reconnects
// elsewhere), and nothing that was acknowledged is lost.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, getJson, eventually, midHourClock } from './lib/server.mjs';
import { connect, closeAllClients } from './lib/clients.mjs';
import { connectChat, closeAllChats, mintToken, SECRET } from './lib/chat.mjs';

after(async () => {
  closeAllClients();
  await closeAllChats();
});

/** Polls `route` until the listener goes away; returns every HTTP status seen, in order. */
function watchStatus(server, route) {
  let stop = false;
  const seen = [];
  const done = (async () => {
    while (!stop) {
      try {
        const res = await fetch(`${server.url}${route}`, { signal: AbortSignal.timeout(500) });
        await res.text();
        if (seen.at(-1) !== res.status) seen.push(res.status);
      } catch {
        if (seen.length > 0) break; // listener closed: the drain is over
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    return seen;
  })();
  return { seen, done, stop: () => { stop = true; } };
}

function emitWithAck(client, payload, ms = 8000) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('unknown'), ms);
    client.socket.emit('click', payload, (res) => {
      clearTimeout(timer);
      resolve(res?.ok === true ? 'ok' : res?.unconfirmed ? 'unknown' : 'failed');
    });
    client.socket.once('disconnect', () => resolve('unknown'));
  });
}

test('SIGTERM with 300 Socket.IO and 20 chat clients drains them and loses nothing acknowledged', { timeout: 90_000 }, async () => {
  const server = await startServer({
    name: 'drain',
    clockStart: midHourClock(),
    env: { SWITCHYARD_JWT_SECRET: SECRET, SWITCHYARD_DRAIN_TIMEOUT_SECS: '10', SWITCHYARD_DRAIN_NOTICE_MS: '1000' },
  });
  // What connectChat needs of a server (startChatServer would start `all` the same way).
  server.wsUrl = () => `${server.url.replace(/^http/, 'ws')}/chat`;
  server.token = (sub) => mintToken({ sub });
  try {
    const clients = [];
    for (let i = 0; i < 300; i += 50) {
      clients.push(...(await Promise.all(Array.from({ length: 50 }, () => connect(server, 4, 'websocket')))));
    }
    const chats = await Promise.all(Array.from({ length: 20 }, (_, i) => connectChat(server, `drain-${i}`)));

    // 50 clients keep clicking while the drain starts.
    const outcomes = [];
    const clickers = clients.slice(0, 50).map(async (c, i) => {
      for (let n = 0; c.connected && n < 100; n++) {
        outcomes.push(await emitWithAck(c, { user: `dr${i}`, comment: `${n}` }));
      }
    });
    await eventually(() => assert.ok(outcomes.filter((o) => o === 'ok').length >= 100), { timeoutMs: 10_000, what: 'clicks flowing' });

    const readyz = watchStatus(server, '/readyz');
    await eventually(() => assert.deepEqual(readyz.seen, [200]), { what: 'ready before SIGTERM' });
    const started = Date.now();
    const stopping = server.stop(); // asserts exit code 0 within 10 s of SIGTERM
    // While it drains, a newcomer is refused (so it reconnects elsewhere) and /readyz says 503.
    await eventually(() => assert.ok(readyz.seen.includes(503) || server.exit), { timeoutMs: 10_000, what: 'unready' });
    const newcomer = await fetch(`${server.url}/api/socket.io/?EIO=4&transport=polling`).then((r) => r.status, () => 'closed');
    await stopping;
    const took = Date.now() - started;
    readyz.stop();
    const readiness = await readyz.done;
    assert.deepEqual(readiness, [200, 503], `readyz answered ${JSON.stringify(readiness)} across the drain`);
    assert.ok(newcomer === 503 || newcomer === 'closed', `new Socket.IO handshake during drain: ${newcomer}`);
    await Promise.all(clickers);
    console.log(`drain: exited ${took} ms after SIGTERM; clicks ok ${outcomes.filter((o) => o === 'ok').length}, ` +
      `unknown ${outcomes.filter((o) => o === 'unknown').length}, failed ${outcomes.filter((o) => o === 'failed').length}`);

    await eventually(() => assert.ok(clients.every((c) => !c.connected), 'every Socket.IO client disconnected'), { timeoutMs: 5000, what: 'Socket.IO clients told' });
    await Promise.all(chats.map((c) => c.waitClosed(5000)));

    // Nothing acknowledged is lost: after a restart on the same store, every ok click is there.
    const ok = outcomes.filter((o) => o === 'ok').length;
    const unknown = outcomes.filter((o) => o === 'unknown').length;
    await server.restart();
    await eventually(async () => {
      const stats = await getJson(server, '/api/current_stats');
      assert.ok(stats.click_count_total >= ok, `stored ${stats.click_count_total} ≥ acked ${ok}`);
      assert.ok(stats.click_count_total <= ok + unknown, `stored ${stats.click_count_total} ≤ acked ${ok} + unknown ${unknown}`);
    }, { timeoutMs: 5000, what: 'acknowledged clicks kept' });
  } finally {
    closeAllClients();
    await closeAllChats();
    await server.close();
  }
});
