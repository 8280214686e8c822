#!/usr/bin/env bash
# Compares two builds of cortex on one node, in alternating rounds in the same hour (so a
# shared machine's drift hits both alike): request/reply, 1-publisher publish and
# publish -> push at fixed rates (DELIVER_RATES, default "5000 10000"), each
# against a fresh `cortex serve` per round, with the disk's floor (`cortex bench disk`)
# measured before and after. Usage: benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS=3]
# (e.g. build the old commit in a worktree with its own CARGO_TARGET_DIR).
set -euo pipefail
OLD=$1 NEW=$2 ROUNDS=${3:-3}
DELIVER_RATES=${DELIVER_RATES:-5000 10000}
W=$(mktemp -d)
P=
cleanup() { [ -n "$P" ] && kill "$P" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
row() { # label bench-json
    python3 -c "import json,sys; r=json.load(sys.stdin); print('%-4s %-8s %5s %6.0f/s p50 %6d p99 %6d p99.9 %7d us' % ('$1', r['workload'], r.get('rate','') if r['workload']=='deliver' else '', r['ops_per_s'], r['p50_us'], r['p99_us'], r['p999_us']))"
}
round() { # binary label
    local d="$W/data-$2"
    rm -rf "$d"
    RUST_LOG=error "$1" serve --data-dir "$d" --quic 127.0.0.1:7601 --resp 127.0.0.1:6601 --http 127.0.0.1:7602 >/dev/null 2>&1 &
    P=$!
    for _ in $(seq 200); do curl -sf http://127.0.0.1:7602/readyz >/dev/null && break; sleep 0.05; done
    # Older builds have no --floor-seconds: the floor is measured separately below.
    "$1" bench reqrep --server 127.0.0.1:7601 --data-dir "$d" --duration 6 --json 2>/dev/null | row "$2"
    "$1" bench publish --server 127.0.0.1:7601 --data-dir "$d" --duration 4 --json 2>/dev/null | row "$2"
    for rate in $DELIVER_RATES; do
        "$1" bench deliver --rate "$rate" --server 127.0.0.1:7601 --data-dir "$d" --duration 6 --json 2>/dev/null | row "$2"
    done
    kill "$P"; wait "$P" 2>/dev/null || true; P=
}
"$NEW" bench disk --data-dir "$W/floor" --duration 4
for _ in $(seq "$ROUNDS"); do round "$OLD" old; round "$NEW" new; done
"$NEW" bench disk --data-dir "$W/floor" --duration 4
