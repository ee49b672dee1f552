// Cluster mode under failures (separate edge, worker and aggregator processes over a 3-node NATS
// JetStream cluster):
//  (a) a burst of acknowledged clicks from 8 clients on two edges, during which the worker is
//      SIGKILLed and replaced and a NATS node is SIGKILLed, and after which the aggregator is
//      restarted: every click acked {ok: true} is stored and counted exactly once (REST totals,
//      per-user counts, latest_clicks), nothing acked {ok: false} is, and no client sees a click
//      twice. A click whose ack never came is "unknown": it may be counted or not, never twice.
//  (b) an edge SIGKILLed with Socket.IO and chat clients on it: the clients on the other edge see
//      user_count drop, /api/online_users shrink and chat-leave for the users that were only on
//      the dead edge, within SWITCHYARD_EDGE_TIMEOUT_MS plus a couple of heartbeats.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { withLogs, getJson, eventually, sleep, dayStart } from './lib/server.mjs';
import { connect, closeAllClients, uid, isToast } from './lib/clients.mjs';
import { connectChat, closeAllChats, createRoom } from './lib/chat.mjs';
import {
  startCluster, emitWithAck, WAIT_MS, ACK_MS, HEARTBEAT_MS, EDGE_DEATH_BOUND_MS,
} from './lib/cluster.mjs';

const TOTAL = Number(process.env.SWITCHYARD_E2E_BURST) || 3000;
const CLIENTS = 8;
/** Clicks a client has waiting for their ack at any time. */
const IN_FLIGHT = 20;
/** How long the counts may take to settle after the burst and the aggregator restart. */
const SETTLE_MS = 30_000;
/**
 * A killed worker's unacknowledged packets come back after the consumer's ack wait (the NATS
 * adapter's default is 30 s). A duplicate broadcast or count would show up then, so the final
 * checks look only after that (plus a margin) has passed since the kill.
 */
const REDELIVERY_MS = 30_000 + 3_000;

let cl;
before(async () => {
  cl = await startCluster({ name: 'fail', edges: 2, workers: 1 });
}, { timeout: 120_000 });
after(async () => {
  closeAllClients();
  await closeAllChats();
  await cl?.close();
});

const it = (name, fn) => test(name, { timeout: 150_000 }, withLogs(() => cl?.all(), fn));

/** An error that `eventually` does not retry: a state that can never turn right. */
const fatal = (message) => Object.assign(new Error(message), { fatal: true });
const sample = (list, n = 8) => `${list.slice(0, n).join(', ')}${list.length > n ? `, … (${list.length})` : ''}`;

/** The NATS node leading the most JetStream streams (a node whose death forces an election). */
async function busiestLeader(nats) {
  const counts = new Map();
  for (const node of nats.nodes.filter((n) => n.alive())) {
    try {
      const res = await fetch(`${node.monitorUrl}/jsz?accounts=true&streams=true`, { signal: AbortSignal.timeout(2000) });
      const jsz = await res.json();
      for (const acc of jsz.account_details ?? []) {
        for (const s of acc.stream_detail ?? []) {
          const leader = s.cluster?.leader;
          if (leader) counts.set(leader, (counts.get(leader) ?? new Set()).add(s.name));
        }
      }
      if (counts.size) break;
    } catch { /* ask the next node */ }
  }
  let best;
  for (const [leader, streams] of counts) if (!best || streams.size > best[1].size) best = [leader, streams];
  const node = best && nats.nodes.find((n) => `n${n.index + 1}` === best[0]);
  return node ? { node, streams: [...best[1]].sort() } : { node: nats.nodes[1], streams: [] };
}

