#!/usr/bin/env bash
# CPU the server spends per XADD under redis-benchmark, for cortex and for Redis 7
# `appendfsync always` on the same machine, in alternating rounds: the user and system time
# of the whole server process (every thread, from /proc/PID/stat) over the run, divided by
# the XADDs. On this 2-core machine redis-benchmark takes most of one core, so a row that
# is limited by CPU is limited by this figure, not by the disk. Each line also gives the
# slowest XADD (redis-benchmark's max) and, for cortex, how many commits took over 5 ms
# (cortex_commit_duration_seconds): the stalls behind the tail, and a commit's mean time;
# and the syncs made beside the next commit (cortex_journal_sync_duration_seconds).
#
#   benches/cpu-per-op.sh                                  # 100 B, -c 50 -P 1, 3 rounds
#   SIZE=1000 PIPELINE=16 benches/cpu-per-op.sh            # 1 KB at -P 16
#   CORTEX=old/cortex CORTEX2=new/cortex benches/cpu-per-op.sh   # two builds, no Redis
#
# Env: SIZE (entry bytes, 100), CLIENTS (50), PIPELINE (1), N (200000 XADDs), ROUNDS (3).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-100}; CLIENTS=${CLIENTS:-50}; PIPELINE=${PIPELINE:-1}
N=${N:-200000}; ROUNDS=${ROUNDS:-3}
. benches/resp-lib.sh
need_redis_tools
cortex_bin

scratch_and_server
TICK=$(getconf CLK_TCK)

# One round against a fresh server: $1 = label, $2 = "redis" or a cortex binary.
round() {
  local label=$1 server=$2 port hport dir line u0 s0 u1 s1 slow=""
  port=$(free_port); hport=$(free_port); dir="$WORK/$label-$port"; mkdir -p "$dir"
  if [ "$server" = redis ]; then
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
      --appendfsync always --save "" --daemonize no --logfile "$dir/log" &
  else
    RUST_LOG=warn "$server" serve --data-dir "$dir/data" --resp "127.0.0.1:$port" \
      --quic 127.0.0.1:0 --http "127.0.0.1:$hport" --fsync always >/dev/null 2>"$dir/log" &
  fi
  P=$!; wait_up "$port"
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$P/stat")
  line=$(redis-benchmark -p "$port" -c "$CLIENTS" -P "$PIPELINE" -n "$N" --csv \
    XADD s '*' f "$(head -c "$SIZE" /dev/zero | tr '\0' 'x')" 2>/dev/null | tail -1 | tr -d '"')
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$P/stat")
  if [ "$server" != redis ]; then
    slow=$(curl -s "127.0.0.1:$hport/metrics" | awk -F'[ "]' '
      /^cortex_commit_duration_seconds_bucket\{le="0.005"\}/ { fast = $NF }
      /^cortex_commit_duration_seconds_count/ { all = $NF }
      /^cortex_commit_duration_seconds_sum/ { sum = $NF }
      /^cortex_journal_sync_duration_seconds_count/ { syncs = $NF }
      /^cortex_journal_sync_duration_seconds_sum/ { ssum = $NF }
      END { printf "%d/%d, mean %.0f µs; syncs beside %d, mean %.0f µs", all - fast, all,
            all ? sum / all * 1e6 : 0, syncs, syncs ? ssum / syncs * 1e6 : 0 }')
  fi
  kill "$P"; wait "$P" 2>/dev/null || true; P=""
  python3 - "$label" "$line" "$u0" "$s0" "$u1" "$s1" "$TICK" "$N" "$slow" <<'PY'
import sys
label, line, u0, s0, u1, s1, tick, n, slow = sys.argv[1:]
f = line.split(",")
per = lambda a, b: (int(b) - int(a)) / int(tick) / int(n) * 1e6
print(f"{label:8} {float(f[1]):>10,.0f}/s  p50 {f[4]} ms  p99 {f[6]} ms  max {f[7]} ms  "
      f"user {per(u0, u1):.2f} µs  sys {per(s0, s1):.2f} µs per XADD"
      + (f"  commits over 5 ms {slow}" if slow else ""))
PY
}

echo "XADD ${SIZE} B, -c $CLIENTS -P $PIPELINE, $N per round, fresh servers"
for r in $(seq "$ROUNDS"); do
  if [ -n "${CORTEX2:-}" ]; then
    round "old.$r" "$CORTEX"; round "new.$r" "$CORTEX2"
  else
    round "redis.$r" redis; round "cortex.$r" "$CORTEX"
  fi
done
