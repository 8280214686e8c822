# Shared by the RESP benchmark scripts (sourced, not run): the tools they need, the cortex
# build they compare, and loopback ports.

# Exits unless redis-server, redis-benchmark and redis-cli are installed.
need_redis_tools() {
  for tool in redis-server redis-benchmark redis-cli; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install redis-server redis-tools)"; exit 1; }
  done
}

# Exits unless perf is installed (the scripts that trace system calls or block requests).
need_perf() {
  command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)"; exit 1; }
}

# CORTEX=path/to/cortex compares a given binary (for before/after runs); unset, the release
# build of this checkout is built and used.
cortex_bin() {
  if [ -z "${CORTEX:-}" ]; then
    cargo build --release --bin cortex >/dev/null 2>&1 || cargo build --release --bin cortex
    CORTEX=target/release/cortex
  fi
}

# A loopback port free at the time of asking.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Starts redis-server (appendonly, appendfsync always) when $1 is "redis", else `$1 serve
# --fsync always`, with its data in directory $2, on port $3; sets P to its pid.
start_always() {
  if [ "$1" = redis ]; then
    mkdir -p "$2"
    redis-server --port "$3" --bind 127.0.0.1 --dir "$2" --appendonly yes \
      --appendfsync always --save "" --daemonize no --logfile "$2/log" &
  else
    RUST_LOG=warn "$1" serve --data-dir "$2" --resp "127.0.0.1:$3" --quic 127.0.0.1:0 \
      --http 127.0.0.1:0 --fsync always >/dev/null 2>&1 &
  fi
  P=$!
}

# Waits (10 s at most) until a RESP server answers PING on port $1.
wait_up() { for _ in $(seq 200); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "server on $1 did not start"; exit 1; }

# Waits (15 s at most) until process $1 used under 5 % of a core over 200 ms and, given a
# port $2, the Redis there has no AOF rewrite running; past that it says so, and the caller
# goes on anyway.
quiet() {
  local ticks=$(( $(getconf CLK_TCK) / 100 )) a b
  [ "$ticks" -ge 1 ] || ticks=1
  for _ in $(seq 75); do
    a=$(awk '{print $14+$15}' "/proc/$1/stat")
    sleep 0.2
    b=$(awk '{print $14+$15}' "/proc/$1/stat")
    if [ $((b - a)) -le "$ticks" ] && { [ -z "${2:-}" ] ||
      redis-cli -p "$2" INFO persistence | grep -q '^aof_rewrite_in_progress:0'; }; then
      return 0
    fi
  done
  echo "  (a server still worked in the background after 15 s; the next workload runs anyway)"
}

# A new stream $2 (IDs per $3, 100 B entries) of $4 entries on the RESP server at port $1,
# written at -c 50 -P 64, with a group g reading it from the start.
prefill_group() {
  redis-benchmark -p "$1" -c 50 -P 64 -n "$4" -q \
    XADD "$2" "$3" f "$(head -c 100 /dev/zero | tr '\0' 'x')" >/dev/null 2>&1
  redis-cli -p "$1" XGROUP CREATE "$2" g 0 >/dev/null
}

# A scratch directory ($WORK) and the pid of the one server running at a time ($P, empty
# when none): both go when the script exits, however it exits.
scratch_and_server() {
  WORK=$(mktemp -d)
  P=""
  trap 'if [ -n "$P" ]; then kill "$P" 2>/dev/null || true; wait "$P" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
}

# What the callgrind scripts need: the Redis tools, valgrind, the build ($CORTEX), and a
# scratch directory with the server's pid cleaned up on exit.
callgrind_setup() {
  need_redis_tools
  command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
  cortex_bin
  scratch_and_server
}

# What the scripts that trace a server with perf need: the Redis tools, perf, the build
# ($CORTEX), and a scratch directory with the server's pid cleaned up on exit.
perf_setup() {
  need_redis_tools
  need_perf
  cortex_bin
  scratch_and_server
}

# Starts binary $2 under valgrind's callgrind (profile $WORK/$1.cg, data $WORK/$1-data),
# fsync always, RESP on a free port ($PORT), pid in $P; returns once it answers PING (under
# valgrind the server takes seconds to start). Needs scratch_and_server.
callgrind_serve() {
  PORT=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$1.cg" "$2" serve \
    --data-dir "$WORK/$1-data" --resp "127.0.0.1:$PORT" --quic 127.0.0.1:0 \
    --http 127.0.0.1:0 --fsync always >/dev/null 2>"$WORK/$1.log" &
  P=$!
  for _ in $(seq 600); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server under valgrind did not start"; exit 1
}

# Ends a window that started with `callgrind_control -z "$P"` (after a prefill the figures
# should not count): dumps the counters of the server $P (profile label $1; the dump is the
# profile's first part, "$WORK/$1.cg.1"), stops the server, and copies the dump to $KEEP
# when set.
callgrind_dump() {
  callgrind_control -d "$P" >/dev/null 2>&1
  kill -INT "$P"; wait "$P" 2>/dev/null || true; P=""
  if [ -n "${KEEP:-}" ]; then cp "$WORK/$1.cg.1" "$KEEP/$1.cg"; fi
}

# Prints one line: label $2, then for each NAME=REGEX argument after $3 the inclusive count
# of the first function of callgrind profile $1 that matches REGEX, divided by $3 (the ops).
# A NAME given twice adds the two counts. Runs from the profile's directory: where
# callgrind_annotate finds the sources by a relative path, it splits a function's inclusive
# count by source file, and the figures change.
callgrind_figures() {
  local profile=$1 label=$2 ops=$3; shift 3
  (cd "$(dirname "$profile")" && callgrind_annotate --inclusive=yes "$profile" 2>/dev/null) |
    python3 -c '
import re, sys
label, n, specs = sys.argv[1], int(sys.argv[2]), [a.split("=", 1) for a in sys.argv[3:]]
got, seen = {}, set()
for line in sys.stdin:
    for i, (name, pat) in enumerate(specs):
        if i not in seen and re.search(pat, line):
            seen.add(i)
            got[name] = got.get(name, 0) + int(line.split()[0].replace(",", ""))
print(f"{label:6} " + "  ".join(f"{k} {got.get(k, 0) / n:,.0f}" for k in dict(specs)))
' "$label" "$ops" "$@"
}
