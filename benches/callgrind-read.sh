#!/usr/bin/env bash
# Instructions the whole server spends per XREADGROUP COUNT 100 (one client, unpipelined,
# the side-by-side script's read row), counted by valgrind's callgrind: the machine's noise
# does not move these counts, so they compare two builds where a timed run cannot. The
# server runs under callgrind; a prefill of PREFILL 100 B entries is not counted (the
# counters are zeroed after it and dumped after the reads). Figures are callgrind's
# inclusive counts divided by the calls:
#   total     every thread (the reads alone)
#   read      the group read in the store (lane scan, pending writes)
#   lanes     its scan of the stream (fjall's iterator and the entries' decoding)
#   commit    the batch's commit into fjall (memtable inserts, journal write)
#   index     the in-memory pending index's update after the commit
#   reply     formatting and encoding the reply on the network thread
#
#   benches/callgrind-read.sh                       # this checkout's release build
#   CORTEX=old/cortex CORTEX2=new/cortex benches/callgrind-read.sh
#
# Env: CALLS (1000 reads of 100), PREFILL (CALLS * 100 + 1000), KEEP (a directory to keep
# the profiles in, for callgrind_annotate). About a minute per build.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-1000}
PREFILL=${PREFILL:-$((CALLS * 100 + 1000))}
. benches/resp-lib.sh
callgrind_setup

# $1 = label, $2 = binary.
count() {
  local label=$1 out="$WORK/$1.cg" port
  callgrind_serve "$label" "$2"; port=$PORT
  prefill_group "$port" r '*' "$PREFILL"
  callgrind_control -z "$P" >/dev/null 2>&1
  redis-benchmark -p "$port" -c 1 -P 1 -n "$CALLS" -q \
    XREADGROUP GROUP g c COUNT 100 STREAMS r '>' >/dev/null 2>&1
  callgrind_dump "$label"
  # The dump after the reads is the profile's first part (".1").
  callgrind_figures "$out.1" "$label" "$CALLS" 'total=PROGRAM TOTALS' \
    'read=Txn>::read_group \[' 'lanes=LaneReader::peek \[' 'commit=Overlay::commit \[' \
    'index=PendingIndex::apply \[' 'reply=resp::cmd::format::\{\{closure\}\} \[' \
    'reply=resp::server::emit::\{\{closure\}\} \['
}

echo "instructions per XREADGROUP COUNT 100 (100 B entries, one client, $CALLS calls)"
count a "$CORTEX"
if [ -n "${CORTEX2:-}" ]; then count b "$CORTEX2"; fi
