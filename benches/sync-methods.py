#!/usr/bin/env python3
"""Would another way of making a journal write durable sync faster on this disk? (no cortex)

Each method makes one small append durable at the tail of a file whose blocks are already
written (as the journal filler leaves them), three ways:
  - right after the previous one returned (gap 0), from one thread;
  - after a busy pause of 150 us (the CPU work between two group commits);
  - from two threads at once (cortex's two syncers).
The methods:
  buf+fdatasync        200 B pwrite, then fdatasync (what fjall's journal does)
  buf O_DSYNC          200 B pwrite on a file opened O_DSYNC
  buf RWF_DSYNC        200 B pwritev2(RWF_DSYNC)
  direct O_DSYNC 4k    the 4 KiB block holding the tail, O_DIRECT | O_DSYNC
  direct+fdatasync 4k  the same block with O_DIRECT, then fdatasync
On a disk without FUA (`/sys/block/<dev>/queue/fua` is 0) every one of them is a data
write followed by a cache flush; only the path through the kernel differs.

    benches/sync-methods.py [DIR] [ROUNDS]   # DIR: on the disk to measure (default .), 2

Each line: syncs per second, and the sync's mean, p50 and p99 in microseconds. Writes one
64 MiB file in DIR, removed at the end.
"""

import mmap
import os
import sys
import threading
import time

SIZE = 64 << 20


def summary(label, lat, secs):
    lat.sort()
    n = len(lat)
    print(
        f"{label:34} {n / secs:7.0f} syncs/s  mean {sum(lat) / n * 1e6:5.0f}"
        f"  p50 {lat[n // 2] * 1e6:5.0f}  p99 {lat[int(n * 0.99)] * 1e6:5.0f} us",
        flush=True,
    )


def method(path, kind):
    """An open descriptor and a function that makes the append at `off` durable."""
    small = b"x" * 200
    if kind == "buf+fdatasync":
        fd = os.open(path, os.O_WRONLY)

        def op(off):
            os.pwrite(fd, small, off)
            os.fdatasync(fd)
    elif kind == "buf O_DSYNC":
        fd = os.open(path, os.O_WRONLY | os.O_DSYNC)

        def op(off):
            os.pwrite(fd, small, off)
    elif kind == "buf RWF_DSYNC":
        fd = os.open(path, os.O_WRONLY)

        def op(off):
            os.pwritev(fd, [small], off, os.RWF_DSYNC)
    else:
        flags = os.O_WRONLY | os.O_DIRECT
        if kind == "direct O_DSYNC 4k":
            flags |= os.O_DSYNC
        fd = os.open(path, flags)
        block = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT needs
        block.write(b"x" * 4096)

        def op(off):
            os.pwritev(fd, [block], off & ~4095)
            if kind == "direct+fdatasync 4k":
                os.fdatasync(fd)

    return fd, op


def run(path, kind, gap_us, nthreads, secs=1.5):
    fd, op = method(path, kind)
    lat, lock, pos = [], threading.Lock(), [0]
    stop = time.perf_counter() + secs

    def worker():
        mine = []
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < gap_us / 1e6:
                pass
            with lock:
                off = pos[0]
                pos[0] = (pos[0] + 200) % (SIZE - 8192)
            t = time.perf_counter()
            op(off)
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(nthreads)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.close(fd)
    summary(f"{kind} gap {gap_us} x{nthreads}", lat, secs)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "."
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    path = os.path.join(d, f".cortex-sync-methods-{os.getpid()}")
    with open(path, "wb") as f:
        f.write(b"\0" * SIZE)
        f.flush()
        os.fsync(f.fileno())
    kinds = (
        "buf+fdatasync",
        "buf O_DSYNC",
        "buf RWF_DSYNC",
        "direct O_DSYNC 4k",
        "direct+fdatasync 4k",
    )
    try:
        for r in range(rounds):
            print(f"== round {r + 1}")
            for kind in kinds:
                for gap, n in ((0, 1), (150, 1), (0, 2)):
                    run(path, kind, gap, n)
    finally:
        os.unlink(path)


if __name__ == "__main__":
    main()
