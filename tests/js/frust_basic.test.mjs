// Frust API over Socket.IO: both client lines and all transports interoperate; stats and
// status on connect; auth/join/rename/leave toasts; click and event broadcasts; milestones.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, withLogs, assertRecent, midHourClock } from './lib/server.mjs';
import {
  connect, closeAllClients, VARIANTS, toast, isToast, STATS_KEYS, uid, clickAndWait, eventAndWait,
} from './lib/clients.mjs';

let srv;
before(async () => {
  // Pinned a minute into the current hour so no hour-start `stats` lands in the middle of a test.
  srv = await startServer({ name: 'basic', clockStart: midHourClock() });
});
after(async () => {
  closeAllClients();
  await srv?.close();
});

const it = (name, fn) => test(name, { timeout: 60_000 }, withLogs(() => [srv], fn));

/** Connects `specs` ([version, transport] pairs) one after another; closes them in `finally`. */
async function withClients(specs, fn) {
  const clients = [];
  try {
    for (const [v, tr] of specs) clients.push(await connect(srv, v, tr));
    // Earlier tests' sockets are gone (their leave toasts sent) once everyone counts just these.
    await Promise.all(clients.map((c) => c.waitForUserCount(clients.length)));
    return await fn(clients);
  } finally {
    for (const c of clients) c.close();
  }
}

function assertStatsShape(stats, who) {
  assert.ok(stats && typeof stats === 'object', `${who}: stats is an object`);
  assert.deepEqual(Object.keys(stats).sort(), [...STATS_KEYS].sort(), `${who}: stats keys`);
  for (const k of STATS_KEYS) {
    assert.ok(Number.isInteger(stats[k]) && stats[k] >= 0, `${who}: stats.${k} = ${stats[k]} is a non-negative integer`);
  }
}

it('every client line and transport connects, gets stats, and sees everyone\'s clicks, events and toasts', async () => {
  const clients = [];
  try {
    for (const [v, tr] of VARIANTS) {
      const c = await connect(srv, v, tr);
      clients.push(c);
      const stats = await c.waitFor('stats');
      assertStatsShape(stats, c.label);
    }
    // The v2 default client starts on polling and must be able to upgrade.
    const v2default = clients[VARIANTS.findIndex(([v, tr]) => v === 2 && tr === 'default')];
    await v2default.waitForUpgrade();
    const v4polling = clients[VARIANTS.findIndex(([v, tr]) => v === 4 && tr === 'polling')];
    assert.equal(v4polling.transport, 'polling');

    // Status to all, coalesced: everyone ends up seeing all four.
    await Promise.all(clients.map((c) => c.waitForUserCount(clients.length)));
    for (const c of clients) {
      const s = c.latest('status');
      assert.deepEqual(Object.keys(s), ['user_count'], `${c.label}: status shape`);
    }
    // `stats` goes to the new socket only.
    for (const c of clients) assert.equal(c.received.stats.length, 1, `${c.label}: exactly one stats\n${c.describe('stats')}`);

    const names = clients.map(() => uid('i'));
    const clicks = [];
    for (const [i, c] of clients.entries()) {
      clicks.push(await clickAndWait(c, { user: names[i], comment: `from ${c.label}`, style: 'x' }));
    }
    for (const click of clicks) assertRecent(click.timestamp, srv);
    for (const c of clients) {
      for (const [i, name] of names.entries()) {
        await c.waitFor('message', isToast(`${name} ist beigetreten.`));
        const got = await c.waitFor('click', (k) => k.user === name);
        assert.deepEqual(got, clicks[i], `${c.label} sees ${clients[i].label}'s click`);
      }
    }

    const events = [];
    for (const [i, c] of clients.entries()) events.push(await eventAndWait(c, { user: names[i], name: 'interop' }));
    for (const c of clients) {
      for (const [i, name] of names.entries()) {
        const got = await c.waitFor('event', (e) => e.user === name);
        assert.deepEqual(got, events[i], `${c.label} sees ${clients[i].label}'s event`);
        const t = await c.waitFor('message', isToast(`${name} triggered interop!`));
        assert.deepEqual(t, toast(`${name} triggered interop!`));
      }
    }
    for (const c of clients) assert.ok(c.connected && c.disconnects.length === 0, `${c.label} still connected`);
  } finally {
    for (const c of clients) c.close();
  }
});

