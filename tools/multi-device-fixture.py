#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Multi-device filesystems written by the running kernel on loop devices, and what the kernel
shows of them: whole, degraded and with one copy damaged (fixtures/multi-device-<release>/).

Profiles (data / metadata, devices): raid0/raid1 (2), raid1/raid1 (2), raid1c3/raid1c3 (3),
raid1c4/raid1c4 (4), raid10/raid10 (4), raid5/raid5 (3), raid6/raid6 (4), single/dup (2). Each
gets the same tree: the fixture corpus under compress-force=zstd:3, the same files uncompressed,
and a 512 KiB random file (data across many 64 KiB stripes), then `sync` and an unmount.

What the kernel shows (fixture_lib.describe(): every path's kind, mode, size, sha256, ...; and
`compsize -b`):
- `whole`: all devices;
- `degraded`: each set of devices withheld that the profile survives (one device; two for
  raid1c3, raid1c4 and raid6), mounted `-o degraded,ro` from the others; where the kernel refuses
  the mount, or a file cannot be read (EIO), that is recorded too (raid0 and single data lose
  files with a device);
- `damaged`: the first mirror (the kernel's mirror 1: `btrfs-map-logical`) of the fs tree's root
  block and of the random file's first data extent overwritten with a pattern on a copy of the
  devices, mounted read-only: the kernel reads the other copy (or rebuilds from parity) and shows
  the whole tree; where the profile keeps no other copy, what the kernel showed of the file
  instead (an error, or other bytes: 6.18 returned the damaged sector as zeros, without an error,
  when the file was read after the others of its directory; EIO when read first). The damage
  (devid, physical offset, length) is recorded so that the tests can do the same.

fixtures/multi-device-<release>/<profile>/devN.img.zst and manifest.json.
Needs root, loop devices, mkfs.btrfs, btrfs-map-logical, zstd, compsize.
Usage: sudo tools/multi-device-fixture.py
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_lib as fl  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILES = [("raid0", "raid0", "raid1", 2), ("raid1", "raid1", "raid1", 2), ("raid1c3", "raid1c3", "raid1c3", 3),
            ("raid1c4", "raid1c4", "raid1c4", 4), ("raid10", "raid10", "raid10", 4), ("raid5", "raid5", "raid5", 3),
            ("raid6", "raid6", "raid6", 4), ("single-dup", "single", "dup", 2)]
DEV_SIZE = 192 << 20


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def losetup(path):
    return sh("losetup", "--find", "--show", path).strip()


def forget():
    subprocess.run(["btrfs", "device", "scan", "--forget"], capture_output=True)


class Loops:
    """Loop devices for some of the image files; detached (and forgotten by btrfs) afterwards."""

    def __init__(self, paths):
        self.paths = paths
        self.devs = []

    def __enter__(self):
        forget()
        self.devs = [losetup(p) for p in self.paths]
        for d in self.devs:
            subprocess.run(["btrfs", "device", "scan", d], capture_output=True)
        return self.devs

    def __exit__(self, *a):
        for d in self.devs:
            subprocess.run(["losetup", "-d", d])
        forget()


def describe_tolerant(mnt):
    """fixture_lib.describe(), with files the kernel cannot read recorded as such; the second
    value says whether any was."""
    d = fl.describe(mnt, tolerant=True)
    return d, ("some files could not be read" if any("error" in e for e in d.values()) else None)


def view(paths, opts):
    """What the kernel shows of the devices PATHS mounted with OPTS: (describe, compsize, error)."""
    mnt = tempfile.mkdtemp(prefix="btrfs-md-mnt-")
    try:
        with Loops(paths) as devs:
            r = subprocess.run(["mount", "-o", opts, devs[0], mnt], capture_output=True, text=True)
            if r.returncode != 0:
                return None, None, "mount refused: " + subprocess.run(["dmesg"], capture_output=True,
                                                                       text=True).stdout.strip().splitlines()[-1]
            try:
                d, err = describe_tolerant(mnt)
                cs = subprocess.run(["compsize", "-b", mnt], capture_output=True, text=True).stdout
                return d, cs, err
            finally:
                subprocess.run(["umount", mnt], check=True)
    finally:
        os.rmdir(mnt)


def build(mnt):
    corpus = fl.corpus()
    subprocess.run(["mount", "-o", "remount,compress-force=zstd:3", mnt], check=True)
    os.mkdir(f"{mnt}/zstd")
    for n, d in corpus.items():
        open(f"{mnt}/zstd/{n}", "wb").write(d)
    subprocess.run(["sync"], check=True)
    subprocess.run(["mount", "-o", "remount,compress=no", mnt], check=True)
    os.mkdir(f"{mnt}/plain")
    for n, d in corpus.items():
        open(f"{mnt}/plain/{n}", "wb").write(d)
    open(f"{mnt}/plain/random-512k", "wb").write(fl.random_bytes(512 << 10, 99))
    os.symlink("plain/text-128k", f"{mnt}/link")
    subprocess.run(["sync"], check=True)
    return os.stat(f"{mnt}/plain/random-512k").st_ino


def mirror1(dev_paths, logical):
    """(devid, physical) of the kernel's mirror 1 of LOGICAL, from btrfs-map-logical."""
    with Loops(dev_paths) as devs:
        out = sh("btrfs-map-logical", "-l", str(logical), devs[0])
    m = re.search(r"mirror 1 logical \d+ physical (\d+) device (\S+)", out)
    devid = devs.index(m.group(2)) + 1
    return devid, int(m.group(1))


def targets(dev_paths, ino):
    """Logical addresses of the fs tree's root block and of the random file's (inode INO) first
    extent."""
    with Loops(dev_paths) as devs:
        roots = sh("btrfs", "inspect-internal", "dump-tree", "-t", "root", devs[0])
        fs_root = int(re.search(r"item \d+ key \(FS_TREE ROOT_ITEM 0\).*?\n\s+generation \d+ root_dirid \d+ bytenr (\d+)",
                                roots, re.S).group(1))
        fs = sh("btrfs", "inspect-internal", "dump-tree", "-t", "5", devs[0])
    m = re.search(rf"key \({ino} EXTENT_DATA 0\).*?\n.*?\n\s+extent data disk byte (\d+) nr (\d+)", fs)
    return {"tree block": (fs_root, 16384), "data": (int(m.group(1)), 4096)}


def main():
    release = os.uname().release.split("-")[0].split("+")[0]
    dest = os.path.join(ROOT, "fixtures", f"multi-device-{release}")
    if os.geteuid() != 0:
        fl.skip("not root", "multi-device fixture")
    for t in ("mkfs.btrfs", "btrfs-map-logical", "zstd", "compsize"):
        if shutil.which(t) is None:
            fl.skip(f"{t} not installed", "multi-device fixture")
    work = tempfile.mkdtemp(prefix="btrfs-md-")
    manifest = {"tool": "tools/multi-device-fixture.py", "kernel": os.uname().release, "profiles": {}}
    try:
        shutil.rmtree(dest, ignore_errors=True)
        for name, data, meta, n in PROFILES:
            pdir = f"{work}/{name}"
            os.makedirs(pdir)
            paths = [f"{pdir}/dev{i + 1}.img" for i in range(n)]
            for p in paths:
                with open(p, "wb") as f:
                    f.truncate(DEV_SIZE)
            sh("mkfs.btrfs", "-q", "-f", "-d", data, "-m", meta, "-L", name, *paths)
            mnt = tempfile.mkdtemp(prefix="btrfs-md-mnt-")
            with Loops(paths) as devs:
                subprocess.run(["mount", devs[0], mnt], check=True)
                try:
                    ino = build(mnt)
                finally:
                    subprocess.run(["umount", mnt], check=True)
            os.rmdir(mnt)
            whole, whole_cs, err = view(paths, "ro,noatime")
            assert err is None, f"{name}: {err}"
            entry = {"data": data, "metadata": meta, "devices": n, "whole": whole, "whole_compsize": whole_cs,
                     "degraded": [], "damaged": []}
            withheld_sets = [[i] for i in range(n)]
            if name in ("raid1c3", "raid1c4", "raid6"):
                withheld_sets += [[0, 1], [n - 2, n - 1]]
            for w in withheld_sets:
                kept = [p for i, p in enumerate(paths) if i not in w]
                d, cs, err = view(kept, "degraded,ro,noatime")
                entry["degraded"].append({"withheld": [i + 1 for i in w], "view": d, "compsize": cs, "error": err})
                print(f"{name}: without {[i + 1 for i in w]}: {err or 'mounted'}")
            for what, (logical, length) in targets(paths, ino).items():
                devid, phys = mirror1(paths, logical)
                copies = [f"{pdir}/damaged-{i + 1}.img" for i in range(n)]
                for p, c in zip(paths, copies):
                    subprocess.run(["cp", "--sparse=always", p, c], check=True)
                with open(copies[devid - 1], "r+b") as f:
                    f.seek(phys)
                    f.write(b"\xde\xad" * (length // 2))
                d, cs, err = view(copies, "ro,noatime")
                for c in copies:
                    os.unlink(c)
                same = d == whole
                # Where the kernel showed something else: per path, its error or its sha256.
                differ = {} if same else {
                    v["path"]: {k: v[k] for k in ("error", "sha256") if k in v}
                    for h, v in d.items() if v.get("sha256") != whole.get(h, {}).get("sha256")}
                entry["damaged"].append({"what": what, "logical": logical, "devid": devid, "physical": phys,
                                         "length": length, "same_as_whole": same, "error": err,
                                         "kernel_differs": differ})
                print(f"{name}: {what} at {logical} damaged on device {devid}: kernel shows the whole tree: {same}")
            os.makedirs(f"{dest}/{name}", exist_ok=True)
            for i, p in enumerate(paths):
                sh("zstd", "-q", "-19", "-f", p, "-o", f"{dest}/{name}/dev{i + 1}.img.zst")
            manifest["profiles"][name] = entry
        fl.write_json(f"{dest}/manifest.json", manifest)
        print(f"wrote {dest}")
    finally:
        forget()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
