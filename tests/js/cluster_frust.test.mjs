// Cluster mode, Frust API: Socket.IO clients of both lines spread over two edges (separate
// processes over a 3-node NATS JetStream cluster, with a worker and an aggregator) see each
// other's clicks, events and toasts, get stats on connect, and a status user_count that counts
// the sockets on both edges; REST on either edge tells the same.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { withLogs, getJson, eventually, assertRecent } from './lib/server.mjs';
import {
  connect, closeAllClients, toast, isToast, STATS_KEYS, uid, clickAndWait, eventAndWait,
} from './lib/clients.mjs';
import { startCluster, WAIT_MS } from './lib/cluster.mjs';

let cl;
before(async () => {
  cl = await startCluster({ name: 'frust', edges: 2, workers: 1 });
}, { timeout: 120_000 });
after(async () => {
  closeAllClients();
  await cl?.close();
});

const it = (name, fn) => test(name, { timeout: 60_000 }, withLogs(() => cl?.all(), fn));

/** Every click and event broadcast in this file (the store is this file's own). */
const sent = { clicks: [], events: [] };
const click = async (c, payload) => {
  const k = await clickAndWait(c, payload, WAIT_MS);
  sent.clicks.push(k);
  return k;
};
const event = async (c, payload) => {
  const e = await eventAndWait(c, payload, WAIT_MS);
  sent.events.push(e);
  return e;
};

const byName = (a, b) => String(a.name).localeCompare(String(b.name));
const sortedByName = (list) => [...list].sort(byName);
const byClick = (a, b) => `${a.user}|${a.comment}|${a.timestamp}`.localeCompare(`${b.user}|${b.comment}|${b.timestamp}`);

function assertStatsShape(stats, who) {
  assert.ok(stats && typeof stats === 'object', `${who}: stats is an object`);
  assert.deepEqual(Object.keys(stats).sort(), [...STATS_KEYS].sort(), `${who}: stats keys`);
  for (const k of STATS_KEYS) {
    assert.ok(Number.isInteger(stats[k]) && stats[k] >= 0, `${who}: stats.${k} = ${stats[k]} is a non-negative integer`);
  }
}

/** Connects [edgeIndex, version, transport] specs in order, labelled with their edge. */
async function connectAll(specs) {
  const clients = [];
  for (const [e, v, tr] of specs) {
    clients.push(await connect(cl.edges[e], v, tr, { label: `edge${e + 1}/v${v}/${tr}` }));
  }
  return clients;
}

it('clients of both lines on two edges get stats, count each other, and see each other\'s clicks, events and toasts', async () => {
  const clients = await connectAll([[0, 2, 'default'], [1, 4, 'websocket'], [1, 4, 'polling']]);
  try {
    for (const c of clients) assertStatsShape(await c.waitFor('stats', undefined, WAIT_MS), c.label);
    await clients[0].waitForUpgrade(WAIT_MS);
    assert.equal(clients[2].transport, 'polling');

    // user_count counts the sockets of both edges.
    await Promise.all(clients.map((c) => c.waitForUserCount(clients.length, WAIT_MS)));
    for (const c of clients) assert.deepEqual(Object.keys(c.latest('status')), ['user_count'], `${c.label}: status shape`);
    // `stats` goes to the new socket only (the clock is pinned mid-hour: no hour-start stats).
    for (const c of clients) assert.equal(c.received.stats.length, 1, `${c.label}: exactly one stats\n${c.describe('stats')}`);

    const names = clients.map(() => uid('k'));
    const clicks = [];
    for (const [i, c] of clients.entries()) clicks.push(await click(c, { user: names[i], comment: `from ${c.label}`, style: 'x' }));
    for (const k of clicks) assertRecent(k.timestamp, cl);
    for (const c of clients) {
      for (const [i, name] of names.entries()) {
        await c.waitFor('message', isToast(`${name} ist beigetreten.`), WAIT_MS);
        const got = await c.waitFor('click', (k) => k.user === name, WAIT_MS);
        assert.deepEqual(got, clicks[i], `${c.label} sees ${clients[i].label}'s click`);
      }
    }

    const events = [];
    for (const [i, c] of clients.entries()) events.push(await event(c, { user: names[i], name: 'interop' }));
    for (const c of clients) {
      for (const [i, name] of names.entries()) {
        const got = await c.waitFor('event', (e) => e.user === name, WAIT_MS);
        assert.deepEqual(got, events[i], `${c.label} sees ${clients[i].label}'s event`);
        const t = await c.waitFor('message', isToast(`${name} triggered interop!`), WAIT_MS);
        assert.deepEqual(t, toast(`${name} triggered interop!`));
      }
    }

    // Exactly once each, on every edge.
    for (const c of clients) {
      for (const name of names) {
        assert.equal(c.all('click', (k) => k.user === name).length, 1, `${c.label}: one copy of ${name}'s click\n${c.describe('click')}`);
        assert.equal(c.all('event', (e) => e.user === name).length, 1, `${c.label}: one copy of ${name}'s event\n${c.describe('event')}`);
        assert.equal(c.all('message', isToast(`${name} ist beigetreten.`)).length, 1, `${c.label}: one join toast for ${name}`);
      }
    }

    // A rename and a leave on one edge reach the other.
    const renamed = uid('r');
    const from = clients[1].mark();
    clients[0].emit('auth', renamed);
    await clients[1].waitFor('message', isToast(`${names[0]} hat sich umbenannt zu ${renamed}.`), WAIT_MS, { from });
    clients[2].emit('auth', '');
    await clients[0].waitFor('message', isToast(`${names[2]} hat verlassen.`), WAIT_MS);
    for (const c of clients) assert.ok(c.connected && c.disconnects.length === 0, `${c.label} still connected`);
  } finally {
    for (const c of clients) c.close();
  }
});

