// Chat API packets over /chat: message-send → message-receive, chat-join → chat-join-notify,
// chat-leave on a user's last connection, typing → typing-notify; bad packets get an `error`
// with the right code and leave the connection usable; oversize frames (and 1009 past the
// websocket cap); abusive clients; ping floods; server pings and the idle timeout.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withLogs, sleep } from './lib/server.mjs';
import {
  startChatServer, connectChat, closeAllChats, closing, uid, createRoom, checkMessageShape, show,
  QUIET_MS, WAIT_MS,
} from './lib/chat.mjs';

let srv;
before(async () => {
  srv = await startChatServer({ name: 'chat-packets' });
});
after(async () => {
  await closeAllChats();
  await srv?.close();
});

const it = (name, fn) => test(name, { timeout: 90_000 }, withLogs(() => [srv], fn));

const ERROR_CODES = ['invalid_json', 'unknown_type', 'invalid_payload', 'forbidden', 'frame_too_large'];

/** Asserts an `error` payload has the expected code and a string message. */
function assertError(err, code, what) {
  assert.ok(err && typeof err === 'object', `${what}: error payload is an object: ${show(err)}`);
  assert.equal(err.code, code, `${what}: error code (payload ${show(err)})`);
  assert.equal(typeof err.message, 'string', `${what}: error.message is a string (payload ${show(err)})`);
}

/**
 * Users: alice (2 connections), bob (2), carol (1), dave (1). Rooms: R1 {alice, bob, carol},
 * R2 {alice, bob}, R3 {dave, erin}. Closes every connection afterwards.
 */
async function withCast(fn) {
  const users = { alice: uid('alice'), bob: uid('bob'), carol: uid('carol'), dave: uid('dave'), erin: uid('erin') };
  const r1 = await createRoom(srv, users.alice, { name: 'r1', members: [users.bob, users.carol] });
  const r2 = await createRoom(srv, users.alice, { name: 'r2', members: [users.bob] });
  const r3 = await createRoom(srv, users.dave, { name: 'r3', members: [users.erin] });
  const c = {};
  try {
    c.alice1 = await connectChat(srv, users.alice, { label: 'alice#1' });
    c.alice2 = await connectChat(srv, users.alice, { label: 'alice#2', via: 'header' });
    c.bob1 = await connectChat(srv, users.bob, { label: 'bob#1' });
    c.bob2 = await connectChat(srv, users.bob, { label: 'bob#2' });
    c.carol = await connectChat(srv, users.carol, { label: 'carol' });
    c.dave = await connectChat(srv, users.dave, { label: 'dave' });
    return await fn({ users, rooms: { r1: r1.room_id, r2: r2.room_id, r3: r3.room_id }, c });
  } finally {
    await Promise.all(Object.values(c).map((conn) => conn.close().catch(() => {})));
  }
}

it('message-send reaches every connection of every room member, the sender\'s own included, and no one else', async () => {
  await withCast(async ({ users, rooms, c }) => {
    const text = `hello r1 ${uid('m')}`;
    const started = Date.now();
    const mine = await c.alice1.sendMessage(rooms.r1, text);
    checkMessageShape(mine, 'alice#1 echo');
    assert.equal(mine.room_id, rooms.r1);
    assert.equal(mine.sender_id, users.alice);
    assert.equal(mine.message, text);
    const ts = Date.parse(mine.timestamp);
    assert.ok(Math.abs(ts - started) < 5 * 60_000, `timestamp ${mine.timestamp} is about now (same machine clock)`);

    for (const conn of [c.alice2, c.bob1, c.bob2, c.carol]) {
      const got = await conn.waitFor('message-receive', (m) => m.message === text);
      checkMessageShape(got, conn.label);
      assert.deepEqual(
        { id: got.id, room_id: got.room_id, sender_id: got.sender_id, message: got.message, timestamp: got.timestamp },
        { id: mine.id, room_id: mine.room_id, sender_id: mine.sender_id, message: mine.message, timestamp: mine.timestamp },
        `${conn.label} got the same message as the sender`,
      );
    }
    await c.dave.expectNone('message-receive', () => true, QUIET_MS, { from: 0 });

    // Exactly once per connection.
    for (const conn of [c.alice1, c.alice2, c.bob1, c.bob2, c.carol]) {
      assert.equal(conn.all('message-receive', (m) => m.message === text).length, 1, `${conn.label}: exactly one copy\n${conn.describe('message-receive')}`);
    }

    // R2 excludes carol; a second message gets a different id.
    const text2 = `hello r2 ${uid('m')}`;
    const mine2 = await c.bob2.sendMessage(rooms.r2, text2);
    assert.notEqual(mine2.id, mine.id, 'message ids are unique');
    await Promise.all([c.alice1, c.alice2, c.bob1].map((conn) => conn.waitFor('message-receive', (m) => m.id === mine2.id && m.sender_id === users.bob)));
    await Promise.all([
      c.carol.expectNone('message-receive', (m) => m.message === text2, QUIET_MS, { from: 0 }),
      c.dave.expectNone('message-receive', () => true, 0, { from: 0 }),
    ]);
  });
});

