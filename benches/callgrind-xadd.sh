#!/usr/bin/env bash
# Instructions the whole server spends per XADD, counted by valgrind's callgrind: the
# machine's noise does not move these counts, so they compare two builds where a timed run
# cannot. The server runs under callgrind while redis-benchmark sends N unpipelined 100 B
# XADDs from C clients; the figures are callgrind's inclusive counts divided by N:
#   total       every thread, start and shutdown included (the same for both builds)
#   network     the RESP connection tasks (parse, plan, submit, format, write)
#   writer      the writer thread (group commit: the store's apply and the fsync calls)
#   parse/prepare/format   parts of the network figure
# The writer's figure depends on how many XADDs share a commit, which depends on timing;
# the network figures do not.
#
#   benches/callgrind-xadd.sh                       # this checkout's release build
#   CORTEX=old/cortex CORTEX2=new/cortex benches/callgrind-xadd.sh
#
# Env: N (20000 XADDs), C (50 clients). Takes about a minute per build.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}; C=${C:-50}
. benches/resp-lib.sh
need_redis_tools
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
cortex_bin

scratch_and_server

# $1 = label, $2 = binary.
count() {
  local label=$1 bin=$2 port out
  port=$(free_port); out="$WORK/$label.cg"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve \
    --data-dir "$WORK/$label-data" --resp "127.0.0.1:$port" --quic 127.0.0.1:0 \
    --http 127.0.0.1:0 --fsync always >/dev/null 2>"$WORK/$label.log" &
  P=$!
  # Under valgrind the server takes seconds to start.
  for _ in $(seq 600); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
  redis-benchmark -p "$port" -c "$C" -P 1 -n "$N" -q \
    XADD s '*' f "$(head -c 100 /dev/zero | tr '\0' 'x')" >/dev/null 2>&1
  kill -INT "$P"; wait "$P" 2>/dev/null || true; P=""
  # Run from the scratch directory: where callgrind_annotate finds the sources by a relative
  # path, it splits a function's inclusive count by source file, and the figures change.
  (cd "$WORK" && callgrind_annotate --inclusive=yes "$out" 2>/dev/null) | python3 -c '
import re, sys
label, n = sys.argv[1], int(sys.argv[2])
want = {
    "total": r"PROGRAM TOTALS",
    "network": r"resp::server::serve::\{\{closure\}\}::\{\{closure\}\} \[",
    "writer": r"writer_loop \[",
    "parse": r"resp::codec::parse_command \[",
    "prepare": r"resp::cmd::prepare \[",
    "format": r"resp::cmd::format::\{\{closure\}\} \[",
}
got = {}
for line in sys.stdin:
    for k, pat in want.items():
        if k not in got and re.search(pat, line):
            got[k] = int(line.split()[0].replace(",", ""))
print(f"{label:6} " + "  ".join(f"{k} {got.get(k, 0) / n:,.0f}" for k in want))
' "$label" "$N"
}

echo "instructions per XADD (100 B, -c $C -P 1, $N XADDs, callgrind inclusive counts / N)"
count a "$CORTEX"
if [ -n "${CORTEX2:-}" ]; then count b "$CORTEX2"; fi
