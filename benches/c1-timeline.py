#!/usr/bin/env python3
"""One client's unpipelined 100 B XADDs to stream `s`, each timed, with what the server's
threads did meanwhile: per 100 ms, the calls, those over 0.25 ms, the slowest (ms), F when
the journal filler thread (`fjall:jnl-fill`) ran, and w<ticks>: the fjall workers' CPU
(flushes, compactions). Prints p50, p99, p99.9 and max first.

    benches/c1-timeline.py PORT SERVER_PID CALLS     (used by benches/c1-after-heavy.sh)
"""

import os
import socket
import sys
import time

SLOW = 0.25e-3
BUCKET = 0.1


def threads(pid: int) -> tuple[set[str], int]:
    """The server's thread names, and the fjall workers' CPU ticks."""
    names: set[str] = set()
    ticks = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return names, ticks
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            names.add(name)
            if name == "fjall:worker":
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return names, ticks


def main() -> None:
    port, pid, calls = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cmd = (
        b"*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$1\r\nf\r\n$100\r\n"
        + b"x" * 100
        + b"\r\n"
    )
    lat: list[float] = []
    bucket: list[float] = []
    rows: list[tuple[float, int, int, float, str, int]] = []
    t0 = time.perf_counter()
    end = t0 + BUCKET
    names, ticks = threads(pid)
    for _ in range(calls):
        a = time.perf_counter()
        sock.sendall(cmd)
        reply = sock.recv(128)
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(128)
        z = time.perf_counter()
        if not reply.startswith(b"$"):
            sys.exit(f"unexpected reply {reply!r}")
        lat.append(z - a)
        bucket.append(z - a)
        if z >= end:
            now_names, now_ticks = threads(pid)
            filler = "F" if "fjall:jnl-fill" in names | now_names else "-"
            slow = sum(1 for x in bucket if x > SLOW)
            rows.append(
                (
                    z - t0,
                    len(bucket),
                    slow,
                    max(bucket) * 1e3,
                    filler,
                    now_ticks - ticks,
                )
            )
            bucket, end, names, ticks = [], z + BUCKET, now_names, now_ticks
    lat.sort()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * q))] * 1e3

    print(
        f"  p50 {pct(0.5):.3f} p99 {pct(0.99):.3f} p99.9 {pct(0.999):.3f} max {lat[-1] * 1e3:.3f} ms"
    )
    for at, n, slow, worst, filler, w in rows:
        print(
            f"  {at:5.1f} s  {n:5d} calls  {slow:3d} over 0.25 ms  max {worst:6.2f} ms  {filler} w{w}"
        )


if __name__ == "__main__":
    main()
