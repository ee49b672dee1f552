// Time and process lifecycle: hour and day rollover (server clock started just before a
// boundary), restart on the same store (clean SIGTERM, nothing lost or double counted), and a
// storm of 1000 websocket clients.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  withServer, getJson, eventually, midHourClock, realNow, hourStart, dayStart, HOUR, DAY,
} from './lib/server.mjs';
import { connect, closeAllClients, uid, clickAndWait, eventAndWait } from './lib/clients.mjs';

after(() => closeAllClients());

/** Seconds between the server's clock start and the boundary under test. */
const LEAD_S = 5;

/** Fails clearly if the server took so long to start that the pre-boundary phase is gone. */
function assertBeforeBoundary(srv, boundary) {
  const left = boundary - srv.now();
  assert.ok(left > 1.5, `server ready only ${left.toFixed(2)} s before the boundary: too slow to start for this test`);
}

test('hour rollover: every client gets stats at the hour start; latest_hours splits the clicks', { timeout: 60_000 }, async () => {
  const boundary = hourStart(Math.floor(realNow())) + HOUR;
  await withServer({ name: 'rollover', clockStart: boundary - LEAD_S }, async (srv) => {
    assertBeforeBoundary(srv, boundary);
    const clients = [await connect(srv, 4, 'websocket'), await connect(srv, 2, 'default'), await connect(srv, 4, 'polling')];
    try {
      const marks = [];
      for (const c of clients) {
        assert.equal((await c.waitFor('stats')).click_count_total, 0);
        marks.push(c.mark());
      }
      const user = uid('h');
      const before = await clickAndWait(clients[0], { user, comment: 'before' });
      assert.ok(before.timestamp < boundary && before.timestamp >= boundary - LEAD_S,
        `first click at ${before.timestamp} lies in the hour before ${boundary}`);

      const expected = {
        click_count_total: 1,
        click_count_today: boundary % DAY === 0 ? 0 : 1, // the hour start may also be a day start
        click_count_hour: 0,
        event_count_total: 0,
        event_count_today: 0,
        event_count_hour: 0,
      };
      const waitMs = (boundary - srv.now()) * 1000 + 5000;
      for (const [i, c] of clients.entries()) {
        const s = await c.waitFor('stats', (x) => x.click_count_total === 1 && x.click_count_hour === 0, waitMs, { from: marks[i] });
        assert.deepEqual(s, expected, `${c.label}: stats pushed at the hour start`);
        assert.ok(srv.now() >= boundary - 1, `${c.label}: hour-start stats arrived at server time ~${srv.now().toFixed(1)}, before ${boundary}`);
      }

      const afterClick = await clickAndWait(clients[1], { user, comment: 'after' });
      assert.ok(afterClick.timestamp >= boundary && afterClick.timestamp < boundary + HOUR,
        `second click at ${afterClick.timestamp} lies in the hour starting ${boundary}`);

      await eventually(async () => {
        const rows = await getJson(srv, '/api/latest_hours');
        assert.equal(rows.at(-1).timestamp, boundary, 'last row is the new current hour');
        assert.deepEqual(rows.slice(-2), [
          { timestamp: boundary - HOUR, click_count: 1, event_count: 0, click_count_total: 1, event_count_total: 0 },
          { timestamp: boundary, click_count: 1, event_count: 0, click_count_total: 2, event_count_total: 0 },
        ]);
        for (const r of rows.slice(0, -2)) assert.equal(r.click_count, 0);
        assert.equal(rows[0].timestamp, dayStart(boundary) - 6 * DAY);
      }, { what: 'latest_hours with one click in each of the two hours' });
      await eventually(async () => {
        const s = await getJson(srv, '/api/current_stats');
        assert.deepEqual([s.click_count_total, s.click_count_hour], [2, 1]);
        assert.equal(s.click_count_today, boundary % DAY === 0 ? 1 : 2);
      }, { what: 'current_stats after the rollover' });
      // Exactly one push at the boundary per client (plus the one on connect).
      for (const c of clients) assert.equal(c.received.stats.length, 2, c.describe('stats'));
    } finally {
      for (const c of clients) c.close();
    }
  });
});

