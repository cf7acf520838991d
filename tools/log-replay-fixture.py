#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""An image with a log tree, as a crash leaves it, written by the running kernel, and what the
kernel shows of it after log replay and without it (fixtures/log-replay-<release>/).

A filesystem (compress=zstd:3, commit=300 so that no transaction commits on its own) gets a tree
and `sync`; then, without a commit, every change below is made durable by fsync alone, so it
lives only in the log tree: an append, an overwrite in the middle of a compressed file, a
truncation, new files (compressed, inline, in a new directory), a rename, an unlink (fsync of the
directory), xattrs set and removed, a hard link, a symlink (fsync of its directory), a rename
over an existing file, a file deleted and recreated under its old name, an append in a second
subvolume (its own log tree), 400 new files (a log tree of more than one leaf), a directory
removed with what it held (fsync of its parent); and one
file written and never fsynced (lost). The image file is copied while mounted, after the fsyncs:
what a power cut at that moment leaves (the superblock's log_root is non-zero; the tool checks:
fallocate, for one, makes the next fsync commit the transaction, so it is not among the changes).

manifest.json: `replayed`, every path the kernel shows after mounting a copy (log replay), and
`committed`, what it shows of another copy mounted `ro,rescue=nologreplay` (the last commit), each as
fixture_lib.describe() records them (kind, mode, size, sha256, link target, xattrs, ...), with
`compsize -b` of each mount; `log_root` and `generation` from the superblock.

