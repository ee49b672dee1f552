// Frust REST under /api: shapes on an empty store, counts after clicks and events (served by the
// asynchronous aggregator, so polled), latest_hours layout, online users, ephemeral events.
// Every test gets a fresh server and store, its clock pinned a minute into the current hour.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  withServer, getJson, eventually, assertRecent, midHourClock, hourStart, dayStart, HOUR, DAY,
} from './lib/server.mjs';
import {
  connect, closeAllClients, STATS_KEYS, uid, clickAndWait, eventAndWait, isToast,
} from './lib/clients.mjs';

after(() => closeAllClients());

const it = (name, fn) => test(name, { timeout: 60_000 }, fn);
const fresh = (fn, env = {}) => withServer({ name: 'rest', clockStart: midHourClock(), env }, fn);

const zeroStats = Object.fromEntries(STATS_KEYS.map((k) => [k, 0]));
const byName = (a, b) => String(a.name).localeCompare(String(b.name));
const sortedByName = (list) => [...list].sort(byName);

/** Checks the latest_hours layout against the server clock and returns rows keyed by hour. */
function checkHourLayout(rows, server) {
  assert.ok(Array.isArray(rows) && rows.length > 0, 'latest_hours is a non-empty array');
  const now = Math.floor(server.now());
  const first = dayStart(now) - 6 * DAY;
  const last = hourStart(now);
  assert.equal(rows[0].timestamp, first, 'first row is the start of the day six days ago');
  assert.equal(rows.at(-1).timestamp, last, 'last row is the current hour');
  assert.equal(rows.length, (last - first) / HOUR + 1, 'one row per hour');
  const byHour = new Map();
  let prev;
  for (const [i, r] of rows.entries()) {
    assert.deepEqual(
      Object.keys(r).sort(),
      ['click_count', 'click_count_total', 'event_count', 'event_count_total', 'timestamp'],
      `row ${i} keys`,
    );
    for (const k of Object.keys(r)) assert.ok(Number.isInteger(r[k]) && r[k] >= 0, `row ${i}.${k} = ${r[k]}`);
    assert.equal(r.timestamp % HOUR, 0, `row ${i} timestamp is an hour start`);
    if (prev) {
      assert.equal(r.timestamp, prev.timestamp + HOUR, `row ${i} follows row ${i - 1} by one hour`);
      assert.equal(r.click_count_total, prev.click_count_total + r.click_count, `row ${i}: running click total`);
      assert.equal(r.event_count_total, prev.event_count_total + r.event_count, `row ${i}: running event total`);
    }
    byHour.set(r.timestamp, r);
    prev = r;
  }
  return byHour;
}

it('GET /api and an empty store: version, empty lists, zero stats, zero hours', () =>
  fresh(async (srv) => {
    const api = await getJson(srv, '/api');
    assert.deepEqual(Object.keys(api), ['version']);
    assert.equal(typeof api.version, 'string');
    assert.ok(api.version.length > 0, 'version is not empty');

    assert.deepEqual(await getJson(srv, '/api/latest_clicks'), []);
    assert.deepEqual(await getJson(srv, '/api/latest_events'), []);
    assert.deepEqual(await getJson(srv, '/api/users'), []);
    assert.deepEqual(await getJson(srv, '/api/online_users'), []);
    assert.deepEqual(await getJson(srv, '/api/current_stats'), zeroStats);

    const rows = await getJson(srv, '/api/latest_hours');
    checkHourLayout(rows, srv);
    for (const r of rows) {
      assert.deepEqual(r, { timestamp: r.timestamp, click_count: 0, event_count: 0, click_count_total: 0, event_count_total: 0 });
    }
  }));

