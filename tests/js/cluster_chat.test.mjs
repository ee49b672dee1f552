// Cluster mode, Chat API: members connected to different edges (separate processes over a
// 3-node NATS JetStream cluster) chat, type and see join/leave; chat-leave waits for a user's
// last connection on any edge; messages sent fast into one room arrive on every connection on
// every edge in one order, the order history returns.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { withLogs, sleep } from './lib/server.mjs';
import {
  connectChat, closeAllChats, uid, createRoom, addMember, checkMessageShape, pick, show,
} from './lib/chat.mjs';
import { startCluster, WAIT_MS } from './lib/cluster.mjs';
import { msgpack, natsPublish } from './lib/nats_raw.mjs';
import { metric } from './lib/attack.mjs';

/** How long "nothing arrives" is watched for: a few heartbeats, so presence had time to act. */
const QUIET_MS = 1500;

let cl;
before(async () => {
  cl = await startCluster({ name: 'chat', edges: 2, workers: 1 });
}, { timeout: 120_000 });
after(async () => {
  await closeAllChats();
  await cl?.close();
});

const it = (name, fn) => test(name, { timeout: 60_000 }, withLogs(() => cl?.all(), fn));

const edge = (i) => cl.edges[i];

/**
 * Users: alice on both edges (alice1 on edge 1, alice2 on edge 2), bob on edge 2, carol on
 * edge 1, dave on edge 2. Room R1 {alice, bob, carol}; R2 {dave, erin}. Rooms are created over
 * REST on edge 1, so edge 2 learns of them only through the cluster.
 */
async function withCast(fn) {
  const users = { alice: uid('alice'), bob: uid('bob'), carol: uid('carol'), dave: uid('dave'), erin: uid('erin') };
  const r1 = (await createRoom(edge(0), users.alice, { name: 'r1', members: [users.bob, users.carol] })).room_id;
  const r2 = (await createRoom(edge(0), users.dave, { name: 'r2', members: [users.erin] })).room_id;
  const c = {};
  try {
    c.alice1 = await connectChat(edge(0), users.alice, { label: 'alice@edge1' });
    c.alice2 = await connectChat(edge(1), users.alice, { label: 'alice@edge2', via: 'header' });
    c.bob = await connectChat(edge(1), users.bob, { label: 'bob@edge2' });
    c.carol = await connectChat(edge(0), users.carol, { label: 'carol@edge1' });
    c.dave = await connectChat(edge(1), users.dave, { label: 'dave@edge2' });
    return await fn({ users, rooms: { r1, r2 }, c });
  } finally {
    await Promise.all(Object.values(c).map((conn) => conn.close().catch(() => {})));
  }
}

const marksOf = (c) => Object.fromEntries(Object.entries(c).map(([k, conn]) => [k, conn.mark()]));

it('message-send reaches every connection of every member on both edges exactly once, and no one else', async () => {
  await withCast(async ({ users, rooms, c }) => {
    const members = [c.alice1, c.alice2, c.bob, c.carol];
    for (const [sender, senderId] of [[c.alice1, users.alice], [c.bob, users.bob], [c.carol, users.carol]]) {
      const text = `hi from ${sender.label} ${uid('m')}`;
      const mine = await sender.sendMessage(rooms.r1, text, WAIT_MS);
      checkMessageShape(mine, `${sender.label} echo`);
      assert.equal(mine.sender_id, senderId);
      assert.equal(mine.room_id, rooms.r1);
      for (const conn of members) {
        const got = await conn.waitFor('message-receive', (m) => m.message === text, WAIT_MS);
        assert.deepEqual(pick(got), pick(mine), `${conn.label} got the same message as ${sender.label}`);
      }
    }
    await sleep(QUIET_MS); // late duplicates
    for (const conn of members) {
      const texts = conn.all('message-receive').map((m) => m.message);
      assert.equal(new Set(texts).size, texts.length, `${conn.label}: no message twice\n${conn.describe('message-receive')}`);
      assert.equal(texts.length, 3, `${conn.label}: exactly the three messages\n${conn.describe('message-receive')}`);
    }
    await c.dave.expectNone('message-receive', () => true, 0, { from: 0 });
    for (const conn of Object.values(c)) assert.deepEqual(conn.all('error'), [], `${conn.label}: no error`);
  });
});