it('status follows connects and disconnects of every client', async () => {
  await withClients([[4, 'websocket']], async ([a]) => {
    await a.waitForUserCount(1);
    const b = await connect(srv, 2, 'default');
    const c = await connect(srv, 4, 'polling');
    await Promise.all([a, b, c].map((x) => x.waitForUserCount(3)));
    c.close();
    await Promise.all([a, b].map((x) => x.waitForUserCount(2)));
    b.close();
    await a.waitForUserCount(1);
  });
});

it('auth: join, same name again, rename, leave by empty name — toasts to all, names stripped', async () => {
  await withClients([[4, 'websocket'], [2, 'default']], async ([obs, actor]) => {
    const bob = uid('b');
    const bobby = uid('bb');
    const from = obs.mark();
    const fromActor = actor.mark();

    actor.emit('auth', `  ${bob}  `);
    const join = await obs.waitFor('message', isToast(`${bob} ist beigetreten.`), 5000, { from });
    assert.deepEqual(join, toast(`${bob} ist beigetreten.`));
    await actor.waitFor('message', isToast(`${bob} ist beigetreten.`), 5000, { from: fromActor });

    // Same name again (also via a click as that user): no toast. The rename after it is the sentinel.
    actor.emit('auth', bob);
    actor.emit('auth', ` ${bob}`);
    await clickAndWait(actor, { user: bob });
    actor.emit('auth', bobby);
    const rename = await obs.waitFor('message', isToast(`${bob} hat sich umbenannt zu ${bobby}.`), 5000, { from });
    assert.deepEqual(rename, toast(`${bob} hat sich umbenannt zu ${bobby}.`));
    assert.deepEqual(
      obs.all('message', () => true, { from }).map((m) => m.text),
      [`${bob} ist beigetreten.`, `${bob} hat sich umbenannt zu ${bobby}.`],
      'exactly join then rename',
    );

    // Empty (after strip) name: leave.
    actor.emit('auth', '   ');
    await obs.waitFor('message', isToast(`${bobby} hat verlassen.`), 5000, { from });
    await actor.waitFor('message', isToast(`${bobby} hat verlassen.`), 5000, { from: fromActor });
    // No name → no name: nothing; then a join as the sentinel.
    actor.emit('auth', '');
    actor.emit('auth', bob);
    await obs.waitForCount('message', isToast(`${bob} ist beigetreten.`), 2, 5000, { from });
    assert.deepEqual(
      obs.all('message', () => true, { from }).map((m) => m.text),
      [`${bob} ist beigetreten.`, `${bob} hat sich umbenannt zu ${bobby}.`, `${bobby} hat verlassen.`, `${bob} ist beigetreten.`],
    );
    await obs.expectNone('message', () => true, 300);
  });
});

it('a socket\'s packets take effect in the order sent (rapid auth changes)', async () => {
  await withClients([[4, 'websocket'], [2, 'websocket'], [4, 'polling']], async ([obs, ws2, poll4]) => {
    for (const actor of [ws2, poll4]) {
      const base = uid('o').slice(0, 11);
      const names = Array.from({ length: 8 }, (_, i) => `${base}${i}`);
      const from = obs.mark();
      actor.emit('auth', '');
      for (const n of names) actor.emit('auth', n);
      actor.emit('auth', '');
      actor.emit('auth', names[0]);
      const expected = [
        `${names[0]} ist beigetreten.`,
        ...names.slice(1).map((n, i) => `${names[i]} hat sich umbenannt zu ${n}.`),
        `${names.at(-1)} hat verlassen.`,
        `${names[0]} ist beigetreten.`,
      ];
      await obs.waitForCount('message', (m) => m.text.startsWith(base), expected.length, 5000, { from });
      assert.deepEqual(obs.all('message', (m) => m.text.startsWith(base), { from }).map((m) => m.text), expected,
        `${actor.label}: toasts in the order of the auths`);
      // The final name sticks: a click as that name is no change.
      await clickAndWait(actor, { user: names[0] });
      await obs.expectNone('message', (m) => m.text.startsWith(base), 300, { from: obs.mark() });
    }
  });
});

