// `switchyard import frust-sqlite`: an original-shaped db.sqlite (built by
// scripts/frust_original_db.py with --awkward rows) is imported with the server stopped, then
// every REST route is checked against what the original backend answers for that data (its
// logic, modelled below from its source), a second import runs with the server up (nothing
// changes), and a live click counts on top.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BIN, REPO_ROOT, startServer, attachLogs, getJson, eventually, midHourClock, hourStart, dayStart, DAY,
} from './lib/server.mjs';
import { connect, closeAllClients, clickAndWait, eventAndWait } from './lib/clients.mjs';

after(() => closeAllClients());

const GENERATOR = path.join(REPO_ROOT, 'scripts', 'frust_original_db.py');

/** The original's tables as JSON (Python's stdlib sqlite3; no Node SQLite package needed). */
function dump(dbPath) {
  const script = `
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
q = lambda sql: db.execute(sql).fetchall()
print(json.dumps({
  "clicks": q("SELECT id, user, comment, style, timestamp FROM clicks ORDER BY id"),
  "events": q("SELECT id, user, name, timestamp FROM events ORDER BY id"),
  "users": q("SELECT name, clicks, events FROM users"),
  "hours": q("SELECT timestamp, clicks, events, clicks_total, events_total FROM hours ORDER BY timestamp"),
}))`;
  return JSON.parse(execFileSync('python3', ['-c', script, dbPath], { encoding: 'utf8' }));
}

/**
 * What the original answers at `now` after a restart on this db (data.py/db.py): its counters
 * come from its last hours row (the current hour's row, if it is the last, is taken back into
 * memory), today's from the hours since the day's start; lists from the rows, newest id first.
 */
function originalAnswers(db, now) {
  const hours = db.hours.map(([timestamp, c, e, ct, et]) => ({
    timestamp, click_count: c, event_count: e, click_count_total: ct, event_count_total: et,
  }));
  const last = hours.at(-1);
  const current = last && last.timestamp === hourStart(now) ? last : null;
  const today = hours.filter((h) => h.timestamp >= dayStart(now));
  const sum = (list, k) => list.reduce((n, h) => n + h[k], 0);
  return {
    stats: {
      click_count_total: last?.click_count_total ?? 0,
      click_count_today: sum(today, 'click_count'),
      click_count_hour: current?.click_count ?? 0,
      event_count_total: last?.event_count_total ?? 0,
      event_count_today: sum(today, 'event_count'),
      event_count_hour: current?.event_count ?? 0,
    },
    hours: hours.filter((h) => h.timestamp >= dayStart(now) - 6 * DAY),
    users: db.users.map(([name, c, e]) => ({ name, click_count: c, event_count: e })),
    clicks: db.clicks.filter((r) => r[4] >= dayStart(now)).reverse()
      .map(([, user, comment, style, timestamp]) => ({ user, comment, style, timestamp })),
    events: db.events.filter((r) => r[3] >= dayStart(now)).reverse()
      .map(([, user, name, timestamp]) => ({ user, name, timestamp })),
  };
}

/** The stated import rules: rows without a user or name, or from the future, are skipped;
 *  strings are stripped and cut to the live limits, blanks become null. */
const clean = (s, max) => (s == null || s.trim() === '' ? null : [...s.trim()].slice(0, max).join(''));
const importable = (now) => (r) => clean(r.user, 15) !== null && r.timestamp <= now && (r.name === undefined || clean(r.name, 64) !== null);