test('day rollover: latest_clicks/events and today counts start over; totals and hours do not', { timeout: 60_000 }, async () => {
  const boundary = dayStart(Math.floor(realNow())) + DAY;
  await withServer({ name: 'dayroll', clockStart: boundary - LEAD_S }, async (srv) => {
    assertBeforeBoundary(srv, boundary);
    const a = await connect(srv, 4, 'websocket');
    try {
      const mark = a.mark();
      const user = uid('d');
      const c1 = await clickAndWait(a, { user, comment: 'yesterday' });
      const e1 = await eventAndWait(a, { user, name: 'late-night' });
      assert.ok(c1.timestamp < boundary && e1.timestamp < boundary, 'first click and event before midnight');
      await eventually(async () => {
        assert.deepEqual(await getJson(srv, '/api/latest_clicks'), [c1]);
        assert.deepEqual(await getJson(srv, '/api/latest_events'), [e1]);
      }, { what: 'yesterday\'s click and event listed before midnight' });

      const s = await a.waitFor('stats', (x) => x.click_count_total === 1, (boundary - srv.now()) * 1000 + 5000, { from: mark });
      assert.deepEqual(s, {
        click_count_total: 1, click_count_today: 0, click_count_hour: 0,
        event_count_total: 1, event_count_today: 0, event_count_hour: 0,
      });
      const c2 = await clickAndWait(a, { user, comment: 'today' });
      assert.ok(c2.timestamp >= boundary);

      await eventually(async () => {
        assert.deepEqual(await getJson(srv, '/api/latest_clicks'), [c2]);
        assert.deepEqual(await getJson(srv, '/api/latest_events'), []);
        assert.deepEqual(await getJson(srv, '/api/current_stats'), {
          click_count_total: 2, click_count_today: 1, click_count_hour: 1,
          event_count_total: 1, event_count_today: 0, event_count_hour: 0,
        });
        assert.deepEqual(await getJson(srv, '/api/users'), [{ name: user, click_count: 2, event_count: 1 }]);
        const rows = await getJson(srv, '/api/latest_hours');
        assert.equal(rows[0].timestamp, boundary - 6 * DAY);
        assert.deepEqual(rows.slice(-2), [
          { timestamp: boundary - HOUR, click_count: 1, event_count: 1, click_count_total: 1, event_count_total: 1 },
          { timestamp: boundary, click_count: 1, event_count: 0, click_count_total: 2, event_count_total: 1 },
        ]);
      }, { what: 'state after midnight' });
    } finally {
      a.close();
    }
  });
});

test('restart on the same store: counts, users and lists survive; acknowledged clicks are never lost or doubled', { timeout: 90_000 }, async () => {
  await withServer({ name: 'restart', clockStart: midHourClock() }, async (srv) => {
    const snapshot = async () => ({
      stats: await getJson(srv, '/api/current_stats'),
      users: (await getJson(srv, '/api/users')).sort((x, y) => x.name.localeCompare(y.name)),
      clicks: await getJson(srv, '/api/latest_clicks'),
      events: await getJson(srv, '/api/latest_events'),
      hours: await getJson(srv, '/api/latest_hours'),
    });
    const alice = uid('a');
    const bob = uid('b');
    let a = await connect(srv, 4, 'websocket');
    let b = await connect(srv, 2, 'default');
    const clicks = [];
    const events = [];
    try {
      for (let i = 0; i < 5; i++) clicks.push(await clickAndWait(a, { user: alice, comment: `r${i}` }));
      events.push(await eventAndWait(b, { user: bob, name: 'confetti' }));
      events.push(await eventAndWait(b, { user: bob, name: 'party' }));
      await eventAndWait(b, { user: bob, name: 'rickroll' }); // counted in the stats, not for bob
      clicks.push(await clickAndWait(b, { user: bob }));

      const expectedStats = {
        click_count_total: 6, click_count_today: 6, click_count_hour: 6,
        event_count_total: 3, event_count_today: 3, event_count_hour: 3,
      };
      await eventually(async () => {
        assert.deepEqual(await getJson(srv, '/api/current_stats'), expectedStats);
        assert.deepEqual(await getJson(srv, '/api/latest_clicks'), [...clicks].reverse());
      }, { what: 'counts before the restart' });
      const before = await snapshot();
      assert.deepEqual(before.users, [
        { name: alice, click_count: 5, event_count: 0 },
        { name: bob, click_count: 1, event_count: 2 },
      ].sort((x, y) => x.name.localeCompare(y.name)));

      // Clean stop with clients of both lines connected (stop() asserts exit code 0 within 10 s).
      await srv.restart();
      for (const c of [a, b]) {
        await eventually(() => assert.ok(!c.connected && c.disconnects.length > 0, `${c.label} was disconnected`), { timeoutMs: 5000 });
        c.close();
      }

      await eventually(async () => {
        const now = await snapshot();
        assert.deepEqual(now.stats, before.stats);
        assert.deepEqual(now.users, before.users);
        assert.deepEqual(now.clicks, before.clicks);
        assert.deepEqual(now.events, before.events);
        const counted = (rows) => rows.filter((r) => r.click_count || r.event_count);
        assert.deepEqual(counted(now.hours), counted(before.hours));
        assert.equal(now.hours.at(-1).click_count_total, 6);
      }, { what: 'state after the restart equals the state before' });

      // Reconnect; on-connect stats agree.
      a = await connect(srv, 4, 'websocket');
      b = await connect(srv, 2, 'default');
      assert.deepEqual(await a.waitFor('stats'), expectedStats);

      // Clicks whose broadcast came back are persisted: SIGTERM right after must not lose them,
      // and the restarted aggregator must not count anything twice.
      for (let i = 0; i < 4; i++) clicks.push(await clickAndWait(i % 2 ? a : b, { user: alice, comment: `late${i}` }));
      await eventAndWait(a, { user: alice, name: 'bye' });
      await srv.restart();
      a.close();
      b.close();
      const want = {
        click_count_total: 10, click_count_today: 10, click_count_hour: 10,
        event_count_total: 4, event_count_today: 4, event_count_hour: 4,
      };
      await eventually(async () => {
        const stats = await getJson(srv, '/api/current_stats');
        for (const k of Object.keys(want)) {
          if (stats[k] > want[k]) throw Object.assign(new Error(`double count: ${JSON.stringify(stats)}`), { fatal: true });
        }
        assert.deepEqual(stats, want);
      }, { what: 'acknowledged clicks counted exactly once after the restart' });
      await eventually(async () => {
        assert.deepEqual(await getJson(srv, '/api/latest_clicks'), [...clicks].reverse());
        const users = await getJson(srv, '/api/users');
        assert.deepEqual(users.find((u) => u.name === alice), { name: alice, click_count: 9, event_count: 1 });
        const rows = await getJson(srv, '/api/latest_hours');
        assert.deepEqual([rows.at(-1).click_count, rows.at(-1).event_count, rows.at(-1).click_count_total], [10, 4, 10]); // the rickroll counts in the hour
      }, { what: 'lists and users after the second restart' });
    } finally {
      a.close();
      b.close();
    }
  });
});

