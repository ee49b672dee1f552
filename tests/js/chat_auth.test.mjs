// Chat API authentication: HS256 JWTs (`sub` = user id) in `?token=` or `Authorization: Bearer`
// on /chat, the same on /api/chat REST (plus the admin token); every bad token is a 401 (expired,
// not yet valid, foreign audience or issuer, over-long `sub`…); an open connection is closed
// with 4001 when its token expires; tokens never reach the log; the `switchyard token` CLI mints
// tokens the server accepts.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { withLogs, sleep } from './lib/server.mjs';
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
    'not valid yet (nbf in ten minutes)': srv.token(sub, { claims: { nbf: nowSecs() + 600 } }),
    'sub of 129 bytes': srv.token('x'.repeat(129)),
    'empty sub': srv.token(''),
    'meant for another audience': srv.token(sub, { claims: { aud: 'some-other-service' } }),
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

it('the edges of validity are accepted: nbf just passed, a sub of exactly 128 bytes', async () => {
  const base = `${'é'.repeat(50)}${uid('x')}`; // multi-byte: the cap is in bytes
  const sub = base + 'z'.repeat(128 - Buffer.byteLength(base));
  assert.equal(Buffer.byteLength(sub), 128, 'a 128-byte sub');
  const tokens = [srv.token(uid('nbf'), { claims: { nbf: nowSecs() - 2 } }), srv.token(sub)];
  for (const token of tokens) {
    const res = await openRaw(srv, { token });
    assert.ok(res.ws, `accepted: HTTP ${res.status} ${res.body}`);
    res.ws.terminate();
    assert.equal((await rest(srv, 'GET', roomsRoute, { token })).status, 200);
  }
});

it('an open connection is closed with 4001 "token expired" when its token expires', async () => {
  const alice = uid('alice');
  const room = await createRoom(srv, alice);
  const exp = nowSecs() + 3;
  const a = await connectChat(srv, alice, { token: srv.token(alice, { exp }) });
  await closing([a], async () => {
    // Served until then.
    await a.sendMessage(room.room_id, 'before expiry');
    const closed = await a.waitClosed((exp - nowSecs() + 5) * 1000);
    assert.deepEqual(closed, { code: 4001, reason: 'token expired' });
    assert.ok(Date.now() / 1000 >= exp - 1, 'not closed long before exp');
  });
  // The same user with a fresh token is welcome again.
  const again = await connectChat(srv, alice);
  await closing([again], () => again.sendMessage(room.room_id, 'after reconnecting'));
});

it('the log shows a warning for an HS256 secret under 32 bytes', async () => {
  assert.ok(srv.secret.length < 32, 'the e2e secret is a short one');
  assert.ok(srv.logs.some((l) => /SWITCHYARD_JWT_SECRET is shorter than 32 bytes/.test(l)), srv.tail());
});

test('with SWITCHYARD_JWT_ISSUER and SWITCHYARD_JWT_AUDIENCE set, tokens must carry both', { timeout: 60_000 }, async () => {
  const strict = await startChatServer({
    name: 'chat-auth-iss-aud',
    env: { SWITCHYARD_JWT_ISSUER: 'https://id.example', SWITCHYARD_JWT_AUDIENCE: 'switchyard-chat' },
  });
  try {
    await withLogs(() => [strict], async () => {
      const sub = uid('ann');
      const good = { iss: 'https://id.example', aud: 'switchyard-chat' };
      const cases = [
        ['issuer and audience', good, 101],
        ['audience in a list', { ...good, aud: ['other', 'switchyard-chat'] }, 101],
        ['foreign issuer', { ...good, iss: 'https://evil.example' }, 401],
        ['foreign audience', { ...good, aud: 'other' }, 401],
        ['no issuer', { aud: good.aud }, 401],
        ['no audience', { iss: good.iss }, 401],
        ['neither', {}, 401],
      ];
      const wrong = [];
      for (const [name, claims, want] of cases) {
        const token = strict.token(sub, { claims });
        const res = await openRaw(strict, { token });
        res.ws?.terminate();
        const api = await rest(strict, 'GET', roomsRoute, { token });
        const apiWant = want === 101 ? 200 : 401;
        if (res.status !== want || api.status !== apiWant) {
          wrong.push(`${name}: /chat ${res.status} (want ${want}), REST ${api.status} (want ${apiWant})`);
        }
      }
      assert.deepEqual(wrong, []);
    })();
  } finally {
    await strict.close();
  }
});

test('tokens never reach the log, even at RUST_LOG=trace', { timeout: 60_000 }, async () => {
  const loud = await startChatServer({ name: 'chat-auth-trace', env: { RUST_LOG: 'trace' } });
  try {
    await withLogs(() => [loud], async () => {
      const seen = [];
      const leaks = [];
      const secrets = [];
      const unwatch = loud.watchLogs((line) => {
        seen.push(line.length);
        if (secrets.some((s) => line.includes(s))) leaks.push(line.slice(0, 300));
        if (line.includes('token=<redacted>')) seen.redacted = true;
      });
      try {
        const alice = uid('alice');
        const good = loud.token(alice);
        const bad = mintToken({ sub: alice, secret: 'not-the-secret-at-all' });
        // Each token's signature is unique to it: no log line may hold one.
        secrets.push(...[good, bad, loud.adminToken].map((t) => t.split('.').pop()));
        const room = await createRoom(loud, { token: good }, { members: [] });
        const a = await connectChat(loud, alice, { token: good });
        await closing([a], () => a.sendMessage(room.room_id, 'logged at trace'));
        assert.equal((await openRaw(loud, { token: bad })).status, 401);
        const viaHeader = await connectChat(loud, alice, { token: good, via: 'header' });
        await viaHeader.close();
        assert.equal((await rest(loud, 'GET', roomsRoute, { token: loud.adminToken })).status, 400);
        await sleep(300); // the last lines reach the pipe
      } finally {
        unwatch();
      }
      assert.ok(seen.length > 50, `trace logging is on (${seen.length} lines)`);
      assert.ok(seen.redacted, 'the request span shows the redacted query');
      assert.deepEqual(leaks, [], 'log lines holding a token');
    })();
  } finally {
    await loud.close();
  }
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