it('typing reaches the room\'s other members on both edges, not the typer\'s own connections nor non-members', async () => {
  await withCast(async ({ users, rooms, c }) => {
    for (const [typer, typerId, own, others] of [
      [c.alice2, users.alice, ['alice1', 'alice2'], ['bob', 'carol']],
      [c.carol, users.carol, ['carol'], ['alice1', 'alice2', 'bob']],
    ]) {
      for (const isTyping of [true, false]) {
        const marks = marksOf(c);
        typer.send({ type: 'typing', payload: { room_id: rooms.r1, is_typing: isTyping } });
        const want = { room_id: rooms.r1, participant_id: typerId, is_typing: isTyping };
        for (const k of others) {
          const got = await c[k].waitFor('typing-notify', (p) => p.participant_id === typerId && p.is_typing === isTyping, WAIT_MS, { from: marks[k] });
          assert.deepEqual({ room_id: got.room_id, participant_id: got.participant_id, is_typing: got.is_typing }, want, `${c[k].label} typing-notify`);
        }
        await Promise.all([
          ...own.map((k) => c[k].expectNone('typing-notify', () => true, QUIET_MS, { from: marks[k] })),
          c.dave.expectNone('typing-notify', () => true, QUIET_MS, { from: marks.dave }),
        ]);
        for (const k of others) {
          assert.equal(c[k].all('typing-notify', (p) => p.participant_id === typerId, { from: marks[k] }).length, 1,
            `${c[k].label}: exactly one typing-notify\n${c[k].describe('typing-notify')}`);
        }
      }
    }
  });
});

it('chat-join notifies every connection of every other member on both edges, exactly once each', async () => {
  await withCast(async ({ users, c }) => {
    for (const [joinerKey, joinerId, own, others] of [
      ['carol', users.carol, ['carol'], ['alice1', 'alice2', 'bob']],
      ['alice2', users.alice, ['alice1', 'alice2'], ['bob', 'carol']],
    ]) {
      const joiner = c[joinerKey];
      const marks = marksOf(c);
      joiner.send({ type: 'chat-join', payload: {} });
      const isJoiner = (p) => p?.participant_id === joinerId;
      for (const k of others) {
        const got = await c[k].waitFor('chat-join-notify', isJoiner, WAIT_MS, { from: marks[k] });
        assert.equal(got.participant_id, joinerId, `${c[k].label} chat-join-notify`);
      }
      await Promise.all([
        ...own.map((k) => c[k].expectNone('chat-join-notify', () => true, QUIET_MS, { from: marks[k] })),
        c.dave.expectNone('chat-join-notify', () => true, QUIET_MS, { from: marks.dave }),
      ]);
      for (const k of others) {
        assert.equal(c[k].all('chat-join-notify', isJoiner, { from: marks[k] }).length, 1,
          `${c[k].label}: exactly one chat-join-notify\n${c[k].describe('chat-join-notify')}`);
      }
      assert.deepEqual(joiner.all('error', () => true, { from: marks[joinerKey] }), [], `${joiner.label}: chat-join gives no error`);
    }
  });
});

it('chat-leave goes out only when the user\'s last connection, on either edge, closes', async () => {
  await withCast(async ({ users, rooms, c }) => {
    const isAlice = (p) => p?.participant_id === users.alice;
    const marks = marksOf(c);
    // alice's connection on edge 2 (bob's edge) closes first: her edge-1 connection keeps her online.
    await c.alice2.close();
    await Promise.all(['bob', 'carol', 'alice1'].map((k) => c[k].expectNone('chat-leave', isAlice, QUIET_MS + 1000, { from: marks[k] })));
    // The remaining connection still sends and receives across the edges.
    const fromAlice = await c.alice1.sendMessage(rooms.r1, `alice still here ${uid('m')}`, WAIT_MS);
    await c.bob.waitFor('message-receive', (m) => m.id === fromAlice.id, WAIT_MS);
    const toAlice = await c.bob.sendMessage(rooms.r1, `hi alice ${uid('m')}`, WAIT_MS);
    await c.alice1.waitFor('message-receive', (m) => m.id === toAlice.id, WAIT_MS);
    assert.deepEqual(c.bob.all('chat-leave', isAlice, { from: marks.bob }), [], 'no chat-leave for alice yet');

    // Her last connection closes: members on both edges are told, once.
    await c.alice1.close();
    for (const k of ['bob', 'carol']) {
      const got = await c[k].waitFor('chat-leave', isAlice, WAIT_MS, { from: marks[k] });
      assert.equal(got.participant_id, users.alice, `${c[k].label} chat-leave`);
    }
    await c.dave.expectNone('chat-leave', () => true, QUIET_MS, { from: marks.dave });
    for (const k of ['bob', 'carol']) {
      assert.equal(c[k].all('chat-leave', isAlice, { from: marks[k] }).length, 1, `${c[k].label}: exactly one chat-leave\n${c[k].describe('chat-leave')}`);
    }

    // An abruptly dropped last connection (no close frame) of bob on edge 2 also counts.
    const isBob = (p) => p?.participant_id === users.bob;
    const fromCarol = c.carol.mark();
    c.bob.ws.terminate();
    await c.carol.waitFor('chat-leave', isBob, WAIT_MS, { from: fromCarol });
  });
});

