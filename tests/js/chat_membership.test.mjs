// Chat rooms and membership: the /api/chat REST routes, who may use them (403/404), and
// membership enforced on /chat for sending, typing and history — non-members get `forbidden`
// and nothing reaches members; changes take effect at once for live connections.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { withLogs } from './lib/server.mjs';
import {
  startChatServer, connectChat, closeAllChats, closing, uid, rest, createRoom, listRooms, addMember,
  removeMember, roomsRoute, membersRoute, memberRoute, sorted, show, QUIET_MS, WAIT_MS,
} from './lib/chat.mjs';

let srv;
before(async () => {
  srv = await startChatServer({ name: 'chat-membership' });
});
after(async () => {
  await closeAllChats();
  await srv?.close();
});

const it = (name, fn) => test(name, { timeout: 60_000 }, withLogs(() => [srv], fn));

function assertRoomShape(room, what) {
  assert.ok(room && typeof room === 'object', `${what}: a room object: ${show(room)}`);
  assert.equal(typeof room.room_id, 'string', `${what}: room_id is a string: ${show(room)}`);
  assert.ok(room.room_id.length > 0, `${what}: room_id not empty`);
  assert.ok('name' in room, `${what}: has a name field: ${show(room)}`);
  assert.ok(Array.isArray(room.members), `${what}: members is an array: ${show(room)}`);
  assert.equal(new Set(room.members).size, room.members.length, `${what}: no duplicate members: ${show(room.members)}`);
}

const forbiddenCode = async (conn, packet) => {
  const err = await conn.sendExpectError(packet);
  assert.equal(err?.code, 'forbidden', `${conn.label}: ${show(packet)} → ${show(err)}`);
  assert.equal(typeof err.message, 'string');
  return err;
};

it('POST /api/chat/rooms creates a room with the caller as a member; GET lists only the caller\'s rooms', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const carol = uid('carol');
  const res = await rest(srv, 'POST', roomsRoute, { token: srv.token(alice), body: { name: 'team', members: [bob] } });
  assert.equal(res.status, 201, res.what);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  const room = res.json;
  assertRoomShape(room, 'created');
  assert.equal(room.name, 'team');
  assert.deepEqual(sorted(room.members), sorted([alice, bob]), 'members = listed + caller');

  // Listing the caller among the members does not duplicate them; the name is optional.
  const noName = await createRoom(srv, bob, { members: [bob, carol] });
  assertRoomShape(noName, 'created without name');
  assert.deepEqual(sorted(noName.members), sorted([bob, carol]));
  assert.notEqual(noName.room_id, room.room_id, 'room ids are unique');
  const solo = await createRoom(srv, carol, { name: 'solo' });
  assert.deepEqual(solo.members, [carol], 'no members listed: just the caller');

  const mine = (u) => listRooms(srv, srv.token(u));
  const aliceRooms = await mine(alice);
  aliceRooms.forEach((r, i) => assertRoomShape(r, `alice's rooms[${i}]`));
  assert.deepEqual(aliceRooms.map((r) => r.room_id), [room.room_id]);
  const core = (r) => ({ room_id: r.room_id, name: r.name, members: sorted(r.members) });
  assert.deepEqual(core(aliceRooms[0]), core(room), 'GET shows the room as POST returned it');
  assert.deepEqual(sorted((await mine(bob)).map((r) => r.room_id)), sorted([room.room_id, noName.room_id]));
  assert.deepEqual(sorted((await mine(carol)).map((r) => r.room_id)), sorted([noName.room_id, solo.room_id]));
  assert.deepEqual(await mine(uid('nobody')), [], 'a user in no room gets []');
});

it('the admin creates rooms with only the listed members and manages any room', async () => {
  const x = uid('x');
  const y = uid('y');
  const z = uid('z');
  const room = await createRoom(srv, { token: srv.adminToken }, { name: 'ops', members: [x, y] });
  assertRoomShape(room, 'admin-created');
  assert.deepEqual(sorted(room.members), sorted([x, y]));
  assert.deepEqual((await listRooms(srv, srv.token(x))).map((r) => r.room_id), [room.room_id]);
  const added = await addMember(srv, srv.adminToken, room.room_id, z);
  assert.deepEqual(sorted(added.members), sorted([x, y, z]));
  await removeMember(srv, srv.adminToken, room.room_id, x);
  assert.deepEqual(await listRooms(srv, srv.token(x)), []);
  const zRooms = await listRooms(srv, srv.token(z));
  assert.deepEqual(sorted(zRooms[0].members), sorted([y, z]));
});

