#!/usr/bin/env python3
"""What a commit's fdatasync costs when its bytes land in blocks the file system must
allocate, against blocks already written: the journal fjall creates is sparse (`set_len` of
64 MiB, no blocks), so a commit that reaches a new 4 KiB block also makes the sync write
the inode's block map (ext4 `ext4_write_inode`, seen in `perf record -e sched:sched_switch`
on the writer thread).

For each write size it appends that many bytes and calls fdatasync, N times, once into a
sparse file and once into a file whose blocks were written (zeros) and synced first; it
prints p50, p99 and the mean of the fdatasync alone.

    benches/fsync-alloc.py                  # in ./target (this checkout's disk)
    DIR=/data N=5000 benches/fsync-alloc.py
"""

import os
import statistics
import time

DIR = os.environ.get("DIR", "target")
N = int(os.environ.get("N", "3000"))
SIZES = (200, 2000, 8192)


def run(prewritten: bool, size: int) -> str:
    path = os.path.join(DIR, f"fsync-alloc-{os.getpid()}.bin")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        length = N * size + (1 << 20)
        if prewritten:
            zeros = b"\0" * (1 << 20)
            for _ in range(length >> 20):
                os.write(fd, zeros)
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        else:
            os.ftruncate(fd, length)
            os.fsync(fd)
        data = b"x" * size
        lat = []
        for _ in range(N):
            os.write(fd, data)
            t = time.perf_counter()
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t) * 1e6)
    finally:
        os.close(fd)
        os.remove(path)
    lat.sort()
    return (
        f"p50 {lat[len(lat) // 2]:6.0f} µs  p99 {lat[int(len(lat) * 0.99)]:6.0f} µs  "
        f"mean {statistics.mean(lat):6.0f} µs"
    )


def main() -> None:
    os.makedirs(DIR, exist_ok=True)
    print(f"fdatasync after each write, {N} writes per row, in {DIR}")
    for size in SIZES:
        for prewritten in (False, True):
            kind = "written blocks" if prewritten else "sparse (new blocks)"
            print(f"{size:5} B  {kind:20}  {run(prewritten, size)}")


if __name__ == "__main__":
    main()