it('packets sent right after connecting (the frontend\'s auth-on-connect) are not lost', async () => {
  await withClients([[4, 'websocket']], async ([obs]) => {
    // The loss is a race with the server's connect handling, so every variant tries a few times.
    for (const [v, tr] of [...VARIANTS, ...VARIANTS, ...VARIANTS]) {
      const name = uid('n');
      const from = obs.mark();
      const c = await connect(srv, v, tr);
      try {
        // Emitted in the same tick the connection is reported, before `stats` can have arrived.
        c.emit('auth', name);
        c.emit('click', { user: name, comment: 'first' });
        await obs.waitFor('message', isToast(`${name} ist beigetreten.`), 5000, { from });
        await obs.waitFor('click', (k) => k.user === name && k.comment === 'first', 5000, { from });
        await c.waitFor('click', (k) => k.user === name && k.comment === 'first');
        await c.waitFor('stats');
      } finally {
        c.close();
      }
    }
  });
});

it('disconnect of a named socket toasts the leave; of an unnamed one it does not', async () => {
  await withClients([[4, 'websocket']], async ([obs]) => {
    const carol = uid('c');
    const from = obs.mark();
    const named = await connect(srv, 2, 'default');
    named.emit('auth', carol);
    await obs.waitFor('message', isToast(`${carol} ist beigetreten.`), 5000, { from });
    await obs.waitForUserCount(2);
    named.close();
    const leave = await obs.waitFor('message', isToast(`${carol} hat verlassen.`), 5000, { from });
    assert.deepEqual(leave, toast(`${carol} hat verlassen.`));
    await obs.waitForUserCount(1);

    const mark = obs.mark();
    const unnamed = await connect(srv, 4, 'polling');
    await obs.waitForUserCount(2);
    unnamed.close();
    await obs.waitForUserCount(1);
    await obs.expectNone('message', () => true, 500, { from: mark });

    // A socket whose name was cleared leaves silently too.
    const cleared = await connect(srv, 4, 'websocket');
    const dave = uid('d');
    cleared.emit('auth', dave);
    await obs.waitFor('message', isToast(`${dave} ist beigetreten.`), 5000, { from: mark });
    cleared.emit('auth', '');
    await obs.waitFor('message', isToast(`${dave} hat verlassen.`), 5000, { from: mark });
    const mark2 = obs.mark();
    cleared.close();
    await obs.waitForUserCount(1);
    await obs.expectNone('message', () => true, 500, { from: mark2 });
  });
});

it('click: broadcast to everyone including the sender, fields stripped, empty → null, implies auth', async () => {
  await withClients([[4, 'websocket'], [2, 'websocket']], async ([obs, actor]) => {
    const alice = uid('a');
    const from = obs.mark();
    const fromActor = actor.mark();

    actor.emit('click', { user: `  ${alice} `, comment: '  hello world  ', style: ' big red ' });
    const got = await obs.waitFor('click', (c) => c.user === alice, 5000, { from });
    assertRecent(got.timestamp, srv);
    assert.deepEqual(got, { user: alice, comment: 'hello world', style: 'big red', timestamp: got.timestamp });
    assert.deepEqual(await actor.waitFor('click', (c) => c.user === alice, 5000, { from: fromActor }), got);
    // The first click of a fresh socket is its join.
    await obs.waitFor('message', isToast(`${alice} ist beigetreten.`), 5000, { from });

    // Optional fields: omitted, null, blank → null (present as null).
    const variants = [
      [{ user: alice }, 'omitted'],
      [{ user: alice, comment: null, style: null }, 'null'],
      [{ user: alice, comment: '   ', style: '' }, 'blank'],
    ];
    for (const [payload, what] of variants) {
      const c = await clickAndWait(actor, payload);
      assert.deepEqual(c, { user: alice, comment: null, style: null, timestamp: c.timestamp }, `optional fields ${what}`);
      assert.ok(Object.hasOwn(c, 'comment') && Object.hasOwn(c, 'style'), `${what}: comment/style present as null`);
      assertRecent(c.timestamp, srv);
    }

    // Limits are inclusive and count characters, not bytes.
    const max = 'ä'.repeat(15);
    const long = `${'ö'.repeat(74)}!`;
    const c = await clickAndWait(actor, { user: max, comment: long });
    assert.equal(c.user, max);
    assert.equal(c.comment, long);
    await obs.waitFor('click', (k) => k.user === max && k.comment === long, 5000, { from });
    // Padding does not count against the limit (stripped first).
    const padded = await clickAndWait(actor, { user: `   ${'p'.repeat(15)}   `, comment: `  ${'q'.repeat(75)}  ` });
    assert.equal(padded.user, 'p'.repeat(15));
    assert.equal(padded.comment, 'q'.repeat(75));

    // Click as another user renames the socket.
    const bert = uid('be');
    await clickAndWait(actor, { user: bert });
    await obs.waitFor('message', isToast(`${max} hat sich umbenannt zu ${'p'.repeat(15)}.`), 5000, { from });
    await obs.waitFor('message', isToast(`${'p'.repeat(15)} hat sich umbenannt zu ${bert}.`), 5000, { from });
  });
});

