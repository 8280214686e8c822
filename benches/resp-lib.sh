# Shared by the RESP benchmark scripts (sourced, not run): the tools they need, the cortex
# build they compare, and loopback ports.

# Exits unless redis-server, redis-benchmark and redis-cli are installed.
need_redis_tools() {
  for tool in redis-server redis-benchmark redis-cli; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install redis-server redis-tools)"; exit 1; }
  done
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

# Waits (10 s at most) until a RESP server answers PING on port $1.
wait_up() { for _ in $(seq 200); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "server on $1 did not start"; exit 1; }

# A scratch directory ($WORK) and the pid of the one server running at a time ($P, empty
# when none): both go when the script exits, however it exits.
scratch_and_server() {
  WORK=$(mktemp -d)
  P=""
  trap 'if [ -n "$P" ]; then kill "$P" 2>/dev/null || true; wait "$P" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
}
