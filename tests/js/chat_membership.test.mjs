// Chat rooms and membership: the /api/chat REST routes, who may use them (403/404), the owner
// (the creator) who alone removes others and deletes the room while members may leave, paged
// room and member lists, and membership enforced on /chat for sending, typing and history —
// non-members get `forbidden` and nothing reaches members; changes take effect at once for live
// connections.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { withLogs } from './lib/server.mjs';
import {
  startChatServer, connectChat, closeAllChats, closing, uid, rest, createRoom, listRooms, addMember,
  removeMember, roomsRoute, roomRoute, membersRoute, memberRoute, sorted, show, QUIET_MS, WAIT_MS,
  deleteRoom, allPages, nextPage,
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

it('members add members, the owner removes them; non-members get 403 and change nothing; unknown rooms 404', async () => {
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

  // The owner removes a member: 204, and the removed one no longer sees the room.
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

it('the creator owns the room: members may leave, only the owner removes others and deletes it', async () => {
  const [alice, bob, carol, dave] = ['alice', 'bob', 'carol', 'dave'].map((n) => uid(n));
  const room = await createRoom(srv, alice, { name: 'owned', members: [bob, carol, dave] });
  const id = room.room_id;
  assert.equal(room.owner, alice, 'the creator is the owner');
  const d = await connectChat(srv, dave, { label: 'dave' });
  await closing([d], async () => {
    // A member is not the owner: removing another member or deleting the room is refused.
    for (const [method, route] of [['DELETE', memberRoute(id, carol)], ['DELETE', memberRoute(id, alice)], ['DELETE', roomRoute(id)]]) {
      const r = await rest(srv, method, route, { token: srv.token(bob) });
      assert.equal(r.status, 403, `bob (member): ${r.what}`);
      assert.equal(r.json?.code, 'forbidden');
    }
    assert.deepEqual(sorted((await rest(srv, 'GET', roomRoute(id), { token: srv.token(bob) })).json.members),
      sorted([alice, bob, carol, dave]), 'the refusals changed nothing');

    // A member leaves.
    await removeMember(srv, srv.token(bob), id, bob);
    assert.deepEqual(await listRooms(srv, srv.token(bob)), [], 'bob left');
    // The owner removes a member.
    await removeMember(srv, srv.token(alice), id, carol);
    const removed = await rest(srv, 'DELETE', roomRoute(id), { token: srv.token(carol) });
    assert.equal(removed.status, 403, `a removed member cannot delete: ${removed.what}`);

    // An owner who leaves still owns the room: sees it, manages it, deletes it.
    await removeMember(srv, srv.token(alice), id, alice);
    const seen = await rest(srv, 'GET', roomRoute(id), { token: srv.token(alice) });
    assert.equal(seen.status, 200, seen.what);
    assert.deepEqual(seen.json.members, [dave]);
    assert.equal(seen.json.owner, alice);
    await d.sendMessage(id, 'still here');
    await deleteRoom(srv, srv.token(alice), id);

    // Gone for everyone, at once for the live member.
    for (const who of [alice, dave]) {
      const r = await rest(srv, 'GET', roomRoute(id), { token: srv.token(who) });
      assert.equal(r.status, 404, `${who}: ${r.what}`);
    }
    assert.deepEqual(await listRooms(srv, srv.token(dave)), []);
    await forbiddenCode(d, { type: 'message-send', payload: { room_id: id, message: 'into the void' } });
    await forbiddenCode(d, { type: 'list-message-request', payload: { room_id: id } });
    const again = await rest(srv, 'DELETE', roomRoute(id), { token: srv.token(alice) });
    assert.equal(again.status, 404, again.what);
  });
});

it('rooms the admin made have no owner: members may only leave, the admin deletes them', async () => {
  const [x, y] = [uid('x'), uid('y')];
  const room = await createRoom(srv, { token: srv.adminToken }, { members: [x, y] });
  assert.equal(room.owner, null);
  const r = await rest(srv, 'DELETE', memberRoute(room.room_id, y), { token: srv.token(x) });
  assert.equal(r.status, 403, r.what);
  assert.equal((await rest(srv, 'DELETE', roomRoute(room.room_id), { token: srv.token(x) })).status, 403);
  await removeMember(srv, srv.token(x), room.room_id, x);
  await deleteRoom(srv, srv.adminToken, room.room_id);
  assert.deepEqual(await listRooms(srv, srv.token(y)), []);
});

it('room and member lists are paged by cursor: ?limit= and Link rel="next"', async () => {
  const pat = uid('pat');
  const made = [];
  for (let i = 0; i < 7; i++) made.push((await createRoom(srv, pat, { name: `p${i}` })).room_id);
  const pages = await allPages(srv, srv.token(pat), `${roomsRoute}?limit=3`);
  assert.deepEqual(pages.map((p) => p.length), [3, 3, 1]);
  assert.deepEqual(pages.flat().map((r) => r.room_id), made, 'every room once, oldest first');
  pages.flat().forEach((r) => assertRoomShape(r, 'paged room'));
  const whole = await rest(srv, 'GET', roomsRoute, { token: srv.token(pat) });
  assert.equal(whole.json.length, 7, 'the default page holds them all');
  assert.equal(nextPage(whole), null, 'and says it is the last');
  for (const limit of ['0', '101', 'many', '-3']) {
    const bad = await rest(srv, 'GET', `${roomsRoute}?limit=${limit}`, { token: srv.token(pat) });
    assert.equal(bad.status, 400, `limit=${limit}: ${bad.what}`);
    assert.equal(typeof bad.json?.error, 'string');
  }
  // The admin pages someone's rooms the same way.
  const adminPages = await allPages(srv, srv.adminToken, `${roomsRoute}?user_id=${encodeURIComponent(pat)}&limit=5`);
  assert.deepEqual(adminPages.flat().map((r) => r.room_id), made);

  const members = Array.from({ length: 11 }, (_, i) => `${pat}-m${String(i).padStart(2, '0')}`);
  const big = await createRoom(srv, uid('host'), { members });
  const memberPages = await allPages(srv, srv.token(members[0]), `${membersRoute(big.room_id)}?limit=5`);
  assert.deepEqual(memberPages.map((p) => p.length), [5, 5, 2]);
  assert.deepEqual(memberPages.flat(), sorted(big.members), 'members in id order, each once');
  const outsider = await rest(srv, 'GET', membersRoute(big.room_id), { token: srv.token(pat) });
  assert.equal(outsider.status, 403, outsider.what);
  const ghost = await rest(srv, 'GET', membersRoute(`no-such-${uid('r')}`), { token: srv.token(pat) });
  assert.equal(ghost.status, 404, ghost.what);
});