it('milestone toasts at a session\'s 50th click and every 100th; a new session starts again', async () => {
  await withClients([[4, 'websocket'], [4, 'websocket'], [2, 'default']], async ([obs, first, second]) => {
    const milo = uid('m');
    const from = obs.mark();
    const isMilestone = (m) => typeof m?.text === 'string' && m.text.startsWith(`${milo} erreicht `);
    for (let i = 1; i <= 100; i++) await clickAndWait(first, { user: milo, comment: `#${i}` });
    const m100 = await obs.waitFor('message', isToast(`${milo} erreicht 100 Klicks!`), 5000, { from });
    assert.deepEqual(m100, toast(`${milo} erreicht 100 Klicks!`));
    await first.waitFor('message', isToast(`${milo} erreicht 50 Klicks!`));
    assert.deepEqual(
      obs.all('message', isMilestone, { from }).map((m) => m.text),
      [`${milo} erreicht 50 Klicks!`, `${milo} erreicht 100 Klicks!`],
    );

    // Session counts, not user totals: the same user on another socket reaches 50 again.
    const mark = obs.mark();
    for (let i = 1; i <= 49; i++) await clickAndWait(second, { user: milo, comment: `s${i}` });
    await obs.expectNone('message', isMilestone, 300, { from: mark });
    await clickAndWait(second, { user: milo, comment: 's50' });
    await obs.waitFor('message', isToast(`${milo} erreicht 50 Klicks!`), 5000, { from: mark });
    await clickAndWait(second, { user: milo, comment: 's51' });
    await obs.expectNone('message', (m) => isMilestone(m) && m.text !== `${milo} erreicht 50 Klicks!`, 300, { from: mark });
    assert.equal(obs.all('message', isMilestone, { from: mark }).length, 1);
  });
});

it('event: broadcast {user, name, timestamp} plus a toast, implies auth, fields stripped', async () => {
  await withClients([[2, 'default'], [4, 'websocket']], async ([obs, actor]) => {
    const evan = uid('e');
    const from = obs.mark();
    actor.emit('event', { user: ` ${evan} `, name: '  confetti ' });
    const ev = await obs.waitFor('event', (e) => e.user === evan, 5000, { from });
    assertRecent(ev.timestamp, srv);
    assert.deepEqual(ev, { user: evan, name: 'confetti', timestamp: ev.timestamp });
    assert.deepEqual(await actor.waitFor('event', (e) => e.user === evan), ev);
    const t = await obs.waitFor('message', isToast(`${evan} triggered confetti!`), 5000, { from });
    assert.deepEqual(t, toast(`${evan} triggered confetti!`));
    await actor.waitFor('message', isToast(`${evan} triggered confetti!`));
    await obs.waitFor('message', isToast(`${evan} ist beigetreten.`), 5000, { from });
  });
});

it('ephemeral events (rickroll, exmatrikulieren) are broadcast without a toast', async () => {
  await withClients([[4, 'websocket'], [2, 'websocket']], async ([obs, actor]) => {
    const rick = uid('r');
    actor.emit('auth', rick);
    await obs.waitFor('message', isToast(`${rick} ist beigetreten.`));
    const from = obs.mark();
    for (const name of ['rickroll', 'exmatrikulieren']) {
      const ev = await eventAndWait(actor, { user: rick, name });
      assert.deepEqual(ev, { user: rick, name, timestamp: ev.timestamp });
      assertRecent(ev.timestamp, srv);
      assert.deepEqual(await obs.waitFor('event', (e) => e.user === rick && e.name === name, 5000, { from }), ev);
    }
    // Sentinel: a normal event's toast; nothing about the ephemeral ones before or shortly after.
    await eventAndWait(actor, { user: rick, name: 'wave' });
    await obs.waitFor('message', isToast(`${rick} triggered wave!`), 5000, { from });
    await obs.expectNone('message', (m) => /rickroll|exmatrikulieren/.test(m?.text), 300, { from });
    assert.deepEqual(obs.all('message', () => true, { from }).map((m) => m.text), [`${rick} triggered wave!`]);
  });
});
