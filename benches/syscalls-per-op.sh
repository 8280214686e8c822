#!/usr/bin/env bash
# System calls the server makes per operation, counted by `perf stat` on the syscall
# tracepoints: like callgrind's instruction counts, these do not move with the machine's
# noise, so they compare two builds where a timed run cannot. Two workloads, each against a
# fresh `cortex serve --fsync always` per build:
#   resp     redis-benchmark, N unpipelined 100 B XADDs from C clients: calls per XADD
#   deliver  `cortex bench deliver --rate RATE` over QUIC for 5 s (publish, push, ack):
#            calls per delivered message
# `write` counts the journal's writes and the eventfd writes that wake the runtime's thread;
# `sendto`/`sendmsg` the replies (RESP) and QUIC datagrams; `task-clock` is CPU ms per op.
#
#   benches/syscalls-per-op.sh                                  # this checkout's release build
#   CORTEX=old/cortex CORTEX2=new/cortex benches/syscalls-per-op.sh
#
# Env: N (200000), C (50), RATE (5000), ROUNDS (2). Needs perf (apt-get install linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}; C=${C:-50}; RATE=${RATE:-5000}; ROUNDS=${ROUNDS:-2}
. benches/resp-lib.sh
need_redis_tools
need_perf
cortex_bin
scratch_and_server

EVENTS=task-clock
for s in write fdatasync sendto sendmsg recvfrom epoll_wait futex; do
  EVENTS="$EVENTS,syscalls:sys_enter_$s"
done

# $1 = label, $2 = binary, $3 = workload (resp or deliver).
round() {
  local label=$1 bin=$2 what=$3 port qport hport dir stat ops result
  port=$(free_port); qport=$(free_port); hport=$(free_port); dir="$WORK/$label-$port"
  mkdir -p "$dir"
  RUST_LOG=warn "$bin" serve --data-dir "$dir/data" --resp "127.0.0.1:$port" \
    --quic "127.0.0.1:$qport" --http "127.0.0.1:$hport" --fsync always >/dev/null 2>"$dir/log" &
  P=$!; wait_up "$port"
  perf stat -x, -e "$EVENTS" -p "$P" -o "$dir/perf" &
  stat=$!
  if [ "$what" = resp ]; then
    result=$(redis-benchmark -p "$port" -c "$C" -P 1 -n "$N" --csv \
      XADD s '*' f "$(head -c 100 /dev/zero | tr '\0' 'x')" 2>/dev/null | tail -1 | tr -d '"' \
      | awk -F, '{printf "%.0f/s p99 %s ms", $2, $7}')
    ops=$N
  else
    "$bin" bench deliver --rate "$RATE" --server "127.0.0.1:$qport" --data-dir "$dir/data" \
      --duration 5 --json 2>/dev/null >"$dir/bench.json"
    read -r ops result < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(round(r["ops_per_s"] * 5), "%.0f/s p99 %.1f ms" % (r["ops_per_s"], r["p99_us"] / 1000))
' "$dir/bench.json")
  fi
  kill -INT "$stat"; wait "$stat" 2>/dev/null || true
  kill "$P"; wait "$P" 2>/dev/null || true; P=""
  python3 - "$dir/perf" "$label" "$what" "$ops" "$result" <<'PY'
import sys
path, label, what, ops, result = sys.argv[1:]
calls = []
for line in open(path):
    f = line.strip().split(",")
    if len(f) > 3 and f[0].replace(".", "").isdigit():
        name = f[2].replace("syscalls:sys_enter_", "")
        calls.append(f"{name} {float(f[0]) / int(ops):.3f}")
print(f"{label:6} {what:8} {result:24} per op: " + ", ".join(calls))
PY
}

echo "system calls per op (resp: 100 B XADD -c $C -P 1 x $N; deliver: QUIC $RATE/s for 5 s)"
for _ in $(seq "$ROUNDS"); do
  for what in resp deliver; do
    round a "$CORTEX" "$what"
    if [ -n "${CORTEX2:-}" ]; then round b "$CORTEX2" "$what"; fi
  done
done
