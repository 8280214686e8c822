#!/usr/bin/env bash
# What scraping /metrics every second costs the broker's publish throughput.
#
# One release broker (fsync always); `cortex bench publish` runs ROUNDS times without a
# scraper and ROUNDS times with one scraping /metrics every second, alternating, so drift in
# the machine's load hits both alike. Prints each run and the medians.
#
#   benches/metrics-overhead.sh            # ROUNDS=3 DURATION=10 BATCH=100 STREAMS=200
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
BATCH=${BATCH:-100}
STREAMS=${STREAMS:-200}
BIN=${CORTEX:-target/release/cortex}
[ -x "$BIN" ] || cargo build --release --bin cortex
data=$(mktemp -d)
log=$(mktemp)
"$BIN" serve --data-dir "$data" --resp 127.0.0.1:0 --quic 127.0.0.1:0 --http 127.0.0.1:0 >"$log" 2>/dev/null &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$log"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q "RESP listening" "$log" && break; sleep 0.1; done
quic=$(sed -n 's/^cortex: QUIC listening on //p' "$log")
http=$(sed -n 's/^cortex: HTTP listening on //p' "$log")
# Streams and groups, so a scrape has series to render (STREAMS streams, one group each).
for i in $(seq "$STREAMS"); do
  curl -sf -XPOST "http://$http/api/v1/streams/load-$i/groups" -H 'content-type: application/json' \
    -d '{"group":"g","start":"0"}' >/dev/null
done
echo "scrape size: $(curl -sf "http://$http/metrics" | wc -l) lines"
# The broker's own CPU time per scrape: its utime+stime (clock ticks) over 200 scrapes.
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(cpu)
for _ in $(seq 200); do curl -sf "http://$http/metrics" >/dev/null; done
after=$(cpu)
tick=$(getconf CLK_TCK)
python3 -c "print(f'broker CPU per scrape: {($after - $before) * 1000 / $tick / 200:.2f} ms, i.e. {($after - $before) / $tick / 200 * 100:.2f} % of one core at 1 scrape/s')"
run() {
  "$BIN" bench publish --batch "$BATCH" --duration "$DURATION" --json --server "$quic" --data-dir "$data" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["ops_per_s"])'
}
off=(); on=()
for r in $(seq "$ROUNDS"); do
  off+=("$(run)")
  ( while true; do curl -sf "http://$http/metrics" >/dev/null; sleep 1; done ) &
  scraper=$!
  on+=("$(run)")
  kill "$scraper"; wait "$scraper" 2>/dev/null || true
  echo "round $r: without scraper ${off[-1]} msg/s, with 1 Hz scraper ${on[-1]} msg/s"
done
python3 - "${off[*]}" "${on[*]}" <<'PY'
import statistics, sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(off), statistics.median(on)
print(f"median without: {a:,.0f} msg/s, with: {b:,.0f} msg/s, cost: {100 * (a - b) / a:+.2f} %")
PY
