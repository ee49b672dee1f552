// Chat API authentication: HS256 JWTs (`sub` = user id) in `?token=` or `Authorization: Bearer`
// on /chat, the same on /api/chat REST (plus the admin token); every bad token is a 401; the
// `switchyard token` CLI mints tokens the server accepts.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { withLogs } from './lib/server.mjs';
import {
  startChatServer, connectChat, closeAllChats, closing, openRaw, mintToken, decodeJwt, verifyHs256,
  runCli, nowSecs, uid, rest, createRoom, listRooms, roomsRoute, membersRoute, memberRoute, sorted,
  checkMessageShape, QUIET_MS,
} from './lib/chat.mjs';

let srv;
before(async () => {
  srv = await startChatServer({ name: 'chat-auth' });
});
after(async () => {
  await closeAllChats();
  await srv?.close();
});

const it = (name, fn) => test(name, { timeout: 60_000 }, withLogs(() => [srv], fn));

/** Tokens the server must refuse, by name. `null` = no token at all. */
function badTokens(sub) {
  const good = srv.token(sub);
  const [h, p, s] = good.split('.');
  const forged = decodeJwt(good).payload;
  forged.sub = `${sub}-other`;
  return {
    'wrong secret': mintToken({ sub, secret: `${srv.secret}-wrong` }),
    // Leeway in JWT libraries is commonly ≤ 60 s; ten minutes ago is expired under any of them.
    expired: srv.token(sub, { exp: nowSecs() - 600 }),
    'alg none (unsigned)': mintToken({ sub, alg: 'none' }),
    'alg none with the HS256 signature kept': `${mintToken({ sub, alg: 'none' })}${s}`,
    'payload changed, old signature': `${h}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${s}`,
    'signature stripped': `${h}.${p}.`,
    'garbage: word': 'garbage',
    'garbage: three dots': 'a.b.c',
    'garbage: base64 noise': `${Buffer.from('{"alg":').toString('base64url')}.eyJ.!!!`,
    'empty string': '',
    missing: null,
  };
}

it('a valid token in ?token= and in Authorization: Bearer both connect, and `sub` is the sender id', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const room = await createRoom(srv, alice, { members: [bob] });
  const a = await connectChat(srv, alice, { via: 'query' });
  const b = await connectChat(srv, bob, { via: 'header' });
  await closing([a, b], async () => {
    const mine = await a.sendMessage(room.room_id, 'hello via query token');
    checkMessageShape(mine, 'alice echo');
    const got = await b.waitFor('message-receive', (m) => m.id === mine.id);
    assert.equal(got.sender_id, alice);
    const back = await b.sendMessage(room.room_id, 'hello via header token');
    const seen = await a.waitFor('message-receive', (m) => m.id === back.id);
    assert.equal(seen.sender_id, bob);
  });
});

it('bad, expired, unsigned, garbage and missing tokens are refused on /chat with HTTP 401 (query and header)', async () => {
  const alice = uid('alice');
  const failures = [];
  for (const [name, token] of Object.entries(badTokens(alice))) {
    for (const via of ['query', 'header']) {
      if (token === null && via === 'header') continue; // "missing" has one form
      // An empty token via header is `Authorization: Bearer ` — still no credential.
      let res;
      try {
        res = await openRaw(srv, { token, via });
      } catch (err) {
        failures.push(`${name} via ${via}: ${err.message}`);
        continue;
      }
      if (res.ws) {
        res.ws.terminate();
        failures.push(`${name} via ${via}: upgrade ACCEPTED (expected 401)`);
      } else if (res.status !== 401) {
        failures.push(`${name} via ${via}: HTTP ${res.status} (expected 401) ${res.body?.slice(0, 200)}`);
      }
    }
  }
  // The refusals leave the server usable: a valid token still connects.
  const ok = await openRaw(srv, { token: srv.token(alice), via: 'query' });
  assert.ok(ok.ws, `a valid token after the refusals: HTTP ${ok.status}`);
  ok.ws.terminate();
  assert.deepEqual(failures, [], `refusals that went wrong:\n${failures.join('\n')}`);
});

it('a bad token on /chat delivers nothing: members of the room see no message and no join', async () => {
  // Belt and braces for the 401: even a client that ignores it cannot act as the user.
  const alice = uid('alice');
  const bob = uid('bob');
  const room = await createRoom(srv, alice, { members: [bob] });
  const b = await connectChat(srv, bob);
  await closing([b], async () => {
    const from = b.mark();
    for (const [, token] of Object.entries(badTokens(alice))) {
      const res = await openRaw(srv, { token, via: 'query' });
      if (res.ws) {
        // Accepted wrongly: the previous test reports it; still try to act, then assert below.
        res.ws.send(JSON.stringify({ type: 'chat-join', payload: { notice: 'join' } }));
        res.ws.send(JSON.stringify({ type: 'message-send', payload: { room_id: room.room_id, message: 'forged' } }));
        setTimeout(() => res.ws.terminate(), 300);
      }
    }
    await Promise.all([
      b.expectNone('message-receive', () => true, QUIET_MS, { from }),
      b.expectNone('chat-join-notify', () => true, 0, { from }),
    ]);
  });
});

