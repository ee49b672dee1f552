// Just enough of the NATS client protocol and of MessagePack to publish one envelope the way a
// switchyard process does, for tests that must put a packet on the bus exactly as a fault would
// (late, out of order) rather than as the server would send it.

import net from 'node:net';

/** MessagePack of JSON-like values: maps, arrays, strings, null, booleans, integers ≥ 0. */
export function msgpack(value) {
  const out = [];
  const bytes = (...b) => out.push(Buffer.from(b));
  const enc = (v) => {
    if (v === null || v === undefined) return bytes(0xc0);
    if (v === true) return bytes(0xc3);
    if (v === false) return bytes(0xc2);
    if (typeof v === 'number' || typeof v === 'bigint') {
      const n = BigInt(v);
      if (n < 0n) throw new Error('negative integers are not needed here');
      if (n < 128n) return bytes(Number(n));
      const b = Buffer.alloc(9);
      b[0] = 0xcf;
      b.writeBigUInt64BE(n, 1);
      return out.push(b);
    }
    if (typeof v === 'string') {
      const s = Buffer.from(v, 'utf8');
      if (s.length < 32) bytes(0xa0 | s.length);
      else { const h = Buffer.alloc(5); h[0] = 0xdb; h.writeUInt32BE(s.length, 1); out.push(h); }
      return out.push(s);
    }
    if (Array.isArray(v)) {
      const h = Buffer.alloc(5); h[0] = 0xdd; h.writeUInt32BE(v.length, 1); out.push(h);
      return v.forEach(enc);
    }
    const entries = Object.entries(v);
    const h = Buffer.alloc(5); h[0] = 0xdf; h.writeUInt32BE(entries.length, 1); out.push(h);
    for (const [k, x] of entries) { enc(k); enc(x); }
  };
  enc(value);
  return Buffer.concat(out);
}

/** Publishes `payload` on `subject` through the NATS server at `url` (nats://host:port). */
export function natsPublish(url, subject, payload) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname);
    let buf = '';
    sock.on('error', reject);
    sock.on('data', (d) => {
      buf += d;
      if (buf.includes('-ERR')) { sock.destroy(); reject(new Error(buf.trim())); return; }
      if (buf.startsWith('INFO') && !sock.sent) {
        sock.sent = true;
        sock.write(`CONNECT {"verbose":false,"pedantic":false,"name":"e2e-raw"}\r\nPUB ${subject} ${payload.length}\r\n`);
        sock.write(payload);
        sock.write('\r\nPING\r\n');
      } else if (sock.sent && buf.includes('PONG')) {
        sock.end();
        resolve();
      }
    });
  });
}
