// Transport attacks against the real binary, from outside (issue 13, the transport half). Each
// attack runs alone against a fresh embedded server, bounded in count and time, to loopback
// only, while a polite Socket.IO client (from another loopback address, so another client to
// the limits) connects, clicks and receives; the server's resident memory is read from /proc.
// Timeouts are set shorter than their defaults so the file stays short: the same code runs.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { withServer, sleep, midHourClock } from './lib/server.mjs';
import { closeAllClients } from './lib/clients.mjs';
import {
  ATTACKER, MiB, mib, metric, openTcp, closedWithin, destroyAll, drip, rawEngineSocket,
  politeClick, whilePoliteClicks, measureRss, httpGet, assertLoopback,
} from './lib/attack.mjs';

after(() => closeAllClients());

const FAST = {
  SWITCHYARD_HTTP_HEADER_TIMEOUT_MS: '1500',
  SWITCHYARD_HTTP_IDLE_TIMEOUT_MS: '3000',
  SWITCHYARD_HTTP_BODY_TIMEOUT_MS: '1500',
};
const serverWith = (name, env = {}) => ({ name, clockStart: midHourClock(), env: { ...FAST, ...env } });

/** Lines of the server log that mention `text`. */
const logLines = (server, text) => server.logs.filter((l) => l.includes(text));

test('idle connections that never send a byte are closed at the header timeout', { timeout: 30_000 }, async () => {
  await withServer(serverWith('attack-idle'), async (server) => {
    const { result: conns, before, peak } = await measureRss(server, () => whilePoliteClicks(server, async () => {
      const conns = await openTcp(server, 800);
      const closed = await closedWithin(conns, 10_000);
      assert.equal(closed, conns.length, `the server closed ${closed} of ${conns.length} silent connections`);
      return conns;
    }));
    assert.ok(conns.every((c) => c.received === ''), 'closed without an answer');
    assert.ok(await metric(server, 'switchyard_rejects_total', { api: 'edge', reason: 'header_timeout' }) >= 800);
    const lines = logLines(server, 'no complete request head');
    assert.ok(lines.length >= 1 && lines.length <= 2, `one line per 10 s, not one per connection: ${lines.length}`);
    console.log(`idle: 800 silent connections, RSS ${mib(before)} → peak ${mib(peak)}`);
    assert.ok(peak - before < 40 * MiB, `RSS grew ${mib(peak - before)}`);
  });
});

test('slowloris heads and slow bodies are cut at their timeouts; an over-size head gets 431', { timeout: 30_000 }, async () => {
  await withServer(serverWith('attack-slowloris'), async (server) => {
    const { before, peak } = await measureRss(server, () => whilePoliteClicks(server, async () => {
      const drippers = await openTcp(server, 300);
      const stop = drip(drippers, { everyMs: 250, maxMs: 15_000 });
      const closed = await closedWithin(drippers, 10_000);
      stop();
      assert.equal(closed, drippers.length, `${closed} of ${drippers.length} drippers cut before their 15 s`);

      // A body dripped into a real reader (an Engine.IO polling POST) is cut at the body timeout.
      const hs = await httpGet(server, '/api/socket.io/?EIO=4&transport=polling', { localAddress: ATTACKER });
      const sid = /"sid":"([^"]+)"/.exec(hs.body)?.[1];
      assert.ok(sid, `a polling session: ${hs.status} ${hs.body}`);
      const [slowBody] = await openTcp(server, 1, {
        onOpen: (s) => s.write(`POST /api/socket.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\n` +
          'Host: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 10000\r\n\r\n4'),
      });
      const dripBody = setInterval(() => slowBody.socket.write('2'), 200);
      const bodyClosed = await closedWithin([slowBody], 8000);
      clearInterval(dripBody);
      assert.equal(bodyClosed, 1, 'the slow body was cut');

      // A head bigger than SWITCHYARD_HTTP_MAX_HEADER_BYTES (16 KiB) is refused, not buffered.
      const [bigHead] = await openTcp(server, 1, {
        onOpen: (s) => s.write(`GET /api HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\n\r\n`),
      });
      await closedWithin([bigHead], 5000);
      assert.match(bigHead.received, /^HTTP\/1\.1 431/, `got ${bigHead.received.slice(0, 40)}`);
    }));
    assert.ok(await metric(server, 'switchyard_rejects_total', { api: 'edge', reason: 'body_timeout' }) >= 1);
    console.log(`slowloris: 300 drippers, RSS ${mib(before)} → peak ${mib(peak)}`);
    assert.ok(peak - before < 40 * MiB, `RSS grew ${mib(peak - before)}`);
  });
});

