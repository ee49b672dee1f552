#!/usr/bin/env bash
# Where an idle connection's memory goes: heaptrack of an embedded server holding N idle clients
# (Socket.IO over Engine.IO v4 or v3, or /chat in rooms of 10), killed while they are still
# connected, so heaptrack's "leaks" are the live heap. Needs heaptrack (apt-get install
# heaptrack) and a release build.
#
#   scripts/idle_heap.sh [N (2000)] [v4|v3|chat (v4)]  → prints the per-connection heap by owner
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
KIND=${2:-v4}
case $KIND in
  v4 | v3) CLIENTS=(--protocol "$KIND" --clients "$N") ;;
  chat) CLIENTS=(--api chat --jwt-secret idle-heap-secret --rooms $((N / 10)) --room-size 10) ;;
  *) echo "unknown kind '$KIND' (v4, v3, chat)" >&2; exit 2 ;;
esac
BIN=${SWITCHYARD_BIN:-target/release/switchyard}
BIN=$(realpath "$BIN")
command -v heaptrack >/dev/null || { echo "heaptrack not found (apt-get install heaptrack)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 10000))
export RUST_LOG=warn SWITCHYARD_RATE_CONNECT=1000000 SWITCHYARD_RATE_CONNECT_BURST=1000000 \
  SWITCHYARD_RATE_IP=1000000 SWITCHYARD_RATE_IP_BURST=1000000 \
  SWITCHYARD_MAX_CONNECTIONS=1000000 SWITCHYARD_MAX_CONNECTIONS_PER_IP=1000000 \
  SWITCHYARD_CHAT_REST_RATE_IP=1000000 SWITCHYARD_CHAT_REST_RATE_IP_BURST=1000000 \
  SWITCHYARD_JWT_SECRET=idle-heap-secret
SWITCHYARD_LISTEN=127.0.0.1:$PORT SWITCHYARD_STORE="sqlite://$WORK/idle.sqlite" \
  heaptrack -o "$WORK/heap" "$BIN" >"$WORK/heaptrack.log" 2>&1 &
sleep 3
PID=$(pgrep -f "^$BIN$" | head -1)
"$BIN" bench --target "http://127.0.0.1:$PORT" --idle "${CLIENTS[@]}" --duration 15s \
  --server-pid "$PID" | grep -E "clients|memory"
# Still connected: the bench holds them for 15 s.
kill -9 "$PID"
wait || true
heaptrack_print -f "$WORK/heap.zst" --print-peaks 0 --print-leaks 1 --peak-limit 80 \
  --sub-peak-limit 40 --print-allocators 0 --print-temporary 0 \
  2>/dev/null >"$WORK/leaks.txt"
# LEAKS=path keeps heaptrack's full list of live allocations (with their stacks).
[[ -n ${LEAKS:-} ]] && cp "$WORK/leaks.txt" "$LEAKS"
python3 - "$WORK/leaks.txt" "$N" <<'PY'
# Sums live allocations made once per connection (or nearly), by the first frame that is in a
# library of the connection path or in switchyard.
import collections, re, sys
lines = open(sys.argv[1]).read().split("\n")
n = int(sys.argv[2])
owner = re.compile(r"((?:engineioxide|socketioxide|tungstenite|hyper|axum)-[\d.]+/src/[\w/]+\.rs:\d+"
                   r"|vendor/\w+/src/[\w/]+\.rs:\d+"
                   r"|edge/src/[\w/]+\.rs:\d+|src/runtime/io/registration_set\.rs:\d+)")
def size(s):
    m = re.match(r"([\d.]+)([KMG]?)", s)
    return float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]
total = collections.Counter()
for i, line in enumerate(lines):
    m = re.match(r"\s*([\d.]+[KMG]?B?) leaked over (\d+) calls from:", line)
    if not m or int(m.group(2)) < n * 0.15:
        continue
    who = "?"
    for frame in lines[i + 1:]:
        if "leaked over" in frame:
            break
        o = owner.search(frame)
        if o:
            who = o.group(1)
            break
    total[who] += size(m.group(1))
for who, b in total.most_common():
    print(f"{b / n:8.0f} B  {who}")
print(f"{sum(total.values()) / n:8.0f} B  live heap per connection (allocations made by ≥ 15 % of connections)")
PY