function runImport(storePath, dbPath, clockStart) {
  const out = execFileSync(BIN, ['import', 'frust-sqlite', dbPath], {
    env: { ...process.env, SWITCHYARD_STORE: `sqlite://${storePath}`, SWITCHYARD_CLOCK_START: String(clockStart) },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return JSON.parse(out.trim().split('\n').at(-1));
}

const byName = (a, b) => a.name.localeCompare(b.name);

test('an original db.sqlite imports, every REST route answers as the original did, live counts add on top', { timeout: 120_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-import-'));
  const dbPath = path.join(dir, 'original.sqlite');
  const storePath = path.join(dir, 'db.sqlite');
  // Pinned mid-hour: the original's "current hour" and the server's stay the same hour.
  const clockStart = midHourClock();
  execFileSync('python3', [GENERATOR, dbPath, '--awkward', '--clicks', '3000', '--events', '120',
    '--ephemeral', '7', '--users', '20', '--days', '9', '--now', String(clockStart - 5)]);
  const db = dump(dbPath);

  const first = runImport(storePath, dbPath, clockStart);
  assert.equal(first.skipped, 4, 'NULL user, empty user, future click, event without a name');
  assert.equal(first.repaired, 1, 'the 90-character comment, cut to 75');
  assert.equal(first.disagreements, 0, JSON.stringify(first));
  assert.equal(first.ephemeral_events, 7, 'counted in the original hours, no row');
  assert.equal(first.clicks_stored, 3001);

  let srv;
  try {
    srv = await startServer({ name: 'import', clockStart, storeDir: dir });
    const check = async (extra = { clicks: [], events: [] }, online = []) => {
      const now = Math.floor(srv.now());
      const want = originalAnswers(db, now);
      const stats = { ...want.stats };
      stats.click_count_total += extra.clicks.length;
      stats.click_count_today += extra.clicks.length;
      stats.click_count_hour += extra.clicks.length;
      assert.deepEqual(await getJson(srv, '/api/current_stats'), stats, 'current_stats');

      const users = new Map(want.users.map((u) => [u.name, { ...u }]));
      for (const c of extra.clicks) users.get(c.user).click_count += 1;
      assert.deepEqual((await getJson(srv, '/api/users')).sort(byName), [...users.values()].sort(byName), 'users');

      const clicks = want.clicks.filter(importable(now)).map((c) => ({ ...c, comment: clean(c.comment, 75) }));
      assert.deepEqual(await getJson(srv, '/api/latest_clicks'), [...[...extra.clicks].reverse(), ...clicks], 'latest_clicks');
      assert.deepEqual(await getJson(srv, '/api/latest_events'), want.events.filter(importable(now)), 'latest_events');

      // switchyard lists every hour (zeros where the original had no row); where the original
      // has a row, the row is the same.
      const hours = new Map((await getJson(srv, '/api/latest_hours')).map((h) => [h.timestamp, h]));
      const originals = new Set();
      for (const h of want.hours) {
        originals.add(h.timestamp);
        const got = hours.get(h.timestamp);
        const live = h.timestamp === hourStart(now) ? extra.clicks.length : 0;
        assert.deepEqual(got, {
          ...h, click_count: h.click_count + live, click_count_total: h.click_count_total + live,
        }, `hour ${h.timestamp}`);
      }
      for (const [t, h] of hours) {
        if (!originals.has(t) && t !== hourStart(now)) assert.deepEqual([h.click_count, h.event_count], [0, 0], `hour ${t}`);
      }
      assert.deepEqual(await getJson(srv, '/api/online_users'), online, 'online_users');
      assert.equal(typeof (await getJson(srv, '/api')).version, 'string');
    };
    await eventually(() => check(), { what: 'the imported data served as the original served it', timeoutMs: 5000 });

    // Again, with the server running: nothing is stored or counted twice.
    const second = runImport(storePath, dbPath, clockStart);
    assert.deepEqual([second.clicks_stored, second.events_stored, second.clicks_present], [0, 0, 3001]);
    await eventually(() => check(), { what: 'unchanged after a second import', timeoutMs: 5000 });

    // Live traffic counts on top; an ephemeral event counts in the stats, not for the user.
    const client = await connect(srv, 4, 'websocket');
    try {
      const user = db.users[0][0];
      assert.deepEqual(await client.waitFor('stats'), await getJson(srv, '/api/current_stats'), 'stats on connect include the import');
      const live = await clickAndWait(client, { user, comment: 'after the move' });
      const online = [{ name: user, click_count_session: 1, event_count_session: 0, click_count: 1, event_count: 0 }];
      await eventually(() => check({ clicks: [live], events: [] }, online), { what: 'the live click on top', timeoutMs: 5000 });
      await eventAndWait(client, { user, name: 'rickroll' });
      const before = originalAnswers(db, Math.floor(srv.now())).stats;
      await eventually(async () => {
        const s = await getJson(srv, '/api/current_stats');
        assert.equal(s.event_count_total, before.event_count_total + 1);
        assert.equal(s.event_count_hour, before.event_count_hour + 1);
        const u = (await getJson(srv, '/api/users')).find((x) => x.name === user);
        assert.equal(u.event_count, db.users[0][2], 'an ephemeral event counts for no user');
      }, { what: 'the ephemeral event in the stats only' });
    } finally {
      client.close();
    }

    // A restart (embedded mode recounts its own counters from its rows) changes nothing.
    await srv.restart();
    await eventually(async () => {
      const s = await getJson(srv, '/api/current_stats');
      const want = originalAnswers(db, Math.floor(srv.now())).stats;
      assert.equal(s.click_count_total, want.click_count_total + 1);
      assert.equal(s.event_count_total, want.event_count_total + 1);
    }, { what: 'the same counts after a restart' });
  } catch (err) {
    throw attachLogs(err, [srv]);
  } finally {
    await srv?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