it('members add and remove members; non-members get 403 and change nothing; unknown rooms 404', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const carol = uid('carol');
  const dave = uid('dave');
  const room = await createRoom(srv, alice, { name: 'guarded', members: [bob] });
  const id = room.room_id;

  // A member (not the creator) adds someone.
  const res = await rest(srv, 'POST', membersRoute(id), { token: srv.token(bob), body: { user_id: dave } });
  assert.equal(res.status, 200, res.what);
  assertRoomShape(res.json, 'after add');
  assert.equal(res.json.room_id, id);
  assert.equal(res.json.name, 'guarded');
  assert.deepEqual(sorted(res.json.members), sorted([alice, bob, dave]));

  // A non-member can neither add (not even themselves) nor remove.
  const tries = [
    ['POST', membersRoute(id), { user_id: carol }],
    ['POST', membersRoute(id), { user_id: uid('friend') }],
    ['DELETE', memberRoute(id, bob), undefined],
    ['DELETE', memberRoute(id, alice), undefined],
  ];
  for (const [method, route, body] of tries) {
    const r = await rest(srv, method, route, { token: srv.token(carol), body });
    assert.equal(r.status, 403, `non-member: ${r.what}`);
  }
  const now = (await listRooms(srv, srv.token(alice))).find((r) => r.room_id === id);
  assert.deepEqual(sorted(now.members), sorted([alice, bob, dave]), 'the 403s changed nothing');
  assert.deepEqual(await listRooms(srv, srv.token(carol)), [], 'carol did not get in');

  // A member removes another: 204, and the removed one no longer sees the room.
  const del = await rest(srv, 'DELETE', memberRoute(id, dave), { token: srv.token(alice) });
  assert.equal(del.status, 204, del.what);
  assert.equal(del.text, '', '204 has no body');
  assert.deepEqual(await listRooms(srv, srv.token(dave)), []);
  // …and, no longer a member, cannot manage it either.
  const again = await rest(srv, 'POST', membersRoute(id), { token: srv.token(dave), body: { user_id: dave } });
  assert.equal(again.status, 403, `removed member re-adding themselves: ${again.what}`);

  // Unknown rooms: 404 for users and for the admin.
  const ghost = `no-such-room-${uid('r')}`;
  for (const [who, token] of [['user', srv.token(alice)], ['admin', srv.adminToken]]) {
    const add = await rest(srv, 'POST', membersRoute(ghost), { token, body: { user_id: bob } });
    assert.equal(add.status, 404, `${who}: ${add.what}`);
    const rm = await rest(srv, 'DELETE', memberRoute(ghost, bob), { token });
    assert.equal(rm.status, 404, `${who}: ${rm.what}`);
  }
  assert.ok(!(await listRooms(srv, srv.token(bob))).some((r) => r.room_id === ghost), 'no room was made by adding to it');
});

it('malformed REST bodies are refused with a 4xx and create nothing', async () => {
  const alice = uid('alice');
  const room = await createRoom(srv, alice);
  const bad = [
    ['POST', roomsRoute, '{"members": "bob"}'],
    ['POST', roomsRoute, '{"members": [1, 2]}'],
    ['POST', roomsRoute, 'not json'],
    ['POST', membersRoute(room.room_id), '{}'],
    ['POST', membersRoute(room.room_id), '{"user_id": 5}'],
  ];
  for (const [method, route, rawBody] of bad) {
    const r = await rest(srv, method, route, { token: srv.token(alice), rawBody });
    assert.ok(r.status >= 400 && r.status < 500, `${rawBody} → expected 4xx: ${r.what}`);
  }
  const rooms = await listRooms(srv, srv.token(alice));
  assert.deepEqual(rooms.map((r) => r.room_id), [room.room_id]);
  assert.deepEqual(rooms[0].members, [alice]);
});

it('a non-member gets forbidden for send, typing and history, and members receive nothing', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const mallory = uid('mallory');
  const room = (await createRoom(srv, alice, { members: [bob] })).room_id;
  const ownRoom = (await createRoom(srv, mallory)).room_id; // mallory is a member elsewhere
  const a = await connectChat(srv, alice);
  const b = await connectChat(srv, bob);
  const m = await connectChat(srv, mallory);
  await closing([a, b, m], async () => {
    const seed = await a.sendMessage(room, 'members only');
    await b.waitFor('message-receive', (x) => x.id === seed.id);
    await m.expectNone('message-receive', () => true, QUIET_MS, { from: 0 });

    const from = { a: a.mark(), b: b.mark() };
    const ghost = `no-such-room-${uid('r')}`;
    for (const target of [room, ghost]) {
      await forbiddenCode(m, { type: 'message-send', payload: { room_id: target, message: `intrusion into ${target}` } });
      await forbiddenCode(m, { type: 'typing', payload: { room_id: target, is_typing: true } });
      const fromM = m.mark();
      await forbiddenCode(m, { type: 'list-message-request', payload: { room_id: target } });
      await m.expectNone('list-message-response', () => true, QUIET_MS, { from: fromM });
    }
    for (const [conn, mark] of [[a, from.a], [b, from.b]]) {
      await conn.expectNone('message-receive', () => true, QUIET_MS, { from: mark });
      await conn.expectNone('typing-notify', () => true, 0, { from: mark });
      await conn.expectNone('error', () => true, 0, { from: mark });
    }
    // Nothing was stored.
    const page = await a.history({ room_id: room });
    assert.equal(page.total_count, 1);
    assert.deepEqual(page.messages.map((x) => x.id), [seed.id]);
    // mallory's connection still works in her own room.
    const ok = await m.sendMessage(ownRoom, 'my own room');
    assert.equal(ok.room_id, ownRoom);
    await a.expectNone('message-receive', (x) => x.id === ok.id, QUIET_MS);
  });
});

