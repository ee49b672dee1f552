// The server API in cluster mode: a backend publishes into both APIs, lists connections and
// users, and disconnects a Frust session or every connection of a chat user — through any edge's
// ops listener, reaching clients on every edge. Also through the `switchyard server` CLI.
//
// Contract: SWITCHYARD_SERVER_API_TOKEN turns on `/server/…` on the ops listener, behind
// `Authorization: Bearer <token>` (401 otherwise; 404 with the variable's name when unset).
//   GET  /server/connections[?user=] → {edges: [{edge, frust: [{session, name}], chat: [{user,
//     connection}], frust_count, chat_count, truncated}]}
//   GET  /server/users → {frust: {users: [{name, sessions}], anonymous_sessions}, chat: {users:
//     [{user, connections}]}, complete}
//   POST /server/frust/messages {text, type?, style?} → 202, a `message` event on every client
//   POST /server/chat/rooms/{room}/messages {sender_id, message} → 201 {message}, stored and delivered
//   POST /server/frust/sessions/{id}/disconnect, /server/chat/users/{user}/disconnect →
//     {closed, edges} (404 when nothing was connected); chat connections close with 4003.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { withLogs, eventually, startServer } from './lib/server.mjs';
import {
  connectChat, closeAllChats, uid, createRoom, checkMessageShape, pick, runCli,
} from './lib/chat.mjs';
import { connect, closeAllClients, uid as sioUid } from './lib/clients.mjs';
import { startCluster, WAIT_MS } from './lib/cluster.mjs';

const TOKEN = `server-api-${Math.random().toString(36).slice(2)}-${Date.now()}`;

let cl;
before(async () => {
  cl = await startCluster({
    name: 'server-api', edges: 2, workers: 1, ops: true,
    env: { SWITCHYARD_SERVER_API_TOKEN: TOKEN },
  });
}, { timeout: 120_000 });
after(async () => {
  await closeAllChats();
  closeAllClients();
  await cl?.close();
});

const it = (name, fn) => test(name, { timeout: 60_000 }, withLogs(() => cl?.all(), fn));
const edge = (i) => cl.edges[i];

/** Calls the server API at `base` (an ops URL); returns {status, body}. */
async function api(base, method, route, { body, token = TOKEN } = {}) {
  const headers = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${route}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed;
  try { parsed = JSON.parse(text); } catch { parsed = text; }
  return { status: res.status, body: parsed };
}

const enc = encodeURIComponent;

