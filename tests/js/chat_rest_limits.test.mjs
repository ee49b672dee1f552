// Chat REST limits: members per room (413 on create, 409 on add), rooms per user (409 naming
// the users), rooms created per user per interval (429 + Retry-After; not the admin), and the
// request rates per user and per client IP (429 + Retry-After; the IP limit is checked before
// the token). Every refusal is JSON {error, code}, counted in switchyard_rejects_total and
// logged once.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { withLogs } from './lib/server.mjs';
import {
  startChatServer, closeAllChats, uid, rest, createRoom, addMember, removeMember, roomsRoute,
  membersRoute,
} from './lib/chat.mjs';

after(closeAllChats);

/** Asserts a refusal: status, JSON code, a message; returns the body. */
function refused(res, status, code) {
  assert.equal(res.status, status, res.what);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  assert.equal(res.json?.code, code, res.what);
  assert.equal(typeof res.json?.error, 'string');
  return res.json;
}

/** Seconds in Retry-After: present and a positive integer. */
function retryAfter(res) {
  const value = Number(res.headers.get('retry-after'));
  assert.ok(Number.isInteger(value) && value >= 1, `Retry-After ${res.headers.get('retry-after')}: ${res.what}`);
  return value;
}

const CAPS = {
  SWITCHYARD_CHAT_MAX_ROOM_MEMBERS: '5',
  SWITCHYARD_CHAT_MAX_ROOMS_PER_USER: '3',
  SWITCHYARD_CHAT_ROOM_CREATES: '3',
  SWITCHYARD_CHAT_ROOM_CREATE_INTERVAL_SECS: '3600',
};

test('caps: members per room, rooms per user, rooms created per user per interval', { timeout: 60_000 }, async () => {
  const srv = await startChatServer({ name: 'chat-caps', env: CAPS });
  try {
    await withLogs(() => [srv], async () => {
      const owner = uid('owner');
      // 5 members with the creator; a sixth is one too many.
      const five = Array.from({ length: 4 }, (_, i) => `${owner}-m${i}`);
      const tooMany = refused(await rest(srv, 'POST', roomsRoute, { token: srv.token(owner), body: { members: [...five, uid('extra')] } }), 413, 'too_many_members');
      assert.match(tooMany.error, /at most 5 members/);
      const room = await createRoom(srv, owner, { members: five });
      assert.equal(room.members.length, 5);
      refused(await rest(srv, 'POST', membersRoute(room.room_id), { token: srv.token(owner), body: { user_id: uid('sixth') } }), 409, 'room_full');
      // Re-adding a member is no change, so no refusal.
      assert.equal((await addMember(srv, srv.token(owner), room.room_id, five[0])).members.length, 5);

      // A user may be in 3 rooms: the 4th creation naming them is refused, naming them.
      const victim = uid('victim');
      for (let i = 0; i < 3; i++) await createRoom(srv, uid('c'), { members: [victim] });
      const full = refused(await rest(srv, 'POST', roomsRoute, { token: srv.token(uid('c')), body: { members: [victim, uid('fine')] } }), 409, 'too_many_rooms');
      assert.deepEqual(full.users, [victim]);
      assert.equal(full.user_count, 1);
      const spare = await createRoom(srv, uid('c'));
      refused(await rest(srv, 'POST', membersRoute(spare.room_id), { token: srv.adminToken, body: { user_id: victim } }), 409, 'too_many_rooms');
      // Leaving one makes room for another.
      const [first] = (await rest(srv, 'GET', roomsRoute, { token: srv.token(victim) })).json;
      await removeMember(srv, srv.token(victim), first.room_id, victim);
      assert.ok((await addMember(srv, srv.adminToken, spare.room_id, victim)).members.includes(victim));

      // Rooms created per user: 3 per hour, then 429 with the wait; the admin is not limited.
      const maker = uid('maker');
      for (let i = 0; i < 3; i++) await createRoom(srv, maker, { name: `r${i}` });
      const quota = await rest(srv, 'POST', roomsRoute, { token: srv.token(maker), body: { name: 'one more' } });
      refused(quota, 429, 'room_quota');
      const wait = retryAfter(quota);
      assert.ok(wait > 60 && wait <= 1200, `one room per 20 minutes refills: Retry-After ${wait}`);
      assert.equal((await rest(srv, 'GET', roomsRoute, { token: srv.token(maker) })).json.length, 3, 'nothing was created');
      for (let i = 0; i < 4; i++) await createRoom(srv, { token: srv.adminToken }, { members: [uid('a')] });

      const metrics = await (await fetch(`${srv.url}/metrics`)).text();
      for (const reason of ['too_many_members', 'room_full', 'too_many_rooms', 'room_quota']) {
        assert.match(metrics, new RegExp(`switchyard_rejects_total\\{api="chat_rest",reason="${reason}"\\} [1-9]`), reason);
      }
      const lines = srv.logs.filter((l) => /chat REST limit hit/.test(l));
      assert.ok(lines.some((l) => /too_many_rooms/.test(l)), srv.tail());
      assert.equal(lines.filter((l) => /too_many_rooms/.test(l)).length, 1, 'two refusals, one line');
    })();
  } finally {
    await srv.close();
  }
});

