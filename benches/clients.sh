#!/usr/bin/env bash
# The three clients against one broker, in alternating rounds in the same minutes (so a
# shared machine's drift hits all alike): durable publish (1 publisher, 1 message per call)
# and request/reply round trips, for the Rust client (`cortex bench`), the Go client
# (clients/go/cmd/cortex-go-bench) and the Python client (clients/python/bench.py). All
# release builds. Prints each row, then the medians and their ratio to Rust's.
# Usage: benches/clients.sh [ROUNDS=3] [SECONDS=6]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3} SECS=${2:-6}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
W=$(mktemp -d)
P=
cleanup() { [ -n "$P" ] && kill "$P" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

cargo build --release --quiet --bin cortex
BIN=$CARGO_TARGET_DIR/release/cortex
(cd clients/go && go build -o "$W/go-bench" ./cmd/cortex-go-bench)
(cd clients/python && maturin build --release --quiet -o "$W/wheel")
python3 -m pip install -q --force-reinstall --no-deps "$W"/wheel/*.whl

D=$W/data
RUST_LOG=error "$BIN" serve --data-dir "$D" --quic 127.0.0.1:7611 --resp 127.0.0.1:6611 --http 127.0.0.1:7612 >/dev/null 2>&1 &
P=$!
for _ in $(seq 200); do curl -sf http://127.0.0.1:7612/readyz >/dev/null && break; sleep 0.05; done
S=(--server 127.0.0.1:7611 --data-dir "$D")
: >"$W/rows"
for r in $(seq "$ROUNDS"); do
  for w in publish reqrep; do
    "$BIN" bench "$w" "${S[@]}" --duration "$SECS" --json 2>/dev/null |
      python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"client":"rust","workload":r["workload"],"rate":r["ops_per_s"],"p50_us":r["p50_us"],"p99_us":r["p99_us"],"p999_us":r["p999_us"]}))' >>"$W/rows"
    "$W/go-bench" -workload "$w" -server 127.0.0.1:7611 -data-dir "$D" -duration "$SECS" >>"$W/rows"
    python3 clients/python/bench.py --workload "$w" "${S[@]}" --duration "$SECS" >>"$W/rows"
  done
  echo "round $r done" >&2
done
python3 - "$W/rows" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    print("%-6s %-7s %7.0f/s  p50 %6d  p99 %6d  p99.9 %7d us" % (r["client"], r["workload"], r["rate"], r["p50_us"], r["p99_us"], r["p999_us"]))
print("\nmedians, and the ratio to the Rust client's in the same run:")
med = {}
for c in ("rust", "go", "python"):
    for w in ("publish", "reqrep"):
        sel = [r for r in rows if r["client"] == c and r["workload"] == w]
        med[c, w] = {k: statistics.median(r[k] for r in sel) for k in ("rate", "p50_us", "p99_us", "p999_us")}
for w in ("publish", "reqrep"):
    for c in ("rust", "go", "python"):
        m, base = med[c, w], med["rust", w]
        print("%-6s %-7s p50 %6d us (%.2fx)  p99 %6d us (%.2fx)  p99.9 %7d us (%.2fx)" % (
            c, w, m["p50_us"], m["p50_us"] / base["p50_us"], m["p99_us"], m["p99_us"] / base["p99_us"],
            m["p999_us"], m["p999_us"] / base["p999_us"]))
PY
