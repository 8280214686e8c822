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
# Env: N (20000 XADDs), C (50 clients), KEEP (a directory to keep the profiles in, for
# callgrind_annotate). Takes about a minute per build.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}; C=${C:-50}
. benches/resp-lib.sh
callgrind_setup

# $1 = label, $2 = binary.
count() {
  local label=$1 out="$WORK/$1.cg" port
  callgrind_serve "$label" "$2"; port=$PORT
  redis-benchmark -p "$port" -c "$C" -P 1 -n "$N" -q \
    XADD s '*' f "$(head -c 100 /dev/zero | tr '\0' 'x')" >/dev/null 2>&1
  kill -INT "$P"; wait "$P" 2>/dev/null || true; P=""
  if [ -n "${KEEP:-}" ]; then cp "$out" "$KEEP/$label.cg"; fi
  callgrind_figures "$out" "$label" "$N" 'total=PROGRAM TOTALS' \
    'network=resp::server::serve::\{\{closure\}\}::\{\{closure\}\} \[' 'writer=writer_loop \[' \
    'parse=resp::codec::parse_command \[' 'prepare=resp::cmd::prepare \[' \
    'format=resp::cmd::format::\{\{closure\}\} \['
}

echo "instructions per XADD (100 B, -c $C -P 1, $N XADDs, callgrind inclusive counts / N)"
count a "$CORTEX"
if [ -n "${CORTEX2:-}" ]; then count b "$CORTEX2"; fi
