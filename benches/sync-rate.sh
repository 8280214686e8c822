#!/usr/bin/env bash
# `-c 50 -P 1` XADDs (100 B) with the server's own account of its syncs beside the rate:
# each round starts a fresh cortex per build, runs N XADDs, and reads `/metrics` for the
# journal syncs made beside the next commit (`cortex_journal_sync_duration_seconds`: count
# and mean) and the commits (`cortex_commit_duration_seconds`: count, so XADDs per commit).
# Builds alternate within a round, so the disk's drift lands on all of them alike.
#
# FILL=1 runs each build twice a round, into a journal whose blocks are already written and
# into a sparse one: both servers first take 12,000 XADDs from one client (so the journal
# is past its first MiB and has synced); the "filled" one then idles until the journal
# filler's zeros stop growing (`cortex_journal_written_ahead_bytes_total`) and 5 s more,
# so the row's commits land in written blocks and their syncs allocate none. (README,
# twenty-second session: it did not move the row's rate.)
#
#   benches/sync-rate.sh                               # this checkout's release build
#   ROUNDS=3 benches/sync-rate.sh old/cortex new/cortex
#   FILL=1 N=150000 benches/sync-rate.sh               # written blocks against sparse ones
#   FSYNC=no benches/sync-rate.sh                      # the row's ceiling without syncs
#
# Env: ROUNDS (3), N (300000; with FILL keep it within the journal's 64 MiB, 150000), C
# (50), FILL, FSYNC (always: the server's --fsync). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; N=${N:-300000}; C=${C:-50}
. benches/resp-lib.sh
need_redis_tools
if [ $# -eq 0 ]; then cortex_bin; set -- "$CORTEX"; fi
scratch_and_server
P100=$(head -c 100 /dev/zero | tr '\0' 'x')

# The journal's written-ahead bytes on the server whose HTTP port is $1.
ahead() { curl -sf "127.0.0.1:$1/metrics" | awk '/^cortex_journal_written_ahead_bytes_total /{print int($2)}'; }

# The server's sync count and seconds, "count seconds", on HTTP port $1.
syncs() {
  curl -sf "127.0.0.1:$1/metrics" | awk '/^cortex_journal_sync_duration_seconds_count /{c=$2}
    /^cortex_journal_sync_duration_seconds_sum /{s=$2} /^cortex_commit_duration_seconds_count /{k=$2}
    END{print c+0, s+0, k+0}'
}

if [ -n "${FILL:-}" ]; then MODES="filled sparse"; else MODES="-"; fi
for r in $(seq "$ROUNDS"); do
  for b in "$@"; do for mode in $MODES; do
    port=$(free_port); http=$(free_port); dir=$WORK/$r-$port
    RUST_LOG=warn "$b" serve --data-dir "$dir" --resp "127.0.0.1:$port" --quic 127.0.0.1:0 \
      --http "127.0.0.1:$http" --fsync "${FSYNC:-always}" >/dev/null 2>&1 &
    P=$!
    wait_up "$port"
    label=$(basename "$b")
    if [ "$mode" != - ]; then
      label="$label $mode"
      redis-benchmark -p "$port" -c 1 -n 12000 -q XADD warm '*' f "$P100" >/dev/null 2>&1
      if [ "$mode" = filled ]; then
        prev=-1
        for _ in $(seq 120); do
          cur=$(ahead "$http")
          if [ "$cur" = "$prev" ] && [ "$cur" -gt 0 ]; then break; fi
          prev=$cur; sleep 0.5
        done
        sleep 5
      fi
    fi
    before=$(syncs "$http"); ahead0=$(ahead "$http")
    row=$(redis-benchmark -p "$port" -c "$C" -n "$N" --csv XADD s '*' f "$P100" 2>/dev/null | tail -1)
    after=$(syncs "$http"); ahead1=$(ahead "$http")
    kill "$P"; wait "$P" 2>/dev/null || true; P=""
    python3 - "$label" "$r" "$row" "$N" "$before" "$after" "$ahead0" "$ahead1" <<'PY'
import sys

label, rnd, row, n, before, after, ahead0, ahead1 = sys.argv[1:9]
cols = [c.strip('"') for c in row.split('","')]
(c0, s0, k0), (c1, s1, k1) = (map(float, x.split()) for x in (before, after))
syncs, commits = c1 - c0, k1 - k0
print(
    f"round {rnd} {label:27} {float(cols[1]):8.0f} XADDs/s  p50 {cols[4]} p99 {cols[6]} ms"
    f" | {syncs:6.0f} syncs, mean {(s1 - s0) / syncs * 1e6 if syncs else 0:4.0f} us"
    f" | {int(n) / commits if commits else 0:4.1f} XADDs per commit"
    f" | written ahead {int(ahead0) >> 20} MiB before, {(int(ahead1) - int(ahead0)) >> 20} during"
)
PY
    rm -rf "$dir"
  done; done
done
