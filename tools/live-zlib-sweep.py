#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Capture the running kernel's zlib extents at all nine levels, compactly, for the kernel-exact
deflate's identity test (crates/diff-tests/tests/zlib_sweep.rs).

Writes a deterministic corpus (text, binary, mixed, long runs, barely compressible data, sizes
from 4 KiB to 128 KiB and a few unaligned ones) onto a loop-mounted btrfs under
compress-force=zlib:1 .. zlib:9, syncs, remounts read-only and reads every extent with
BTRFS_IOC_ENCODED_READ. Stored in fixtures/zlib-sweep-<uname -r>/: the plaintexts (zstd) and
manifest.json with each extent's position, lengths, compression and the sha256 of its bytes (the
bytes themselves are not needed: the test compares our extents' sha256).

Needs root, a loop device, btrfs, mkfs.btrfs and zstd; prints SKIPPED and exits 0 otherwise.
Usage: tools/live-zlib-sweep.py [OUTDIR]
"""
import hashlib
import json
import os
import platform
import shutil
import sys

sys.path.insert(0, os.path.dirname(__file__))
import fixture_lib as fl  # noqa: E402


def sweep_corpus():
    files = {}
    sizes = [4096, 8192, 12288, 16384, 32768, 65536, 98304, 131072]
    for i, n in enumerate(sizes):
        files[f"text-{n}"] = fl.text(n, 100 + i)
        files[f"binary-{n}"] = fl.binary(n, 200 + i)
        half = fl.random_bytes(n // 2, 300 + i)
        files[f"barely-{n}"] = half + fl.text(n - n // 2, 400 + i)
    for i, n in enumerate([5000, 77777, 131071]):
        files[f"mixed-{n}"] = (fl.text(n // 3, 500 + i) + fl.binary(n // 3, 600 + i) + bytes(n - 2 * (n // 3)))[:n]
    for i, n in enumerate([20480, 45056, 81920, 114688]):
        files[f"text-{n}"] = fl.text(n, 700 + i)
        files[f"mixed-{n}"] = (fl.binary(n // 2, 800 + i) + fl.text(n - n // 2, 900 + i))[:n]
    files["text-262144"] = fl.text(262144, 1000)
    files["mixed-262144"] = fl.text(131072, 1001) + fl.binary(131072, 1002)
    files["runs-131072"] = b"".join(bytes([c]) * (37 + c) for c in range(256))[:131072].ljust(131072, b"z")
    return files


def main():
    kernel = platform.release()
    outdir = sys.argv[1] if len(sys.argv) > 1 else f"fixtures/zlib-sweep-{kernel}"
    files = sweep_corpus()
    with fl.scratch_btrfs(512 << 20, "live zlib sweep", prefix="btrfs-zsweep-") as (_work, _img, mnt):
        for level in range(1, 10):
            fl.run("sync")
            fl.run("mount", "-o", f"remount,compress-force=zlib:{level}", mnt)
            d = os.path.join(mnt, f"zlib_{level}")
            os.mkdir(d)
            for name, data in files.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
        fl.run("sync")
        fl.run("mount", "-o", "remount,ro", mnt)
        extents = []
        for level in range(1, 10):
            for name, data in files.items():
                for i, e in enumerate(fl.encoded_read_all(os.path.join(mnt, f"zlib_{level}", name), len(data))):
                    raw = e.pop("raw")
                    extents.append({"option": f"zlib:{level}", "file": name, "index": i, "encoded_len": len(raw),
                                    "sha256": hashlib.sha256(raw).hexdigest(), **e})
    staged = outdir + ".tmp"
    shutil.rmtree(staged, ignore_errors=True)
    os.makedirs(os.path.join(staged, "plain"))
    for name, data in files.items():
        p = os.path.join(staged, "plain", name)
        with open(p, "wb") as f:
            f.write(data)
        fl.run("zstd", "-q", "-19", "--rm", p)
    manifest = {"kernel": kernel, "tool": "tools/live-zlib-sweep.py",
                "files": {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()},
                "extents": extents}
    with open(os.path.join(staged, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    shutil.rmtree(outdir, ignore_errors=True)
    os.rename(staged, outdir)
    zl = sum(1 for e in extents if e["compression"] == "zlib")
    print(f"wrote {len(extents)} extents ({zl} zlib) to {outdir}")


if __name__ == "__main__":
    main()
