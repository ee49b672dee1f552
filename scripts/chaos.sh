#!/usr/bin/env bash
# The chaos soak: tests/js/chaos.test.mjs with a long schedule. A 3-node NATS JetStream cluster,
# 2 edges, 2 workers and the aggregator on loopback, under mixed load (Frust clicks from
# Socket.IO 2.x and 4.x clients, with and without acks, websocket and polling; chat in 8 rooms),
# while a seeded schedule SIGKILLs, SIGTERMs and SIGSTOP/SIGCONTs them — including the NATS node
# each role is attached to and the leaders of IN, FACTS and a consumer — and restarts them.
# After every round it checks from REST and client receipts that stored = counted = accepted
# (per user, hour and total), nothing was stored or delivered twice, nothing was refused while a
# NATS quorum was up, and chat history holds every acked message once in live order.
# What is checked, and results: RELIABILITY.md.
#
#   bash scripts/chaos.sh                          # 30 rounds, random seed (printed)
#   SWITCHYARD_CHAOS_ROUNDS=100 bash scripts/chaos.sh
#   SWITCHYARD_CHAOS_SEED=123 SWITCHYARD_CHAOS_ROUNDS=7 bash scripts/chaos.sh   # replay a run
#
# Environment (all optional):
#   SWITCHYARD_CHAOS_ROUNDS           rounds (default 30 here, 3 in the normal test command)
#   SWITCHYARD_CHAOS_STRICT           1 (default here): open defects fail a round; 0: printed only
#   SWITCHYARD_CHAOS_SEED             seed of the whole schedule (default random; always printed)
#   SWITCHYARD_CHAOS_FROM_ROUND       run only rounds from this one on (same schedule)
#   SWITCHYARD_CHAOS_LOAD_MS          load (and fault) window per round (default 20000)
#   SWITCHYARD_CHAOS_FAULTS_PER_LANE  faults per round in each lane, NATS and switchyard (default 2)
#   SWITCHYARD_CHAOS_CLICK_RATE       clicks per second per Frust client, 8 clients (default 6)
#   SWITCHYARD_CHAOS_REPLICAS         SWITCHYARD_NATS_REPLICAS of the cluster (default 3;
#                                     'default' leaves it unset: the binary's default is tested)
#   SWITCHYARD_CHAOS_RESULTS          JSON lines, one per round (default target/chaos/<time>.jsonl)
#   SWITCHYARD_BIN, NATS_SERVER_BIN   the binaries (default target/release/switchyard, PATH)
#
# Every round's report (faults as they fired, what each NATS node was, counts, violations and
# the replay command) goes to stdout and target/chaos/<time>.log. A failed round does not stop
# the soak: the next round gets a fresh cluster. Exit status 1 if any round failed.
set -euo pipefail
cd "$(dirname "$0")/.."

export SWITCHYARD_CHAOS_ROUNDS="${SWITCHYARD_CHAOS_ROUNDS:-30}"
# The soak fails on open defects too (RELIABILITY.md, "Open"); the test command only prints them.
export SWITCHYARD_CHAOS_STRICT="${SWITCHYARD_CHAOS_STRICT:-1}"
export SWITCHYARD_BIN="${SWITCHYARD_BIN:-$PWD/target/release/switchyard}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p target/chaos
export SWITCHYARD_CHAOS_RESULTS="${SWITCHYARD_CHAOS_RESULTS:-$PWD/target/chaos/$stamp.jsonl}"
log="target/chaos/$stamp.log"

if [ ! -x "$SWITCHYARD_BIN" ]; then
  echo "== cargo build --release"
  nice -n 10 cargo build --release --locked
fi
if [ ! -d tests/js/node_modules ]; then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== chaos soak: $SWITCHYARD_CHAOS_ROUNDS rounds; log $log; results $SWITCHYARD_CHAOS_RESULTS"
# No per-file timeout of node's own: each round has its test timeout.
set +e
node --test --test-concurrency=1 --test-reporter=spec tests/js/chaos.test.mjs 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if command -v python3 >/dev/null && [ -s "$SWITCHYARD_CHAOS_RESULTS" ]; then
  python3 - "$SWITCHYARD_CHAOS_RESULTS" <<'EOF'
import json, sys, collections
rounds = [json.loads(l) for l in open(sys.argv[1])]
failed = [r for r in rounds if r["violations"]]
clicks = sum(sum(r["clicks"].values()) for r in rounds)
msgs = sum(sum(r["messages"].values()) for r in rounds)
kinds = collections.Counter(v["invariant"] for r in failed for v in r["violations"])
print(f"== {len(rounds)} rounds, {len(failed)} failed; {clicks} clicks, {msgs} chat messages sent")
for k, n in kinds.most_common():
    print(f"   {n:3d}× {k}")
for r in failed:
    print(f"   seed {r['seed']} round {r['round']}: {', '.join(sorted({v['invariant'] for v in r['violations']}))}")
EOF
fi
exit "$status"
