#!/usr/bin/env bash
# Compares two builds of cortex as three-node clusters on loopback, in alternating rounds
# in the same hour (so a shared machine's drift hits both alike): a fresh cluster per build
# per round; rows: 1 and 16x10 publishers on the leader, publish -> push at 1,000/s on the
# leader and on a follower (with the loss count), request/reply from one follower to the
# other. Usage: benches/cluster-ab.sh OLD_BINARY NEW_BINARY [ROUNDS=2]
set -euo pipefail
OLD=$1 NEW=$2 ROUNDS=${3:-2}
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
export CORTEX_CLUSTER_SECRET=bench-cluster-secret-0123456789
N=(--cluster-node 1=127.0.0.1:7651 --cluster-node 2=127.0.0.1:7652 --cluster-node 3=127.0.0.1:7653)
row() { # label row-name
    python3 -c "import json,sys; r=json.load(sys.stdin); print('%-4s %-24s %8.0f/s p50 %6d p99 %7d p99.9 %7d us %s' % ('$1', '$2', r['ops_per_s'], r['p50_us'], r['p99_us'], r['p999_us'], ('lost %d' % r['lost']) if 'lost' in r else ''))"
}
round() { # binary label
    local b=$1 label=$2
    rm -rf "$W"/n*
    for i in 1 2 3; do
        RUST_LOG=error setsid "$b" serve --data-dir "$W/n$i" --quic 127.0.0.1:756$i --resp 127.0.0.1:656$i --http 127.0.0.1:757$i --node-id $i "${N[@]}" >"$W/n$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 1 2 3; do for _ in $(seq 200); do curl -sf "http://127.0.0.1:757$i/readyz" >/dev/null && break; sleep 0.05; done; done
    local l=
    for _ in $(seq 100); do
        for i in 1 2 3; do redis-cli -p 656$i INFO replication 2>/dev/null | grep -q role:master && l=$i; done
        [ -n "$l" ] && break; sleep 0.05
    done
    [ -n "$l" ] || { echo "no leader" >&2; exit 1; }
    local f=$((l % 3 + 1)); local g=$((f % 3 + 1))
    "$b" bench publish --server 127.0.0.1:756$l --data-dir "$W/n$l" --duration 5 --json | row "$label" "leader, 1 publisher"
    "$b" bench publish --server 127.0.0.1:756$l --data-dir "$W/n$l" --duration 5 --publishers 16 --batch 10 --json | row "$label" "leader, 16 x10"
    "$b" bench deliver --rate 1000 --server 127.0.0.1:756$l --data-dir "$W/n$l" --duration 6 --json | row "$label" "leader, push 1,000/s"
    "$b" bench deliver --rate 1000 --server 127.0.0.1:756$f --data-dir "$W/n$f" --duration 6 --json | row "$label" "follower, push 1,000/s"
    "$b" bench reqrep --server 127.0.0.1:756$f --data-dir "$W/n$f" --responder-server 127.0.0.1:756$g --responder-data-dir "$W/n$g" --duration 6 --json | row "$label" "follower -> follower rr"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}
for _ in $(seq "$ROUNDS"); do round "$OLD" old; round "$NEW" new; done
