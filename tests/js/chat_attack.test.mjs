// Attack suite, chat REST: one user tries to make an edge hold unbounded rooms, members and memory
// — as many rooms as it can, each with as many conscripted members as a request may carry, one
// victim put into all of them, then members added one by one past the cap — from one address,
// bounded in count. A polite pair of users on another address chats throughout and is served;
// the server's RSS (from /proc) stays bounded, the membership cache stays within its byte
// budget, the store stays small, and every refusal is a 4xx with a JSON body, logged once per
// limit. Loopback only.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { withLogs, sleep } from './lib/server.mjs';
import {
  startChatServer, connectChat, closeAllChats, closing, uid, rest, createRoom, roomsRoute,
  membersRoute,
} from './lib/chat.mjs';

after(closeAllChats);

const MiB = 1024 * 1024;
const CACHE_BYTES = 512 * 1024;
const POLITE = { localAddress: '127.0.0.2' };

function rssBytes(server) {
  const status = fs.readFileSync(`/proc/${server.child.pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  assert.ok(kb > 0, 'VmRSS readable');
  return kb * 1024;
}

function metric(text, name) {
  const m = new RegExp(`^${name} (\\d+(?:\\.\\d+)?)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Runs `jobs` (functions returning promises) `width` at a time; resolves with their results. */
async function pool(jobs, width) {
  const results = [];
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  }));
  return results;
}

