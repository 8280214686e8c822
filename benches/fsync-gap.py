#!/usr/bin/env python3
"""How this disk's fdatasync time depends on what came before it (no cortex involved).

1. The pause before a sync: one thread writes 2,000 bytes and fdatasyncs, after a busy
   pause of GAP microseconds since the last sync returned (the CPU work a server does
   between two group commits). On the machines cortex is measured on, a sync issued right
   after the last one returned takes about 60 us, and one issued after a few hundred
   microseconds often 0.5-1 ms: the reason commits sync beside the next one
   (src/core/syncer.rs).
2. Syncs from several threads at once, on one file: whether two fdatasyncs overlap (the
   reason for two syncer threads).
3. Where the slow sync after a pause comes from: the same 300 us pause, spent instead
   reading 4 KiB with O_DIRECT every 40 us from another file. If the sync after it is as
   fast as one with no pause, the disk (on a virtual machine, its host side) goes idle
   when no request reaches it, not the CPU (README, twenty-first session).

    benches/fsync-gap.py [DIR]       # DIR: a directory on the disk to measure (default: .)

Each line: syncs per second, and the sync's mean, p50 and p99 in microseconds. Writes one
file in DIR, removed at the end.
"""

import mmap
import os
import sys
import threading
import time


def summary(label, lat, secs=None):
    lat.sort()
    n = len(lat)
    rate = f"{n / secs:7.0f} syncs/s  " if secs else ""
    print(
        f"{label:28} {rate}mean {sum(lat) / n * 1e6:5.0f}  p50 {lat[n // 2] * 1e6:5.0f}"
        f"  p99 {lat[int(n * 0.99)] * 1e6:5.0f} us",
        flush=True,
    )


def after_pause(path, gap_us, n=1500, label="before each", during=None):
    """Each sync after a busy pause; `during(i, now)`, if given, runs on every turn of it."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_APPEND)
    lat = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            while (now := time.perf_counter()) - t0 < gap_us / 1e6:
                if during:
                    during(i, now)
            t = time.perf_counter()
            os.write(fd, b"x" * 2000)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
    finally:
        os.close(fd)
    summary(f"pause {gap_us:4} us {label}", lat)


def pause_with_reads(path, gap_us=300, every_us=40, n=1000):
    rpath = path + ".read"
    with open(rpath, "wb") as f:
        f.write(b"r" * (1 << 20))
        f.flush()
        os.fsync(f.fileno())
    rfd = os.open(rpath, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT needs
    next_read = [0.0]

    def read(i, now):
        if now >= next_read[0]:
            os.preadv(rfd, [buf], (i * 7 * 4096) % (1 << 20))
            next_read[0] = time.perf_counter() + every_us / 1e6

    try:
        after_pause(path, gap_us, n, "of reads", read)
    finally:
        os.close(rfd)
        os.unlink(rpath)


def threads_at_once(path, nthreads, secs=2.0):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_APPEND)
    lat, lock = [], threading.Lock()
    stop = time.perf_counter() + secs

    def worker():
        mine = []
        while time.perf_counter() < stop:
            t = time.perf_counter()
            os.write(fd, b"x" * 2000)
            os.fdatasync(fd)
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=worker) for _ in range(nthreads)]
    try:
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        os.close(fd)
    summary(f"{nthreads} thread(s) at once", lat, secs)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "."
    path = os.path.join(d, f".cortex-fsync-gap-{os.getpid()}")
    try:
        for gap in (0, 50, 100, 150, 200, 300, 1000):
            after_pause(path, gap)
        for n in (1, 2, 3):
            threads_at_once(path, n)
        pause_with_reads(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)


if __name__ == "__main__":
    main()