it('clicks and events show up in latest_clicks/events, users, current_stats and the current hour', () =>
  fresh(async (srv) => {
    const a = await connect(srv, 4, 'websocket');
    const b = await connect(srv, 2, 'default');
    try {
      const alice = uid('a');
      const bob = uid('b');
      const clicks = [];
      const events = [];
      // Sent one at a time, each after the previous one's broadcast: the order is unambiguous.
      for (let i = 0; i < 7; i++) {
        clicks.push(await clickAndWait(a, { user: alice, comment: i % 2 ? `c${i}` : null, style: i === 3 ? 'gold' : undefined }));
      }
      events.push(await eventAndWait(a, { user: alice, name: 'confetti' }));
      events.push(await eventAndWait(a, { user: alice, name: 'party' }));
      clicks.push(await clickAndWait(b, { user: bob, comment: 'hi' }));
      clicks.push(await clickAndWait(b, { user: bob }));
      events.push(await eventAndWait(b, { user: bob, name: 'confetti' }));
      // Ephemeral: not stored, not counted per user, but counted in the stats and hours (as the
      // original did).
      await eventAndWait(b, { user: bob, name: 'rickroll' });
      for (const x of [...clicks, ...events]) assertRecent(x.timestamp, srv);
      const N = clicks.length; // 9
      const M = events.length + 1; // 3 stored, 1 ephemeral

      await eventually(async () => {
        assert.deepEqual(await getJson(srv, '/api/current_stats'), {
          click_count_total: N, click_count_today: N, click_count_hour: N,
          event_count_total: M, event_count_today: M, event_count_hour: M,
        });
      }, { what: 'current_stats' });
      await eventually(async () => {
        assert.deepEqual(sortedByName(await getJson(srv, '/api/users')), sortedByName([
          { name: alice, click_count: 7, event_count: 2 },
          { name: bob, click_count: 2, event_count: 1 },
        ]));
      }, { what: '/api/users' });
      await eventually(async () => {
        assert.deepEqual(await getJson(srv, '/api/latest_clicks'), [...clicks].reverse());
      }, { what: 'latest_clicks newest first' });
      await eventually(async () => {
        assert.deepEqual(await getJson(srv, '/api/latest_events'), [...events].reverse());
      }, { what: 'latest_events newest first, without rickroll' });
      await eventually(async () => {
        const byHour = checkHourLayout(await getJson(srv, '/api/latest_hours'), srv);
        const now = hourStart(Math.floor(srv.now()));
        assert.deepEqual(byHour.get(now), {
          timestamp: now, click_count: N, event_count: M, click_count_total: N, event_count_total: M,
        });
        for (const [t, r] of byHour) {
          if (t !== now) assert.deepEqual([r.click_count, r.event_count], [0, 0], `hour ${t} is empty`);
        }
      }, { what: 'latest_hours current hour' });

      // A new socket's on-connect stats agree with REST.
      const c = await connect(srv, 4, 'polling');
      try {
        assert.deepEqual(await c.waitFor('stats'), await getJson(srv, '/api/current_stats'));
      } finally {
        c.close();
      }
    } finally {
      a.close();
      b.close();
    }
  }));

it('online_users: one entry per connected socket with session counts; name null when unnamed', () =>
  fresh(async (srv) => {
    const alice = uid('a');
    const bob = uid('b');
    const sockets = [];
    try {
      // An earlier session of alice: her user totals grow, but not her next session's counts.
      const earlier = await connect(srv, 4, 'websocket');
      sockets.push(earlier);
      for (let i = 0; i < 3; i++) await clickAndWait(earlier, { user: alice });
      await eventAndWait(earlier, { user: alice, name: 'x' });
      earlier.close();

      const unnamed = await connect(srv, 2, 'default');
      const a = await connect(srv, 4, 'websocket');
      const b = await connect(srv, 2, 'websocket');
      const authed = await connect(srv, 4, 'polling');
      sockets.push(unnamed, a, b, authed);
      for (let i = 0; i < 2; i++) await clickAndWait(a, { user: alice });
      await eventAndWait(b, { user: bob, name: 'y' });
      await eventAndWait(b, { user: bob, name: 'z' });
      await clickAndWait(b, { user: bob });
      const carol = uid('c');
      authed.emit('auth', carol);
      await unnamed.waitFor('message', isToast(`${carol} ist beigetreten.`));

      const entry = (name, clicks, events) => ({
        name, click_count_session: clicks, event_count_session: events, click_count: clicks, event_count: events,
      });
      const expected = [entry(null, 0, 0), entry(alice, 2, 0), entry(bob, 1, 2), entry(carol, 0, 0)];
      await eventually(async () => {
        const online = await getJson(srv, '/api/online_users');
        assert.deepEqual(sortedByName(online), sortedByName(expected));
      }, { timeoutMs: 2000, what: '/api/online_users' });
      await eventually(async () => {
        // carol only authenticated: whether she is listed (with zeros) is left open.
        const users = (await getJson(srv, '/api/users')).filter((u) => u.name !== carol);
        assert.deepEqual(sortedByName(users), sortedByName([
          { name: alice, click_count: 5, event_count: 1 },
          { name: bob, click_count: 1, event_count: 2 },
        ]));
      }, { what: '/api/users' });

      // Renaming and leaving show up too.
      authed.emit('auth', '');
      b.close();
      await eventually(async () => {
        const online = await getJson(srv, '/api/online_users');
        assert.deepEqual(sortedByName(online), sortedByName([entry(null, 0, 0), entry(alice, 2, 0), entry(null, 0, 0)]));
      }, { timeoutMs: 2000, what: '/api/online_users after leave/disconnect' });
    } finally {
      for (const s of sockets) s.close();
    }
  }));