it('chat-join notifies every connection of every other user sharing a room, exactly once each', async () => {
  await withCast(async ({ users, c }) => {
    const marks = Object.fromEntries(Object.entries(c).map(([k, conn]) => [k, conn.mark()]));
    c.alice1.send({ type: 'chat-join', payload: { notice: 'join' } });
    const isAlice = (p) => p?.participant_id === users.alice;
    // bob shares R1 and R2 with alice, still one notify per bob connection.
    for (const k of ['bob1', 'bob2', 'carol']) {
      const got = await c[k].waitFor('chat-join-notify', isAlice, WAIT_MS, { from: marks[k] });
      assert.equal(got.participant_id, users.alice, `${c[k].label} chat-join-notify`);
    }
    await Promise.all([
      c.alice1.expectNone('chat-join-notify', () => true, QUIET_MS, { from: marks.alice1 }),
      c.alice2.expectNone('chat-join-notify', () => true, QUIET_MS, { from: marks.alice2 }),
      c.dave.expectNone('chat-join-notify', () => true, QUIET_MS, { from: marks.dave }),
      // …and no duplicate turns up late.
      ...['bob1', 'bob2', 'carol'].map((k) => sleep(QUIET_MS).then(() => {
        const n = c[k].all('chat-join-notify', isAlice, { from: marks[k] }).length;
        assert.equal(n, 1, `${c[k].label}: exactly one chat-join-notify for alice\n${c[k].describe('chat-join-notify')}`);
      })),
    ]);
    // chat-join produces no error for the sender.
    assert.deepEqual(c.alice1.all('error', () => true, { from: marks.alice1 }), []);
  });
});

it('chat-leave goes out only when a user\'s last connection closes', async () => {
  await withCast(async ({ users, rooms, c }) => {
    const isBob = (p) => p?.participant_id === users.bob;
    const marks = Object.fromEntries(Object.entries(c).map(([k, conn]) => [k, conn.mark()]));
    await c.bob1.close();
    await Promise.all(['alice1', 'alice2', 'carol', 'bob2'].map((k) =>
      c[k].expectNone('chat-leave', isBob, QUIET_MS, { from: marks[k] })));
    // bob#2 still sends and receives.
    const fromBob = await c.bob2.sendMessage(rooms.r1, `bob still here ${uid('m')}`);
    await c.alice1.waitFor('message-receive', (m) => m.id === fromBob.id);
    const toBob = await c.alice2.sendMessage(rooms.r2, `hi bob ${uid('m')}`);
    await c.bob2.waitFor('message-receive', (m) => m.id === toBob.id);

    await c.bob2.close();
    for (const k of ['alice1', 'alice2', 'carol']) {
      const got = await c[k].waitFor('chat-leave', isBob, WAIT_MS, { from: marks[k] });
      assert.equal(got.participant_id, users.bob, `${c[k].label} chat-leave`);
    }
    await c.dave.expectNone('chat-leave', () => true, QUIET_MS, { from: marks.dave });
  });
});

