// The memory soak (issue 18): churn, clicks and chat against one switchyard process for a given
// time with nothing scraping /metrics, sampling its RssAnon; prints what stays retained after
// the warm-up per operation, per connection and per packet. BENCHMARKS.md records its figures.
//
//   (cd tests/js && npm ci)   # once
//   cargo build --release
//   node scripts/soak.mjs                          # 10 minutes, embedded `switchyard all`
//   node scripts/soak.mjs --cluster                # 10 minutes, the edge of a cluster (3 NATS
//                                                  # nodes, 1 edge, 1 worker, the aggregator)
//   node scripts/soak.mjs --minutes 3 --warmup-minutes 1 --json target/soak.json
//   node scripts/soak.mjs --attach http://127.0.0.1:8080 --pid 1234 --secret "$SWITCHYARD_JWT_SECRET"
//                                                  # a server started by you (e.g. under heaptrack);
//                                                  # give it the rate limits of tests/js/lib/soak_env.mjs
//
// Before the clock starts, 70,000 clicks and 70,000 chat messages from the built-in load
// generator fill the edge's bounded fan-out id windows (65,536 ids per API), so what follows
// measures retention, not the windows filling.
// Exit status 1 when retained memory per operation exceeds --max-per-op bytes (default 256).

import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { startChatServer, mintToken } from '../tests/js/lib/chat.mjs';
import { startCluster } from '../tests/js/lib/cluster.mjs';
import { soak, fillWindows, describe, SOAK_DEFAULTS } from '../tests/js/lib/soak.mjs';
import { SOAK_ENV } from '../tests/js/lib/soak_env.mjs';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    'warmup-minutes': { type: 'string', default: '2' },
    cluster: { type: 'boolean', default: false },
    json: { type: 'string' },
    'max-per-op': { type: 'string', default: '256' },
    attach: { type: 'string' },
    pid: { type: 'string' },
    secret: { type: 'string' },
  },
});

const durationMs = Number(args.minutes) * 60_000;
const warmupMs = Number(args['warmup-minutes']) * 60_000;
let cluster;
let server;
let target;
if (args.attach) {
  const secret = args.secret ?? process.env.SWITCHYARD_JWT_SECRET;
  target = { url: args.attach, secret, adminToken: process.env.SWITCHYARD_ADMIN_TOKEN, token: (sub) => mintToken({ sub, secret }), child: { pid: Number(args.pid) } };
} else if (args.cluster) {
  cluster = await startCluster({ name: 'soak', edges: 1, workers: 1, env: SOAK_ENV, clock: 'real' });
  [target] = cluster.edges;
} else {
  server = await startChatServer({ name: 'soak', env: SOAK_ENV });
  target = server;
}
const pid = target.child.pid;
const mode = args.attach ? 'attached' : args.cluster ? 'cluster edge' : 'embedded';
try {
  console.log(`soak: ${mode} at ${target.url} (pid ${pid}); filling the fan-out id window first`);
  await fillWindows(target);
  console.log(`soak: ${args.minutes} min of churn, clicks and chat, warm-up ${args['warmup-minutes']} min, nothing scraping`);
  let last = 0;
  const result = await soak(target, pid, {
    durationMs,
    warmupMs,
    onSample: (s) => {
      if (s.t - last >= 30_000) {
        last = s.t;
        console.log(`  +${(s.t / 1000).toFixed(0)} s RssAnon ${(s.rss / 1048576).toFixed(1)} MiB; ${s.connections} connections, ${s.clicks} clicks, ${s.chatMessages} chat, ${s.failures} failures`);
      }
    },
  });
  console.log(describe(result.analysis, result.counts));
  if (args.json) {
    fs.writeFileSync(args.json, JSON.stringify({ mode, options: { ...SOAK_DEFAULTS, durationMs, warmupMs }, ...result, counts: result.counts.snapshot() }, null, 1));
  }
  const max = Number(args['max-per-op']);
  if (result.analysis.perOperation > max) {
    console.log(`FAIL: ${result.analysis.perOperation.toFixed(1)} B retained per operation > ${max}`);
    process.exitCode = 1;
  }
} finally {
  await (cluster?.close() ?? server?.stop());
}