it('status user_count follows connects and disconnects on both edges', async () => {
  const [a] = await connectAll([[0, 4, 'websocket']]);
  const others = [];
  try {
    // The previous test's sockets are gone from the count once it says 1.
    await a.waitForUserCount(1, WAIT_MS);
    others.push(...await connectAll([[1, 2, 'default'], [0, 4, 'polling'], [1, 4, 'websocket']]));
    const [b, c, d] = others;
    await Promise.all([a, b, c, d].map((x) => x.waitForUserCount(4, WAIT_MS)));
    d.close(); // edge 2
    await Promise.all([a, b, c].map((x) => x.waitForUserCount(3, WAIT_MS)));
    b.close(); // edge 2: none left there
    await Promise.all([a, c].map((x) => x.waitForUserCount(2, WAIT_MS)));
    c.close(); // edge 1
    await a.waitForUserCount(1, WAIT_MS);
    const late = (await connectAll([[1, 2, 'websocket']]))[0];
    others.push(late);
    await Promise.all([a, late].map((x) => x.waitForUserCount(2, WAIT_MS)));
  } finally {
    a.close();
    for (const x of others) x.close();
  }
});

it('REST on either edge agrees: current_stats, users, latest clicks and events, online_users; stats on connect match', async () => {
  const [x, y] = await connectAll([[0, 4, 'websocket'], [1, 2, 'default']]);
  try {
    await Promise.all([x, y].map((c) => c.waitForUserCount(2, WAIT_MS)));
    const alice = uid('a');
    const bob = uid('b');
    for (let i = 0; i < 3; i++) await click(x, { user: alice, comment: `a${i}` });
    await event(x, { user: alice, name: 'confetti' });
    for (let i = 0; i < 2; i++) await click(y, { user: bob, comment: `b${i}` });
    await event(y, { user: bob, name: 'party' });
    await event(y, { user: bob, name: 'party' });
    // Ephemeral: broadcast to both edges, neither stored nor counted per user, but counted in the
    // stats and hours, once (from a socket of its own, so the session counts below stay simple).
    const [z] = await connectAll([[1, 4, 'websocket']]);
    const rick = await eventAndWait(z, { user: uid('z'), name: 'rickroll' }, WAIT_MS);
    await x.waitFor('event', (e) => e.user === rick.user && e.name === 'rickroll', WAIT_MS);
    z.close();

    const N = sent.clicks.length;
    const M = sent.events.length + 1; // and the ephemeral one
    const users = new Map();
    for (const k of sent.clicks) {
      const u = users.get(k.user) ?? { name: k.user, click_count: 0, event_count: 0 };
      u.click_count += 1;
      users.set(k.user, u);
    }
    for (const e of sent.events) {
      const u = users.get(e.user) ?? { name: e.user, click_count: 0, event_count: 0 };
      u.event_count += 1;
      users.set(e.user, u);
    }
    const expectedStats = {
      click_count_total: N, click_count_today: N, click_count_hour: N,
      event_count_total: M, event_count_today: M, event_count_hour: M,
    };
    for (const edge of cl.edges) {
      await eventually(async () => {
        assert.deepEqual(await getJson(edge, '/api/current_stats'), expectedStats);
      }, { timeoutMs: WAIT_MS, what: `${edge.name}: current_stats` });
      await eventually(async () => {
        // Users that only authenticated (no click, no event) may be listed with zeros.
        const listed = (await getJson(edge, '/api/users')).filter((u) => u.click_count || u.event_count || users.has(u.name));
        assert.deepEqual(sortedByName(listed), sortedByName([...users.values()]));
      }, { timeoutMs: WAIT_MS, what: `${edge.name}: /api/users` });
      await eventually(async () => {
        const clicks = await getJson(edge, '/api/latest_clicks');
        assert.deepEqual([...clicks].sort(byClick), [...sent.clicks].sort(byClick));
        for (let i = 1; i < clicks.length; i++) {
          assert.ok(clicks[i - 1].timestamp >= clicks[i].timestamp, `latest_clicks newest first: ${JSON.stringify(clicks.slice(i - 1, i + 1))}`);
        }
      }, { timeoutMs: WAIT_MS, what: `${edge.name}: latest_clicks` });
      await eventually(async () => {
        const events = await getJson(edge, '/api/latest_events');
        assert.deepEqual([...events].sort(byClick), [...sent.events].sort(byClick), 'latest_events (without rickroll)');
      }, { timeoutMs: WAIT_MS, what: `${edge.name}: latest_events` });
    }
    // Both edges serve the very same bodies.
    for (const route of ['/api/current_stats', '/api/users', '/api/latest_clicks', '/api/latest_events', '/api/latest_hours']) {
      const [a, b] = await Promise.all(cl.edges.map((e) => getJson(e, route)));
      if (route === '/api/users') assert.deepEqual(sortedByName(b), sortedByName(a), `${route}: both edges agree`);
      else assert.deepEqual(b, a, `${route}: both edges agree`);
    }
    const hours = await getJson(cl.edges[1], '/api/latest_hours');
    assert.deepEqual(
      [hours.at(-1).click_count, hours.at(-1).event_count, hours.at(-1).click_count_total, hours.at(-1).event_count_total],
      [N, M, N, M], 'latest_hours: the current hour holds everything',
    );

    // online_users: one entry per socket, both edges' sockets, on both edges.
    const entry = (name, clicks, events) => ({
      name, click_count_session: clicks, event_count_session: events, click_count: clicks, event_count: events,
    });
    const expectedOnline = sortedByName([entry(alice, 3, 1), entry(bob, 2, 2)]);
    for (const edge of cl.edges) {
      await eventually(async () => {
        assert.deepEqual(sortedByName(await getJson(edge, '/api/online_users')), expectedOnline);
      }, { timeoutMs: WAIT_MS, what: `${edge.name}: /api/online_users lists the sockets of both edges` });
    }

    // A new socket's on-connect stats agree with REST, on each edge.
    for (const [i, v, tr] of [[0, 2, 'websocket'], [1, 4, 'polling']]) {
      const [c] = await connectAll([[i, v, tr]]);
      try {
        assert.deepEqual(await c.waitFor('stats', undefined, WAIT_MS), expectedStats, `${c.label}: stats on connect`);
      } finally {
        c.close();
      }
    }
    x.close();
    await eventually(async () => {
      assert.deepEqual(sortedByName(await getJson(cl.edges[0], '/api/online_users')), [entry(bob, 2, 2)]);
    }, { timeoutMs: WAIT_MS, what: 'edge1 /api/online_users after edge1\'s socket left' });
  } finally {
    x.close();
    y.close();
  }
});