it('membership changes take effect at once for live connections', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const carol = uid('carol');
  const room = (await createRoom(srv, alice, { members: [bob] })).room_id;
  const a = await connectChat(srv, alice, { label: 'alice' });
  const b = await connectChat(srv, bob, { label: 'bob' });
  const c = await connectChat(srv, carol, { label: 'carol' });
  await closing([a, b, c], async () => {
    const m1 = await a.sendMessage(room, 'before carol joins');
    await b.waitFor('message-receive', (x) => x.id === m1.id);
    await c.expectNone('message-receive', () => true, QUIET_MS, { from: 0 });

    // bob adds carol; her open connection gets the very next message, no reconnect.
    await addMember(srv, srv.token(bob), room, carol);
    const m2 = await a.sendMessage(room, 'carol is in');
    const got = await c.waitFor('message-receive', (x) => x.id === m2.id);
    assert.equal(got.message, 'carol is in');
    // …and may now send, type and read history.
    const m3 = await c.sendMessage(room, 'hi from carol');
    await Promise.all([a, b].map((conn) => conn.waitFor('message-receive', (x) => x.id === m3.id)));
    const fromA = a.mark();
    c.send({ type: 'typing', payload: { room_id: room, is_typing: true } });
    const typing = await a.waitFor('typing-notify', (p) => p.participant_id === carol, WAIT_MS, { from: fromA });
    assert.equal(typing.room_id, room);
    const page = await c.history({ room_id: room, order: 'asc' });
    assert.deepEqual(page.messages.map((x) => x.id), [m1.id, m2.id, m3.id], 'history includes messages from before she joined');
    assert.equal(page.total_count, 3);

    // alice removes carol; her open connection stops receiving and is refused.
    await removeMember(srv, srv.token(alice), room, carol);
    const fromC = c.mark();
    const m4 = await a.sendMessage(room, 'carol is out');
    await b.waitFor('message-receive', (x) => x.id === m4.id);
    await c.expectNone('message-receive', () => true, QUIET_MS, { from: fromC });
    const fromAB = { a: a.mark(), b: b.mark() };
    await forbiddenCode(c, { type: 'message-send', payload: { room_id: room, message: 'carol after removal' } });
    await forbiddenCode(c, { type: 'typing', payload: { room_id: room, is_typing: false } });
    await forbiddenCode(c, { type: 'list-message-request', payload: { room_id: room } });
    await Promise.all([
      a.expectNone('message-receive', (x) => x.sender_id === carol, QUIET_MS, { from: fromAB.a }),
      b.expectNone('message-receive', (x) => x.sender_id === carol, QUIET_MS, { from: fromAB.b }),
      a.expectNone('typing-notify', () => true, QUIET_MS, { from: fromAB.a }),
      b.expectNone('typing-notify', () => true, QUIET_MS, { from: fromAB.b }),
    ]);
    const after4 = await a.history({ room_id: room });
    assert.equal(after4.total_count, 4, 'the refused message was not stored');
  });
});

it('join notifications follow membership: a newly added member is notified, a removed one is not', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const carol = uid('carol');
  const room = (await createRoom(srv, alice, { members: [bob] })).room_id;
  const a = await connectChat(srv, alice);
  const b = await connectChat(srv, bob);
  const c = await connectChat(srv, carol);
  await closing([a, b, c], async () => {
    let from = { b: b.mark(), c: c.mark() };
    a.send({ type: 'chat-join', payload: { notice: 'join' } });
    await b.waitFor('chat-join-notify', (p) => p.participant_id === alice, WAIT_MS, { from: from.b });
    await c.expectNone('chat-join-notify', () => true, QUIET_MS, { from: from.c });

    await addMember(srv, srv.adminToken, room, carol);
    from = { b: b.mark(), c: c.mark() };
    a.send({ type: 'chat-join', payload: { notice: 'join' } });
    await c.waitFor('chat-join-notify', (p) => p.participant_id === alice, WAIT_MS, { from: from.c });
    await b.waitFor('chat-join-notify', (p) => p.participant_id === alice, WAIT_MS, { from: from.b });

    await removeMember(srv, srv.adminToken, room, bob);
    from = { b: b.mark(), c: c.mark() };
    a.send({ type: 'chat-join', payload: { notice: 'join' } });
    await c.waitFor('chat-join-notify', (p) => p.participant_id === alice, WAIT_MS, { from: from.c });
    await b.expectNone('chat-join-notify', () => true, QUIET_MS, { from: from.b });
  });
});
