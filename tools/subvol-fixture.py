#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Snapshots that hold subvolumes, written by the running kernel, and what the kernel shows of
them (fixtures/subvol-snapshots-<release>/).

The layouts: `sv1` with a file and a nested subvolume `sv1/nested`, and `snap`, a snapshot of
`sv1` (its `nested` entry is stale: the kernel shows an empty directory); a snapshot of the top
level, `topsnap` (its `sv1` and `snap` entries are stale); and snapper's layout, a `.snapshots`
subvolume in the top level with `.snapshots/1/snapshot` a snapshot of the top level (which holds
a stale `.snapshots` entry).

manifest.json: every path the mounted filesystem shows (hex of its bytes, and escaped), its kind
(file, dir, symlink) and inode number (2 is the kernel's empty directory in place of a subvolume
it does not descend into, 256 a subvolume's root), as os.lstat sees them.

Needs root, loop devices, mkfs.btrfs, zstd. Usage: sudo tools/subvol-fixture.py
"""
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_lib as fl  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def btrfs(*args):
    subprocess.run(["btrfs", *args], check=True, stdout=subprocess.DEVNULL)


def main():
    release = os.uname().release.split("-")[0].split("+")[0]
    dest = os.path.join(ROOT, "fixtures", f"subvol-snapshots-{release}")
    with fl.scratch_btrfs(256 << 20, "subvol-snapshots fixture", prefix="btrfs-subvol-") as (work, img, mnt):
        btrfs("subvolume", "create", f"{mnt}/sv1")
        with open(f"{mnt}/sv1/file", "wb") as f:
            f.write(b"in sv1\n" * 100)
        btrfs("subvolume", "create", f"{mnt}/sv1/nested")
        with open(f"{mnt}/sv1/nested/file2", "wb") as f:
            f.write(b"in nested\n" * 100)
        btrfs("subvolume", "snapshot", f"{mnt}/sv1", f"{mnt}/snap")
        os.mkdir(f"{mnt}/dir")
        with open(f"{mnt}/dir/top-file", "wb") as f:
            f.write(b"top\n" * 1000)
        btrfs("subvolume", "snapshot", mnt, f"{mnt}/topsnap")
        btrfs("subvolume", "create", f"{mnt}/.snapshots")
        os.mkdir(f"{mnt}/.snapshots/1")
        btrfs("subvolume", "snapshot", mnt, f"{mnt}/.snapshots/1/snapshot")
        subprocess.run(["sync"], check=True)
        paths = {}
        for dp, dns, fns in os.walk(os.fsencode(mnt)):
            for n in dns + fns:
                full = os.path.join(dp, n)
                rel = os.path.relpath(full, os.fsencode(mnt))
                st = os.lstat(full)
                kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
                paths[rel.hex()] = {"path": rel.decode("utf-8", "backslashreplace"), "kind": kind, "ino": st.st_ino,
                                    "mode": st.st_mode}
        subprocess.run(["umount", mnt], check=True)
        os.makedirs(dest, exist_ok=True)
        subprocess.run(["zstd", "-q", "-f", "-19", img, "-o", f"{dest}/image.img.zst"], check=True)
        manifest = {"tool": "tools/subvol-fixture.py", "kernel": os.uname().release, "paths": paths}
        fl.write_json(f"{dest}/manifest.json", manifest)
    print(f"wrote {dest}: {len(paths)} paths")


if __name__ == "__main__":
    main()
