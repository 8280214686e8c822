#!/usr/bin/env bash
# Instructions the whole server spends per XACK of one random pending ID (-c 50 -P 16, the
# side-by-side script's ack row), counted by valgrind's callgrind: the machine's noise does
# not move these counts, so they compare two builds where a timed run cannot. The server
# runs under callgrind; the prefill (ENTRIES 100 B entries with IDs 1-0 .. 1-(ENTRIES-1),
# all read into one group's pending list) is not counted: the counters are zeroed after it
# and dumped after the acks. redis-benchmark draws the IDs at random (its seed is its own),
# so a few calls ack an ID already acked, as in the side-by-side; the figures move by a few
# instructions between runs of the same build. Figures are callgrind's inclusive counts
# divided by the calls:
#   total     every thread (the acks alone)
#   network   the RESP connection tasks (parse, plan, submit, commit when inline, format)
#   writer    the writer thread (the -P 16 batches are too large to commit inline)
#   store     the store's apply of the batches, wherever they ran (the acks against the
#             in-memory pending index, their tombstones, the commit)
#   commit    the commit into fjall within it (memtable inserts, journal write)
#   parse     the RESP parser's part of the network figure
#
#   benches/callgrind-xack.sh                       # this checkout's release build
#   CORTEX=old/cortex CORTEX2=new/cortex benches/callgrind-xack.sh
#
# Env: CALLS (20000 XACKs), ENTRIES (100000 pending), KEEP (a directory to keep the
# profiles in, for callgrind_annotate). A few minutes per build.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-20000}
ENTRIES=${ENTRIES:-100000}
. benches/resp-lib.sh
callgrind_setup

# $1 = label, $2 = binary.
count() {
  local label=$1 out="$WORK/$1.cg" port
  callgrind_serve "$label" "$2"; port=$PORT
  prefill_group "$port" a '1-*' "$ENTRIES"
  while [ "$(redis-cli -p "$port" XREADGROUP GROUP g c COUNT 10000 STREAMS a '>' | wc -l)" -gt 1 ]; do :; done
  callgrind_control -z "$P" >/dev/null 2>&1
  redis-benchmark -p "$port" -c 50 -P 16 -n "$CALLS" -r "$ENTRIES" -q \
    XACK a g '1-__rand_int__' >/dev/null 2>&1
  callgrind_dump "$label"
  # The dump after the acks is the profile's first part (".1").
  callgrind_figures "$out.1" "$label" "$CALLS" 'total=PROGRAM TOTALS' \
    'network=resp::server::serve::\{\{closure\}\}::\{\{closure\}\} \[' \
    'writer=writer_loop \[' 'store=Store::apply \[' 'commit=Overlay::commit \[' \
    'parse=resp::codec::parse_command \['
}

echo "instructions per XACK of one random ID (-c 50 -P 16, $CALLS calls, $ENTRIES pending)"
count a "$CORTEX"
if [ -n "${CORTEX2:-}" ]; then count b "$CORTEX2"; fi