it('ephemeral events (rickroll, exmatrikulieren) count in stats and hours, but are neither stored nor counted per user', () =>
  fresh(async (srv) => {
    const a = await connect(srv, 4, 'websocket');
    try {
      const u = uid('r');
      await eventAndWait(a, { user: u, name: 'rickroll' });
      await eventAndWait(a, { user: u, name: 'exmatrikulieren' });
      const kept = await eventAndWait(a, { user: u, name: 'wave' });
      await eventually(async () => {
        assert.deepEqual(await getJson(srv, '/api/latest_events'), [kept]);
        const s = await getJson(srv, '/api/current_stats');
        assert.deepEqual([s.event_count_total, s.event_count_today, s.event_count_hour], [3, 3, 3]);
        assert.deepEqual(await getJson(srv, '/api/users'), [{ name: u, click_count: 0, event_count: 1 }]);
      }, { what: 'all three in the stats, only the stored one for the user' });
      const rows = await getJson(srv, '/api/latest_hours');
      assert.deepEqual([rows.at(-1).event_count, rows.at(-1).event_count_total], [3, 3]);
      // A restart recounts from the stored rows (embedded mode): the ephemeral ones stay counted.
      await srv.restart();
      await eventually(async () => {
        const s = await getJson(srv, '/api/current_stats');
        assert.deepEqual([s.event_count_total, s.event_count_today, s.event_count_hour], [3, 3, 3]);
      }, { what: 'still counted after a restart' });
    } finally {
      a.close();
    }
  }));

it('SWITCHYARD_EPHEMERAL_EVENTS replaces the ephemeral list', () =>
  fresh(async (srv) => {
    const obs = await connect(srv, 2, 'websocket');
    const a = await connect(srv, 4, 'websocket');
    try {
      const u = uid('f');
      a.emit('auth', u);
      await obs.waitFor('message', isToast(`${u} ist beigetreten.`));
      const from = obs.mark();
      await eventAndWait(a, { user: u, name: 'secret' }); // ephemeral here
      const kept = await eventAndWait(a, { user: u, name: 'rickroll' }); // ordinary here
      await obs.waitFor('message', isToast(`${u} triggered rickroll!`), 5000, { from });
      await obs.waitFor('event', (e) => e.name === 'secret', 5000, { from });
      assert.deepEqual(obs.all('message', () => true, { from }).map((m) => m.text), [`${u} triggered rickroll!`]);
      await eventually(async () => {
        assert.deepEqual(await getJson(srv, '/api/latest_events'), [kept]);
        assert.equal((await getJson(srv, '/api/current_stats')).event_count_total, 2);
      }, { what: 'only rickroll stored, both counted' });
    } finally {
      obs.close();
      a.close();
    }
  }, { SWITCHYARD_EPHEMERAL_EVENTS: 'secret,other' }));

it('a fresh server does not lose the first packets of its first sockets (emitted on connect)', () =>
  fresh(async (srv) => {
    const sockets = [];
    try {
      for (const [v, tr] of [[4, 'websocket'], [2, 'default'], [2, 'websocket'], [4, 'polling']]) {
        const c = await connect(srv, v, tr);
        sockets.push(c);
        const name = uid('f');
        c.emit('auth', name); // what the original frontend does on connect
        c.emit('click', { user: name, comment: 'first' });
        await c.waitFor('message', isToast(`${name} ist beigetreten.`));
        await c.waitFor('click', (k) => k.user === name && k.comment === 'first');
      }
      await eventually(async () => {
        assert.equal((await getJson(srv, '/api/current_stats')).click_count_total, sockets.length);
      }, { what: 'every first click counted' });
    } finally {
      for (const s of sockets) s.close();
    }
  }));
