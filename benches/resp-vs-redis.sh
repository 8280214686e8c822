#!/usr/bin/env bash
# Side-by-side: Debian's redis-server 7 (appendonly yes, appendfsync always, then everysec)
# against `cortex serve --fsync always`, the same redis-benchmark workloads, printed as ratios.
# Also: this disk's serial fsync rate, and RSS growth per stored entry.
#
#   benches/resp-vs-redis.sh                       # full run
#   N=20000 RSS_ENTRIES=1000000 benches/resp-vs-redis.sh   # quicker
#   CORTEX=/tmp/cortex-before benches/resp-vs-redis.sh       # an older build, for before/after
#
# Loopback only; every server it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}                      # requests per XADD workload
READS=${READS:-5000}                # XREADGROUP COUNT 100 calls
RSS_ENTRIES=${RSS_ENTRIES:-10000000}
PAYLOAD=$(head -c 100 /dev/zero | tr '\0' 'x')

for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install redis-server redis-tools)"; exit 1; }
done
# CORTEX=path/to/cortex compares a given binary (for before/after runs) instead of building.
if [ -z "${CORTEX:-}" ]; then
  cargo build --release --bin cortex >/dev/null 2>&1 || cargo build --release --bin cortex
  CORTEX=target/release/cortex
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_up() { for _ in $(seq 200); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "server on $1 did not start"; exit 1; }

# Both set PORT and P (the pid) for the caller.
start_redis() { # $1 = appendfsync mode
  PORT=$(free_port); mkdir -p "$WORK/redis-$1-$PORT"
  redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK/redis-$1-$PORT" --appendonly yes \
    --appendfsync "$1" --save "" --daemonize no --logfile "$WORK/redis-$1-$PORT.log" &
  P=$!; PIDS+=("$P"); wait_up "$PORT"
}
start_cortex() {
  PORT=$(free_port)
  RUST_LOG=warn "$CORTEX" serve --data-dir "$WORK/cortex-$PORT" --resp "127.0.0.1:$PORT" --fsync always >/dev/null 2>"$WORK/cortex-$PORT.log" &
  P=$!; PIDS+=("$P"); wait_up "$PORT"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

rps() { # port clients pipeline requests command...
  local port=$1 c=$2 p=$3 n=$4; shift 4
  redis-benchmark -p "$port" -c "$c" -P "$p" -n "$n" --csv "$@" 2>/dev/null | tail -1 | cut -d, -f2 | tr -d '"'
}
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

echo "== disk: serial fsync rate (100-byte writes, O_DSYNC)"
FSYNC_RATE=$(python3 - "$WORK" <<'PY'
import os, sys, time
p = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o600)
n, t = 0, time.time()
while time.time() - t < 3:
    os.write(fd, b"x" * 100); n += 1
os.close(fd); print(f"{n / (time.time() - t):.0f}")
PY
)
echo "fsync rate: $FSYNC_RATE /s"

declare -A R
run_all() { # label port
  local label=$1 port=$2
  R[$label,c50p1]=$(rps "$port" 50 1 "$N" XADD s '*' f "$PAYLOAD")
  R[$label,c50p16]=$(rps "$port" 50 16 "$N" XADD s '*' f "$PAYLOAD")
  R[$label,c1p1]=$(rps "$port" 1 1 "$((N / 10))" XADD s '*' f "$PAYLOAD")
  # XREADGROUP COUNT 100 on a prefilled stream: prefill, then read READS*100 entries.
  rps "$port" 50 64 "$((READS * 100 + 1000))" XADD r '*' f "$PAYLOAD" >/dev/null
  redis-cli -p "$port" XGROUP CREATE r g 0 >/dev/null
  R[$label,read]=$(rps "$port" 1 1 "$READS" XREADGROUP GROUP g c COUNT 100 STREAMS r '>')
  echo "$label: c50P1 ${R[$label,c50p1]}  c50P16 ${R[$label,c50p16]}  c1P1 ${R[$label,c1p1]}  XREADGROUP(COUNT 100) ${R[$label,read]} calls/s"
}

echo "== redis-server appendfsync always"
start_redis always; run_all redis-always "$PORT"; stop "$P"
echo "== redis-server appendfsync everysec"
start_redis everysec; run_all redis-everysec "$PORT"; stop "$P"
echo "== cortex serve --fsync always"
start_cortex; run_all cortex "$PORT"; stop "$P"

echo
echo "== ratios (cortex / redis)"
printf '%-28s %8s %8s %8s\n' workload always everysec target
printf '%-28s %8s %8s %8s\n' "XADD c50 P1" "$(ratio "${R[cortex,c50p1]}" "${R[redis-always,c50p1]}")" "$(ratio "${R[cortex,c50p1]}" "${R[redis-everysec,c50p1]}")" ">=1.5 / >=1.0"
printf '%-28s %8s %8s %8s\n' "XADD c50 P16" "$(ratio "${R[cortex,c50p16]}" "${R[redis-always,c50p16]}")" "$(ratio "${R[cortex,c50p16]}" "${R[redis-everysec,c50p16]}")" ">=1.2 (always)"
printf '%-28s %8s %8s %8s\n' "XREADGROUP COUNT 100" "$(ratio "${R[cortex,read]}" "${R[redis-always,read]}")" "$(ratio "${R[cortex,read]}" "${R[redis-everysec,read]}")" ">=1.5 (always)"
echo "XADD c1 P1: cortex ${R[cortex,c1p1]}/s = $(ratio "${R[cortex,c1p1]}" "$FSYNC_RATE") of the disk's serial fsync rate (target >= 0.80)"

echo
echo "== RSS per stored entry ($RSS_ENTRIES entries of 100 bytes)"
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
start_cortex
BEFORE=$(rss_kb "$P")
rps "$PORT" 50 64 "$RSS_ENTRIES" XADD big '*' f "$PAYLOAD" >/dev/null
AFTER=$(rss_kb "$P")
LEN=$(redis-cli -p "$PORT" XLEN big)
echo "cortex: RSS ${BEFORE} kB -> ${AFTER} kB with $LEN entries: $(python3 -c "print(f'{($AFTER-$BEFORE)*1024/$LEN:.1f}')") bytes/entry (target < 10)"
stop "$P"
start_redis everysec
BEFORE=$(rss_kb "$P")
rps "$PORT" 50 64 "$((RSS_ENTRIES / 10))" XADD big '*' f "$PAYLOAD" >/dev/null
AFTER=$(rss_kb "$P")
LEN=$(redis-cli -p "$PORT" XLEN big)
echo "redis:  RSS ${BEFORE} kB -> ${AFTER} kB with $LEN entries: $(python3 -c "print(f'{($AFTER-$BEFORE)*1024/$LEN:.1f}')") bytes/entry"
stop "$P"