it('an abruptly dropped last connection (no close frame) also sends chat-leave', async () => {
  await withCast(async ({ users, c }) => {
    const isCarol = (p) => p?.participant_id === users.carol;
    const from = c.alice1.mark();
    const fromBob = c.bob1.mark();
    c.carol.ws.terminate(); // TCP torn down without a websocket close handshake
    await c.alice1.waitFor('chat-leave', isCarol, WAIT_MS, { from });
    await c.bob1.waitFor('chat-leave', isCarol, WAIT_MS, { from: fromBob });
    await c.dave.expectNone('chat-leave', () => true, QUIET_MS, { from: 0 });
  });
});

it('typing reaches the room\'s other members, not the typer\'s own connections nor non-members', async () => {
  await withCast(async ({ users, rooms, c }) => {
    for (const isTyping of [true, false]) {
      const marks = Object.fromEntries(Object.entries(c).map(([k, conn]) => [k, conn.mark()]));
      c.alice2.send({ type: 'typing', payload: { room_id: rooms.r2, is_typing: isTyping } });
      const want = { room_id: rooms.r2, participant_id: users.alice, is_typing: isTyping };
      for (const k of ['bob1', 'bob2']) {
        const got = await c[k].waitFor('typing-notify', (p) => p.room_id === rooms.r2 && p.is_typing === isTyping, WAIT_MS, { from: marks[k] });
        assert.deepEqual({ room_id: got.room_id, participant_id: got.participant_id, is_typing: got.is_typing }, want, `${c[k].label} typing-notify`);
      }
      await Promise.all([
        c.alice1.expectNone('typing-notify', () => true, QUIET_MS, { from: marks.alice1 }),
        c.alice2.expectNone('typing-notify', () => true, QUIET_MS, { from: marks.alice2 }),
        // carol shares R1 with alice but is not in R2.
        c.carol.expectNone('typing-notify', () => true, QUIET_MS, { from: marks.carol }),
        c.dave.expectNone('typing-notify', () => true, QUIET_MS, { from: marks.dave }),
      ]);
      assert.deepEqual(c.alice2.all('error', () => true, { from: marks.alice2 }), [], 'typing gives the typer no error');
    }
    // In R1, carol is notified too.
    const from = c.carol.mark();
    c.bob1.send({ type: 'typing', payload: { room_id: rooms.r1, is_typing: true } });
    const got = await c.carol.waitFor('typing-notify', (p) => p.participant_id === users.bob, WAIT_MS, { from });
    assert.equal(got.room_id, rooms.r1);
    assert.equal(got.is_typing, true);
    await c.bob2.expectNone('typing-notify', (p) => p.participant_id === users.bob, QUIET_MS, { from: 0 });
  });
});

