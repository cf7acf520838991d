#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""A directory chain 100,000 levels deep, written by the running kernel, and what the kernel shows
of it (fixtures/deep-tree-<release>/).

Paths in it reach 200 KB, fifty times PATH_MAX: the kernel holds such a tree (every call below is
relative to a directory descriptor, as `mkdir d; cd d` in a loop is), and a reader of the image
must restore it without building a path string per entry (issue 24). Mounted compress=zstd:3:

- `deep/`: the chain, every directory `d` except each 1,000th, named `level-K-` padded with `x`
  to 200 bytes (a 255-byte name is in the bottom directory);
- at level 10 a compressed file `f10` (200 KB of text); at each 10,000th level a compressed file,
  a relative symlink, a hard link to `f10` (the links are 10,000 levels apart) and a fifo;
- at the bottom a compressed file whose name is 255 bytes, and an inline file;
- `side/` after the chain, with a file.

manifest.json: `depth`; `levels`, the directory names that are not `d` (level -> name, hex);
`entries`, everything else the kernel shows, found by walking down the chain with directory
descriptors (level, name hex, kind, mode, size, nlink, sha256, link target hex), in walk order.

With DEPTH (other than 100,000) it writes chain-DEPTH.img.zst and chain-DEPTH.json instead: the
same layout, shallower, for the image_metadata fuzz target (`fuzzing::image_metadata_deep`), which
damages its tree blocks thousands of times.

Needs root, loop devices, mkfs.btrfs, zstd. Usage: sudo tools/deep-tree-fixture.py [DEPTH]
"""
import hashlib
import os
import shutil
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_lib as fl  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPTH = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
LONG = "n" * 255


def level_name(k):
    if k % 1000 == 0:
        s = f"level-{k}-"
        return s + "x" * (200 - len(s))
    return "d"


def put(dirfd, name, data):
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dirfd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def build(mnt):
    top = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir("deep", dir_fd=top)
    fd = os.open("deep", os.O_RDONLY | os.O_DIRECTORY, dir_fd=top)
    f10 = None
    for k in range(1, DEPTH + 1):
        name = level_name(k)
        os.mkdir(name, dir_fd=fd)
        nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
        if k == 10:
            put(fd, "f10", fl.text(200_000, 10))
            f10 = os.open("f10", os.O_PATH, dir_fd=fd)
        if k % 10_000 == 0:
            put(fd, f"f{k}", fl.text(50_000, k))
            os.symlink(f"../f{k}-target", f"s{k}", dir_fd=fd)
            os.link(f"/proc/self/fd/{f10}", f"h{k}", dst_dir_fd=fd)
            os.mkfifo(f"p{k}", dir_fd=fd)
    put(fd, LONG, fl.text(300_000, 1))
    put(fd, "inline", b"the bottom of the chain\n")
    os.close(fd)
    os.close(f10)
    os.mkdir("side", dir_fd=top)
    sfd = os.open("side", os.O_RDONLY | os.O_DIRECTORY, dir_fd=top)
    put(sfd, "file", fl.text(30_000, 2))
    os.close(sfd)
    os.close(top)


def describe(dirfd, level, name):
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    e = {"level": level, "name": name.encode().hex(), "kind": fl.kind(st), "mode": st.st_mode & 0o7777,
         "size": st.st_size, "nlink": st.st_nlink}
    if stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_RDONLY, dir_fd=dirfd)
        with os.fdopen(fd, "rb") as f:
            e["sha256"] = hashlib.sha256(f.read()).hexdigest()
    if stat.S_ISLNK(st.st_mode):
        e["target"] = os.readlink(name, dir_fd=dirfd).encode().hex()
    return e


def view(mnt):
    """What the kernel shows, walking down the chain with directory descriptors."""
    levels, entries = {}, []
    top = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    for n in sorted(os.listdir(top)):
        if n != "deep":
            entries.append(describe(top, 0, n))
    side = os.open("side", os.O_RDONLY | os.O_DIRECTORY, dir_fd=top)
    for n in sorted(os.listdir(side)):
        entries.append({**describe(side, 0, n), "dir": "side"})
    os.close(side)
    fd = os.open("deep", os.O_RDONLY | os.O_DIRECTORY, dir_fd=top)
    os.close(top)
    depth = 0
    while True:
        names = sorted(os.listdir(fd))
        dirs = [n for n in names if stat.S_ISDIR(os.stat(n, dir_fd=fd, follow_symlinks=False).st_mode)]
        for n in names:
            if n not in dirs:
                entries.append(describe(fd, depth, n))
        if not dirs:
            break
        assert len(dirs) == 1, (depth, dirs)
        depth += 1
        if dirs[0] != "d":
            levels[depth] = dirs[0].encode().hex()
        nfd = os.open(dirs[0], os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.close(fd)
    return depth, levels, entries


def main():
    release = os.uname().release.split("-")[0].split("+")[0]
    dest = os.path.join(ROOT, "fixtures", f"deep-tree-{release}")
    with fl.scratch_btrfs(256 << 20, "deep-tree fixture", prefix="btrfs-deep-") as (work, img, mnt):
        subprocess.run(["mount", "-o", "remount,noatime,compress=zstd:3", mnt], check=True)
        build(mnt)
        subprocess.run(["umount", mnt], check=True)
        subprocess.run(["mount", "-o", "loop,ro,noatime", img, mnt], check=True)
        depth, levels, entries = view(mnt)
        subprocess.run(["umount", mnt], check=True)
        assert depth == DEPTH, depth
        os.makedirs(dest, exist_ok=True)
        base = ("image", "manifest") if DEPTH == 100_000 else (f"chain-{DEPTH}", f"chain-{DEPTH}")
        subprocess.run(["zstd", "-q", "-19", "-f", img, "-o", os.path.join(dest, base[0] + ".img.zst")],
                       check=True)
        manifest = {"tool": "tools/deep-tree-fixture.py", "kernel": os.uname().release, "depth": depth,
                    "levels": levels, "entries": entries}
        fl.write_json(os.path.join(dest, base[1] + ".json"), manifest)
    print(f"wrote {dest}: depth {depth}, {len(levels)} long directory names, {len(entries)} other entries")


if __name__ == "__main__":
    if shutil.which("zstd") is None:
        fl.skip("zstd not installed", "deep-tree fixture")
    main()
