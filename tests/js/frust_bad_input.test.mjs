// Bad input over Socket.IO: no broadcast, nothing stored, the connection stays usable and other
// clients are unaffected. One fresh server per client line.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { withServer, getJson, eventually, midHourClock } from './lib/server.mjs';
import { connect, closeAllClients, isToast, toast } from './lib/clients.mjs';

after(() => closeAllClients());

/** [label, emit args after the event name] — `[]` means the event without any payload. */
const BAD_CLICKS = [
  ['no payload', []],
  ['null', [null]],
  ['a string', ['bob']],
  ['a number', [5]],
  ['an array', [[{ user: 'bob' }]]],
  ['a boolean', [true]],
  ['{}', [{}]],
  ['user ""', [{ user: '' }]],
  ['user "   "', [{ user: '   ' }]],
  ['user 5', [{ user: 5 }]],
  ['user null', [{ user: null }]],
  ['user an object', [{ user: { name: 'bob' } }]],
  ['user of 16 chars', [{ user: 'x'.repeat(16) }]],
  ['user of 16 non-ASCII chars', [{ user: 'ü'.repeat(16) }]],
  ['comment of 76 chars', [{ user: 'bob', comment: 'c'.repeat(76) }]],
  ['comment a number', [{ user: 'bob', comment: 7 }]],
  ['comment an array', [{ user: 'bob', comment: ['hi'] }]],
  ['style an object', [{ user: 'bob', style: { a: 1 } }]],
  ['binary payload', [Buffer.from('{"user":"bob"}')]],
];

const BAD_EVENTS = [
  ['no payload', []],
  ['null', [null]],
  ['a string', ['confetti']],
  ['an array', [[{ user: 'bob', name: 'confetti' }]]],
  ['{}', [{}]],
  ['missing name', [{ user: 'bob' }]],
  ['missing user', [{ name: 'confetti' }]],
  ['name ""', [{ user: 'bob', name: '' }]],
  ['name "  "', [{ user: 'bob', name: '  ' }]],
  ['name a number', [{ user: 'bob', name: 5 }]],
  ['name null', [{ user: 'bob', name: null }]],
  ['user a number', [{ user: 5, name: 'confetti' }]],
  ['user of 16 chars', [{ user: 'y'.repeat(16), name: 'confetti' }]],
  ['ephemeral name without user', [{ name: 'rickroll' }]],
];

const BAD_AUTH = [
  ['no payload', []],
  ['a number', [5]],
  ['null', [null]],
  ['an object', [{ name: 'bob' }]],
  ['an array', [['bob']]],
  ['a boolean', [true]],
  ['16 chars', ['z'.repeat(16)]],
];

/** Events the server does not take from clients (including the names of its own events). */
const UNKNOWN = [
  ['nonsense', [1]],
  ['nonsense', []],
  ['message', [{ text: 'spoofed toast', style: 'medium highlight', type: 'toast' }]],
  ['stats', [{ click_count_total: 999 }]],
  ['status', [{ user_count: 999 }]],
  ['clicks', [{ user: 'bob' }]],
  ['CLICK', [{ user: 'bob' }]],
];