it('each bad packet gets the right error code, and a good packet afterwards still works', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const room = (await createRoom(srv, alice, { members: [bob] })).room_id;
  const a = await connectChat(srv, alice);
  const b = await connectChat(srv, bob);
  await closing([a, b], async () => {
    const tag = uid('bad');
    const valid = (message) => ({ type: 'message-send', payload: { room_id: room, message } });
    const long = 'x'.repeat(4001);
    const cases = [
      ['not JSON', `hello ${tag}`, 'invalid_json'],
      ['truncated JSON', `{"type":"message-send","payload":{"room_id":"${room}","message":"${tag} trunc"`, 'invalid_json'],
      ['JSON array', '[1,2,3]', 'invalid_json'],
      ['JSON array around a valid packet', JSON.stringify([valid(`${tag} in array`)]), 'invalid_json'],
      ['JSON number', '42', 'invalid_json'],
      ['JSON string', '"message-send"', 'invalid_json'],
      ['JSON null', 'null', 'invalid_json'],
      ['unknown type', { type: `no-such-type-${tag}`, payload: {} }, 'unknown_type'],
      ['server-only type message-receive', {
        type: 'message-receive',
        payload: { id: 'forged', room_id: room, sender_id: bob, message: `${tag} forged`, timestamp: new Date().toISOString() },
      }, 'unknown_type'],
      ['message-send without room_id', { type: 'message-send', payload: { message: `${tag} no room` } }, 'invalid_payload'],
      ['message-send without message', { type: 'message-send', payload: { room_id: room } }, 'invalid_payload'],
      ['message-send with empty message', valid(''), 'invalid_payload'],
      ['message-send with numeric message', { type: 'message-send', payload: { room_id: room, message: 12345 } }, 'invalid_payload'],
      ['message-send with numeric room_id', { type: 'message-send', payload: { room_id: 7, message: `${tag} num room` } }, 'invalid_payload'],
      ['message-send with 4001 characters', valid(long), 'invalid_payload'],
      ['message-send without payload', { type: 'message-send' }, 'invalid_payload'],
      ['message-send with a string payload', { type: 'message-send', payload: `${tag} payload string` }, 'invalid_payload'],
      ['typing without is_typing', { type: 'typing', payload: { room_id: room } }, 'invalid_payload'],
      ['typing with is_typing "yes"', { type: 'typing', payload: { room_id: room, is_typing: 'yes' } }, 'invalid_payload'],
      ['typing without room_id', { type: 'typing', payload: { is_typing: true } }, 'invalid_payload'],
      ['list-message-request without room_id', { type: 'list-message-request', payload: { limit: 10 } }, 'invalid_payload'],
      ['list-message-request with limit "ten"', { type: 'list-message-request', payload: { room_id: room, limit: 'ten' } }, 'invalid_payload'],
      ['list-message-request with limit -1', { type: 'list-message-request', payload: { room_id: room, limit: -1 } }, 'invalid_payload'],
      ['list-message-request with order "sideways"', { type: 'list-message-request', payload: { room_id: room, order: 'sideways' } }, 'invalid_payload'],
    ];
    const fromB = b.mark();
    let i = 0;
    for (const [name, packet, code] of cases) {
      const err = await a.sendExpectError(packet);
      assertError(err, code, name);
      assert.ok(a.isOpen, `${name}: connection still open`);
      // A good packet afterwards works: alternate a message and a history request.
      if (i++ % 2 === 0) {
        const good = `${tag} good after ${name}`;
        const mine = await a.sendMessage(room, good);
        await b.waitFor('message-receive', (m) => m.id === mine.id);
      } else {
        const page = await a.history({ room_id: room, limit: 1 });
        assert.ok(Array.isArray(page.messages), `${name}: history after the error`);
      }
    }
    // None of the bad packets delivered anything; errors went to the offender only.
    const goods = b.all('message-receive', () => true, { from: fromB });
    const stray = goods.filter((m) => !m.message.startsWith(`${tag} good after `));
    assert.deepEqual(stray, [], `bob received messages from bad packets: ${show(stray)}`);
    assert.equal(goods.length, Math.ceil(cases.length / 2));
    await b.expectNone('error', () => true, 0, { from: fromB });
    const page = await a.history({ room_id: room, limit: 100, order: 'asc' });
    assert.equal(page.total_count, Math.ceil(cases.length / 2), 'only the good messages were stored');
    assert.ok(page.messages.every((m) => m.message.startsWith(`${tag} good after `)), `stored: ${show(page.messages.map((m) => m.message))}`);

    // The boundary: exactly 4000 characters is accepted and delivered verbatim.
    const max = `${tag}-`.padEnd(4000, 'y');
    assert.equal(max.length, 4000);
    const mine = await a.sendMessage(room, max);
    const got = await b.waitFor('message-receive', (m) => m.id === mine.id);
    assert.equal(got.message, max);
  });
});

