// Chat history (list-message-request): paging by skip and by cursor, limits, order; messages
// that look like SQL or HTML come back verbatim; one order shared by live delivery and history;
// a restart on the same store keeps rooms and history.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { withLogs, sleep } from './lib/server.mjs';
import {
  startChatServer, connectChat, closeAllChats, closing, uid, createRoom, listRooms, addMember,
  removeMember, checkMessageShape, pick, show, sorted,
} from './lib/chat.mjs';

let srv;
before(async () => {
  srv = await startChatServer({ name: 'chat-history' });
});
after(async () => {
  await closeAllChats();
  await srv?.close();
});

const it = (name, fn) => test(name, { timeout: 120_000 }, withLogs(() => [srv], fn));

/**
 * Sends `texts` one after another (each awaited: the sender's own message-receive) and returns
 * the echoes in send order. Only for setting up history: a `rate_limited` error is waited out
 * and the message re-sent (rate limiting is allowed by the design; bulk setup is not the test).
 */
async function sendMany(conn, roomId, texts) {
  const out = [];
  for (const text of texts) {
    for (let attempt = 0; ; attempt++) {
      try {
        out.push(await conn.sendMessage(roomId, text));
        break;
      } catch (err) {
        if (attempt < 20 && /"code":"rate_limited"/.test(err.message)) {
          await sleep(1000);
          continue;
        }
        throw err;
      }
    }
  }
  return out;
}

const ids = (list) => list.map((m) => m.id);

/** Asserts a list-message-response: room, total_count, and each entry well-formed. */
function checkPage(page, roomId, total, what) {
  assert.equal(page.room_id, roomId, `${what}: room_id`);
  assert.ok(Array.isArray(page.messages), `${what}: messages is an array: ${show(page)}`);
  assert.equal(page.total_count, total, `${what}: total_count is the room's total`);
  page.messages.forEach((m, i) => {
    checkMessageShape(m, `${what} [${i}]`);
    assert.equal(m.room_id, roomId, `${what} [${i}] room_id`);
  });
  return page.messages;
}

it('an empty room has an empty history with total_count 0', async () => {
  const alice = uid('alice');
  const room = (await createRoom(srv, alice)).room_id;
  const a = await connectChat(srv, alice);
  await closing([a], async () => {
    for (const payload of [{ room_id: room }, { room_id: room, order: 'asc', limit: 10, skip: 5 }]) {
      const page = await a.history(payload);
      assert.deepEqual(checkPage(page, room, 0, show(payload)), []);
    }
  });
});

