#!/usr/bin/env bash
# The side-by-side's lone-client row in its place: a fresh `serve --fsync always` takes
# resp-vs-redis.sh's four heavy XADD rows (100 B at -c 50 -P 1 and -P 16, 100,000 each;
# 1 KB at -c 50 -P 1 and -P 16, 50,000 each), waits until the server is idle, then one
# client makes 10,000 unpipelined 100 B XADDs. A journal rotation and a memtable flush fall
# inside those calls. Builds (and "redis", for Redis with appendfsync always) alternate, one
# line each per round: calls/s, p50, p95, p99 and max (ms), and the journals before/after.
#
#   benches/c1-after-heavy.sh OLD_BINARY NEW_BINARY [redis]     # ROUNDS=5
#   TIMELINE=1 benches/c1-after-heavy.sh BINARY                  # per-100 ms buckets
#
# TIMELINE=1 times each call from a Python client instead (benches/c1-timeline.py): p50,
# p99, p99.9 and max, then per 100 ms the calls, those over 0.25 ms, the slowest, whether
# the journal filler (F) ran, and the fjall workers' CPU ticks (w). Loopback only; every
# server it starts is stopped by its pid.
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
. benches/resp-lib.sh
need_redis_tools
PAYLOAD=$(head -c 100 /dev/zero | tr '\0' 'x')
KB=$(head -c 1000 /dev/zero | tr '\0' 'x')
W=$(mktemp -d) P=
cleanup() { [ -n "$P" ] && kill "$P" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

journals() { [ -d "$1" ] && (cd "$1" && ls -s --block-size=M -- *.jnl next.jnl-spare 2>/dev/null | tr '\n' ' '); }

round() { # binary
  local port d="$W/d$RANDOM" line
  port=$(free_port)
  start_always "$1" "$d" "$port"
  wait_up "$port"
  # Redis: also until no AOF rewrite runs.
  local rport=""; [ "$1" = redis ] && rport=$port
  redis-benchmark -p "$port" -c 50 -P 1 -n 100000 -q XADD s '*' f "$PAYLOAD" >/dev/null; quiet "$P" $rport
  redis-benchmark -p "$port" -c 50 -P 16 -n 100000 -q XADD s '*' f "$PAYLOAD" >/dev/null; quiet "$P" $rport
  redis-benchmark -p "$port" -c 50 -P 1 -n 50000 -q XADD k '*' f "$KB" >/dev/null; quiet "$P" $rport
  redis-benchmark -p "$port" -c 50 -P 16 -n 50000 -q XADD k '*' f "$KB" >/dev/null; quiet "$P" $rport
  local before; before=$(journals "$d")
  if [ -n "${TIMELINE:-}" ]; then
    echo "$(basename "$1"): journals $before"
    python3 benches/c1-timeline.py "$port" "$P" 10000
    echo "  journals after: $(journals "$d")"
  else
    line=$(redis-benchmark -p "$port" -c 1 -P 1 -n 10000 --csv XADD s '*' f "$PAYLOAD" |
      tail -1 | tr -d '"' | awk -F, '{printf "%s/s p50 %s p95 %s p99 %s max %s ms", $2, $5, $6, $7, $8}')
    printf '%-16s %s | journals %s-> %s\n' "$(basename "$1")" "$line" "$before" "$(journals "$d")"
  fi
  kill "$P"; wait "$P" 2>/dev/null; P=
  rm -rf "$d"
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r"
  for b in "$@"; do round "$b"; done
done