it('(a) acked click burst survives a worker SIGKILL, a NATS node SIGKILL and an aggregator restart: counted exactly once, never seen twice', async () => {
  const tag = uid('t');
  const specs = [
    [0, 4, 'websocket'], [1, 4, 'websocket'], [0, 2, 'websocket'], [1, 2, 'websocket'],
    [0, 2, 'default'], [1, 2, 'default'], [0, 4, 'websocket'], [1, 4, 'websocket'],
  ];
  const clients = [];
  const names = [];
  let natsVictim;
  const started = Date.now();
  const dayAtStart = dayStart(Math.floor(cl.now()));
  try {
    for (const [i, [e, v, tr]] of specs.entries()) {
      clients.push(await connect(cl.edges[e], v, tr, { label: `burst${i}@edge${e + 1}/v${v}/${tr}` }));
      names.push(uid('bu'));
    }
    await Promise.all(clients.map((c) => c.waitForUserCount(CLIENTS, WAIT_MS)));

    // --- the burst ------------------------------------------------------------------------------
    const outcome = new Map(); // comment → {ci, status, why}
    const tally = { ok: 0, failed: 0, unknown: 0, malformed: 0, notSent: 0 };
    const reasons = { failed: new Map(), unknown: new Map(), malformed: [] };
    const quota = clients.map((_, i) => Math.floor(TOTAL / CLIENTS) + (i < TOTAL % CLIENTS ? 1 : 0));
    const timeline = [];
    const note = (what) => timeline.push(`+${((Date.now() - burstStart) / 1000).toFixed(1)} s ${what}`);

    const triggers = [
      {
        at: Math.floor(TOTAL * 0.2),
        run: async () => {
          const old = cl.workers[0];
          await old.kill('SIGKILL');
          note(`worker ${old.name} SIGKILLed (ok so far ${tally.ok})`);
          const fresh = await cl.addWorker();
          note(`new worker ${fresh.name} ready`);
        },
      },
      {
        at: Math.floor(TOTAL * 0.5),
        run: async () => {
          const { node, streams } = await busiestLeader(cl.nats);
          natsVictim = node;
          await node.kill('SIGKILL');
          note(`NATS ${node.name} SIGKILLed${streams.length ? ` (leader of ${streams.join(', ')})` : ''} (ok so far ${tally.ok})`);
        },
      },
    ];
    const fire = () => {
      for (const t of triggers) {
        if (!t.promise && tally.ok >= t.at) {
          t.firedAt = Date.now();
          t.okAt = tally.ok;
          t.promise = t.run().catch((err) => { t.error = err; });
        }
      }
    };

    const burstStart = Date.now();
    let acked = 0; // answers so far, in arrival order (kept per click, to place gaps on the timeline)
    await Promise.all(clients.map(async (client, ci) => {
      let issued = 0;
      const next = () => (issued < quota[ci] ? issued++ : undefined);
      const lane = async () => {
        for (let seq = next(); seq !== undefined; seq = next()) {
          if (!client.connected) {
            tally.notSent += 1;
            continue;
          }
          const comment = `${tag}:${ci}:${seq}`;
          const r = await emitWithAck(client, 'click', { user: names[ci], comment }, ACK_MS);
          outcome.set(comment, { ci, status: r.status, why: r.res?.error ?? r.why, order: ++acked });
          tally[r.status] += 1;
          if (r.status === 'failed') reasons.failed.set(r.res.error, (reasons.failed.get(r.res.error) ?? 0) + 1);
          else if (r.status === 'unknown') reasons.unknown.set(r.why, (reasons.unknown.get(r.why) ?? 0) + 1);
          else if (r.status === 'malformed') reasons.malformed.push(JSON.stringify(r.res));
          if (r.status === 'ok') fire();
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
    }));
    const burstMs = Date.now() - burstStart;
    note('burst done');
    for (const t of triggers) await t.promise;

    const byStatus = (status) => [...outcome].filter(([, o]) => o.status === status).map(([k]) => k);
    const okSet = new Set(byStatus('ok'));
    const failedSet = new Set(byStatus('failed'));
    const unknownSet = new Set(byStatus('unknown'));
    const fmt = (m) => [...m].map(([k, n]) => `${n}× ${JSON.stringify(k)}`).join('; ');
    console.log(
      `burst: ${TOTAL} clicks from ${CLIENTS} clients over 2 edges in ${(burstMs / 1000).toFixed(1)} s, ≤${IN_FLIGHT} in flight each: ` +
        `sent ok ${tally.ok}, failed ${tally.failed}${reasons.failed.size ? ` (${fmt(reasons.failed)})` : ''}, ` +
        `unknown ${tally.unknown}${reasons.unknown.size ? ` (${fmt(reasons.unknown)})` : ''}, malformed acks ${tally.malformed}, ` +
        `not sent (socket gone) ${tally.notSent}; disconnected clients: ${clients.filter((c) => c.disconnects.length).map((c) => c.label).join(', ') || 'none'}\n  ` +
        timeline.join('\n  '),
    );

    for (const t of triggers) if (t.error) throw t.error;
    assert.deepEqual(reasons.malformed, [], 'every ack is {ok: true} or {ok: false, error: string}');
    for (const [i, t] of triggers.entries()) {
      assert.ok(t.promise, `failure #${i + 1} never fired: only ${tally.ok} clicks were acked ok (needed ${t.at})`);
    }
    assert.ok(tally.ok >= TOTAL / 2, `a burst that means something: only ${tally.ok} of ${TOTAL} clicks acked ok`);
    const workerKilledAt = triggers[0].firedAt;

    // --- after the burst: restart the aggregator (clean stop), then bring the NATS node back ------
    await cl.aggregator.restart();
    note('aggregator restarted');
    const natsBack = natsVictim.start().then(() => note(`NATS ${natsVictim.name} back`));
    natsBack.catch(() => {});

    // --- counts settle to exactly the acked clicks ------------------------------------------------
    const userOf = new Map(names.map((n, i) => [n, i]));
    const okPerUser = names.map(() => 0);
    const unknownPerUser = names.map(() => 0);
    for (const [, o] of outcome) {
      if (o.status === 'ok') okPerUser[o.ci] += 1;
      if (o.status === 'unknown') unknownPerUser[o.ci] += 1;
    }
    const sameDay = () => dayStart(Math.floor(cl.now())) === dayAtStart;
    const snapshot = async (edge) => {
      const stats = await getJson(edge, '/api/current_stats');
      const total = stats.click_count_total;
      const what = `${edge.name}:`;
      if (total > okSet.size + unknownSet.size) {
        throw fatal(`${what} click_count_total ${total} > ${okSet.size} acked ok + ${unknownSet.size} unknown: something was counted twice or a refused click was counted`);
      }
      const latest = await getJson(edge, '/api/latest_clicks');
      const seen = new Map();
      for (const k of latest) seen.set(k.comment, (seen.get(k.comment) ?? 0) + 1);
      const twice = [...seen].filter(([, n]) => n > 1).map(([k]) => k);
      if (twice.length) throw fatal(`${what} latest_clicks holds clicks twice: ${sample(twice)}`);
      const refused = [...seen.keys()].filter((k) => failedSet.has(k));
      if (refused.length) throw fatal(`${what} latest_clicks holds clicks that were acked {ok: false}: ${sample(refused)}`);
      const foreign = [...seen.keys()].filter((k) => !okSet.has(k) && !unknownSet.has(k));
      if (foreign.length) throw fatal(`${what} latest_clicks holds clicks never sent: ${sample(foreign)}`);
      const missing = [...okSet].filter((k) => !seen.has(k));
      assert.deepEqual(missing.length, 0, `${what} ${missing.length} clicks acked ok are not (yet) in latest_clicks: ${sample(missing)}`);
      const users = await getJson(edge, '/api/users');
      const counts = names.map(() => 0);
      for (const u of users) {
        if (!userOf.has(u.name)) continue;
        const i = userOf.get(u.name);
        counts[i] = u.click_count;
        if (u.click_count > okPerUser[i] + unknownPerUser[i]) {
          throw fatal(`${what} /api/users ${u.name} click_count ${u.click_count} > ${okPerUser[i]} ok + ${unknownPerUser[i]} unknown`);
        }
      }
      const latestPerUser = names.map((n) => latest.filter((k) => k.user === n).length);
      assert.deepEqual(counts, latestPerUser, `${what} /api/users per-user click counts = the stored clicks per user`);
      assert.equal(total, latest.length, `${what} click_count_total = the stored clicks (latest_clicks)`);
      if (sameDay()) {
        assert.equal(stats.click_count_today, total, `${what} click_count_today`);
        assert.equal(stats.click_count_hour, total, `${what} click_count_hour (clock pinned mid-hour)`);
      }
      return { stats, users: counts, comments: [...seen.keys()].sort() };
    };
    // Redelivered packets of the killed worker may be needed for the ok clicks to be stored.
    const settleMs = Math.max(SETTLE_MS, workerKilledAt + REDELIVERY_MS + 5_000 - Date.now());
    const views = [];
    for (const edge of cl.edges) {
      views.push(await eventually(() => snapshot(edge), { timeoutMs: settleMs, intervalMs: 250, what: `${edge.name}: counts equal the acked clicks` }));
    }
    assert.deepEqual(views[1], views[0], 'both edges serve the same counts and clicks');
    const counted = views[0].stats.click_count_total;
    console.log(`burst: counted ${counted} = ${okSet.size} acked ok + ${counted - okSet.size} of ${unknownSet.size} unknown; ` +
      `settled ${((Date.now() - started) / 1000).toFixed(1)} s after the test started`);

    // --- nothing more turns up: no late redelivery counts or broadcasts anything twice -----------
    await natsBack;
    const waitLeft = workerKilledAt + REDELIVERY_MS - Date.now();
    if (waitLeft > 0) await sleep(waitLeft);
    for (const [i, edge] of cl.edges.entries()) {
      assert.deepEqual(await snapshot(edge), views[i], `${edge.name}: counts unchanged ${REDELIVERY_MS / 1000} s after the worker was killed`);
    }
    const problems = [];
    for (const c of clients) {
      const got = new Map();
      for (const k of c.all('click', (x) => typeof x?.comment === 'string' && x.comment.startsWith(`${tag}:`))) {
        got.set(k.comment, (got.get(k.comment) ?? 0) + 1);
      }
      const twice = [...got].filter(([, n]) => n > 1).map(([k, n]) => `${k} ×${n}`);
      const refused = [...got.keys()].filter((k) => failedSet.has(k));
      const stray = [...got.keys()].filter((k) => !outcome.has(k));
      if (twice.length) problems.push(`${c.label} received clicks twice: ${sample(twice)}`);
      if (refused.length) problems.push(`${c.label} received clicks that were acked {ok: false}: ${sample(refused)}`);
      if (stray.length) problems.push(`${c.label} received clicks never sent: ${sample(stray)}`);
      const okSeen = [...okSet].filter((k) => got.has(k)).length;
      console.log(`  ${c.label}: received ${okSeen}/${okSet.size} acked clicks, ${got.size} distinct, disconnects ${JSON.stringify(c.disconnects)}`);
    }
    // Not asserted (core NATS fan-out is at most once): acked clicks no client ever saw, placed
    // by their position in the ack order, next to where the kills happened.
    const neverSeen = [...okSet].filter((k) => !clients.some((c) => c.all('click', (x) => x?.comment === k).length));
    if (neverSeen.length) {
      const pos = neverSeen.map((k) => outcome.get(k).order).sort((a, b) => a - b);
      console.log(`  ${neverSeen.length} acked clicks were broadcast to no client; their ack positions ${pos[0]}…${pos.at(-1)} ` +
        `(median ${pos[Math.floor(pos.length / 2)]}); worker killed at ok ${triggers[0].okAt}, NATS node at ok ${triggers[1].okAt}`);
    }
    assert.deepEqual(problems, [], 'no client sees a click twice, nor a refused one');
  } finally {
    for (const c of clients) c.close();
    // Leave the cluster whole for the next test.
    if (natsVictim && !natsVictim.alive()) await natsVictim.start().catch(() => {});
  }
});

it('(b) an edge SIGKILLed: the other edge\'s clients see user_count, online_users and chat-leave drop its users within the bound', async () => {
  const [live, doomed] = cl.edges;
  const obsName = uid('ob');
  const victimNames = [uid('v'), uid('v')];
  // Socket.IO: two observers on the live edge, three sockets on the doomed one (two named).
  const o1 = await connect(live, 4, 'websocket', { label: 'observer@edge1/v4/websocket' });
  const o2 = await connect(live, 2, 'default', { label: 'observer@edge1/v2/default' });
  const victims = [
    await connect(doomed, 4, 'websocket', { label: 'victim@edge2/v4/websocket' }),
    await connect(doomed, 2, 'websocket', { label: 'victim@edge2/v2/websocket' }),
    await connect(doomed, 4, 'polling', { label: 'victim@edge2/v4/polling' }),
  ];
  o1.emit('auth', obsName);
  victims[0].emit('auth', victimNames[0]);
  victims[2].emit('auth', victimNames[1]);
  for (const n of victimNames) await o1.waitFor('message', isToast(`${n} ist beigetreten.`), WAIT_MS);

  // Chat: `gone` only on the doomed edge, `stays` on both, the observer on the live edge.
  const users = { obs: uid('obs'), gone: uid('gone'), stays: uid('stays') };
  const room = (await createRoom(live, users.obs, { members: [users.gone, users.stays] })).room_id;
  const chatObs = await connectChat(live, users.obs, { label: 'obs@edge1' });
  const staysLive = await connectChat(live, users.stays, { label: 'stays@edge1' });
  const goneConn = await connectChat(doomed, users.gone, { label: 'gone@edge2' });
  const staysDoomed = await connectChat(doomed, users.stays, { label: 'stays@edge2' });

  try {
    // Everything is known cluster-wide before the kill.
    await Promise.all([o1, o2].map((c) => c.waitForUserCount(5, WAIT_MS)));
    await eventually(async () => {
      assert.equal((await getJson(live, '/api/online_users')).length, 5);
    }, { timeoutMs: WAIT_MS, what: 'online_users lists the 5 sockets of both edges' });
    const hello = await goneConn.sendMessage(room, `hello from the doomed edge ${uid('m')}`, WAIT_MS);
    await chatObs.waitFor('message-receive', (m) => m.id === hello.id, WAIT_MS);
    await sleep(3 * HEARTBEAT_MS);

    const marks = { obs: chatObs.mark(), stays: staysLive.mark(), o1: o1.mark() };
    const killedAt = Date.now();
    await doomed.kill('SIGKILL');
    const since = () => Date.now() - killedAt;
    const timed = (p) => p.then((v) => ({ v, ms: since() }));

    const LATE = EDGE_DEATH_BOUND_MS + 10_000; // wait longer than the bound, to say by how much it was late
    const isGone = (p) => p?.participant_id === users.gone;
    const seen = await Promise.all([
      timed(o1.waitForUserCount(2, LATE)),
      timed(o2.waitForUserCount(2, LATE)),
      timed(chatObs.waitFor('chat-leave', isGone, LATE, { from: marks.obs })),
      timed(staysLive.waitFor('chat-leave', isGone, LATE, { from: marks.stays })),
      timed(eventually(async () => {
        assert.deepEqual((await getJson(live, '/api/online_users')).map((u) => u.name).sort(), [obsName, null].sort());
      }, { timeoutMs: LATE, intervalMs: 50, what: 'online_users lists only the live edge\'s sockets' })),
    ]);
    const labels = [`${o1.label} user_count 2`, `${o2.label} user_count 2`, `${chatObs.label} chat-leave(gone)`,
      `${staysLive.label} chat-leave(gone)`, 'edge1 /api/online_users'];
    console.log(`edge SIGKILL: ${labels.map((l, i) => `${l} after ${seen[i].ms} ms`).join('; ')} (bound ${EDGE_DEATH_BOUND_MS} ms)`);
    for (const [i, s] of seen.entries()) {
      assert.ok(s.ms <= EDGE_DEATH_BOUND_MS, `${labels[i]} took ${s.ms} ms after the SIGKILL, bound ${EDGE_DEATH_BOUND_MS} ms`);
    }
    const leaves = o1.all('message', (m) => victimNames.some((n) => m?.text === `${n} hat verlassen.`), { from: marks.o1 });
    console.log(`edge SIGKILL: leave toasts for the dead edge's named sockets seen by ${o1.label}: ${leaves.length} (not required)`);

    // `stays` still has a connection on the live edge: no chat-leave for them; counts stay put.
    await sleep(1000);
    const isStays = (p) => p?.participant_id === users.stays;
    assert.deepEqual(chatObs.all('chat-leave', isStays, { from: marks.obs }), [], 'no chat-leave for a user still connected to the live edge');
    assert.equal(chatObs.all('chat-leave', isGone, { from: marks.obs }).length, 1, `exactly one chat-leave for gone\n${chatObs.describe('chat-leave')}`);
    for (const c of [o1, o2]) assert.equal(c.latest('status').user_count, 2, `${c.label}: user_count stays 2`);

    // The live edge works on: Socket.IO and chat.
    const ack = await emitWithAck(o1, 'click', { user: obsName, comment: 'after the kill' }, WAIT_MS);
    assert.deepEqual(ack.res, { ok: true }, `click after the kill acked: ${JSON.stringify(ack)}`);
    await o2.waitFor('click', (k) => k.user === obsName && k.comment === 'after the kill', WAIT_MS);
    const m = await staysLive.sendMessage(room, `still here ${uid('m')}`, WAIT_MS);
    await chatObs.waitFor('message-receive', (x) => x.id === m.id, WAIT_MS);
  } finally {
    for (const c of [o1, o2, ...victims]) c.close();
    await Promise.all([chatObs, staysLive, goneConn, staysDoomed].map((c) => c.close().catch(() => {})));
  }
});