it('a member added over REST on one edge receives the room at once on the other edge', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const carol = uid('carol');
  const room = (await createRoom(edge(0), alice, { members: [bob] })).room_id;
  const a = await connectChat(edge(0), alice, { label: 'alice@edge1' });
  const c = await connectChat(edge(1), carol, { label: 'carol@edge2' });
  try {
    const m1 = await a.sendMessage(room, 'before carol', WAIT_MS);
    await addMember(edge(0), edge(0).token(bob), room, carol);
    const m2 = await a.sendMessage(room, 'carol is in', WAIT_MS);
    const got = await c.waitFor('message-receive', (m) => m.id === m2.id, WAIT_MS);
    assert.deepEqual(pick(got), pick(m2));
    assert.deepEqual(c.all('message-receive', (m) => m.id === m1.id), [], 'nothing from before she was a member');
    const m3 = await c.sendMessage(room, 'hi from carol', WAIT_MS);
    await a.waitFor('message-receive', (m) => m.id === m3.id, WAIT_MS);
  } finally {
    await Promise.all([a.close(), c.close()]);
  }
});

it('100 messages sent as fast as possible arrive on every member connection on both edges in send order, as history returns them', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const carol = uid('carol');
  const room = (await createRoom(edge(1), alice, { members: [bob, carol] })).room_id;
  const conns = [
    await connectChat(edge(0), alice, { label: 'alice@edge1' }),
    await connectChat(edge(1), alice, { label: 'alice@edge2' }),
    await connectChat(edge(1), bob, { label: 'bob@edge2' }),
    await connectChat(edge(0), bob, { label: 'bob@edge1' }),
    await connectChat(edge(0), carol, { label: 'carol@edge1' }),
  ];
  try {
    const [sender] = conns;
    const tag = uid('ord');
    const N = 100;
    const texts = Array.from({ length: N }, (_, i) => `${tag}-${String(i).padStart(3, '0')}`);
    for (const text of texts) sender.send({ type: 'message-send', payload: { room_id: room, message: text } });
    const inRoom = (m) => m.room_id === room && m.message.startsWith(`${tag}-`);
    let reference;
    for (const conn of conns) {
      const got = await conn.waitForCount('message-receive', inRoom, N, 30_000);
      assert.deepEqual(got.map((m) => m.message), texts, `${conn.label}: received in send order`);
      assert.ok(got.every((m) => m.sender_id === alice));
      if (!reference) reference = got.map(pick);
      else assert.deepEqual(got.map(pick), reference, `${conn.label}: the same ids and timestamps as everyone`);
    }
    assert.equal(new Set(reference.map((m) => m.id)).size, N, 'ids are unique');
    assert.deepEqual(sender.all('error'), [], 'no packet was refused');
    await sleep(QUIET_MS);
    for (const conn of conns) {
      assert.equal(conn.all('message-receive', inRoom).length, N, `${conn.label}: no message twice\n${conn.describe('message-receive')}`);
    }
    for (const [i, reader] of [[1, conns[1]], [4, conns[4]]]) {
      const page = await reader.history({ room_id: room, order: 'asc', limit: 100 }, WAIT_MS);
      assert.equal(page.total_count, N, `history from ${conns[i].label}: total_count`);
      assert.deepEqual(page.messages.map(pick), reference, `history asc from ${conns[i].label} = live order`);
    }
    const desc = await conns[2].history({ room_id: room, order: 'desc', limit: 100 }, WAIT_MS);
    assert.deepEqual(desc.messages.map(pick), [...reference].reverse(), 'history desc = reversed live order');
  } finally {
    await Promise.all(conns.map((conn) => conn.close().catch(() => {})));
  }
});

