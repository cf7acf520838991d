#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Capture compressed extents written by the running kernel, for byte-identity and decode tests.

Makes a loop-mounted btrfs image, writes the deterministic corpus under each compress-force
option plus the special scenarios (overwrite, truncate, holes, prealloc, three algorithms in one
file) and plain compress=zstd files for the heuristic, remounts read-only, and dumps every
extent with BTRFS_IOC_ENCODED_READ into fixtures/live-<uname -r>/ (see fixture_lib.dump).

Needs root, a loop device, btrfs in the kernel, mkfs.btrfs and zstd. Prints SKIPPED and exits 0
when any of those is missing (nothing is left mounted or half written).
Usage: tools/live-kernel-extents.py [OUTDIR]
"""
import os
import platform
import re
import subprocess
import shutil
import sys

sys.path.insert(0, os.path.dirname(__file__))
import fixture_lib as fl  # noqa: E402

OPTIONS = ["zlib:1", "zlib:3", "zlib:9", "lzo", "zstd:1", "zstd:3", "zstd:15", "zstd:-5", "zstd:-1"]


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else f"fixtures/live-{platform.release()}"
    # The reflink scenario runs xfs_io (xfsprogs).
    if shutil.which("xfs_io") is None:
        fl.skip("xfs_io not installed (xfsprogs)", "live-kernel extents")
    files = fl.corpus()
    state = {}
    with fl.scratch_btrfs(256 << 20, "live-kernel extents",
                          mkfs_args=("-L", "btrfs-compress", "-U", "7a1d8a6c-6b1e-4b83-9f6e-1c9a0f2e5d10")) as (
            work, img, mnt):
        corpus = os.path.join(work, "corpus")
        os.mkdir(corpus)
        for name, data in files.items():
            open(os.path.join(corpus, name), "wb").write(data)
        for name, init, _final, patch, _steps in fl.special_files():
            open(os.path.join(corpus, f"{name}.init"), "wb").write(init)
            open(os.path.join(corpus, f"{name}.patch"), "wb").write(patch)

        def remount(opt):
            fl.run("sync")
            fl.run("mount", "-o", f"remount,{opt}", mnt)

        for opt in OPTIONS:
            try:
                remount(f"compress-force={opt}")
            except subprocess.CalledProcessError:
                state[opt] = "refused by this kernel"
                continue
            d = os.path.join(mnt, opt.replace(":", "_"))
            os.mkdir(d)
            for name, data in files.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
            state[opt] = "ok"
        remount(f"compress-force={fl.SPECIAL_OPTION}")
        sd = os.path.join(mnt, "special")
        os.mkdir(sd)
        for name, _init, _final, _patch, steps in fl.special_files():
            for s in steps:
                m = re.match(r"\{remount (\S+)\}", s)
                if m:
                    remount(f"compress-force={m.group(1)}")
                else:
                    cmd = s.format(n=name).replace("/corpus/", corpus + "/")
                    subprocess.run(cmd, shell=True, cwd=sd, check=True)
        for st in fl.SUBVOLUME_STEPS:
            subprocess.run(st.replace("/corpus/", corpus + "/"), shell=True, cwd=mnt, check=True)
        remount("compress=zstd")
        hd = os.path.join(mnt, "heuristic")
        os.mkdir(hd)
        for name, gen in fl.HEURISTIC:
            with open(os.path.join(hd, name), "wb") as f:
                f.write(gen())
        fl.run("sync")
        fl.run("umount", mnt)
        n = fl.dump(img, platform.release(), state, outdir, "tools/live-kernel-extents.py")
        print(f"wrote {n} extents to {outdir}")


if __name__ == "__main__":
    main()
