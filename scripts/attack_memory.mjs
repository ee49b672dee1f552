// What each kind of hostile connection makes one edge hold: starts a fresh embedded server per
// kind, opens N of that kind (from many loopback addresses, so per-address caps do not stop
// them), and prints the growth of the server's VmRSS per item. The README's Limits table comes
// from this. Loopback only; every connection is closed before the next kind.
//
//   (cd tests/js && npm ci)  # once: the ws package
//   cargo build --release
//   node scripts/attack_memory.mjs [kind …]   # kinds: heads pollbodies chatbodies ws v4polling v3polling
//   N=500 by default; SWITCHYARD_BIN picks the binary.

import { startServer, sleep } from '../tests/js/lib/server.mjs';
import { rawEngineSocket, rssBytes, openTcp, destroyAll, httpGet } from '../tests/js/lib/attack.mjs';
import { mintToken } from '../tests/js/lib/chat.mjs';

const N = Number(process.env.N ?? 500);
const SECRET = 'attack-memory-secret-of-at-least-32-bytes';
/** The i-th of many loopback source addresses (250 per /24). */
const addr = (i) => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;

const KINDS = {
  // A request head of 15 KB (under the 16 KiB cap) that never ends.
  heads: async (server) => openMany(server, () => 'GET /api HTTP/1.1\r\nHost: x\r\nX-Pad: ' + 'h'.repeat(15_000)),
  // An Engine.IO polling POST whose 8 KiB body never ends, each on its own session.
  pollbodies: async (server) => {
    const conns = [];
    for (let i = 0; i < N; i++) {
      const hs = await httpGet(server, `/api/socket.io/?EIO=4&transport=polling&t=${i}`, { localAddress: addr(i) });
      const sid = /"sid":"([^"]+)"/.exec(hs.body)?.[1];
      if (!sid) throw new Error(`handshake ${i}: ${hs.status} ${hs.body}`);
      conns.push(...(await openTcp(server, 1, {
        localAddress: addr(i),
        onOpen: (s) => s.write(`POST /api/socket.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\nHost: x\r\n` +
          `Content-Type: text/plain\r\nContent-Length: 8192\r\n\r\n4${'b'.repeat(8000)}`),
      })));
    }
    return conns;
  },
  // An authenticated chat REST body of 64 KiB that never ends (one user per connection).
  chatbodies: async (server) => openMany(server, (i) => {
    const token = mintToken({ sub: `attacker-${i}`, secret: SECRET });
    return `POST /api/chat/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: 65536\r\n\r\n${'b'.repeat(65_000)}`;
  }),
  // Socket.IO websockets: idle, then after an 8 KB message and a packet announcing an
  // attachment that never comes.
  ws: async (server) => {
    const sockets = [];
    for (let i = 0; i < N; i++) sockets.push(await rawEngineSocket(server, { localAddress: addr(i) }));
    await sleep(1000);
    report('ws (idle)', sockets.length, server);
    for (const s of sockets) s.ws.send(`42["x"${' '.repeat(8000)}]`);
    await sleep(1000);
    for (const s of sockets) s.ws.send(`451-["click",{"_placeholder":true,"num":0,"pad":"${'p'.repeat(7900)}"}]`);
    return sockets;
  },
  // Polling sessions that are never polled: v4 ones never join, v3 ones join at the handshake.
  v4polling: async (server) => handshakes(server, 4),
  v3polling: async (server) => handshakes(server, 3),
};

async function openMany(server, head) {
  const conns = [];
  for (let i = 0; i < N; i++) {
    conns.push(...(await openTcp(server, 1, { localAddress: addr(i), onOpen: (s) => s.write(head(i)) })));
  }
  return conns;
}

async function handshakes(server, eio) {
  for (let i = 0; i < N; i++) {
    const r = await httpGet(server, `/api/socket.io/?EIO=${eio}&transport=polling&t=${i}`, { localAddress: addr(i) });
    if (r.status !== 200) throw new Error(`handshake ${i}: ${r.status} ${r.body}`);
  }
  return [];
}

let baseline = 0;
function report(kind, count, server) {
  const grown = rssBytes(server) - baseline;
  console.log(`${kind.padEnd(12)} ${String(count).padStart(5)} held: +${kib(grown / N)} per item (RSS +${(grown / 1048576).toFixed(1)} MiB)`);
}

const kinds = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(KINDS);
for (const kind of kinds) {
  if (!KINDS[kind]) throw new Error(`unknown kind ${kind}; kinds: ${Object.keys(KINDS).join(' ')}`);
  const server = await startServer({
    name: `memory-${kind}`,
    env: {
      RUST_LOG: 'warn',
      SWITCHYARD_JWT_SECRET: SECRET,
      // Long timeouts: what is held must still be held when it is measured.
      SWITCHYARD_HTTP_HEADER_TIMEOUT_MS: '60000',
      SWITCHYARD_HTTP_BODY_TIMEOUT_MS: '60000',
      SWITCHYARD_SIO_HANDSHAKE_TIMEOUT_MS: '60000',
      SWITCHYARD_CHAT_REST_RATE_USER_BURST: '1000',
    },
  });
  try {
    await sleep(500);
    baseline = rssBytes(server);
    const held = await KINDS[kind](server);
    await sleep(2000);
    const open = held.filter((c) => !c.isClosed()).length;
    report(kind, held.length ? open : N, server);
    for (const c of held) (c.socket ? c.socket.destroy() : c.ws.terminate());
  } finally {
    await server.close();
  }
}