test('request rates: per user, then per client IP (before the token is even looked at)', { timeout: 60_000 }, async () => {
  const srv = await startChatServer({
    name: 'chat-rest-rates',
    env: {
      SWITCHYARD_CHAT_REST_RATE_USER: '1', SWITCHYARD_CHAT_REST_RATE_USER_BURST: '3',
      SWITCHYARD_CHAT_REST_RATE_IP: '1', SWITCHYARD_CHAT_REST_RATE_IP_BURST: '12',
    },
  });
  try {
    await withLogs(() => [srv], async () => {
      const ann = uid('ann');
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push(await rest(srv, 'GET', roomsRoute, { token: srv.token(ann) }));
      assert.deepEqual(statuses.slice(0, 3).map((r) => r.status), [200, 200, 200], 'the burst of 3 is served');
      const userLimited = statuses.find((r) => r.status === 429);
      assert.ok(userLimited, `then the user waits: ${statuses.map((r) => r.status)}`);
      refused(userLimited, 429, 'rate_user');
      retryAfter(userLimited);
      // Another user from the same address is still served…
      assert.equal((await rest(srv, 'GET', roomsRoute, { token: srv.token(uid('bob')) })).status, 200);
      // …until the address's budget is gone: then everyone there, a bad token included, waits.
      let ipLimited;
      for (let i = 0; i < 40 && !ipLimited; i++) {
        const res = await rest(srv, 'GET', roomsRoute, { token: srv.token(uid('u')) });
        if (res.status === 429) ipLimited = res;
        else assert.equal(res.status, 200, res.what);
      }
      assert.ok(ipLimited, 'the per-IP budget ran out');
      refused(ipLimited, 429, 'rate_ip');
      // (The budget refills at 1/s: of a few quick tries, at least one finds it empty.)
      const badToken = [];
      for (let i = 0; i < 5; i++) badToken.push(await rest(srv, 'GET', roomsRoute, { token: 'not-a-token' }));
      assert.ok(badToken.every((r) => r.status === 429 || r.status === 401), badToken.map((r) => r.what).join('\n'));
      refused(badToken.find((r) => r.status === 429), 429, 'rate_ip');
      // A client at another address is served meanwhile.
      const elsewhere = await rest(srv, 'GET', roomsRoute, { token: srv.token(uid('elsewhere')), localAddress: '127.0.0.2' });
      assert.equal(elsewhere.status, 200, elsewhere.what);
      const metrics = await (await fetch(`${srv.url}/metrics`)).text();
      assert.match(metrics, /switchyard_rejects_total\{api="chat_rest",reason="rate_user"\} [1-9]/);
      assert.match(metrics, /switchyard_rejects_total\{api="chat_rest",reason="rate_ip"\} [1-9]/);
    })();
  } finally {
    await srv.close();
  }
});
