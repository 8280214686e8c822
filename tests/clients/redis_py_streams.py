"""redis-py against cortex's RESP port, through the library's own API: the seed's flows,
groups, XADD/XREADGROUP/XACK/XPENDING/XCLAIM/XAUTOCLAIM/XINFO, blocking reads, pipelines
and transactions, over RESP2 and RESP3."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_cortex():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.environ.get("CORTEX_BIN", os.path.join(target, "debug", "cortex"))
    data = tempfile.mkdtemp(prefix="cortex-py-")
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", data, "--resp", "127.0.0.1:0",
         "--quic", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn"})
    deadline = time.time() + 20
    for line in proc.stdout:
        if line.startswith("cortex: RESP listening on "):
            port = int(line.strip().rsplit(":", 1)[1])
            # Keep draining stdout so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, data, port
        if time.time() > deadline:
            break
    proc.kill()
    raise SystemExit("cortex did not report its RESP port")


def entries(reply, stream):
    """XREADGROUP's entries of one stream, in either protocol's shape."""
    if isinstance(reply, dict):
        return reply[stream][0]
    return dict(reply)[stream]


def flows(r, tag):
    s = f"tasks:{tag}"
    # The seed's flow: XADD with its fields; XGROUP CREATE ... MKSTREAM then XREADGROUP.
    assert r.xgroup_create(s, "workers", id="$", mkstream=True)
    id1 = r.xadd(s, {"type": "task", "from": "harold", "body": "build X"})
    id2 = r.xadd(s, {"type": "task", "from": "pink", "body": "test Y"})
    assert r.xlen(s) == 2
    got = entries(r.xreadgroup("workers", "w1", {s: ">"}, count=10), s)
    assert [e[0] for e in got] == [id1, id2], got
    assert got[0][1]["body"] == "build X"

    p = r.xpending(s, "workers")
    assert p["pending"] == 2 and p["min"] == id1 and p["max"] == id2, p
    assert p["consumers"] == [{"name": "w1", "pending": 2}], p
    rng = r.xpending_range(s, "workers", "-", "+", 10)
    assert [x["message_id"] for x in rng] == [id1, id2], rng
    assert rng[0]["times_delivered"] == 1

    claimed = r.xclaim(s, "workers", "w2", 0, [id1])
    assert claimed[0][0] == id1, claimed
    auto = r.xautoclaim(s, "workers", "w2", 0, "0-0", count=10)
    assert auto[0] == "0-0" and [e[0] for e in auto[1]] == [id1, id2], auto
    justid = r.xautoclaim(s, "workers", "w1", 0, "0-0", count=10, justid=True)
    # redis-py hands back the IDs alone for JUSTID.
    assert justid == [id1, id2], justid

    assert r.xack(s, "workers", id1, id2) == 2
    assert r.xpending(s, "workers")["pending"] == 0

    info = r.xinfo_stream(s)
    assert info["length"] == 2 and info["last-generated-id"] == id2, info
    assert info["first-entry"][0] == id1
    full = r.xinfo_stream(s, full=True)
    assert full["groups"][0]["name"] == "workers", full
    groups = r.xinfo_groups(s)
    assert groups[0]["name"] == "workers" and groups[0]["lag"] == 0, groups
    consumers = r.xinfo_consumers(s, "workers")
    assert sorted(c["name"] for c in consumers) == ["w1", "w2"], consumers

    # A transaction and a plain pipeline.
    with r.pipeline(transaction=True) as t:
        t.xadd(s, {"n": "1"}).xadd(s, {"n": "2"}).xlen(s)
        a, b, n = t.execute()
    assert a < b and n == 4
    with r.pipeline(transaction=False) as p:
        for i in range(100):
            p.xadd(f"{s}:pipe", {"i": str(i)})
        assert len(p.execute()) == 100
    assert r.xlen(f"{s}:pipe") == 100

    # A blocking group read on another connection, released by an append. No waiting for
    # it to block first: `>` hands out whatever the group has not seen, so the read returns
    # the entry whether the append lands before or after it blocks. (The Rust integration
    # tests check blocking itself, waiting on the server's blocked-client count.)
    r.xgroup_create(f"{s}:block", "g", id="$", mkstream=True)
    out = {}
    other = redis.Redis(connection_pool=r.connection_pool)

    def read():
        out["got"] = other.xreadgroup("g", "c", {f"{s}:block": ">"}, block=10000)

    t = threading.Thread(target=read)
    t.start()
    idb = r.xadd(f"{s}:block", {"wake": "up"})
    t.join(15)
    assert entries(out["got"], f"{s}:block")[0][0] == idb

    # Trimming through the library's options; a wrong one comes back as Redis's error.
    r.xadd(f"{s}:trim", {"a": "1"})
    r.xadd(f"{s}:trim", {"a": "2"}, maxlen=1, approximate=False)
    assert r.xlen(f"{s}:trim") == 1
    try:
        r.xtrim(f"{s}:trim", maxlen=0, approximate=False, limit=5)
        raise AssertionError("LIMIT without ~ was accepted")
    except redis.ResponseError as e:
        assert "LIMIT cannot be used without the special ~ option" in str(e), e

    # Redis 8.2's XDELEX and XACKDEL through the library's own calls.
    d = f"{s}:del"
    r.xgroup_create(d, "g", id="0", mkstream=True)
    r.xgroup_create(d, "other", id="0")
    ids = [r.xadd(d, {"n": str(i)}) for i in range(3)]
    r.xreadgroup("g", "c", {d: ">"})
    assert r.xackdel(d, "g", ids[0], ref_policy="ACKED") == [2]
    assert r.xackdel(d, "g", ids[1], "0-1") == [1, -1]
    assert r.xdelex(d, ids[2], ref_policy="DELREF") == [1]
    assert r.xpending(d, "g")["pending"] == 0 and r.xlen(d) == 1

    # Redis 8.8's XNACK, mapped onto the group's delivery policy.
    q = f"{s}:nack"
    r.xgroup_create(q, "g", id="0", mkstream=True)
    a = r.xadd(q, {"n": "1"})
    r.xreadgroup("g", "c", {q: ">"})
    assert r.xnack(q, "g", "SILENT", a) == 1
    assert r.xnack(q, "g", "FAIL", a, retrycount=3) == 1
    assert r.xpending_range(q, "g", "-", "+", 10)[0]["times_delivered"] == 3
    assert entries(r.xreadgroup("g", "c2", {q: ">"}), q)[0][0] == a

    # Redis 8.6's XADD IDMP / IDMPAUTO: a producer's message is stored once.
    m = f"{s}:idmp"
    first = r.xadd(m, {"a": "1"}, idmp=("p1", "m1"))
    assert r.xadd(m, {"a": "2"}, idmp=("p1", "m1")) == first
    auto = r.xadd(m, {"a": "3"}, idmpauto="p1")
    assert r.xadd(m, {"a": "3"}, idmpauto="p1") == auto and r.xlen(m) == 2

    # Redis 8.4's XREADGROUP CLAIM: idle deliveries first, each with (idle ms, deliveries).
    c = f"{s}:claim"
    r.xgroup_create(c, "g", id="0", mkstream=True)
    first = r.xadd(c, {"n": "1"})
    r.xreadgroup("g", "c1", {c: ">"})
    second = r.xadd(c, {"n": "2"})
    got = entries(r.xreadgroup("g", "c2", {c: ">"}, count=10, claim_min_idle_time=0), c)
    assert [e[0] for e in got] == [first, second], got
    assert got[0][3] == 1 and got[1][2:] == (0, 0), got

    # Redis 8.10's MAXCOUNT / MAXSIZE caps over all the streams of a read.
    r.xadd(c, {"n": "3"})
    capped = r.xreadgroup("g", "c3", {c: "0-0"}, count=1, max_count=1, max_size=1)
    assert len(entries(capped, c)) <= 1, capped
    assert len(entries(r.xreadgroup("g", "c3", {c: ">"}, max_count=1), c)) == 1
    assert len(entries(r.xread({c: "0-0"}, max_count=2), c)) == 2


def main():
    proc, data, port = start_cortex()
    try:
        for protocol in (2, 3):
            r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, decode_responses=True)
            assert r.info("server")["redis_version"].startswith("7.4.")
            flows(r, f"resp{protocol}")
            r.close()
            print(f"redis-py {redis.__version__} RESP{protocol}: stream flows passed")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