for (const [version, transport] of [[2, 'default'], [4, 'websocket'], [4, 'polling']]) {
  test(`bad input from a v${version} ${transport} client: no broadcast, nothing stored, connection usable`, { timeout: 60_000 }, () =>
    withServer({ name: `bad-v${version}`, clockStart: midHourClock() }, async (srv) => {
      const obs = await connect(srv, 4, 'websocket', { label: 'observer' });
      const actor = await connect(srv, version, transport, { label: `actor v${version}/${transport}` });
      try {
        await obs.waitForUserCount(2);
        // The actor's own connect-time stats may still be on the wire: take it before marking.
        await actor.waitFor('stats', () => true, 5000);
        const from = obs.mark();
        const fromActor = actor.mark();

        for (const [, args] of BAD_CLICKS) actor.emit('click', ...args);
        for (const [, args] of BAD_EVENTS) actor.emit('event', ...args);
        for (const [, args] of BAD_AUTH) actor.emit('auth', ...args);
        for (const [name, args] of UNKNOWN) actor.emit(name, ...args);

        // Sentinel: a good click from the same socket. Since every bad auth was refused, the
        // socket has no name yet, so its toast is a join (not a rename).
        actor.emit('click', { user: 'good', comment: 'sentinel' });
        const sentinel = await obs.waitFor('click', (c) => c.comment === 'sentinel', 5000, { from });
        assert.deepEqual(await actor.waitFor('click', (c) => c.comment === 'sentinel', 5000, { from: fromActor }), sentinel);
        await obs.waitFor('message', isToast('good ist beigetreten.'), 5000, { from });
        // Give stragglers a moment, then: nothing but the sentinel reached anyone.
        await obs.expectNone('click', (c) => c.comment !== 'sentinel', 500, { from });
        const what = (c, ev) => c.all(ev, () => true, { from: c === obs ? from : fromActor });
        for (const c of [obs, actor]) {
          assert.deepEqual(what(c, 'click'), [sentinel], `${c.label}: only the sentinel click\n${c.describe('click')}`);
          assert.deepEqual(what(c, 'event'), [], `${c.label}: no event\n${c.describe('event')}`);
          assert.deepEqual(what(c, 'message'), [toast('good ist beigetreten.')], `${c.label}: only the join toast\n${c.describe('message')}`);
          assert.deepEqual(what(c, 'stats'), [], `${c.label}: no stats\n${c.describe('stats')}`);
          assert.ok(what(c, 'status').every((s) => s.user_count === 2), `${c.label}: no spoofed status\n${c.describe('status')}`);
          assert.ok(c.connected, `${c.label} still connected`);
          assert.deepEqual(c.disconnects, [], `${c.label} never disconnected`);
        }

        // The same socket can still send a good event.
        actor.emit('event', { user: 'good', name: 'still-here' });
        const ev = await obs.waitFor('event', (e) => e.name === 'still-here', 5000, { from });
        await obs.waitFor('message', isToast('good triggered still-here!'), 5000, { from });

        // Nothing bad was stored or counted.
        await eventually(async () => {
          assert.deepEqual(await getJson(srv, '/api/current_stats'), {
            click_count_total: 1, click_count_today: 1, click_count_hour: 1,
            event_count_total: 1, event_count_today: 1, event_count_hour: 1,
          });
          assert.deepEqual(await getJson(srv, '/api/latest_clicks'), [sentinel]);
          assert.deepEqual(await getJson(srv, '/api/latest_events'), [ev]);
          assert.deepEqual(await getJson(srv, '/api/users'), [{ name: 'good', click_count: 1, event_count: 1 }]);
        }, { what: 'store holds only the good click and event' });
        const rows = await getJson(srv, '/api/latest_hours');
        assert.deepEqual(rows.filter((r) => r.click_count || r.event_count).map((r) => [r.click_count, r.event_count]), [[1, 1]]);
        await eventually(async () => {
          const online = await getJson(srv, '/api/online_users');
          assert.deepEqual(online.map((u) => u.name).sort(), ['good', null].sort());
        }, { timeoutMs: 2000, what: 'online_users' });

        // The server is fine, and a newcomer is served normally.
        const late = await connect(srv, 2, 'websocket', { label: 'late' });
        try {
          const stats = await late.waitFor('stats');
          assert.equal(stats.click_count_total, 1);
          await Promise.all([obs, actor, late].map((c) => c.waitForUserCount(3)));
        } finally {
          late.close();
        }
        const health = await fetch(`${srv.url}/healthz`);
        assert.equal(health.status, 200);
      } finally {
        obs.close();
        actor.close();
      }
    }));
}
