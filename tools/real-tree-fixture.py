#!/usr/bin/env python3
"""Write a real tree onto a fresh btrfs with the running kernel and keep the image and what the
kernel shows of every path, for `extract` and `usage` to be compared with (fixtures/real-tree-*/).

The tree: files under zstd:3, lzo and zlib:6 (remounted between them, compress-force), system
binaries, a sparse file, inline and empty files, modes 0755, 04755, 02755, a sticky directory,
owners other than root, old timestamps with nanoseconds (one before 1970), symlinks (relative,
absolute, dangling, to a directory, a long target), hard links (in one directory and across
two), names that are not UTF-8, a fifo, a socket, a character and a block device, xattrs
(user.*, trusted.*, security.capability, POSIX ACLs access and default), a subvolume, a
snapshot of it and a read-only snapshot; and a directory `evil` beside a symlink `evix` to
/tmp/btrfs-compress-crafted-outside, for the crafted-image test.

manifest.json: per path (hex of its bytes, and an escaped form for people) its kind, mode, uid,
gid, atime and mtime in ns, size, nlink, rdev (major, minor), sha256 of the data, symlink target
(hex), xattrs (name -> hex value), as os.lstat and os.getxattr see them on the mounted image
(noatime, so that reading does not move atimes); and `compsize -b` of the whole mount and of
each codec's directory.

Needs root, loop devices, mkfs.btrfs, zstd, compsize. Usage: sudo tools/real-tree-fixture.py
"""
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_lib as fl  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def acl(entries):
    """The xattr value of a POSIX ACL (version 2): (tag, perm, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


ACL_ACCESS = acl([(0x01, 7, 0xFFFFFFFF), (0x02, 5, 1000), (0x04, 5, 0xFFFFFFFF), (0x10, 5, 0xFFFFFFFF),
                  (0x20, 4, 0xFFFFFFFF)])
ACL_DEFAULT = acl([(0x01, 7, 0xFFFFFFFF), (0x04, 5, 0xFFFFFFFF), (0x08, 7, 100), (0x10, 7, 0xFFFFFFFF),
                   (0x20, 0, 0xFFFFFFFF)])


def write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def populate_codec_dir(d, seed):
    os.makedirs(d)
    write(os.path.join(d, "text-300k"), fl.text(300000, seed))
    write(os.path.join(d, "binary-200k"), fl.binary(200000, seed + 1))
    write(os.path.join(d, "random-64k"), fl.random_bytes(65536, seed + 2))
    write(os.path.join(d, "inline-700"), fl.text(700, seed + 3))
    write(os.path.join(d, "tail-5000"), fl.text(5000, seed + 4))


def build(mnt, remount):
    remount("zstd:3")
    populate_codec_dir(os.path.join(mnt, "zstd"), 100)
    for b in ("ls", "cp", "mount"):
        src = shutil.which(b)
        if src:
            shutil.copy2(os.path.realpath(src), os.path.join(mnt, "zstd", b))
    subprocess.run(["sync"], check=True)
    remount("lzo")
    populate_codec_dir(os.path.join(mnt, "lzo"), 200)
    subprocess.run(["sync"], check=True)
    remount("zlib:6")
    populate_codec_dir(os.path.join(mnt, "zlib"), 300)
    subprocess.run(["sync"], check=True)
    remount("zstd:3")

    m = os.path.join(mnt, "meta")
    os.makedirs(m)
    write(os.path.join(m, "empty"), b"")
    write(os.path.join(m, "exec"), fl.text(3000, 1), 0o755)
    write(os.path.join(m, "setuid"), fl.text(2000, 2), 0o4755)
    write(os.path.join(m, "setgid"), fl.text(2000, 3), 0o2711)
    write(os.path.join(m, "private"), fl.text(2000, 4), 0o600)
    os.makedirs(os.path.join(m, "sticky"))
    os.chmod(os.path.join(m, "sticky"), 0o1777)
    os.makedirs(os.path.join(m, "sgid-dir"))
    os.chmod(os.path.join(m, "sgid-dir"), 0o2775)
    write(os.path.join(m, "sgid-dir", "inherits"), b"group\n")
    os.chown(os.path.join(m, "private"), 1000, 1000)
    os.chown(os.path.join(m, "sgid-dir"), 0, 100)
    with open(os.path.join(m, "sparse"), "wb") as f:
        f.write(fl.text(8192, 5))
        f.seek(3 << 20)
        f.write(fl.text(8192, 6))
        f.truncate(4 << 20)

    ln = os.path.join(mnt, "links")
    os.makedirs(os.path.join(ln, "sub"))
    os.symlink("../zstd/text-300k", os.path.join(ln, "relative"))
    os.symlink("/etc/hostname", os.path.join(ln, "absolute"))
    os.symlink("nowhere/at/all", os.path.join(ln, "dangling"))
    os.symlink("../meta", os.path.join(ln, "to-dir"))
    os.symlink("x" * 200 + "/" + "y" * 300, os.path.join(ln, "long"))
    write(os.path.join(ln, "hard-a"), fl.text(20000, 7))
    os.link(os.path.join(ln, "hard-a"), os.path.join(ln, "hard-b"))
    os.link(os.path.join(ln, "hard-a"), os.path.join(ln, "sub", "hard-c"))
    write(os.path.join(ln, "inline-hard"), b"small and linked\n")
    os.link(os.path.join(ln, "inline-hard"), os.path.join(ln, "sub", "inline-hard-2"))

    nm = os.path.join(mnt, "names").encode()
    os.makedirs(nm)
    for name in (b"caf\xe9", b"\xff\xfe-not-utf8", "sp ace & ümlaut".encode(), b"new\nline", b"-dash"):
        write(os.path.join(nm, name), name + b"\n")
    os.makedirs(os.path.join(nm, b"dir-\xe9"))
    write(os.path.join(nm, b"dir-\xe9", b"inside"), b"inside a non-UTF-8 directory\n")

    sp = os.path.join(mnt, "special")
    os.makedirs(sp)
    os.mkfifo(os.path.join(sp, "fifo"), 0o640)
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(sp, "socket"))
    s.close()
    os.mknod(os.path.join(sp, "null"), 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(os.path.join(sp, "loop7"), 0o660 | 0o060000, os.makedev(7, 7))
    os.mknod(os.path.join(sp, "bigdev"), 0o600 | 0o020000, os.makedev(300, 70000))

    xa = os.path.join(mnt, "xattr")
    os.makedirs(xa)
    f = os.path.join(xa, "file")
    write(f, fl.text(5000, 8))
    os.setxattr(f, "user.comment", b"a user attribute")
    os.setxattr(f, "user.binary", bytes(range(256)))
    os.setxattr(f, "trusted.overlay.opaque", b"y")
    os.setxattr(f, "system.posix_acl_access", ACL_ACCESS)
    cap = os.path.join(xa, "capable")
    write(cap, fl.text(3000, 9), 0o755)
    subprocess.run(["setcap", "cap_net_raw+ep", cap], check=True)
    os.makedirs(os.path.join(xa, "acl-dir"))
    os.setxattr(os.path.join(xa, "acl-dir"), "system.posix_acl_default", ACL_DEFAULT)
    os.setxattr(os.path.join(xa, "acl-dir"), "user.dir", b"on a directory")
    os.symlink("file", os.path.join(xa, "link"))
    os.setxattr(os.path.join(xa, "link"), "trusted.on-link", b"symlink xattr", follow_symlinks=False)

    sv = os.path.join(mnt, "subvol")
    subprocess.run(["btrfs", "subvolume", "create", sv], check=True, stdout=subprocess.DEVNULL)
    write(os.path.join(sv, "in-subvol"), fl.text(150000, 10))
    os.makedirs(os.path.join(sv, "deeper"))
    write(os.path.join(sv, "deeper", "small"), fl.text(400, 11))
    subprocess.run(["sync"], check=True)
    subprocess.run(["btrfs", "subvolume", "snapshot", sv, os.path.join(mnt, "snap")], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["btrfs", "subvolume", "snapshot", "-r", sv, os.path.join(mnt, "snap-ro")], check=True,
                   stdout=subprocess.DEVNULL)
    write(os.path.join(sv, "after-snapshot"), b"only in the subvolume\n")

    # For the crafted-image test: a directory and a symlink leading outside whose names differ in
    # one byte (the test renames the symlink's directory entry to the directory's name).
    os.makedirs(os.path.join(mnt, "evil"))
    write(os.path.join(mnt, "evil", "payload"), b"must stay inside DEST\n")
    os.symlink("/tmp/btrfs-compress-crafted-outside", os.path.join(mnt, "evix"))

    # Times last, deepest first, so that later changes do not move them; one before 1970.
    stamps = [(631238400, 123456789), (946684799, 999999999), (1234567890, 1), (-86400 * 365, 500)]
    paths = []
    for dirpath, dirs, files in os.walk(mnt.encode(), topdown=True):
        if dirpath == mnt.encode():
            dirs[:] = [d for d in dirs if d not in (b"snap-ro",)]
        for n in files + dirs:
            paths.append(os.path.join(dirpath, n))
    for i, p in enumerate(sorted(paths, key=lambda p: -p.count(b"/"))):
        sec, ns = stamps[i % len(stamps)]
        os.utime(p, ns=(sec * 10**9 + ns + 7, (sec + 3600) * 10**9 + ns), follow_symlinks=False)
    subprocess.run(["sync"], check=True)


def main():
    release = os.uname().release
    dest = os.path.join(ROOT, "fixtures", f"real-tree-{release.split('-')[0]}")
    if shutil.which("compsize") is None:
        fl.skip("compsize not installed", "real-tree fixture")
    with fl.scratch_btrfs(512 << 20, "real-tree fixture", prefix="btrfs-real-tree-") as (work, img, mnt):
        def remount(opt):
            subprocess.run(["mount", "-o", f"remount,noatime,compress-force={opt}", mnt], check=True)
        remount("zstd:3")
        build(mnt, remount)
        manifest = {"kernel": release, "entries": fl.describe(mnt),
                    "compsize": {"/": fl.compsize(mnt), **{d: fl.compsize(os.path.join(mnt, d))
                                                        for d in ("zstd", "lzo", "zlib", "subvol", "links")}}}
        subprocess.run(["umount", mnt], check=True)
        os.makedirs(dest, exist_ok=True)
        subprocess.run(["zstd", "-q", "-19", "-f", img, "-o", os.path.join(dest, "image.img.zst")], check=True)
        fl.write_json(os.path.join(dest, "manifest.json"), manifest)
    print(f"{dest}: {len(manifest['entries'])} entries")


if __name__ == "__main__":
    main()