it('two senders on two edges at once: every connection on both edges sees one and the same interleaving, as history does', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const carol = uid('carol');
  const room = (await createRoom(edge(0), alice, { members: [bob, carol] })).room_id;
  const a = await connectChat(edge(0), alice, { label: 'alice@edge1' });
  const b = await connectChat(edge(1), bob, { label: 'bob@edge2' });
  const c1 = await connectChat(edge(0), carol, { label: 'carol@edge1' });
  const c2 = await connectChat(edge(1), carol, { label: 'carol@edge2' });
  try {
    const tag = uid('mix');
    const N = 40;
    const textsA = Array.from({ length: N }, (_, i) => `${tag}-a${String(i).padStart(2, '0')}`);
    const textsB = Array.from({ length: N }, (_, i) => `${tag}-b${String(i).padStart(2, '0')}`);
    for (let i = 0; i < N; i++) {
      a.send({ type: 'message-send', payload: { room_id: room, message: textsA[i] } });
      b.send({ type: 'message-send', payload: { room_id: room, message: textsB[i] } });
    }
    const inRoom = (m) => m.room_id === room && m.message.startsWith(`${tag}-`);
    const lists = [];
    for (const conn of [a, b, c1, c2]) {
      const got = (await conn.waitForCount('message-receive', inRoom, 2 * N, 30_000)).map(pick);
      assert.deepEqual(got.filter((m) => m.sender_id === alice).map((m) => m.message), textsA, `${conn.label}: alice's in order`);
      assert.deepEqual(got.filter((m) => m.sender_id === bob).map((m) => m.message), textsB, `${conn.label}: bob's in order`);
      lists.push([conn.label, got]);
    }
    for (const [label, got] of lists.slice(1)) {
      assert.deepEqual(got, lists[0][1], `${label} sees the same interleaving as ${lists[0][0]}: ${show(got.map((m) => m.message).slice(0, 12))}…`);
    }
    const page = await c2.history({ room_id: room, order: 'asc', limit: 100 }, WAIT_MS);
    assert.equal(page.total_count, 2 * N);
    assert.deepEqual(page.messages.map(pick), lists[0][1], 'history asc = the live interleaving');
  } finally {
    await Promise.all([a, b, c1, c2].map((conn) => conn.close().catch(() => {})));
  }
});

// After a NATS node freeze, a room's fan-out can reach an edge late, after a later message of the
// room went another way (RELIABILITY.md, finding 7). Here that late arrival is made on purpose: a
// fan-out envelope published straight onto the room's subject, as the thawed node would deliver
// it, carrying a position below what the edge already delivered.
it('a room message arriving after a later one is not shown live: live order stays history order', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const room = (await createRoom(edge(0), alice, { name: 'late', members: [bob] })).room_id;
  const a = await connectChat(edge(0), alice, { label: 'alice@edge1' });
  const b = await connectChat(edge(1), bob, { label: 'bob@edge2' });
  try {
    const first = await a.sendMessage(room, `first ${uid('m')}`, WAIT_MS);
    await b.waitFor('message-receive', (m) => m.id === first.id, WAIT_MS);
    const lateBefore = await metric(edge(1), 'switchyard_chat_fanout_late_total');
    const forged = (message, position) => {
      const m = { id: uid('forged'), room_id: room, sender_id: alice, message, timestamp: first.timestamp };
      const out = { target: { Room: { room_id: room, except_user: null } }, json: JSON.stringify({ type: 'message-receive', payload: m }), dedup: m.id, position };
      return natsPublish(cl.nats.nodes[0].url, `out.chat.room.${room}`, msgpack({ v: 1, body: out }));
    };
    await forged('late: older than first', 0);
    await forged('ahead: newer than anything stored', 2n ** 62n);
    await b.waitFor('message-receive', (m) => m.message?.startsWith('ahead'), WAIT_MS);
    assert.deepEqual(b.all('message-receive', (m) => m.message?.startsWith('late')), [], 'the late message was not shown live');
    assert.equal(await metric(edge(1), 'switchyard_chat_fanout_late_total'), lateBefore + 1, 'and was counted');
  } finally {
    await Promise.all([a, b].map((conn) => conn.close().catch(() => {})));
  }
});

