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
4. With --methods, only this: other ways of making a small append durable, at the tail of
   a file whose blocks are already written (as the journal filler leaves them): back to
   back from one thread, after a busy pause of 150 us, and from two threads at once.
     buf+fdatasync        200 B pwrite, then fdatasync (what fjall's journal does)
     buf O_DSYNC          200 B pwrite on a file opened O_DSYNC
     buf RWF_DSYNC        200 B pwritev2(RWF_DSYNC)
     direct O_DSYNC 4k    the 4 KiB block holding the tail, O_DIRECT | O_DSYNC
     direct+fdatasync 4k  the same block with O_DIRECT, then fdatasync
   On a disk without FUA (`/sys/block/<dev>/queue/fua` is 0) every one of them is a data
   write followed by a cache flush; only the path through the kernel differs (README,
   twenty-second session).

    benches/fsync-gap.py [DIR]                    # DIR: on the disk to measure (default: .)
    benches/fsync-gap.py [DIR] --methods [ROUNDS]   # 4. only, ROUNDS times (default: 2)

Each line: syncs per second, and the sync's mean, p50 and p99 in microseconds. Writes one
file in DIR (64 MiB with --methods), removed at the end.
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
        f"{label:32} {rate}mean {sum(lat) / n * 1e6:5.0f}  p50 {lat[n // 2] * 1e6:5.0f}"
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


def timed_threads(nthreads, secs, op, before=None):
    """Calls `op()` over and over from `nthreads` threads for `secs` seconds, each call
    after an untimed `before()` if given; every call's time, in seconds."""
    lat, lock = [], threading.Lock()
    stop = time.perf_counter() + secs

    def worker():
        mine = []
        while time.perf_counter() < stop:
            if before:
                before()
            t = time.perf_counter()
            op()
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=worker) for _ in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat


def threads_at_once(path, nthreads, secs=2.0):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_APPEND)

    def op():
        os.write(fd, b"x" * 2000)
        os.fdatasync(fd)

    try:
        lat = timed_threads(nthreads, secs, op)
    finally:
        os.close(fd)
    summary(f"{nthreads} thread(s) at once", lat, secs)


METHODS_FILE = 64 << 20
METHODS = (
    "buf+fdatasync",
    "buf O_DSYNC",
    "buf RWF_DSYNC",
    "direct O_DSYNC 4k",
    "direct+fdatasync 4k",
)


def method(path, kind):
    """An open descriptor and a function that makes the next 200 B append durable."""
    small = b"x" * 200
    lock, pos = threading.Lock(), [0]

    def next_offset():
        with lock:
            off = pos[0]
            pos[0] = (off + 200) % (METHODS_FILE - 8192)
        return off

    if kind.startswith("buf"):
        flags = os.O_WRONLY | (os.O_DSYNC if kind == "buf O_DSYNC" else 0)
        fd = os.open(path, flags)

        def op():
            off = next_offset()
            if kind == "buf RWF_DSYNC":
                os.pwritev(fd, [small], off, os.RWF_DSYNC)
            else:
                os.pwrite(fd, small, off)
            if kind == "buf+fdatasync":
                os.fdatasync(fd)
    else:
        flags = os.O_WRONLY | os.O_DIRECT
        if kind == "direct O_DSYNC 4k":
            flags |= os.O_DSYNC
        fd = os.open(path, flags)
        block = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT needs
        block.write(b"x" * 4096)

        def op():
            os.pwritev(fd, [block], next_offset() & ~4095)
            if kind == "direct+fdatasync 4k":
                os.fdatasync(fd)

    return fd, op


def methods(path, rounds, secs=1.5):
    with open(path, "wb") as f:
        f.write(b"\0" * METHODS_FILE)
        f.flush()
        os.fsync(f.fileno())
    for r in range(rounds):
        print(f"== round {r + 1}")
        for kind in METHODS:
            for gap_us, nthreads in ((0, 1), (150, 1), (0, 2)):
                fd, op = method(path, kind)

                def pause(gap_us=gap_us):
                    t0 = time.perf_counter()
                    while time.perf_counter() - t0 < gap_us / 1e6:
                        pass

                try:
                    lat = timed_threads(nthreads, secs, op, pause if gap_us else None)
                finally:
                    os.close(fd)
                summary(f"{kind} gap {gap_us} x{nthreads}", lat, secs)


def main():
    args = sys.argv[1:]
    d = args[0] if args and args[0] != "--methods" else "."
    path = os.path.join(d, f".cortex-fsync-gap-{os.getpid()}")
    if "--methods" in args:
        rest = args[args.index("--methods") + 1 :]
        try:
            methods(path, int(rest[0]) if rest else 2)
        finally:
            if os.path.exists(path):
                os.unlink(path)
        return
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