it('an oversize frame gets frame_too_large (SWITCHYARD_CHAT_MAX_FRAME), then a good packet works', async () => {
  const MAX = 1024;
  const small = await startChatServer({ name: 'chat-small-frames', env: { SWITCHYARD_CHAT_MAX_FRAME: String(MAX) } });
  try {
    await withLogs(() => [small], async () => {
      const alice = uid('alice');
      const bob = uid('bob');
      const room = (await createRoom(small, alice, { members: [bob] })).room_id;
      const a = await connectChat(small, alice);
      const b = await connectChat(small, bob);
      await closing([a, b], async () => {
        const tag = uid('big');
        // A valid message under 4000 characters whose frame exceeds the cap.
        const bigPacket = JSON.stringify({ type: 'message-send', payload: { room_id: room, message: `${tag} `.padEnd(2000, 'z') } });
        assert.ok(Buffer.byteLength(bigPacket) > MAX);
        const fromB = b.mark();
        assertError(await a.sendExpectError(bigPacket), 'frame_too_large', 'oversize message-send');
        assert.ok(a.isOpen, 'still open after an oversize frame');
        const ok1 = await a.sendMessage(room, `${tag} fine after big`);
        await b.waitFor('message-receive', (m) => m.id === ok1.id);

        // Oversize garbage: the size is judged before parsing.
        assertError(await a.sendExpectError('!'.repeat(3 * MAX)), 'frame_too_large', 'oversize non-JSON');
        // A frame comfortably under the cap is fine.
        const under = `${tag} `.padEnd(600, 'u');
        const packet = JSON.stringify({ type: 'message-send', payload: { room_id: room, message: under } });
        assert.ok(Buffer.byteLength(packet) < MAX - 100);
        const ok2 = await a.sendMessage(room, under);
        await b.waitFor('message-receive', (m) => m.id === ok2.id);

        await b.expectNone('message-receive', (m) => m.message.length >= 2000, QUIET_MS, { from: fromB });
        const page = await a.history({ room_id: room, order: 'asc' });
        assert.deepEqual(page.messages.map((m) => m.id), [ok1.id, ok2.id], 'the oversize message was not stored');
        assert.equal(page.total_count, 2);

        // Past the websocket layer's cap (4 × the packet cap, at least 64 KiB) a frame is not
        // read at all: the connection is closed with 1009, message too big. bob is unaffected.
        a.sendRaw('x'.repeat(70 * 1024));
        assert.deepEqual(await a.waitClosed(), { code: 1009, reason: 'message too big' });
        assert.ok(b.isOpen);
        assert.equal((await b.history({ room_id: room })).total_count, 2);
      });
    })();
  } finally {
    await small.close();
  }
});

it('a client that keeps sending bad packets is eventually disconnected by the server', async () => {
  // Its own server, so whatever per-connection or per-IP penalty it applies touches no other test.
  const abuse = await startChatServer({ name: 'chat-abuse' });
  try {
    await withLogs(() => [abuse], async () => {
      const alice = uid('alice');
      const bob = uid('bob');
      const room = (await createRoom(abuse, alice, { members: [bob] })).room_id;
      const a = await connectChat(abuse, alice);
      const b = await connectChat(abuse, bob);
      await closing([a, b], async () => {
        let sent = 0;
        const deadline = Date.now() + 30_000;
        // Bursts of garbage; stop as soon as the server hangs up. No particular threshold.
        while (a.isOpen && sent < 5000 && Date.now() < deadline) {
          for (let i = 0; i < 50 && a.isOpen; i++, sent++) a.ws.send(`garbage #${sent}`);
          await sleep(sent < 200 ? 0 : 20);
        }
        const closed = await a.waitClosed(10_000).catch((err) => {
          throw new Error(`still connected after ${sent} bad packets: ${err.message}\n${a.describe('error')}`);
        });
        assert.ok(closed, `closed after ${sent} bad packets`);
        const codes = new Set(a.all('error').map((e) => e?.code));
        for (const code of codes) {
          assert.ok(ERROR_CODES.includes(code) || code === 'rate_limited', `error code ${code} is a known one`);
        }
        // The abuser's junk reached no one, and the server is fine.
        await b.expectNone('message-receive', () => true, 0, { from: 0 });
        await b.expectNone('error', () => true, 0, { from: 0 });
        const health = await fetch(`${abuse.url}/healthz`);
        assert.equal(health.status, 200);
        // bob's connection is unaffected.
        assert.ok(b.isOpen, 'an innocent connection stays open');
        const page = await b.history({ room_id: room });
        assert.equal(page.total_count, 0);
      });
    })();
  } finally {
    await abuse.close();
  }
});

