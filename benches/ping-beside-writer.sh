#!/usr/bin/env bash
# One unpipelined writer and, beside it, another client's PINGs: what a lone client's write
# costs (XADD -c 1 -P 1, 40,000 calls) and what the other client waits meanwhile (PING -c 1,
# 20,000 calls), for each cortex binary given and for Debian's redis-server 7 (appendonly
# yes, appendfsync always) on the same disk, in turn.
#
#   benches/ping-beside-writer.sh target/release/cortex [/tmp/cortex-before ...]
#
# Loopback only; every server it starts is stopped by its pid.
set -uo pipefail
. "$(dirname "$0")/resp-lib.sh"
need_redis_tools
PAYLOAD=$(head -c 100 /dev/zero | tr '\0' 'x')
W=$(mktemp -d) P=
cleanup() { [ -n "$P" ] && kill "$P" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
probe() { # label port
  for _ in $(seq 200); do redis-cli -p "$2" PING >/dev/null 2>&1 && break; sleep 0.05; done
  redis-benchmark -p "$2" -c 1 -P 1 -n 40000 --csv XADD s '*' f "$PAYLOAD" >"$W/x.csv" 2>&1 &
  local x=$!
  sleep 0.5
  local ping
  ping=$(redis-benchmark -p "$2" -c 1 -n 20000 --csv PING | tail -1 | tr -d '"' |
    awk -F, '{printf "PING %s/s p50 %s p99 %s max %s ms", $2, $5, $7, $8}')
  wait "$x"
  printf '%-24s XADD c1 %s | beside it: %s\n' "$1" \
    "$(tail -1 "$W/x.csv" | tr -d '"' | awk -F, '{printf "%s/s p50 %s p99 %s ms", $2, $5, $7}')" "$ping"
  kill "$P"; wait "$P" 2>/dev/null; P=
}
for b in "$@"; do
  port=$(free_port) d="$W/c-$RANDOM"
  RUST_LOG=warn "$b" serve --data-dir "$d" --resp "127.0.0.1:$port" --quic 127.0.0.1:0 \
    --http 127.0.0.1:0 --fsync always >/dev/null 2>&1 &
  P=$!
  probe "$b" "$port"
  rm -rf "$d"
done
port=$(free_port) d="$W/redis"
mkdir -p "$d"
redis-server --port "$port" --dir "$d" --appendonly yes --appendfsync always --save '' >/dev/null 2>&1 &
P=$!
probe "redis-server always" "$port"
