#!/usr/bin/env bash
# Whose is a slow round of the lone client's row? The side-by-side's `XADD 100 B -c 1 -P 1`
# row now and then shows a p99 several times Redis's in one round and not in the next
# (README). Each XADD there waits for one fdatasync, so its p99 can be no better than the
# disk's sync p99 in that same stretch. This runs the row where the side-by-side runs it
# (after the four heavy XADD rows, on a fresh server), Redis and cortex in turn, and
# traces every fdatasync of the server and every write request reaching the disk while
# the row runs. Per round and server it prints:
#   - the row's XADDs/s, p50 and p99 (redis-benchmark);
#   - the server's own fdatasyncs in the row: count, p50, p99, p99.9 (the floor);
#   - XADD p99 / sync p99: what the server adds on top of its syncs at the tail;
#   - writes that reached the disk outside the server's syncs (table flushes, writeback,
#     other processes): if a slow round has none, its slow syncs were the disk's own;
#   - CPU time stolen from this virtual machine by its host while the row ran (`steal` in
#     /proc/stat, all CPUs): time neither the server nor the client could run;
#   - what the server wrote to storage while it idled between the last heavy row and this
#     one (`write_bytes` in /proc/PID/io: cortex's journal zeros, flushes, compactions),
#     which the disk's host may still be writing out when the row starts.
#
#   benches/c1-sync-tail.sh                         # this checkout's release build
#   CORTEX=old/cortex ROUNDS=6 benches/c1-sync-tail.sh
#
# Env: ROUNDS (3), N (100000: XADDs in each 100 B heavy row, half that at 1 KB), C1_N
# (10000: the lone client's XADDs). The tracing slows both servers alike; the rates are
# not the side-by-side's. Needs perf (apt-get install linux-perf); loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; N=${N:-100000}; C1_N=${C1_N:-10000}
. benches/resp-lib.sh
perf_setup
P100=$(head -c 100 /dev/zero | tr '\0' 'x')
KB=$(head -c 1024 /dev/zero | tr '\0' 'x')
TRACER=""
trap 'if [ -n "$TRACER" ]; then kill -INT "$TRACER" 2>/dev/null || true; fi
  if [ -n "$P" ]; then kill "$P" 2>/dev/null || true; wait "$P" 2>/dev/null || true; fi
  rm -rf "$WORK"' EXIT

# $1 = label, $2 = binary or "redis", $3 = round.
run() {
  local label=$1 port dir data=$WORK/$1.data row
  port=$(free_port); dir=$WORK/$label-$port
  start_always "$2" "$dir" "$port"
  wait_up "$port"
  redis-benchmark -p "$port" -c 50 -n "$N" -q XADD s '*' f "$P100" >/dev/null 2>&1; quiet "$P" "$port"
  redis-benchmark -p "$port" -c 50 -P 16 -n "$N" -q XADD s '*' f "$P100" >/dev/null 2>&1; quiet "$P" "$port"
  redis-benchmark -p "$port" -c 50 -n $((N / 2)) -q XADD k '*' f "$KB" >/dev/null 2>&1; quiet "$P" "$port"
  redis-benchmark -p "$port" -c 50 -P 16 -n $((N / 2)) -q XADD k '*' f "$KB" >/dev/null 2>&1
  idle0=$(awk '/^write_bytes/{print $2}' "/proc/$P/io")
  quiet "$P" "$port"
  perf record -q -a -e syscalls:sys_enter_fdatasync -e syscalls:sys_exit_fdatasync \
    -e block:block_rq_issue -o "$data" >/dev/null 2>&1 &
  TRACER=$!
  # perf attaches in the background: wait until it sees a sync (one XADD each try).
  for _ in $(seq 100); do
    redis-cli -p "$port" XADD warm '*' f x >/dev/null
    [ -s "$data" ] && break
    sleep 0.05
  done
  sleep 0.2
  idle=$(( ($(awk '/^write_bytes/{print $2}' "/proc/$P/io") - idle0) >> 20 ))
  steal0=$(awk '/^cpu /{print $9}' /proc/stat)
  row=$(redis-benchmark -p "$port" -c 1 -n "$C1_N" --csv XADD s '*' f "$P100" 2>/dev/null | tail -1)
  steal=$(( ($(awk '/^cpu /{print $9}' /proc/stat) - steal0) * 1000 / $(getconf CLK_TCK) ))
  kill -INT "$TRACER"; wait "$TRACER" 2>/dev/null || true; TRACER=""
  perf script -F comm,pid,tid,time,event,trace -i "$data" 2>/dev/null >"$data.txt"
  python3 - "$data.txt" "$P" "$label" "$3" "$row" "$steal" "$idle" <<'EOF'
import re, sys

path, pid, label, rnd, row, steal, idle = sys.argv[1:8]
# redis-benchmark --csv: "test","rps","avg","min","p50","p95","p99","max" (ms)
cols = [c.strip('"') for c in row.split('","')]
rps, p50, p99 = float(cols[1]), float(cols[4]), float(cols[6])
line = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$")
enter, syncs, issues = {}, [], []
for l in open(path):
    m = line.match(l)
    if not m:
        continue
    comm, p, tid, t, event, rest = m.groups()
    t = float(t)
    if event.endswith("sys_enter_fdatasync") and p == pid:
        enter[tid] = t
    elif event.endswith("sys_exit_fdatasync") and tid in enter:
        syncs.append((enter.pop(tid), t, tid))
    elif event.endswith("block_rq_issue"):
        f = rest.split()
        if len(f) > 2 and "W" in f[1] and f[2].isdigit():
            issues.append((t, tid, int(f[2])))
syncs.sort()
# The row: the syncs after the pause that follows the warm-up XADDs.
start = max((i for i in range(1, len(syncs)) if syncs[i][0] - syncs[i - 1][1] > 0.1), default=0)
syncs = syncs[start:]
if not syncs:
    print(f"{label:7} round {rnd}: no syncs traced")
    sys.exit()
durs = sorted(e - s for s, e, _ in syncs)
n = len(durs)
q = lambda x: durs[min(n - 1, int(n * x))] * 1e6
# A write request issued by the thread inside its own fdatasync is that sync's.
windows = {}
for s, e, tid in syncs:
    windows.setdefault(tid, []).append((s, e))
def in_sync(t, tid):
    return any(s <= t <= e for s, e in windows.get(tid, ()))
lo, hi = syncs[0][0], syncs[-1][1]
other = sum(b for t, tid, b in issues if lo <= t <= hi and not in_sync(t, tid))
print(f"{label:7} round {rnd}: {rps:8.0f} XADDs/s  XADD p50 {p50 * 1e3:4.0f} p99 {p99 * 1e3:5.0f} us"
      f" | {n} syncs p50 {q(0.5):4.0f} p99 {q(0.99):5.0f} p99.9 {q(0.999):5.0f} us"
      f" | XADD p99 / sync p99 {p99 * 1e3 / q(0.99):4.2f}"
      f" | other writes {other // 1024} KiB | stolen {steal} ms | written idle before {idle} MiB")
EOF
  kill "$P"; wait "$P" 2>/dev/null || true; P=""
  rm -rf "$dir" "$data" "$data.txt"
}

for r in $(seq "$ROUNDS"); do
  run redis redis "$r"
  run cortex "$CORTEX" "$r"
done
