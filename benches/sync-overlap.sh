#!/usr/bin/env bash
# How long each `fdatasync` takes under `-c 50 -P 1` XADDs, by what the disk was doing when
# it began: another sync under way (cortex's two syncer threads, `src/core/syncer.rs`), or
# none, and then how long the disk had been idle since the last sync returned. Redis
# (`appendfsync always`) runs the same workload for reference: its one thread syncs once
# per event-loop pass, never beside another sync.
#
# Every fdatasync is traced with `perf trace -e fdatasync` (its start and duration); the
# tracing slows both servers by 10-20 %, so the rates printed are not comparable with the
# side-by-side's (benches/resp-vs-redis.sh). The durations are what this is for.
#
#   benches/sync-overlap.sh                         # this checkout's release build
#   CORTEX=old/cortex ROUNDS=3 N=200000 benches/sync-overlap.sh
#
# Env: N (200000 XADDs), C (50 clients), ROUNDS (2). Needs perf (apt-get install linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}; C=${C:-50}; ROUNDS=${ROUNDS:-2}
. benches/resp-lib.sh
perf_setup

# $1 = label, $2 = binary or "redis".
run() {
  local label=$1 port trace=$WORK/$1.trace tracer rate
  port=$(free_port)
  start_always "$2" "$WORK/$label-$port" "$port"
  wait_up "$port"
  perf trace -e fdatasync -p "$P" -o "$trace" 2>/dev/null &
  tracer=$!
  # perf trace attaches in the background: wait until it has.
  for _ in $(seq 100); do
    redis-cli -p "$port" XADD warm '*' f x >/dev/null
    grep -q fdatasync "$trace" 2>/dev/null && break
    sleep 0.05
  done
  rate=$(redis-benchmark -p "$port" -c "$C" -P 1 -n "$N" --csv \
    XADD s '*' f "$(head -c 100 /dev/zero | tr '\0' 'x')" 2>/dev/null | tail -1 | cut -d, -f2 | tr -d '"')
  kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
  kill "$P"; wait "$P" 2>/dev/null || true; P=""
  printf '%-8s %9.0f XADDs/s (traced)\n' "$label" "$rate"
  python3 - "$trace" <<'EOF'
import re, sys

# perf trace lines: "START ( DUR ms): comm/tid fdatasync(...) = 0"; a call that another
# thread's output interrupted comes back as "START ( DUR ms): comm/tid ... [continued]".
pat = re.compile(r"^\s*([\d.]+) \(\s*([\d.]+) ms\): (\S+) .*(fdatasync\(fd|\[continued\]: fdatasync)")
syncs = []
for line in open(sys.argv[1]):
    m = pat.match(line)
    if m:
        start = float(m.group(1)) * 1e3          # µs
        syncs.append((start, start + float(m.group(2)) * 1e3))
syncs.sort()
classes = {}
last_end = None
ends = []                                          # ends of the syncs under way
for start, end in syncs:
    ends = [e for e in ends if e > start]
    if ends:
        c = "beside another"
    elif last_end is None:
        c = None
    else:
        gap = start - last_end
        c = ("alone, idle < 50 us" if gap < 50 else
             "alone, idle 50-200 us" if gap < 200 else
             "alone, idle >= 200 us")
    if c:
        classes.setdefault(c, []).append(end - start)
    ends.append(end)
    last_end = end if last_end is None else max(last_end, end)
total = sum(len(v) for v in classes.values())
for c in ("beside another", "alone, idle < 50 us", "alone, idle 50-200 us", "alone, idle >= 200 us"):
    d = sorted(classes.get(c, []))
    if not d:
        continue
    n = len(d)
    print(f"  {c:24} {n:6} syncs ({100 * n / total:4.1f} %)  mean {sum(d) / n:5.0f}"
          f"  p50 {d[n // 2]:5.0f}  p99 {d[min(n - 1, int(n * 0.99))]:5.0f} us")
EOF
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r"
  run redis redis
  run cortex "$CORTEX"
done
