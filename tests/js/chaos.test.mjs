// Chaos: cluster mode (3-node NATS JetStream, 2 edges, 2 workers, the aggregator, one SQLite
// store) under a seeded random schedule of SIGKILL, SIGTERM and SIGSTOP/SIGCONT of any of them —
// including the NATS node each role is attached to and the leaders of IN, FACTS and a consumer —
// during mixed load (Frust clicks from Socket.IO 2.x and 4.x, with and without acks, websocket
// and polling; chat in many rooms). After each round, from REST and what clients received:
// stored = counted = accepted per user, per hour and in total; nothing stored or delivered
// twice; nothing refused while a quorum is up; chat history = every acked message once, live
// order = history order. See lib/chaos.mjs and RELIABILITY.md.
//
// Short by default (3 rounds of 20 s load). The soak: scripts/chaos.sh. A failing round prints
// its seed and the command that replays it:
//   SWITCHYARD_CHAOS_SEED=<seed> SWITCHYARD_CHAOS_ROUNDS=<n> node --test tests/js/chaos.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ChaosRun, chaosConfig, checkFrust, checkFrustDeliveries, checkChat, checkRefusals, drawSchedule,
} from './lib/chaos.mjs';
import { closeAllClients } from './lib/clients.mjs';
import { closeAllChats } from './lib/chat.mjs';

const config = chaosConfig({ rounds: 3, loadMs: 20_000 });
console.log(`chaos: seed ${config.seed} (set SWITCHYARD_CHAOS_SEED=${config.seed} to replay), ${config.rounds} rounds of ${config.loadMs / 1000} s load, ` +
  `replicas ${config.replicas ?? 'unset (binary default)'}`);
const run = new ChaosRun(config);
console.log(run.describeSchedule());

// ---------------------------------------------------------------------------------------------
// The checks themselves: each invariant flags the state it is about (no cluster needed).

test('the checks catch what they claim to', () => {
  const hour = 1_700_000_000 - (1_700_000_000 % 3600);
  const click = (comment, user, t = hour + 10) => ({ user, comment, style: null, timestamp: t });
  const ledger = new Map([
    ['a', { comment: 'a', user: 'u1', status: 'ok', round: 1 }],
    ['b', { comment: 'b', user: 'u1', status: 'failed', why: 'not accepted', round: 1 }],
    ['c', { comment: 'c', user: 'u2', status: 'unacked', round: 1 }],
    ['d', { comment: 'd', user: 'u2', status: 'ok', round: 1 }],
  ]);
  const snap = (latest, { total = latest.length, users, hourCount = latest.length } = {}) => ({
    edge: 'e', hour,
    latest,
    stats: { click_count_total: total, click_count_today: total, click_count_hour: hourCount },
    users: users ?? [...new Set(latest.map((k) => k.user))].map((name) => ({ name, click_count: latest.filter((k) => k.user === name).length })),
    hours: [{ timestamp: hour, click_count: hourCount, click_count_total: total }],
  });
  const kinds = (v) => [...new Set(v.map((x) => x.invariant))].sort();

  const good = [click('a', 'u1'), click('d', 'u2'), click('c', 'u2')];
  assert.deepEqual(checkFrust(snap(good), ledger), [], 'a consistent state passes');
  assert.deepEqual(checkFrust(snap([click('a', 'u1'), click('d', 'u2')]), ledger), [], 'an unacked click may be missing');
  assert.deepEqual(checkFrust(snap([click('a', 'u1'), click('d', 'u2')]), ledger, { survivors: new Set(['other']) }), [],
    '… if its connection dropped');
  ledger.get('c').conn = 'held';
  assert.deepEqual(kinds(checkFrust(snap([click('a', 'u1'), click('d', 'u2')]), ledger, { survivors: new Set(['held']) })),
    ['unacked-stored-if-connection-held'], 'not if its connection held');
  assert.deepEqual(kinds(checkFrust(snap([click('a', 'u1')]), ledger)), ['acked-ok-stored']);
  assert.deepEqual(kinds(checkFrust(snap([...good, click('c', 'u2')]), ledger)), ['stored-at-most-once']);
  assert.deepEqual(kinds(checkFrust(snap([...good, click('b', 'u1')]), ledger)), ['refused-not-stored']);
  assert.deepEqual(kinds(checkFrust(snap([...good, click('zz', 'u1')]), ledger)), ['stored-was-sent']);
  // Stored 3, counted 2 — the aggregator skipped a fact: total, today, hour and user disagree.
  assert.deepEqual(kinds(checkFrust(snap(good, { total: 2, hourCount: 2, users: [{ name: 'u1', click_count: 1 }, { name: 'u2', click_count: 1 }] }), ledger)),
    ['counted-per-hour', 'counted-per-user', 'counted-total']);
  assert.deepEqual(kinds(checkFrust(snap([click('a', 'u1'), click('d', 'u2'), click('c', 'u2', hour - 5)]), ledger)), ['counted-per-hour'],
    'a click stored in the previous hour but counted in this one');

  const rec = (label, clicks) => ({ label, all: (ev, pred = () => true) => (ev === 'click' ? clicks.filter(pred) : []) });
  assert.deepEqual(checkFrustDeliveries([rec('r', [click('a', 'u1'), click('d', 'u2')])], ledger, ''), []);
  assert.deepEqual(kinds(checkFrustDeliveries([rec('r', [click('a', 'u1'), click('a', 'u1')])], ledger, '')), ['delivered-at-most-once']);
  assert.deepEqual(kinds(checkFrustDeliveries([rec('r', [click('b', 'u1')])], ledger, '')), ['refused-not-delivered']);

  const msgs = new Map([
    ['m1', { text: 'm1', room: 'R', sender: 's', status: 'ok', round: 1 }],
    ['m2', { text: 'm2', room: 'R', sender: 's', status: 'ok', round: 1 }],
    ['m3', { text: 'm3', room: 'R', sender: 's', status: 'failed', why: 'unavailable: message not accepted; try again', round: 1 }],
  ]);
  const m = (id, text) => ({ id, room_id: 'R', sender_id: 's', message: text, timestamp: '2024-01-01T00:00:00Z' });
  const hist = (list, total = list.length) => new Map([['R', { messages: list, total }]]);
  const chatRec = (label, got) => ({ label, all: (t, pred = () => true) => (t === 'message-receive' ? got.filter(pred) : []) });
  const h = hist([m('1', 'm1'), m('2', 'm2')]);
  assert.deepEqual(checkChat(h, msgs, [chatRec('x', [m('1', 'm1'), m('2', 'm2')])]), []);
  assert.deepEqual(kinds(checkChat(h, msgs, [chatRec('x', [m('2', 'm2'), m('1', 'm1')])])), ['chat-live-order']);
  assert.deepEqual(kinds(checkChat(h, msgs, [chatRec('x', [m('1', 'm1'), m('1', 'm1')])])), ['chat-delivered-at-most-once']);
  assert.deepEqual(kinds(checkChat(hist([m('1', 'm1')]), msgs, [])), ['chat-acked-stored']);
  assert.deepEqual(kinds(checkChat(hist([m('1', 'm1'), m('2', 'm2')], 3), msgs, [])), ['chat-counted']);
  assert.deepEqual(kinds(checkChat(hist([m('1', 'm1'), m('2', 'm2'), m('3', 'm3')]), msgs, [])), ['chat-refused-not-stored']);
  assert.deepEqual(kinds(checkChat(hist([m('1', 'm1'), m('2', 'm2'), m('2b', 'm2')]), msgs, [])), ['chat-stored-at-most-once']);

  assert.deepEqual(kinds(checkRefusals(ledger, new Map(), 1)), ['no-refusal-with-quorum']);
  assert.deepEqual(checkRefusals(new Map([['x', { status: 'unknown', why: 'disconnected', round: 1 }]]), new Map(), 1), [],
    'a click whose connection died before its ack is not a refusal');
});