test('storm: 1000 websocket clients all see user_count 1000, then 500 after half leave', { timeout: 90_000 }, async (t) => {
  const N = 1000;
  const BATCH = 100;
  await withServer({ name: 'storm', clockStart: midHourClock() }, async (srv) => {
    const clients = [];
    try {
      const started = Date.now();
      for (let i = 0; i < N; i += BATCH) {
        const batch = [];
        for (let j = i; j < Math.min(N, i + BATCH); j++) batch.push(connect(srv, 4, 'websocket', { timeoutMs: 15_000, label: `storm#${j}` }));
        clients.push(...(await Promise.all(batch)));
      }
      t.diagnostic(`${N} clients connected in ${Date.now() - started} ms`);

      const latestIs = (n) => async () => {
        const behind = clients.filter((c) => c.latest('status')?.user_count !== n);
        assert.equal(behind.length, 0,
          `${behind.length} clients' latest status is not ${n}; e.g. ${behind.slice(0, 3).map((c) => `${c.label}: ${JSON.stringify(c.latest('status'))}`).join(', ')}`);
      };
      await eventually(latestIs(N), { timeoutMs: 10_000, intervalMs: 100, what: `every client's latest status is ${N}` });
      const statusCount = clients.reduce((n, c) => n + c.received.status.length, 0);
      t.diagnostic(`status packets received in total: ${statusCount} (${(statusCount / N).toFixed(1)} per client)`);
      for (const c of clients) {
        assert.equal(c.received.stats.length, 1, `${c.label}: one stats on connect`);
        assert.ok(c.connected, `${c.label} still connected`);
      }

      const leaving = clients.splice(0, N / 2);
      for (const c of leaving) c.close();
      await eventually(latestIs(N / 2), { timeoutMs: 10_000, intervalMs: 100, what: `every remaining client's latest status is ${N / 2}` });
      await eventually(async () => {
        assert.equal((await getJson(srv, '/api/online_users')).length, N / 2);
      }, { timeoutMs: 5000, what: 'online_users lists the remaining sockets' });
      t.diagnostic(`storm done in ${Date.now() - started} ms`);

      // A click still reaches everyone.
      const c = await clickAndWait(clients[0], { user: uid('s'), comment: 'storm' });
      await eventually(() => {
        const missing = clients.filter((x) => !x.received.click.some((k) => k.comment === 'storm' && k.user === c.user));
        assert.equal(missing.length, 0, `${missing.length} clients did not get the click`);
      }, { timeoutMs: 10_000, intervalMs: 100, what: 'the click reached every client' });
    } finally {
      for (const c of clients) c.close();
    }
  });
});
