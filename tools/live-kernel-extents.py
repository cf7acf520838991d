#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Capture compressed extents written by the running kernel, for byte-identity and decode tests.

Makes a loop-mounted btrfs image, writes a small deterministic corpus under each
compress-force option, remounts, and dumps every extent with BTRFS_IOC_ENCODED_READ.

Output (default fixtures/live-<uname -r>/):
  plain/<name>.zst         the plaintext of each corpus file (zstd -19)
  extents/<opt>/<name>.<n>.bin   raw encoded bytes of extent n of that file
  manifest.json            kernel, options, per extent: file offset, len, unencoded_len,
                           unencoded_offset, encoded compression, sha256 of the raw bytes
  image.img.zst            the whole btrfs image (files under /<option>/<name>)

Needs root, a loop device, btrfs in the kernel and mkfs.btrfs. Prints SKIPPED and exits 0
when any of those is missing (nothing is left mounted or half written).
Usage: tools/live-kernel-extents.py [OUTDIR]
"""
import ctypes
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

ENCODED_READ = 0x80809440
ENC_NAMES = {0: "none", 1: "zlib", 2: "zstd", 3: "lzo-4k", 4: "lzo-8k", 5: "lzo-16k", 6: "lzo-32k", 7: "lzo-64k"}
OPTIONS = ["zlib:1", "zlib:3", "zlib:9", "lzo", "zstd:1", "zstd:3", "zstd:9", "zstd:15", "zstd:-5", "zstd:-1"]


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class EncodedArgs(ctypes.Structure):
    _fields_ = [
        ("iov", ctypes.c_void_p),
        ("iovcnt", ctypes.c_ulong),
        ("offset", ctypes.c_int64),
        ("flags", ctypes.c_uint64),
        ("len", ctypes.c_uint64),
        ("unencoded_len", ctypes.c_uint64),
        ("unencoded_offset", ctypes.c_uint64),
        ("compression", ctypes.c_uint32),
        ("encryption", ctypes.c_uint32),
        ("reserved", ctypes.c_uint8 * 64),
    ]


assert ctypes.sizeof(EncodedArgs) == 128


class Xorshift:
    """xorshift64*; the Rust tests do not regenerate data, they read plain/*.zst."""

    def __init__(self, seed):
        self.s = seed or 1

    def next(self):
        x = self.s
        x ^= (x >> 12)
        x ^= (x << 25) & 0xFFFFFFFFFFFFFFFF
        x ^= (x >> 27)
        self.s = x
        return (x * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF


WORDS = ("the of and to in is was that for on are with as his they be at one have this from or had by hot "
         "word but what some we can out other were all there when up use your how said an each she which do "
         "their time if will way about many then them write would like so these her long make thing see him "
         "extent btrfs folio page kmap compress zstd zlib lzo sector inode").split()


def text(n, seed):
    r = Xorshift(seed)
    out = []
    size = 0
    while size < n:
        w = WORDS[r.next() % len(WORDS)]
        sep = "\n" if r.next() % 13 == 0 else " "
        out.append(w + sep)
        size += len(w) + 1
    return "".join(out).encode()[:n]


def binary(n, seed):
    r = Xorshift(seed)
    b = bytearray()
    while len(b) < n:
        v = r.next()
        rec = (len(b) // 16).to_bytes(4, "little") + (v & 0xFFFF).to_bytes(2, "little") + bytes(6) + (v >> 48).to_bytes(2, "little") + b"\x7f\x00"
        b += rec
    return bytes(b[:n])


def random_bytes(n, seed):
    r = Xorshift(seed)
    return b"".join(r.next().to_bytes(8, "little") for _ in range((n + 7) // 8))[:n]


def corpus():
    return {
        "text-128k": text(131072, 1),
        "binary-128k": binary(131072, 2),
        "mixed-300k": text(100000, 3) + random_bytes(4096, 4) + binary(100000, 5) + bytes(96000),
        "unaligned-100000": text(100000, 6),
        "inline-300": text(300, 7),
        "inline-1500": binary(1500, 8),
        "inline-3900": text(3900, 9),
        "zeros-64k": bytes(65536),
    }


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def skip(why):
    print(f"SKIPPED: live-kernel extents: {why}")
    sys.exit(0)


def encoded_read_all(path, size):
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        off = 0
        while off < size:
            buf = ctypes.create_string_buffer(131072)
            iov = Iovec(ctypes.cast(buf, ctypes.c_void_p), 131072)
            args = EncodedArgs()
            args.iov = ctypes.addressof(iov)
            args.iovcnt = 1
            args.offset = off
            n = fcntl.ioctl(fd, ENCODED_READ, args, True)
            if n < 0 or args.len == 0:
                raise OSError(f"ENCODED_READ at {off} returned {n}")
            raw = bytes(buf.raw[:n])
            out.append({
                "file_offset": off,
                "len": args.len,
                "unencoded_len": args.unencoded_len,
                "unencoded_offset": args.unencoded_offset,
                "compression": ENC_NAMES.get(args.compression, str(args.compression)),
                "raw": raw,
            })
            off += args.len
    finally:
        os.close(fd)
    return out


def main():
    if os.geteuid() != 0:
        skip("not root")
    if shutil.which("mkfs.btrfs") is None:
        skip("mkfs.btrfs not installed")
    if not os.path.exists("/dev/loop-control"):
        skip("no loop devices")
    outdir = sys.argv[1] if len(sys.argv) > 1 else f"fixtures/live-{platform.release()}"
    work = tempfile.mkdtemp(prefix="btrfs-live-")
    img = os.path.join(work, "img")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    files = corpus()
    manifest = {"kernel": platform.release(), "tool": "tools/live-kernel-extents.py", "options": {}, "files": {}}
    staged = os.path.join(work, "out")
    mounted = False
    try:
        with open(img, "wb") as f:
            f.truncate(256 << 20)
        run("mkfs.btrfs", "-q", "-f", "-L", "btrfs-compress", "-U", "7a1d8a6c-6b1e-4b83-9f6e-1c9a0f2e5d10", img)
        try:
            run("mount", "-o", "loop", img, mnt)
        except subprocess.CalledProcessError as e:
            skip(f"mount refused: {e.stderr.decode().strip()}")
        mounted = True
        for opt in OPTIONS:
            try:
                run("mount", "-o", f"remount,compress-force={opt}", mnt)
            except subprocess.CalledProcessError:
                manifest["options"][opt] = "refused by this kernel"
                continue
            d = os.path.join(mnt, opt.replace(":", "_"))
            os.mkdir(d)
            for name, data in files.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            manifest["options"][opt] = "ok"
        run("sync")
        run("umount", mnt)
        mounted = False
        run("mount", "-o", "loop,ro", img, mnt)
        mounted = True
        os.makedirs(os.path.join(staged, "plain"))
        for name, data in files.items():
            p = os.path.join(staged, "plain", name)
            with open(p, "wb") as f:
                f.write(data)
            run("zstd", "-q", "-19", "--rm", p)
            manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        extents = []
        for opt, state in manifest["options"].items():
            if state != "ok":
                continue
            d = os.path.join(mnt, opt.replace(":", "_"))
            od = os.path.join(staged, "extents", opt.replace(":", "_"))
            os.makedirs(od)
            for name, data in files.items():
                for i, e in enumerate(encoded_read_all(os.path.join(d, name), len(data))):
                    raw = e.pop("raw")
                    rel = None
                    if e["compression"] != "none":
                        rel = f"extents/{opt.replace(':', '_')}/{name}.{i}.bin"
                        with open(os.path.join(staged, rel), "wb") as f:
                            f.write(raw)
                    extents.append({"option": opt, "file": name, "index": i, "path": rel,
                                    "encoded_len": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), **e})
        manifest["extents"] = extents
        run("umount", mnt)
        mounted = False
        # The whole image, for the image reader's tests (zstd -19 packs the sparse image small).
        run("zstd", "-q", "-19", "-T0", img, "-o", os.path.join(staged, "image.img.zst"))
        manifest["image"] = {"file": "image.img.zst", "size": os.path.getsize(img),
                             "mkfs": subprocess.run(["mkfs.btrfs", "--version"], capture_output=True,
                                                    text=True).stdout.strip()}
        with open(os.path.join(staged, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        if os.path.exists(outdir):
            shutil.rmtree(outdir)
        shutil.copytree(staged, outdir)
        print(f"wrote {len(extents)} extents to {outdir}")
    finally:
        if mounted:
            subprocess.run(["umount", mnt])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