test('connection caps: 429 over the per-address cap, 503 over the edge cap; others are served', { timeout: 40_000 }, async () => {
  const env = {
    SWITCHYARD_MAX_CONNECTIONS_PER_IP: '100',
    SWITCHYARD_MAX_CONNECTIONS: '170',
    // The held connections must outlive the test's steps.
    SWITCHYARD_HTTP_HEADER_TIMEOUT_MS: '20000',
  };
  await withServer(serverWith('attack-caps', env), async (server) => {
    const polite = await politeClick(server);
    const request = (s) => s.write('GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const held = await openTcp(server, 100, { localAddress: ATTACKER });
    const over = await openTcp(server, 20, { localAddress: ATTACKER, onOpen: request });
    assert.equal(await closedWithin(over, 5000), 20, 'the connections over the per-address cap are closed');
    assert.ok(over.every((c) => /^HTTP\/1\.1 429/.test(c.received)), `429: ${over[0].received.slice(0, 60)}`);
    assert.ok(held.every((c) => !c.isClosed()), 'the ones under the cap stay');
    await politeClick(server, { client: polite });
    (await politeClick(server)).close(); // a newcomer from another address is admitted

    // Fill the edge from other addresses: 100 + polite (1) + 69 = 170, the cap.
    const others = await openTcp(server, 69, { localAddress: '127.0.0.3' });
    const [full] = await openTcp(server, 1, { localAddress: '127.0.0.4', onOpen: request });
    await closedWithin([full], 5000);
    assert.match(full.received, /^HTTP\/1\.1 503/, `503 at the edge cap: ${full.received.slice(0, 60)}`);
    await politeClick(server, { client: polite }); // the one already in is still served

    destroyAll([...held, ...others]);
    await sleep(200);
    (await politeClick(server)).close();
    polite.close();
    assert.ok(await metric(server, 'switchyard_rejects_total', { api: 'edge', reason: 'max_connections_per_ip' }) >= 20);
    assert.ok(await metric(server, 'switchyard_rejects_total', { api: 'edge', reason: 'max_connections' }) >= 1);
    assert.ok(logLines(server, 'too many connections from this address').length <= 2, 'one line, not one per refusal');
  });
});

/** `42["click",[0,0,…]]` of about `bytes`: what once cost 835 MiB for 50 MB. */
const hugeClick = (bytes) => `42["click",[${'0,'.repeat(Math.floor(bytes / 2))}0]]`;

test('over-size Socket.IO websocket messages and announced attachments close the socket, not the memory', { timeout: 40_000 }, async () => {
  await withServer(serverWith('attack-oversize'), async (server) => {
    const { before, peak } = await measureRss(server, () => whilePoliteClicks(server, async () => {
      for (const protocol of [4, 3]) {
        const sockets = await Promise.all(Array.from({ length: 10 }, () => rawEngineSocket(server, { protocol })));
        await sleep(100);
        for (const s of sockets) s.ws.send(hugeClick(8 * MiB));
        const closes = await Promise.all(sockets.map((s) => s.closed));
        assert.equal(closes.length, 10, `EIO=${protocol}: every sender closed`);
      }
      // More attachments announced than SWITCHYARD_SIO_MAX_ATTACHMENTS (1): closed at once.
      const many = await Promise.all(Array.from({ length: 10 }, () => rawEngineSocket(server)));
      await sleep(100);
      for (const s of many) s.ws.send('452-["click",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      await Promise.all(many.map((s) => s.closed));
      // One announced and never sent: the packet waits, holding no more than its own 8 KB.
      const stalled = await Promise.all(Array.from({ length: 50 }, () => rawEngineSocket(server)));
      await sleep(100);
      for (const s of stalled) s.ws.send(`451-["click",{"_placeholder":true,"num":0,"pad":"${'p'.repeat(7900)}"}]`);
      await sleep(500);
      for (const s of stalled) s.ws.terminate();

      // Polling: a body over the payload limit is refused (and its session closed).
      const hs = await httpGet(server, '/api/socket.io/?EIO=4&transport=polling', { localAddress: ATTACKER });
      const sid = /"sid":"([^"]+)"/.exec(hs.body)?.[1];
      const res = await fetch(`${server.url}/api/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
        method: 'POST', body: hugeClick(1 * MiB), headers: { 'content-type': 'text/plain' },
      }).then((r) => r.status, () => 'closed');
      assert.ok(res === 413 || res === 400 || res === 'closed', `an over-size polling body: ${res}`);
    }));
    console.log(`oversize: 20 × 8 MiB websocket messages, 60 attachment announcers, RSS ${mib(before)} → peak ${mib(peak)}`);
    assert.ok(peak - before < 40 * MiB, `RSS grew ${mib(peak - before)}`);
  });
});

test('after messages at the size limit, idle sockets keep no large buffer and queue no parsed payloads', { timeout: 40_000 }, async () => {
  await withServer(serverWith('attack-buffers'), async (server) => {
    const N = 200;
    const sockets = [];
    for (let i = 0; i < N; i += 50) {
      sockets.push(...(await Promise.all(Array.from({ length: 50 }, () => rawEngineSocket(server)))));
    }
    await sleep(500);
    const idle = (await measureRss(server, async () => {})).peak;
    // Just under SWITCHYARD_SIO_MAX_PAYLOAD (8 KiB), an unknown event (ignored): every socket
    // once had an 8 KB frame in its read buffer, which the websocket layer keeps at its largest.
    for (const s of sockets) s.ws.send(`42["x"${' '.repeat(8000)}]`);
    await sleep(1500);
    const afterBig = (await measureRss(server, async () => {})).peak;
    const perSocket = (afterBig - idle) / N;
    console.log(`buffers: ${N} idle sockets after one 8 KB message each: +${(perSocket / 1024).toFixed(1)} KiB per socket`);
    assert.ok(sockets.every((s) => !s.isClosed()), 'a message under the limit keeps the socket');
    assert.ok(perSocket < 16 * 1024, `each socket kept ${(perSocket / 1024).toFixed(1)} KiB`);

    // Clicks whose payload parses 16× bigger than it is (an array of zeros), 20 per socket at
    // once: validated before they are queued, so the queues hold nothing big.
    const { before, peak } = await measureRss(server, async () => {
      for (let round = 0; round < 20; round++) {
        for (const s of sockets) s.ws.send(hugeClick(7900));
      }
      await sleep(2000);
    });
    console.log(`buffers: ${N * 20} × 8 KB array clicks: RSS ${mib(before)} → peak ${mib(peak)}`);
    assert.ok(peak - before < 40 * MiB, `RSS grew ${mib(peak - before)}`);
    (await politeClick(server)).close();
    for (const s of sockets) s.ws.terminate();
  });
});

test('a handshake flood from one address is refused at the handshake, for both protocol versions', { timeout: 40_000 }, async () => {
  const env = { SWITCHYARD_RATE_CONNECT: '20', SWITCHYARD_RATE_CONNECT_BURST: '40' };
  await withServer(serverWith('attack-handshakes', env), async (server) => {
    assertLoopback(server);
    const { result, before, peak } = await measureRss(server, () => whilePoliteClicks(server, async () => {
      const statuses = { 200: 0, 429: 0 };
      let sessionsInRefusals = 0;
      const started = Date.now();
      for (let i = 0; i < 300; i++) {
        const eio = i % 2 ? 3 : 4;
        const res = await httpGet(server, `/api/socket.io/?EIO=${eio}&transport=polling&t=${i}`, { localAddress: ATTACKER });
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status === 429 && res.body.includes('sid')) sessionsInRefusals += 1;
      }
      // Websocket handshakes are gated the same way.
      const ws = await rawEngineSocket(server).then(() => 'open', (e) => e.message);
      return { statuses, sessionsInRefusals, ws, seconds: (Date.now() - started) / 1000 };
    }));
    const { statuses, sessionsInRefusals, ws, seconds } = result;
    console.log(`handshakes: 300 in ${seconds.toFixed(1)} s → ${JSON.stringify(statuses)}; RSS ${mib(before)} → peak ${mib(peak)}`);
    assert.equal(sessionsInRefusals, 0, 'a refused handshake allocates no session');
    assert.ok(statuses[429] > 0, 'the flood is refused');
    assert.ok(statuses[200] <= 40 + 20 * seconds + 5, `accepted ${statuses[200]} ≤ burst + rate × time`);
    assert.notEqual(ws, 'open', 'a websocket handshake over the budget is refused too');
    assert.ok(await metric(server, 'switchyard_rejects_total', { api: 'connect', reason: 'rate' }) >= statuses[429]);
  });
});

test('sessions per address are capped at the handshake, joined (v3) or never joining (v4)', { timeout: 30_000 }, async () => {
  const env = { SWITCHYARD_MAX_CONNECTIONS_PER_IP: '30', SWITCHYARD_SIO_HANDSHAKE_TIMEOUT_MS: '1500' };
  await withServer(serverWith('attack-sessions', env), async (server) => {
    const handshakes = async (eio) => {
      const statuses = [];
      for (let i = 0; i < 60; i++) {
        const res = await httpGet(server, `/api/socket.io/?EIO=${eio}&transport=polling&t=${i}`, { localAddress: ATTACKER });
        statuses.push(res.status);
        if (res.status === 200) await sleep(10); // a v3 session joins the namespace at once
      }
      return statuses;
    };
    await whilePoliteClicks(server, async () => {
      // Engine.IO v4 sessions that never send their namespace CONNECT: capped while young,
      // closed at the handshake timeout.
      const v4 = await handshakes(4);
      const v4ok = v4.filter((st) => st === 200).length;
      assert.equal(v4ok, 30, `30 young handshakes admitted, got ${v4ok}: ${v4.join(',')}`);
      assert.ok(v4.slice(30).every((st) => st === 429), 'the rest refused with 429');
      await sleep(2500); // past the handshake timeout: those sessions are gone
      // Engine.IO v3 sessions join at once and stay: capped as sessions.
      const v3 = await handshakes(3);
      const v3ok = v3.filter((st) => st === 200).length;
      assert.ok(v3ok >= 25 && v3ok <= 30, `about 30 sessions admitted, got ${v3ok}: ${v3.join(',')}`);
      assert.ok(v3.slice(-10).every((st) => st === 429), 'the rest refused with 429');
    });
    assert.ok(await metric(server, 'switchyard_rejects_total', { api: 'frust', reason: 'handshakes_per_ip' }) >= 30);
    assert.ok(await metric(server, 'switchyard_rejects_total', { api: 'frust', reason: 'max_sessions_per_ip' }) >= 1);
  });
});

test('out of file descriptors: a warning at start, accept errors backed off and counted, served again after', { timeout: 30_000 }, async (t) => {
  if (!fs.existsSync('/usr/bin/prlimit')) return t.skip('needs prlimit (util-linux) to lower RLIMIT_NOFILE');
  const opts = serverWith('attack-emfile', { SWITCHYARD_MAX_CONNECTIONS: '1000', SWITCHYARD_MAX_CONNECTIONS_PER_IP: '1000' });
  await withServer({ ...opts, wrapper: ['/usr/bin/prlimit', '--nofile=256:256'] }, async (server) => {
    assert.equal(logLines(server, 'RLIMIT_NOFILE (256) is below SWITCHYARD_MAX_CONNECTIONS (1000)').length, 1);
    const polite = await politeClick(server);
    const conns = await openTcp(server, 400); // more than the process may open
    await sleep(1000);
    await politeClick(server, { client: polite }); // a connection already in is served
    // The silent ones go at the header timeout; then there are descriptors again.
    assert.equal(await closedWithin(conns, 10_000), conns.length, 'every silent connection closed');
    destroyAll(conns);
    (await politeClick(server)).close();
    polite.close();
    assert.ok(await metric(server, 'switchyard_accept_errors_total', { kind: 'fd_limit' }) >= 1);
    const lines = logLines(server, 'accept failed; backing off');
    assert.ok(lines.length >= 1 && lines.length <= 2, `one line per 10 s: ${lines.length}`);
  });
});
