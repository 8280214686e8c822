#!/usr/bin/env bash
# Replicated durable publish against the single node, side by side in one run, on loopback
# (release build, every node fsyncs its log). Rows: 1 publisher (latency), 16 publishers
# batching 10 (throughput), each on the single node, the cluster's leader and a follower
# (which forwards to the leader); then request/reply round trips (both hops durable) on the
# single node, within the leader, and between the two followers (requester on one,
# responder on the other); publish -> push at a fixed rate (publisher and subscriber on one
# node: the single node at 5,000/s, the leader and a follower at 1,000/s). Each row measures the disk's floor (100-byte append + fdatasync,
# `cortex bench disk`) for 2 s first and prints its p99 over the floor's p99 (p99/disk).
# Usage: benches/cluster.sh [DURATION=8]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin cortex >/dev/null 2>&1 || cargo build --release --bin cortex
B=$PWD/target/release/cortex
DUR=${DURATION:-8}
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
export CORTEX_CLUSTER_SECRET=bench-cluster-secret-0123456789
start() { # name quic resp http [cluster args...]
    local n=$1 q=$2 r=$3 h=$4; shift 4
    RUST_LOG=error setsid "$B" serve --data-dir "$W/$n" --quic 127.0.0.1:$q --resp 127.0.0.1:$r --http 127.0.0.1:$h "$@" >"$W/$n.log" 2>&1 &
    PIDS+=($!)
}
ready() { for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.05; done; echo "node on $1 not ready" >&2; exit 1; }
reqrep() { # name quic datadir [responder-quic responder-datadir]
    local extra=()
    [ $# -gt 3 ] && extra=(--responder-server 127.0.0.1:$4 --responder-data-dir "$W/$5")
    "$B" bench reqrep --server 127.0.0.1:$2 --data-dir "$W/$3" "${extra[@]}" --duration "$DUR" --json |
        python3 -c "import json,sys; r=json.load(sys.stdin); print('%-38s %8.0f %8d %8d %8d %8.1f' % ('$1', r['ops_per_s'], r['p50_us'], r['p99_us'], r['p999_us'], r.get('p99_over_disk') or 1.0))"
}
bench() { # name quic datadir publishers batch
    "$B" bench publish --server 127.0.0.1:$2 --data-dir "$W/$3" --duration "$DUR" --publishers "$4" --batch "$5" --json |
        python3 -c "import json,sys; r=json.load(sys.stdin); print('%-38s %8.0f %8d %8d %8d %8.1f' % ('$1', r['ops_per_s'], r['p50_us'], r['p99_us'], r['p999_us'], r.get('p99_over_disk') or 1.0))"
}
deliver() { # name quic datadir rate
    "$B" bench deliver --rate "$4" --server 127.0.0.1:$2 --data-dir "$W/$3" --duration "$DUR" --json |
        python3 -c "import json,sys; r=json.load(sys.stdin); print('%-38s %8.0f %8d %8d %8d %8.1f' % ('$1', r['ops_per_s'], r['p50_us'], r['p99_us'], r['p999_us'], r.get('p99_over_disk') or 1.0))"
}
printf '%-38s %8s %8s %8s %8s %8s\n' "row" "ops/s" "p50 us" "p99 us" "p99.9 us" "p99/disk"
mkdir -p "$W/floor"
"$B" bench disk --data-dir "$W/floor" --duration 4 --json |
    python3 -c "import json,sys; r=json.load(sys.stdin); print('%-38s %8.0f %8d %8d %8d %8.1f' % ('disk floor: 100 B append + fdatasync', r['ops_per_s'], r['p50_us'], r['p99_us'], r['p999_us'], 1.0))"
start single 7461 6461 7471
ready 7471
bench "single node, 1 publisher" 7461 single 1 1
bench "single node, 16 publishers x10" 7461 single 16 10
reqrep "single node, request/reply" 7461 single
deliver "single node, publish -> push 5,000/s" 7461 single 5000
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true; PIDS=()
N=(--cluster-node 1=127.0.0.1:7551 --cluster-node 2=127.0.0.1:7552 --cluster-node 3=127.0.0.1:7553)
for i in 1 2 3; do start n$i 746$((i + 1)) 646$((i + 1)) 747$((i + 1)) --node-id $i "${N[@]}"; done
for i in 1 2 3; do ready 747$((i + 1)); done
L=; for _ in $(seq 100); do
    for i in 1 2 3; do redis-cli -p 646$((i + 1)) INFO replication 2>/dev/null | grep -q role:master && L=$i; done
    [ -n "$L" ] && break; sleep 0.05
done
F=$((L % 3 + 1))
bench "cluster leader, 1 publisher" 746$((L + 1)) n$L 1 1
bench "cluster leader, 16 publishers x10" 746$((L + 1)) n$L 16 10
bench "cluster follower, 1 publisher" 746$((F + 1)) n$F 1 1
bench "cluster follower, 16 publishers x10" 746$((F + 1)) n$F 16 10
G=$((F % 3 + 1))
reqrep "cluster leader, request/reply" 746$((L + 1)) n$L
deliver "cluster leader, publish -> push 1,000/s" 746$((L + 1)) n$L 1000
deliver "cluster follower, publish -> push 1,000/s" 746$((F + 1)) n$F 1000
reqrep "cluster follower -> follower, req/rep" 746$((F + 1)) n$F 746$((G + 1)) n$G