test('the schedule is a function of the seed, and covers every kind of fault in a short run', () => {
  const a = drawSchedule({ ...config, seed: 42, rounds: 3, loadMs: 20_000, faultsPerLane: 2 });
  const b = drawSchedule({ ...config, seed: 42, rounds: 3, loadMs: 20_000, faultsPerLane: 2 });
  const c = drawSchedule({ ...config, seed: 43, rounds: 3, loadMs: 20_000, faultsPerLane: 2 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  const faults = a.flatMap((r) => r.faults);
  const targets = new Set(faults.map((f) => f.target));
  for (const t of ['attached:aggregator', 'attached:worker', 'attached:edge', 'leader:IN', 'leader:FACTS', 'leader:consumer', 'edge', 'worker', 'aggregator']) {
    assert.ok(targets.has(t), `3 rounds include a fault of ${t}: ${[...targets]}`);
  }
  for (const lane of ['nats', 'proc']) {
    assert.deepEqual(new Set(faults.filter((f) => f.lane === lane).map((f) => f.signal)), new Set(['SIGKILL', 'SIGTERM', 'SIGSTOP']), `${lane}: every signal`);
  }
});

// ---------------------------------------------------------------------------------------------
// The rounds

after(async () => {
  closeAllClients();
  await closeAllChats();
  await run.close();
});

const roundTimeout = config.loadMs + 2 * config.ackMs + config.quiesceMs + 120_000;
for (const plan of run.schedule) {
  if (plan.round < config.fromRound) continue;
  test(`chaos round ${plan.round}/${config.rounds} (seed ${config.seed}): ${plan.faults.length} faults under load, then stored = counted = accepted`,
    { timeout: roundTimeout }, async () => {
      const res = await run.round(plan.round);
      console.log(res.report);
      if (!res.ok) {
        const err = new Error(`chaos round ${plan.round} (seed ${config.seed}): ${res.violations.length} violations\n` +
          `${res.violations.map((v) => `  [${v.invariant}] ${v.message}`).join('\n')}\n${res.report.split('\n').filter((l) => /replay|only this round/.test(l)).join('\n')}`);
        throw err;
      }
    });
}

before(() => {
  if (config.fromRound > config.rounds) throw new Error(`SWITCHYARD_CHAOS_FROM_ROUND=${config.fromRound} > SWITCHYARD_CHAOS_ROUNDS=${config.rounds}`);
});