it('bad, expired, unsigned, garbage and missing tokens get HTTP 401 on every /api/chat route', async () => {
  const alice = uid('alice');
  const bob = uid('bob');
  const room = await createRoom(srv, alice, { name: 'auth-rest', members: [bob] });
  const routes = [
    ['GET', roomsRoute, undefined],
    ['POST', roomsRoute, { name: 'should-not-exist', members: [bob] }],
    ['POST', membersRoute(room.room_id), { user_id: uid('intruder') }],
    ['DELETE', memberRoute(room.room_id, bob), undefined],
  ];
  const tokens = {
    ...badTokens(alice),
    'wrong admin token': `${srv.adminToken}-wrong`,
    'admin token prefix': srv.adminToken.slice(0, -1),
  };
  const failures = [];
  for (const [name, token] of Object.entries(tokens)) {
    for (const [method, route, body] of routes) {
      const res = token === null ? await rest(srv, method, route, { body }) : await rest(srv, method, route, { token, body });
      if (res.status !== 401) failures.push(`${name}: ${res.what}`);
    }
  }
  // Non-Bearer schemes and a bare token are not credentials either.
  for (const authorization of [`Basic ${Buffer.from(`${alice}:x`).toString('base64')}`, 'Bearer', `Token ${srv.token(alice)}`]) {
    const res = await rest(srv, 'GET', roomsRoute, { authorization });
    if (res.status !== 401) failures.push(`Authorization: ${authorization.slice(0, 20)}…: ${res.what}`);
  }
  assert.deepEqual(failures, [], `routes that did not answer 401:\n${failures.join('\n')}`);

  // Nothing changed: the room has the same members, bob still sees it, no stray room exists.
  const aliceRooms = await listRooms(srv, srv.token(alice));
  assert.deepEqual(aliceRooms.map((r) => r.room_id), [room.room_id], 'alice has exactly her one room');
  assert.deepEqual(sorted(aliceRooms[0].members), sorted([alice, bob]));
  const bobRooms = await listRooms(srv, srv.token(bob));
  assert.deepEqual(bobRooms.map((r) => r.room_id), [room.room_id], 'bob has exactly the one room');
});

it('the admin token works on REST for rooms it is not a member of', async () => {
  const x = uid('x');
  const y = uid('y');
  const z = uid('z');
  const admin = { token: srv.adminToken };
  const room = await createRoom(srv, admin, { name: 'admin-made', members: [x, y] });
  assert.deepEqual(sorted(room.members), sorted([x, y]), 'admin-created room has only the listed members');
  const add = await rest(srv, 'POST', membersRoute(room.room_id), { token: srv.adminToken, body: { user_id: z } });
  assert.equal(add.status, 200, add.what);
  assert.deepEqual(sorted(add.json.members), sorted([x, y, z]));
  const del = await rest(srv, 'DELETE', memberRoute(room.room_id, x), { token: srv.adminToken });
  assert.equal(del.status, 204, del.what);
  const zRooms = await listRooms(srv, srv.token(z));
  assert.deepEqual(zRooms.map((r) => r.room_id), [room.room_id]);
  assert.deepEqual(sorted(zRooms[0].members), sorted([y, z]));
  assert.deepEqual(await listRooms(srv, srv.token(x)), [], 'x was removed');
});

it('`switchyard token --sub alice --ttl 1h` prints one HS256 token the server accepts', async () => {
  const started = nowSecs();
  const out = await runCli(['token', '--sub', 'alice', '--ttl', '1h'], { env: { SWITCHYARD_JWT_SECRET: srv.secret } });
  assert.equal(out.code, 0, `exit ${out.code}\nstdout: ${out.stdout}\nstderr: ${out.stderr}`);
  const lines = out.stdout.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `stdout is one line: ${JSON.stringify(out.stdout)}`);
  const token = lines[0].trim();
  const { header, payload } = decodeJwt(token);
  assert.equal(header.alg, 'HS256');
  assert.equal(payload.sub, 'alice');
  assert.ok(Number.isInteger(payload.exp), `exp is an integer: ${payload.exp}`);
  const ttl = payload.exp - started;
  assert.ok(ttl > 3600 - 120 && ttl < 3600 + 120, `exp is about an hour from now (got ${ttl} s)`);
  assert.ok(verifyHs256(token, srv.secret), 'signature verifies with the configured secret');

  // The server accepts it on /chat (sub = alice) and on REST.
  const bob = uid('bob');
  const room = await createRoom(srv, { token }, { members: [bob] });
  assert.ok(room.members.includes('alice'), `creator from the CLI token is a member: ${JSON.stringify(room.members)}`);
  assert.ok((await listRooms(srv, token)).some((r) => r.room_id === room.room_id));
  const a = await connectChat(srv, 'alice', { token });
  const b = await connectChat(srv, bob);
  await closing([a, b], async () => {
    const mine = await a.sendMessage(room.room_id, 'from a CLI token');
    const got = await b.waitFor('message-receive', (m) => m.id === mine.id);
    assert.equal(got.sender_id, 'alice');
  });

  // A CLI token minted under another secret is refused.
  const other = await runCli(['token', '--sub', 'alice', '--ttl', '1h'], { env: { SWITCHYARD_JWT_SECRET: `${srv.secret}-other` } });
  assert.equal(other.code, 0, other.stderr);
  const refused = await openRaw(srv, { token: other.stdout.trim() });
  if (refused.ws) refused.ws.terminate();
  assert.equal(refused.status, 401, 'token signed with another secret');
});
