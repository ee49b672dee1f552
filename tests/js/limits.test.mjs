// Rate limits: a flooding connection is limited (and finally disconnected) while a polite client
// on the same server, from the same address, is served at once; connection attempts per address
// are limited too. Tight limits are configured so the tests stay short.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { withServer, getJson, eventually, midHourClock } from './lib/server.mjs';
import { connect, closeAllClients } from './lib/clients.mjs';
import { startChatServer, connectChat, closeAllChats, createRoom, openRaw, uid } from './lib/chat.mjs';

after(async () => {
  closeAllClients();
  await closeAllChats();
});

const TIGHT = {
  SWITCHYARD_RATE_CONN: '10',
  SWITCHYARD_RATE_CONN_BURST: '10',
  SWITCHYARD_FLOOD_STRIKES: '60',
};

function emitWithAck(client, event, payload, ms = 5000) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ timeout: true }), ms);
    client.socket.emit(event, payload, (res) => {
      clearTimeout(timer);
      resolve(res);
    });
  });
}

test('Socket.IO: a flooding socket is limited then disconnected; a polite one is served at once', async () => {
  await withServer({ env: TIGHT, clockStart: midHourClock(), name: 'limits-frust' }, async (server) => {
    const flooder = await connect(server, 4, 'websocket', { label: 'flooder' });
    const polite = await connect(server, 2, 'websocket', { label: 'polite' });

    const acks = await Promise.all(
      Array.from({ length: 40 }, (_, i) => emitWithAck(flooder, 'click', { user: 'flood', comment: `f${i}` })),
    );
    const ok = acks.filter((a) => a?.ok === true).length;
    const limited = acks.filter((a) => a?.ok === false && /rate/.test(a.error)).length;
    assert.ok(ok >= 1 && ok <= 12, `about the burst (10) accepted, got ${ok}`);
    assert.equal(ok + limited, 40, `every packet answered: ${JSON.stringify(acks.slice(0, 3))}`);

    // The polite client, same address, is not held back by its neighbour's flood.
    assert.deepEqual(await emitWithAck(polite, 'click', { user: 'polite', comment: 'hello' }), { ok: true });
    await polite.waitFor('click', (c) => c.comment === 'hello', 5000);

    // Keep flooding: past the strike limit the server hangs up on the flooder only.
    for (let i = 0; i < 200 && flooder.connected; i++) flooder.emit('click', { user: 'flood', comment: 'more' });
    await eventually(async () => assert.equal(flooder.connected, false), { timeoutMs: 5000, what: 'flooder disconnected' });
    assert.equal(polite.connected, true);

    // Only what was acknowledged was stored.
    await eventually(async () => {
      const users = await getJson(server, '/api/users');
      const count = (name) => users.find((u) => u.name === name)?.click_count ?? 0;
      assert.equal(count('polite'), 1);
      assert.ok(count('flood') >= ok, `flood clicks stored ${count('flood')} ≥ acked ${ok}`);
    }, { what: 'counts' });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /switchyard_rejects_total\{api="frust",reason="rate"\} [1-9]/);
    polite.close();
  });
});

test('chat: a flooding connection gets rate_limited errors and is closed; others chat on', async () => {
  const server = await startChatServer({ env: TIGHT, name: 'limits-chat' });
  try {
    const [ann, bob] = [uid('ann'), uid('bob')];
    const room = await createRoom(server, ann, { members: [bob] });
    const flood = await connectChat(server, ann, { label: 'flood' });
    const calm = await connectChat(server, bob, { label: 'calm' });
    for (let i = 0; i < 30; i++) flood.send({ type: 'message-send', payload: { room_id: room.room_id, message: `m${i}` } });
    await flood.waitFor('error', (e) => e.code === 'rate_limited', 5000);
    calm.send({ type: 'message-send', payload: { room_id: room.room_id, message: 'still here' } });
    await calm.waitFor('message-receive', (m) => m.message === 'still here', 5000);
    for (let i = 0; i < 300 && flood.isOpen; i++) flood.send({ type: 'typing', payload: { room_id: room.room_id, is_typing: true } });
    const closed = await flood.waitClosed(5000);
    assert.equal(closed.code, 1008, `policy close, got ${JSON.stringify(closed)}`);
    assert.ok(calm.isOpen);
  } finally {
    await closeAllChats();
    await server.close();
  }
});

test('connection attempts per address are limited: chat gets 429, Socket.IO is disconnected', async () => {
  const server = await startChatServer({
    env: { SWITCHYARD_RATE_CONNECT: '1', SWITCHYARD_RATE_CONNECT_BURST: '3' },
    name: 'limits-connect',
  });
  try {
    const statuses = [];
    for (let i = 0; i < 6; i++) {
      const res = await openRaw(server, { token: server.token(uid('c')) });
      statuses.push(res.status);
      res.ws?.terminate();
    }
    assert.ok(statuses.includes(101), `some accepted: ${statuses}`);
    assert.ok(statuses.includes(429), `some refused with 429: ${statuses}`);
    await assert.rejects(connect(server, 4, 'websocket', { timeoutMs: 1500 }), 'a Socket.IO connect over the budget fails');
  } finally {
    closeAllClients();
    await server.close();
  }
});
