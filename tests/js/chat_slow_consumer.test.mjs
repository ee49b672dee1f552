// Backpressure: a chat client that stops reading is disconnected (and counted) once its bounded
// send queue is full, while the other members keep receiving everything.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from './lib/server.mjs';
import { startChatServer, connectChat, closeAllChats, createRoom, uid } from './lib/chat.mjs';

after(() => closeAllChats());

test('a client that stops reading is dropped as a slow consumer; others receive every message', { timeout: 60_000 }, async () => {
  const server = await startChatServer({
    name: 'slow-consumer',
    env: {
      // Room for a reader that keeps up to fall a little behind (Node reads on one thread);
      // the sleeper, which reads nothing, overruns it many times over.
      SWITCHYARD_CHAT_SEND_QUEUE: '256',
      // The sender here is a load source, not a flood under test.
      SWITCHYARD_RATE_CONN: '100000',
      SWITCHYARD_RATE_CONN_BURST: '100000',
      SWITCHYARD_RATE_IP: '100000',
      SWITCHYARD_RATE_IP_BURST: '100000',
      // 3,000 messages of ~3 KB: far past the default per-connection read rate (64 KiB/s).
      SWITCHYARD_CONN_READ_RATE: '100000000',
      SWITCHYARD_CONN_READ_BURST: '100000000',
    },
  });
  try {
    const [sender, reader, sleeper] = [uid('send'), uid('read'), uid('sleep')];
    const room = await createRoom(server, sender, { members: [reader, sleeper] });
    const tx = await connectChat(server, sender, { label: 'sender' });
    const rx = await connectChat(server, reader, { label: 'reader' });
    const slow = await connectChat(server, sleeper, { label: 'sleeper' });
    slow.ws._socket.pause(); // stops reading: the kernel buffers fill, then the server's queue

    const TOTAL = 3000;
    // Sent in steps the reader has received before the next: a reader that keeps up stays well
    // inside its queue however busy the machine is, while the sleeper, which reads nothing, is
    // sent all 3,000 (~12 MB, more than its socket buffers and its queue hold).
    const STEP = 64;
    const body = 'x'.repeat(3_900); // near the 4000-character cap: fills socket buffers fast
    for (let sent = 0; sent < TOTAL; sent += STEP) {
      for (let i = sent; i < Math.min(sent + STEP, TOTAL); i++) {
        tx.send({ type: 'message-send', payload: { room_id: room.room_id, message: `${i}:${body}` } });
      }
      await rx.waitForCount('message-receive', () => true, Math.min(sent + STEP, TOTAL), 30_000);
    }
    const got = await rx.waitForCount('message-receive', () => true, TOTAL, 30_000);
    assert.deepEqual(got.map((m) => Number(m.message.split(':')[0])), Array.from({ length: TOTAL }, (_, i) => i), 'every message, in order');

    await eventually(async () => {
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(metrics, /switchyard_slow_consumer_disconnects_total\{api="chat"\} [1-9]/);
    }, { timeoutMs: 10_000, what: 'slow consumer counted' });
    slow.ws._socket.resume();
    const closed = await slow.waitClosed(10_000);
    assert.equal(closed.code, 1013, `told to try again later, got ${JSON.stringify(closed)}`);
    assert.ok(rx.isOpen && tx.isOpen, 'the others stay connected');
  } finally {
    await closeAllChats();
    await server.close();
  }
});