test('one user conscripting members into many rooms is capped; a polite client is served; memory stays bounded', { timeout: 180_000 }, async () => {
  // Defaults, except a small membership cache, so the attack has to make it evict.
  const srv = await startChatServer({ name: 'chat-attack', env: { SWITCHYARD_CHAT_ROOM_CACHE_BYTES: String(CACHE_BYTES) } });
  try {
    await withLogs(() => [srv], async () => {
      const [alice, bob, mallory, victim] = ['alice', 'bob', 'mallory', 'victim'].map((n) => uid(n));
      const politeRoom = (await createRoom(srv, alice, { members: [bob] })).room_id;
      const a = await connectChat(srv, alice, { label: 'polite alice', wsOptions: POLITE });
      const b = await connectChat(srv, bob, { label: 'polite bob', wsOptions: POLITE });
      await closing([a, b], async () => {
        await a.sendMessage(politeRoom, 'warm-up');
        const rssBefore = rssBytes(srv);

        // The polite pair chats on while the attack runs.
        let attacking = true;
        const politeSent = [];
        const polite = (async () => {
          for (let i = 0; attacking && i < 2000; i++) {
            politeSent.push((await a.sendMessage(politeRoom, `polite ${i}`, 15_000)).id);
            await sleep(100);
          }
        })();

        // 1. Many rooms, each carrying the most members a request may name (the cap, 1000),
        //    the victim in every one.
        const token = srv.token(mallory);
        const members = (r) => [victim, ...Array.from({ length: 998 }, (_, i) => `conscript-${r}-${i}`)];
        const creates = await pool(Array.from({ length: 150 }, (_, r) => () =>
          rest(srv, 'POST', roomsRoute, { token, body: { name: `spam ${r}`, members: members(r) } })), 4);
        const created = creates.filter((r) => r.status === 201);
        const refusedCreates = creates.filter((r) => r.status !== 201);
        assert.ok(created.length >= 1 && created.length <= 20, `the room quota (20 per hour) holds: ${created.length} created`);
        for (const r of refusedCreates) {
          assert.equal(r.status, 429, r.what);
          assert.ok(['room_quota', 'rate_user', 'rate_ip'].includes(r.json?.code), r.what);
        }
        // Over the member cap a room is not made at all.
        const huge = await rest(srv, 'POST', roomsRoute, {
          token: srv.token(uid('other')), body: { members: Array.from({ length: 1500 }, (_, i) => `x-${i}`) },
        });
        assert.ok([413, 429].includes(huge.status), huge.what);

        // 2. Members added one at a time to a full room.
        const full = created[0].json.room_id;
        const addLate = (i) => () => rest(srv, 'POST', membersRoute(full), { token, body: { user_id: `late-${i}` } });
        const adds = await pool(Array.from({ length: 200 }, (_, i) => addLate(i)), 4);
        // The refusals are quick, so the attack can end before the polite pair has said much:
        // it goes on until the polite client has sent five messages under it (or 30 s have passed).
        const attackUntil = Date.now() + 30_000;
        while (politeSent.length < 5 && Date.now() < attackUntil) adds.push(...await pool(Array.from({ length: 20 }, (_, i) => addLate(adds.length + i)), 4));
        for (const r of adds) {
          assert.ok(r.status === 409 || r.status === 429, r.what);
          assert.ok(['room_full', 'rate_user', 'rate_ip'].includes(r.json?.code), r.what);
        }
        attacking = false;
        await polite;

        // The polite pair got every message, and its REST calls (from its own address) are served.
        const politeRest = await rest(srv, 'GET', roomsRoute, { token: srv.token(alice), localAddress: POLITE.localAddress });
        assert.equal(politeRest.status, 200, politeRest.what);
        const last = await a.sendMessage(politeRoom, 'after the attack');
        await b.waitFor('message-receive', (m) => m.id === last.id);
        const seen = b.all('message-receive', (m) => m.room_id === politeRoom).map((m) => m.id);
        for (const id of politeSent) assert.ok(seen.includes(id), `bob got polite message ${id}`);
        assert.ok(politeSent.length >= 5, `the polite client kept chatting (${politeSent.length} messages)`);

        // The victim's list is one bounded page, the rest behind a cursor.
        const vict = await rest(srv, 'GET', `${roomsRoute}?limit=5`, { token: srv.token(victim), localAddress: '127.0.0.3' });
        assert.equal(vict.status, 200, vict.what);
        assert.equal(vict.json.length, Math.min(5, created.length));

        // Memory: the cache within its budget (evicting, not cleared), RSS and the store bounded.
        const metrics = await (await fetch(`${srv.url}/metrics`)).text();
        const cacheBytes = metric(metrics, 'switchyard_chat_room_cache_bytes');
        assert.ok(cacheBytes > 0 && cacheBytes <= CACHE_BYTES, `membership cache ${cacheBytes} bytes ≤ ${CACHE_BYTES}`);
        assert.ok(metric(metrics, 'switchyard_chat_room_cache_evictions_total') >= 1, 'the cache evicted rooms to stay in budget');
        const rssGrowth = rssBytes(srv) - rssBefore;
        const storeBytes = ['', '-wal'].map((s) => `${srv.storePath}${s}`).filter((f) => fs.existsSync(f))
          .reduce((sum, f) => sum + fs.statSync(f).size, 0);
        process.stderr.write(`chat attack: ${created.length} rooms made, ${refusedCreates.length + adds.length} refused; ` +
          `RSS +${(rssGrowth / MiB).toFixed(1)} MiB, store ${(storeBytes / MiB).toFixed(1)} MiB, cache ${cacheBytes} bytes\n`);
        assert.ok(rssGrowth < 64 * MiB, `RSS grew ${(rssGrowth / MiB).toFixed(1)} MiB (bound 64)`);
        assert.ok(storeBytes < 32 * MiB, `store ${(storeBytes / MiB).toFixed(1)} MiB (bound 32)`);

        // One log line per limit and 10 s, not one per refusal.
        const lines = srv.logs.filter((l) => /chat REST limit hit/.test(l));
        assert.ok(lines.length >= 1 && lines.length <= 12, `${lines.length} limit lines for ${refusedCreates.length + adds.length} refusals`);
        assert.equal((await fetch(`${srv.url}/healthz`)).status, 200);
      });
    })();
  } finally {
    await srv.close();
  }
});
