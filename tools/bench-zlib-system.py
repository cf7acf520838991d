#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Time the system's C zlib (through Python's zlib module) compressing the data of
`cargo bench -p benches --bench zlib_backends` with the btrfs call pattern: a fresh stream per
128 KiB piece (windowBits 15, memLevel 8), Z_SYNC_FLUSH after every 4 KiB page, then Z_FINISH.

Usage: btrfs-compress corpus DIR && tools/bench-zlib-system.py DIR [REPS]
Prints, per level, the median time for all pieces with its min and max over REPS runs (default
15) and MB/s. Python's per-call overhead (two calls per page) is included, a few percent at
most at level 1, so the figures lean slightly against the C library.
"""
import os
import statistics
import sys
import time
import zlib


def pieces(d):
    out = []
    for name in sorted(os.listdir(d)):
        if name.startswith("incompressible"):
            continue
        data = open(os.path.join(d, name), "rb").read()
        out += [data[i:i + 131072] for i in range(0, len(data), 131072)]
    return out


def btrfs_loop(piece, level):
    c = zlib.compressobj(level, zlib.DEFLATED, 15, 8)
    n = 0
    for i in range(0, len(piece), 4096):
        n += len(c.compress(piece[i:i + 4096]))
        n += len(c.flush(zlib.Z_SYNC_FLUSH))
    return n + len(c.flush(zlib.Z_FINISH))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ps = pieces(sys.argv[1])
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    total = sum(map(len, ps))
    print(f"system zlib {zlib.ZLIB_RUNTIME_VERSION}, {len(ps)} pieces, {total} bytes, {reps} repetitions")
    for level in (1, 3, 6, 9):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for p in ps:
                btrfs_loop(p, level)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"zlib:{level}: median {med * 1e3:.2f} ms (min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f}), "
              f"{total / med / 1e6:.1f} MB/s")


if __name__ == "__main__":
    main()