it('25 messages page by skip (asc and desc, limit 10) and walk by cursor, each seen exactly once in order', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const room = (await createRoom(srv, alice, { members: [bob] })).room_id;
  const other = (await createRoom(srv, alice, { members: [bob] })).room_id;
  const a = await connectChat(srv, alice);
  const b = await connectChat(srv, bob);
  await closing([a, b], async () => {
    const texts = Array.from({ length: 25 }, (_, i) => `page-${String(i).padStart(2, '0')}`);
    const sent = (await sendMany(a, room, texts)).map(pick);
    assert.equal(new Set(ids(sent)).size, 25, 'message ids are unique');
    await sendMany(b, other, ['elsewhere 1', 'elsewhere 2']); // another room's messages never count here
    const N = sent.length;
    const rev = [...sent].reverse();

    // By skip, ascending (bob reads: any member may).
    for (let skip = 0; skip <= 30; skip += 10) {
      const page = await b.history({ room_id: room, limit: 10, skip, order: 'asc' });
      const got = checkPage(page, room, N, `asc skip ${skip}`).map(pick);
      assert.deepEqual(got, sent.slice(skip, skip + 10), `asc skip ${skip}: the same messages live delivery gave, oldest first`);
    }
    // By skip, descending.
    for (let skip = 0; skip <= 30; skip += 10) {
      const page = await a.history({ room_id: room, limit: 10, skip, order: 'desc' });
      assert.deepEqual(checkPage(page, room, N, `desc skip ${skip}`).map(pick), rev.slice(skip, skip + 10), `desc skip ${skip}`);
    }
    // Defaults: order desc; limit 50 (so all 25 here).
    assert.deepEqual(checkPage(await a.history({ room_id: room, limit: 10 }), room, N, 'default order').map(pick), rev.slice(0, 10));
    assert.deepEqual(checkPage(await a.history({ room_id: room }), room, N, 'default limit and order').map(pick), rev);

    // Cursor walk with `before`, from the newest back to the oldest.
    const seen = [];
    let cursor;
    for (let round = 0; round < 10; round++) {
      const payload = { room_id: room, limit: 10, order: 'desc', ...(cursor ? { before: cursor } : {}) };
      const page = checkPage(await b.history(payload), room, N, `before ${cursor ?? '(none)'}`);
      if (page.length === 0) break;
      seen.push(...page.map(pick));
      cursor = page[page.length - 1].id;
    }
    assert.deepEqual(ids(seen), ids(rev), 'walking `before` back yields every message exactly once, newest first');
    assert.deepEqual(seen, rev);
    // The page sizes: 10, 10, 5 (then empty).
    const second = await b.history({ room_id: room, limit: 10, before: rev[9].id });
    assert.deepEqual(ids(second.messages), ids(rev.slice(10, 20)), 'before = the 10th newest → the next 10 older');
    const oldest = await b.history({ room_id: room, limit: 10, before: sent[0].id });
    assert.deepEqual(checkPage(oldest, room, N, 'before the oldest'), []);

    // Cursor walk with `after`, from the oldest forward.
    const forward = [];
    cursor = undefined;
    for (let round = 0; round < 10; round++) {
      const payload = { room_id: room, limit: 10, order: 'asc', ...(cursor ? { after: cursor } : {}) };
      const page = checkPage(await a.history(payload), room, N, `after ${cursor ?? '(none)'}`);
      if (page.length === 0) break;
      forward.push(...page.map(pick));
      cursor = page[page.length - 1].id;
    }
    assert.deepEqual(forward, sent, 'walking `after` forward yields every message exactly once, oldest first');
    const mid = await a.history({ room_id: room, limit: 10, order: 'asc', after: sent[9].id });
    assert.deepEqual(ids(mid.messages), ids(sent.slice(10, 20)), 'after = the 10th oldest → the next 10 newer');
    const newest = await a.history({ room_id: room, limit: 10, order: 'asc', after: sent[N - 1].id });
    assert.deepEqual(checkPage(newest, room, N, 'after the newest'), []);

    // Recovering after a reconnect: a fresh connection asks for what came after the last id it saw.
    const b2 = await connectChat(srv, bob);
    await closing([b2], async () => {
      const page = await b2.history({ room_id: room, order: 'asc', after: sent[19].id });
      assert.deepEqual(page.messages.map(pick), sent.slice(20));
    });

    // The other room is counted separately.
    const otherPage = await b.history({ room_id: other });
    assert.equal(otherPage.total_count, 2);
  });
});

it('limit defaults to 50 and is capped at 100', async () => {
  const alice = uid('alice');
  const room = (await createRoom(srv, alice)).room_id;
  const a = await connectChat(srv, alice);
  await closing([a], async () => {
    const texts = Array.from({ length: 120 }, (_, i) => `cap-${String(i).padStart(3, '0')}`);
    const sent = (await sendMany(a, room, texts)).map(pick);
    const rev = [...sent].reverse();
    const dflt = await a.history({ room_id: room });
    assert.deepEqual(checkPage(dflt, room, 120, 'no limit').map(pick), rev.slice(0, 50), 'default: the newest 50');
    const huge = await a.history({ room_id: room, limit: 1000 });
    const hugeMsgs = checkPage(huge, room, 120, 'limit 1000');
    assert.ok(hugeMsgs.length <= 100, `limit 1000 returns at most 100 (got ${hugeMsgs.length})`);
    assert.deepEqual(hugeMsgs.map(pick), rev.slice(0, hugeMsgs.length), 'limit 1000: newest first');
    assert.equal(hugeMsgs.length, 100, 'capped at 100, and 120 exist');
    const asc = await a.history({ room_id: room, limit: 1000, order: 'asc' });
    assert.deepEqual(checkPage(asc, room, 120, 'asc limit 1000').map(pick), sent.slice(0, 100));
    const tail = await a.history({ room_id: room, limit: 100, order: 'asc', skip: 100 });
    assert.deepEqual(tail.messages.map(pick), sent.slice(100));
  });
});