it('the server API answers only with its token, and only on the ops listener', async () => {
  const none = await api(edge(0).opsUrl, 'GET', '/server/connections', { token: null });
  assert.equal(none.status, 401, JSON.stringify(none.body));
  assert.match(none.body.error, /Bearer/);
  const wrong = await api(edge(0).opsUrl, 'GET', '/server/connections', { token: `${TOKEN}x` });
  assert.equal(wrong.status, 401);
  const right = await api(edge(0).opsUrl, 'GET', '/server/connections');
  assert.equal(right.status, 200, JSON.stringify(right.body));
  // The public listener (what the load balancer exposes) has no such route.
  const pub = await fetch(`${edge(0).url}/server/connections`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(pub.status, 404);
  // Nor does a worker: it holds no connections.
  const worker = await api(cl.workers[0].opsUrl, 'GET', '/server/connections');
  assert.equal(worker.status, 404);
});

it('without a token the API is off and says which variable turns it on', async () => {
  const server = await startServer({ name: 'no-token' });
  try {
    const res = await api(server.url, 'GET', '/server/users');
    assert.equal(res.status, 404);
    assert.match(res.body.error, /SWITCHYARD_SERVER_API_TOKEN/);
  } finally {
    await server.stop();
  }
});

it('a chat message published through one edge reaches the room on both edges and is in history', async () => {
  const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
  const room = (await createRoom(edge(0), alice, { name: 'ops', members: [bob] })).room_id;
  const a = await connectChat(edge(0), alice, { label: 'alice@edge1' });
  const b = await connectChat(edge(1), bob, { label: 'bob@edge2' });
  const c = await connectChat(edge(1), carol, { label: 'carol@edge2 (not a member)' });
  try {
    const text = `from the backend ${uid('m')}`;
    const res = await api(edge(1).opsUrl, 'POST', `/server/chat/rooms/${enc(room)}/messages`, {
      body: { sender_id: 'announcer', message: text },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    checkMessageShape(res.body.message, 'the API answer');
    assert.equal(res.body.message.sender_id, 'announcer');
    for (const conn of [a, b]) {
      const got = await conn.waitFor('message-receive', (m) => m.message === text, WAIT_MS);
      assert.deepEqual(pick(got), pick(res.body.message), `${conn.label} got the stored message`);
    }
    await c.expectNone('message-receive', (m) => m.message === text, 500, { from: 0 });
    const history = await a.history({ room_id: room });
    assert.ok(history.messages.some((m) => m.id === res.body.message.id), 'in the room history');

    // The same through the CLI, against the other edge.
    const cliText = `from the cli ${uid('m')}`;
    const out = await runCli(['server', 'chat-message', room, '--sender', 'announcer', cliText], {
      env: { SWITCHYARD_SERVER_API_URL: edge(0).opsUrl, SWITCHYARD_SERVER_API_TOKEN: TOKEN },
    });
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).message.message, cliText);
    await b.waitFor('message-receive', (m) => m.message === cliText, WAIT_MS);

    // Refusals are one clear answer each.
    const missing = await api(edge(0).opsUrl, 'POST', `/server/chat/rooms/${enc(uid('none'))}/messages`, {
      body: { sender_id: 'announcer', message: 'x' },
    });
    assert.equal(missing.status, 404);
    const bad = await api(edge(0).opsUrl, 'POST', `/server/chat/rooms/${enc(room)}/messages`, {
      body: { sender_id: '', message: 'x' },
    });
    assert.equal(bad.status, 400);
    const notJson = await fetch(`${edge(0).opsUrl}/server/chat/rooms/${enc(room)}/messages`, {
      method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{"sender_id":',
    });
    assert.equal(notJson.status, 400);
  } finally {
    await Promise.all([a, b, c].map((x) => x.close().catch(() => {})));
  }
});

it('a Frust message reaches every Socket.IO client on both edges, 2.x and 4.x', async () => {
  const clients = [
    await connect(edge(0), 2, 'websocket', { label: 'v2@edge1' }),
    await connect(edge(1), 4, 'websocket', { label: 'v4@edge2' }),
    await connect(edge(1), 2, 'default', { label: 'v2-polling@edge2' }),
  ];
  const text = `maintenance at noon ${sioUid('t')}`;
  const res = await api(edge(0).opsUrl, 'POST', '/server/frust/messages', { body: { text, type: 'popup' } });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  for (const c of clients) {
    const got = await c.waitFor('message', (m) => m?.text === text, WAIT_MS);
    assert.equal(got.type, 'popup', c.label);
  }
  const out = await runCli(['server', 'frust-message', `${text} (cli)`], {
    env: { SWITCHYARD_SERVER_API_URL: edge(1).opsUrl, SWITCHYARD_SERVER_API_TOKEN: TOKEN },
  });
  assert.equal(out.code, 0, out.stderr);
  for (const c of clients) {
    const got = await c.waitFor('message', (m) => m?.text === `${text} (cli)`, WAIT_MS);
    assert.deepEqual(got, { text: `${text} (cli)`, style: 'medium highlight', type: 'toast' });
  }
  const bad = await api(edge(0).opsUrl, 'POST', '/server/frust/messages', { body: { text, type: 'banner' } });
  assert.equal(bad.status, 400);
  for (const c of clients) c.close();
});

/** GET /server/connections until `check(edges)` holds. */
async function connectionsWhere(check, what) {
  return eventually(async () => {
    const last = await api(edge(1).opsUrl, 'GET', '/server/connections');
    if (last.status !== 200 || !check(last.body.edges)) throw new Error(JSON.stringify(last.body));
    return last.body.edges;
  }, { timeoutMs: WAIT_MS, what });
}

it('connections and users cover every edge; disconnecting a chat user closes it everywhere with 4003', async () => {
  const [dora, erik] = [uid('dora'), uid('erik')];
  const d1 = await connectChat(edge(0), dora, { label: 'dora@edge1' });
  const d2 = await connectChat(edge(1), dora, { label: 'dora@edge2' });
  const e1 = await connectChat(edge(0), erik, { label: 'erik@edge1' });
  try {
    const edges = await connectionsWhere((list) => list.length === 2, 'both edges answer');
    assert.deepEqual(new Set(edges.map((e) => e.edge)).size, 2);
    const doraOn = edges.filter((e) => e.chat.some((c) => c.user === dora)).length;
    assert.equal(doraOn, 2, 'dora is listed on both edges');
    for (const e of edges) {
      assert.equal(e.chat_count, e.chat.length, 'counts match the lists');
      assert.equal(e.truncated, false);
    }
    // One user's connections only.
    const only = await api(edge(0).opsUrl, 'GET', `/server/connections?user=${enc(dora)}`);
    assert.equal(only.status, 200);
    const listed = only.body.edges.flatMap((e) => e.chat);
    assert.equal(listed.length, 2, JSON.stringify(only.body));
    assert.ok(listed.every((c) => c.user === dora));

    const users = await api(edge(0).opsUrl, 'GET', '/server/users');
    assert.equal(users.status, 200);
    const entry = (u) => users.body.chat.users.find((x) => x.user === u);
    assert.equal(entry(dora)?.connections, 2, JSON.stringify(users.body));
    assert.equal(entry(erik)?.connections, 1);
    assert.equal(users.body.complete, true);

    const out = await runCli(['server', 'disconnect-chat-user', dora], {
      env: { SWITCHYARD_SERVER_API_URL: edge(0).opsUrl, SWITCHYARD_SERVER_API_TOKEN: TOKEN },
    });
    assert.equal(out.code, 0, out.stderr);
    const answer = JSON.parse(out.stdout);
    assert.equal(answer.closed, 2, out.stdout);
    assert.equal(answer.edges.length, 2);
    for (const conn of [d1, d2]) {
      const closed = await conn.waitClosed(WAIT_MS);
      assert.equal(closed.code, 4003, `${conn.label}: ${JSON.stringify(closed)}`);
    }
    assert.ok(e1.isOpen, 'erik stays connected');
    await connectionsWhere((list) => !list.some((e) => e.chat.some((c) => c.user === dora)), 'dora is gone');
    const again = await api(edge(1).opsUrl, 'POST', `/server/chat/users/${enc(dora)}/disconnect`);
    assert.equal(again.status, 404, JSON.stringify(again.body));
    // A refusal from the CLI is one line, exit 1.
    const refused = await runCli(['server', 'disconnect-chat-user', dora], {
      env: { SWITCHYARD_SERVER_API_URL: edge(0).opsUrl, SWITCHYARD_SERVER_API_TOKEN: TOKEN },
    });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr.trim(), /^switchyard: .*404.*no chat connection$/);
  } finally {
    await Promise.all([d1, d2, e1].map((x) => x.close().catch(() => {})));
  }
});

it('disconnecting a Frust session closes that client only, on whichever edge holds it', async () => {
  const name = sioUid('victim');
  const victim = await connect(edge(1), 4, 'websocket', { label: 'victim@edge2' });
  const bystander = await connect(edge(1), 2, 'websocket', { label: 'bystander@edge2' });
  victim.emit('auth', name);
  const edges = await connectionsWhere(
    (list) => list.some((e) => e.frust.some((s) => s.name === name)), 'the named session is listed');
  const session = edges.flatMap((e) => e.frust).find((s) => s.name === name).session;
  const users = await api(edge(0).opsUrl, 'GET', '/server/users');
  assert.equal(users.body.frust.users.find((u) => u.name === name)?.sessions, 1, JSON.stringify(users.body));

  // Asked through the other edge: the one holding the session closes it.
  const res = await api(edge(0).opsUrl, 'POST', `/server/frust/sessions/${enc(session)}/disconnect`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.closed, 1);
  await eventually(() => assert.ok(victim.disconnects.length > 0), { timeoutMs: WAIT_MS, what: 'the victim is disconnected' });
  assert.equal(victim.disconnects[0], 'io server disconnect');
  assert.ok(bystander.connected, 'the other client stays');
  await connectionsWhere((list) => !list.some((e) => e.frust.some((s) => s.session === session)), 'the session is gone');
  const again = await api(edge(0).opsUrl, 'POST', `/server/frust/sessions/${enc(session)}/disconnect`);
  assert.equal(again.status, 404);
  bystander.close();
  victim.close();
});