Needs root, loop devices, mkfs.btrfs, zstd, compsize, btrfs-progs. Usage: sudo tools/log-replay-fixture.py
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_lib as fl  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(p, data, fsync=False):
    with open(p, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def fsync_path(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def committed(mnt):
    """The tree of the last commit."""
    b = os.path.join(mnt, "base")
    os.makedirs(os.path.join(b, "sub"))
    write(f"{b}/appended", fl.text(100_000, 1))
    write(f"{b}/overwritten", fl.text(512 << 10, 2))
    write(f"{b}/truncated", fl.text(300_000, 3))
    write(f"{b}/renamed-src", fl.text(50_000, 4))
    write(f"{b}/unlinked", fl.text(20_000, 5))
    write(f"{b}/xattrs", fl.text(5_000, 6))
    os.setxattr(f"{b}/xattrs", "user.keep", b"kept")
    os.setxattr(f"{b}/xattrs", "user.gone", b"removed after the commit")
    write(f"{b}/hl-src", fl.text(30_000, 7))
    write(f"{b}/victim", fl.text(40_000, 8))
    write(f"{b}/replacement", fl.text(45_000, 9))
    write(f"{b}/recreated", fl.text(60_000, 10))
    write(f"{b}/sub/untouched", fl.binary(70_000, 11))
    os.makedirs(f"{b}/doomed/inner")
    write(f"{b}/doomed/a", fl.text(3_000, 12))
    write(f"{b}/doomed/inner/b", fl.text(3_000, 13))
    subprocess.run(["btrfs", "subvolume", "create", f"{mnt}/sv"], check=True, stdout=subprocess.DEVNULL)
    write(f"{mnt}/sv/file", fl.text(40_000, 14))
    subprocess.run(["sync"], check=True)


def fsync_only(mnt):
    """Changes made durable by fsync alone (they live in the log tree)."""
    b = os.path.join(mnt, "base")
    with open(f"{b}/appended", "ab") as f:
        f.write(fl.text(70_000, 21))
        f.flush()
        os.fsync(f.fileno())
    with open(f"{b}/overwritten", "r+b") as f:
        f.seek(128 << 10)
        f.write(fl.binary(64 << 10, 22))
        f.seek(300_001)
        f.write(b"a few bytes in the middle of an extent")
        f.flush()
        os.fsync(f.fileno())
    with open(f"{b}/truncated", "r+b") as f:
        f.truncate(10_000)
        os.fsync(f.fileno())
    os.mkdir(f"{mnt}/new")
    write(f"{mnt}/new/compressed", fl.text(200_000, 23), fsync=True)
    write(f"{mnt}/new/inline", fl.text(700, 24), fsync=True)
    os.rename(f"{b}/renamed-src", f"{b}/renamed-dst")
    fsync_path(f"{b}/renamed-dst")
    os.unlink(f"{b}/unlinked")
    fsync_path(b)
    os.setxattr(f"{b}/xattrs", "user.new", b"set after the commit")
    os.removexattr(f"{b}/xattrs", "user.gone")
    fsync_path(f"{b}/xattrs")
    os.link(f"{b}/hl-src", f"{b}/hl-dst")
    fsync_path(f"{b}/hl-src")
    os.symlink("sub/untouched", f"{b}/symlink")
    fsync_path(b)
    os.rename(f"{b}/replacement", f"{b}/victim")
    fsync_path(f"{b}/victim")
    os.unlink(f"{b}/recreated")
    write(f"{b}/recreated", fl.text(33_333, 25), fsync=True)
    with open(f"{mnt}/sv/file", "ab") as f:
        f.write(fl.text(25_000, 28))
        f.flush()
        os.fsync(f.fileno())
    os.mkdir(f"{mnt}/many")
    for i in range(400):
        write(f"{mnt}/many/f{i:03}", fl.text(1_000 + 7 * i, 100 + i), fsync=True)
    shutil.rmtree(f"{b}/doomed")
    fsync_path(b)
    write(f"{mnt}/new/never-fsynced", fl.text(10_000, 27))


def superblock(img):
    r = subprocess.run(["btrfs", "inspect-internal", "dump-super", img], capture_output=True, text=True, check=True)
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("log_root", "generation", "log_root_level"):
            out[parts[0]] = int(parts[1])
    return out


def view(img, work, name, opts):
    """What the kernel shows of a copy of IMG mounted with OPTS."""
    copy = os.path.join(work, name)
    subprocess.run(["cp", "--sparse=always", img, copy], check=True)
    mnt = os.path.join(work, name + "-mnt")
    os.mkdir(mnt)
    subprocess.run(["mount", "-o", f"loop,{opts}", copy, mnt], check=True)
    try:
        return fl.describe(mnt), fl.compsize(mnt)
    finally:
        subprocess.run(["umount", mnt], check=True)


def main():
    release = os.uname().release.split("-")[0].split("+")[0]
    dest = os.path.join(ROOT, "fixtures", f"log-replay-{release}")
    if shutil.which("compsize") is None:
        fl.skip("compsize not installed", "log-replay fixture")
    with fl.scratch_btrfs(256 << 20, "log-replay fixture", prefix="btrfs-log-") as (work, img, mnt):
        subprocess.run(["mount", "-o", "remount,noatime,compress=zstd:3,commit=300", mnt], check=True)
        committed(mnt)
        fsync_only(mnt)
        crash = os.path.join(work, "crash.img")
        subprocess.run(["cp", "--sparse=always", img, crash], check=True)
        subprocess.run(["umount", mnt], check=True)
        sb = superblock(crash)
        if sb.get("log_root", 0) == 0:
            sys.exit("the copy has no log tree: a transaction committed before it was taken")
        replayed, replayed_cs = view(crash, work, "replayed", "noatime")
        last, last_cs = view(crash, work, "committed", "ro,rescue=nologreplay,noatime")
        os.makedirs(dest, exist_ok=True)
        subprocess.run(["zstd", "-q", "-19", "-f", crash, "-o", os.path.join(dest, "image.img.zst")], check=True)
        manifest = {"tool": "tools/log-replay-fixture.py", "kernel": os.uname().release, "superblock": sb,
                    "replayed": replayed, "replayed_compsize": replayed_cs,
                    "committed": last, "committed_compsize": last_cs}
        fl.write_json(os.path.join(dest, "manifest.json"), manifest)
    print(f"wrote {dest}: {len(replayed)} paths after replay, {len(last)} at the last commit, log_root {sb['log_root']}")


if __name__ == "__main__":
    main()