it('pings from a client count against its rate limit: a ping flood is closed with 1008', async () => {
  const tight = await startChatServer({
    name: 'chat-ping-flood',
    env: { SWITCHYARD_RATE_CONN: '10', SWITCHYARD_RATE_CONN_BURST: '10', SWITCHYARD_FLOOD_STRIKES: '60' },
  });
  try {
    await withLogs(() => [tight], async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const room = (await createRoom(tight, alice, { members: [bob] })).room_id;
      const flood = await connectChat(tight, alice, { label: 'pinger' });
      const calm = await connectChat(tight, bob, { label: 'calm' });
      await closing([flood, calm], async () => {
        let pongs = 0;
        flood.ws.on('pong', () => { pongs += 1; });
        for (let i = 0; i < 1000 && flood.isOpen; i++) flood.ws.ping();
        assert.deepEqual(await flood.waitClosed(), { code: 1008, reason: 'policy violation' });
        assert.ok(pongs < 1000, `not every ping was answered before the close (${pongs})`);
        // Control frames over the limit got no error packets of ours.
        assert.deepEqual(flood.all('error'), []);
        const m = await calm.sendMessage(room, 'unbothered');
        assert.equal(m.sender_id, bob);
      });
      const metrics = await (await fetch(`${tight.url}/metrics`)).text();
      assert.match(metrics, /switchyard_flood_disconnects_total\{api="chat"\} [1-9]/);
    })();
  } finally {
    await tight.close();
  }
});

it('the server pings every connection; a client that never answers is closed with 4002, one that does stays', async () => {
  const quick = await startChatServer({
    name: 'chat-keepalive',
    env: { SWITCHYARD_CHAT_PING_INTERVAL_MS: '200', SWITCHYARD_CHAT_IDLE_TIMEOUT_MS: '1000' },
  });
  try {
    await withLogs(() => [quick], async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const room = (await createRoom(quick, alice, { members: [bob] })).room_id;
      const answering = await connectChat(quick, alice, { label: 'answers pings' });
      const silent = await connectChat(quick, bob, { label: 'never answers', wsOptions: { autoPong: false } });
      await closing([answering, silent], async () => {
        let pings = { answering: 0, silent: 0 };
        answering.ws.on('ping', () => { pings.answering += 1; });
        silent.ws.on('ping', () => { pings.silent += 1; });
        assert.deepEqual(await silent.waitClosed(), { code: 4002, reason: 'idle timeout' });
        assert.ok(pings.silent >= 1, 'the silent client was pinged before being closed');
        // The answering client, which sends nothing else, outlives several idle timeouts.
        await sleep(2500);
        assert.ok(answering.isOpen, 'a client answering pings stays connected');
        assert.ok(pings.answering >= 5, `pinged on the interval (${pings.answering} pings)`);
        await answering.sendMessage(room, 'still here');
      });
      assert.ok(quick.logs.some((l) => /closing a silent chat connection/.test(l)), 'one log line says why');
    })();
  } finally {
    await quick.close();
  }
});

it('chat settings that cannot work are refused at start with a clear message', async () => {
  const cases = [
    [{ SWITCHYARD_CHAT_IDLE_TIMEOUT_MS: '1000', SWITCHYARD_CHAT_PING_INTERVAL_MS: '1000' }, /IDLE_TIMEOUT_MS .* must be longer than the ping interval/],
    [{ SWITCHYARD_CHAT_MAX_FRAME: '100' }, /SWITCHYARD_CHAT_MAX_FRAME must be at least 256/],
    [{ SWITCHYARD_CHAT_REST_RATE_USER: '0' }, /per-user rate and burst must be at least 1/],
    [{ SWITCHYARD_CHAT_MAX_ROOM_MEMBERS: '0' }, /caps must be at least 1/],
  ];
  const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-bad-config-'));
  try {
    for (const [env, message] of cases) {
      const started = startChatServer({ name: 'chat-bad-config', env, storeDir });
      await assert.rejects(started, (err) => {
        assert.match(err.message, /exited before becoming ready/);
        assert.match(err.message, message);
        return true;
      }, JSON.stringify(env));
    }
  } finally {
    fs.rmSync(storeDir, { recursive: true, force: true });
  }
});