it('messages that look like SQL, HTML or exotic unicode are stored and returned verbatim, live and in history', async () => {
  const alice = uid('alice');
  const odd = `o'brien-${uid('zoë')}`; // a user id with a quote and non-ASCII
  const roomName = `'); DROP TABLE rooms;-- <b>room</b> 🚀`;
  const created = await createRoom(srv, alice, { name: roomName, members: [odd] });
  const room = created.room_id;
  assert.equal(created.name, roomName, 'room name verbatim');
  const listed = (await listRooms(srv, srv.token(odd))).find((r) => r.room_id === room);
  assert.ok(listed, 'the odd user sees the room');
  assert.equal(listed.name, roomName);
  assert.ok(listed.members.includes(odd), `member id verbatim: ${show(listed.members)}`);

  const texts = [
    "'); DROP TABLE messages;--",
    "Robert'); DELETE FROM rooms WHERE '1'='1",
    '" OR 1=1 --',
    '<script>alert(1)</script>',
    '<img src=x onerror="alert(\'x\')">&amp;&lt;&#39;',
    '😀👩‍👩‍👧‍👦🏳️‍🌈 𝄞 — ünïcödé, 中文, العربية, עברית',
    'line one\nline two\r\n\ttabbed \\backslash\\ "quoted" \u2028\u2029',
    '   leading and trailing spaces   ',
    '%s %d {0} ${x} {{y}} \\u0041',
  ];
  const a = await connectChat(srv, alice);
  const o = await connectChat(srv, odd);
  await closing([a, o], async () => {
    const live = [];
    for (const text of texts) {
      const mine = await a.sendMessage(room, text);
      assert.equal(mine.message, text, `echo verbatim: ${show(text)}`);
      const got = await o.waitFor('message-receive', (m) => m.id === mine.id);
      assert.equal(got.message, text, `delivered verbatim: ${show(text)}`);
      live.push(pick(mine));
    }
    const reply = await o.sendMessage(room, texts[0]);
    assert.equal(reply.sender_id, odd, 'sender id verbatim');
    const seen = await a.waitFor('message-receive', (m) => m.id === reply.id);
    assert.equal(seen.sender_id, odd);
    live.push(pick(reply));

    const page = await o.history({ room_id: room, order: 'asc', limit: 100 });
    assert.deepEqual(checkPage(page, room, live.length, 'history').map(pick), live, 'history verbatim and in order');
    // The store is intact (a DROP TABLE did nothing): rooms still list.
    assert.ok((await listRooms(srv, srv.token(alice))).some((r) => r.room_id === room));
  });
});

it('50 messages sent as fast as possible arrive at every member connection in send order, and history agrees', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const carol = uid('carol');
  const room = (await createRoom(srv, alice, { members: [bob, carol] })).room_id;
  const conns = [
    await connectChat(srv, alice, { label: 'alice#1' }),
    await connectChat(srv, alice, { label: 'alice#2' }),
    await connectChat(srv, bob, { label: 'bob#1' }),
    await connectChat(srv, bob, { label: 'bob#2' }),
    await connectChat(srv, carol, { label: 'carol' }),
  ];
  await closing(conns, async () => {
    const [sender] = conns;
    const tag = uid('ord');
    const texts = Array.from({ length: 50 }, (_, i) => `${tag}-${String(i).padStart(2, '0')}`);
    for (const text of texts) sender.send({ type: 'message-send', payload: { room_id: room, message: text } });
    const inRoom = (m) => m.room_id === room && m.message.startsWith(`${tag}-`);
    let reference;
    for (const conn of conns) {
      const got = await conn.waitForCount('message-receive', inRoom, 50, 15_000);
      assert.deepEqual(got.map((m) => m.message), texts, `${conn.label}: received in send order`);
      assert.ok(got.every((m) => m.sender_id === alice));
      if (!reference) reference = got.map(pick);
      else assert.deepEqual(got.map(pick), reference, `${conn.label}: the same ids and timestamps as everyone`);
    }
    assert.equal(new Set(ids(reference)).size, 50, 'ids are unique');
    assert.deepEqual(sender.all('error', () => true), [], 'no packet was refused');
    const page = await conns[4].history({ room_id: room, order: 'asc', limit: 100 });
    assert.deepEqual(checkPage(page, room, 50, 'history asc').map(pick), reference, 'history asc = live order');
    const desc = await conns[2].history({ room_id: room, order: 'desc', limit: 100 });
    assert.deepEqual(desc.messages.map(pick), [...reference].reverse(), 'history desc = reversed live order');
  });
});

