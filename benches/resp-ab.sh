#!/usr/bin/env bash
# Two builds of cortex on the RESP rows the write and ack paths change, in alternating rounds
# (so a shared machine's drift hits both alike): XADD -c 1 -P 1 (10,000 calls) and -c 50 -P 1
# (N calls), then XACK of
# random IDs among ACK_ENTRIES pending (one ID per call at -c 50 -P 16; 100 per call at
# -c 50), as in benches/resp-vs-redis.sh. Each round starts a fresh `serve --fsync always`.
#
#   benches/resp-ab.sh OLD_BINARY NEW_BINARY [ROUNDS=2]
#
# Loopback only; every server it starts is stopped by its pid.
set -uo pipefail
OLD=$1 NEW=$2 ROUNDS=${3:-2}
ACK=${ACK_ENTRIES:-200000} N=${N:-20000}
. "$(dirname "$0")/resp-lib.sh"
need_redis_tools
IDS=(); for _ in $(seq 100); do IDS+=("1-__rand_int__"); done
PAYLOAD=$(head -c 100 /dev/zero | tr '\0' 'x')
W=$(mktemp -d) P=
cleanup() { [ -n "$P" ] && kill "$P" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
# rps, p50 and p99 (ms) of one redis-benchmark CSV line.
csv() { tail -1 | tr -d '"' | awk -F, '{printf "%s/s p50 %s p99 %s ms", $2, $5, $7}'; }
round() { # binary label
  local port d="$W/$2-$RANDOM"
  port=$(free_port)
  RUST_LOG=warn "$1" serve --data-dir "$d" --resp "127.0.0.1:$port" --quic 127.0.0.1:0 \
    --http 127.0.0.1:0 --fsync always >/dev/null 2>&1 &
  P=$!
  for _ in $(seq 200); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.05; done
  local c1 c50 a1 a100
  c1=$(redis-benchmark -p "$port" -c 1 -P 1 -n 10000 --csv XADD s '*' f "$PAYLOAD" | csv)
  c50=$(redis-benchmark -p "$port" -c 50 -P 1 -n "$N" --csv XADD s '*' f "$PAYLOAD" | csv)
  redis-benchmark -p "$port" -c 50 -P 64 -n "$ACK" -q XADD a '1-*' f "$PAYLOAD" >/dev/null
  redis-cli -p "$port" XGROUP CREATE a g 0 >/dev/null
  while [ "$(redis-cli -p "$port" XREADGROUP GROUP g c COUNT 10000 STREAMS a '>' | wc -l)" -gt 1 ]; do :; done
  a1=$(redis-benchmark -p "$port" -c 50 -P 16 -n "$N" -r "$ACK" --csv XACK a g '1-__rand_int__' | csv)
  a100=$(redis-benchmark -p "$port" -c 50 -P 1 -n "$((N / 50))" -r "$ACK" --csv XACK a g "${IDS[@]}" | csv)
  printf '%-4s XADD c1: %s | XADD c50: %s | XACK 1 ID c50 P16: %s | XACK 100 IDs c50: %s\n' "$2" "$c1" "$c50" "$a1" "$a100"
  kill "$P"; wait "$P" 2>/dev/null; P=
  rm -rf "$d"
}
for _ in $(seq "$ROUNDS"); do round "$OLD" old; round "$NEW" new; done