it('two senders at once: every connection sees one and the same interleaving, and history agrees', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const carol = uid('carol');
  const room = (await createRoom(srv, alice, { members: [bob, carol] })).room_id;
  const a = await connectChat(srv, alice, { label: 'alice' });
  const b = await connectChat(srv, bob, { label: 'bob' });
  const c = await connectChat(srv, carol, { label: 'carol' });
  await closing([a, b, c], async () => {
    const tag = uid('mix');
    const textsA = Array.from({ length: 25 }, (_, i) => `${tag}-a${String(i).padStart(2, '0')}`);
    const textsB = Array.from({ length: 25 }, (_, i) => `${tag}-b${String(i).padStart(2, '0')}`);
    for (let i = 0; i < 25; i++) {
      a.send({ type: 'message-send', payload: { room_id: room, message: textsA[i] } });
      b.send({ type: 'message-send', payload: { room_id: room, message: textsB[i] } });
    }
    const inRoom = (m) => m.room_id === room && m.message.startsWith(`${tag}-`);
    const lists = [];
    for (const conn of [a, b, c]) {
      const got = (await conn.waitForCount('message-receive', inRoom, 50, 15_000)).map(pick);
      // Each sender's own messages keep their send order.
      assert.deepEqual(got.filter((m) => m.sender_id === alice).map((m) => m.message), textsA, `${conn.label}: alice's in order`);
      assert.deepEqual(got.filter((m) => m.sender_id === bob).map((m) => m.message), textsB, `${conn.label}: bob's in order`);
      lists.push(got);
    }
    assert.deepEqual(lists[1], lists[0], 'bob sees the same interleaving as alice');
    assert.deepEqual(lists[2], lists[0], 'carol sees the same interleaving as alice');
    const page = await c.history({ room_id: room, order: 'asc', limit: 100 });
    assert.deepEqual(page.messages.map(pick), lists[0], 'history asc = the live interleaving');
  });
});

it('a restart on the same store keeps rooms, memberships and history', async () => {
  const own = await startChatServer({ name: 'chat-restart' });
  try {
    await withLogs(() => [own], async () => {
      const alice = uid('alice');
      const bob = uid('bob');
      const carol = uid('carol');
      const dave = uid('dave');
      const r1 = await createRoom(own, alice, { name: 'kept <1>', members: [bob] });
      const r2 = await createRoom(own, { token: own.adminToken }, { name: 'kept 2', members: [bob, dave] });
      await addMember(own, own.token(bob), r1.room_id, carol);
      await removeMember(own, own.adminToken, r2.room_id, dave);
      const texts = ["before restart 1", "'); DROP TABLE messages;--", '🎉 before restart 3'];
      let prior;
      const a = await connectChat(own, alice);
      const b = await connectChat(own, bob);
      await closing([a, b], async () => {
        prior = (await sendMany(a, r1.room_id, texts)).map(pick);
        prior.push(pick(await b.sendMessage(r1.room_id, 'bob before restart')));
        await sendMany(b, r2.room_id, ['r2 before restart']);
      });
      const tokenFromBefore = own.token(alice);
      const roomsBefore = {
        alice: await listRooms(own, own.token(alice)),
        bob: await listRooms(own, own.token(bob)),
      };

      await own.restart();

      const norm = (rooms) => sorted(rooms.map((r) => JSON.stringify({ room_id: r.room_id, name: r.name, members: sorted(r.members) })));
      assert.deepEqual(norm(await listRooms(own, tokenFromBefore)), norm(roomsBefore.alice), 'alice\'s rooms survive');
      assert.deepEqual(norm(await listRooms(own, own.token(bob))), norm(roomsBefore.bob), 'bob\'s rooms survive');
      const carolRooms = await listRooms(own, own.token(carol));
      assert.deepEqual(carolRooms.map((r) => r.room_id), [r1.room_id], 'an added member stays added');
      assert.deepEqual(await listRooms(own, own.token(dave)), [], 'a removed member stays removed');

      const a2 = await connectChat(own, alice, { token: tokenFromBefore });
      const c2 = await connectChat(own, carol);
      const d2 = await connectChat(own, dave);
      await closing([a2, c2, d2], async () => {
        const page = await c2.history({ room_id: r1.room_id, order: 'asc' });
        assert.deepEqual(checkPage(page, r1.room_id, prior.length, 'after restart').map(pick), prior, 'history identical after restart');
        const after1 = pick(await a2.sendMessage(r1.room_id, 'after restart'));
        assert.ok(!ids(prior).includes(after1.id), 'a new id after restart');
        await c2.waitFor('message-receive', (m) => m.id === after1.id);
        const page2 = await c2.history({ room_id: r1.room_id, order: 'asc' });
        assert.deepEqual(checkPage(page2, r1.room_id, prior.length + 1, 'after a new message').map(pick), [...prior, after1], 'the new message comes last');
        const newest = await c2.history({ room_id: r1.room_id, limit: 1 });
        assert.deepEqual(newest.messages.map(pick), [after1], 'desc: the post-restart message is the newest');
        // Removed before the restart: still forbidden after it.
        const err = await d2.sendExpectError({ type: 'message-send', payload: { room_id: r2.room_id, message: 'dave after restart' } });
        assert.equal(err.code, 'forbidden');
      });
    })();
  } finally {
    await own.close();
  }
});
