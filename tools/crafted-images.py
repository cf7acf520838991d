#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Crafted images for the untrusted-image attacks, made from a kernel-written fixture with every
changed tree block's checksum fixed (crc32c), so that nothing is rejected by checksum alone; and
with `--measure`, each image run through `btrfs-compress` (inspect, verify, usage, extract) with
its exit status and peak RSS (GNU time), as a table.

The base is fixtures/subvol-snapshots-*/image.img.zst (written by the running kernel; its files of
700 bytes are uncompressed inline extents). The attacks:

  inline-bomb      an inline extent of 700 bytes whose ram_bytes and i_size say 4 GiB
  inline-bomb-2^40 the same at 2^40
  bad-name         an entry named `top/file` (a '/' in a name): the rest must still be read
  zst-bomb         the image as .zst followed by 64 MiB of non-zero data past its device's end
  extent-2^63      every regular extent of the image with disk_num_bytes 2^63 (none here has
                   one: the base holds inline extents only, so this is the fs tree's first
                   regular extent if any, else skipped)

Usage: tools/crafted-images.py OUTDIR [--measure BIN]
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = _T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def base():
    fx = next(os.path.join(ROOT, "fixtures", d) for d in sorted(os.listdir(os.path.join(ROOT, "fixtures")))
              if d.startswith("subvol-snapshots-"))
    raw = subprocess.run(["zstd", "-dc", os.path.join(fx, "image.img.zst")], capture_output=True, check=True).stdout
    return bytearray(raw)


def fix(img, blocks, nodesize=16384):
    for s in blocks:
        img[s:s + 4] = struct.pack("<I", crc32c(bytes(img[s + 32:s + nodesize])))


def positions(img, needle):
    out, at = [], 0
    while True:
        i = img.find(needle, at)
        if i < 0:
            return out
        out.append(i)
        at = i + 1


def inline_bomb(img, claim):
    """The inline extent of `sv1/file` (700 bytes of "in sv1\\n") and its inode claim `claim`."""
    data = b"in sv1\n" * 100
    blocks = set()
    # btrfs_file_extent_item: generation(8) ram_bytes(8) compression(1) encryption(1)
    # other_encoding(2) type(1), then the data: find the 21-byte header right before the data.
    for p in positions(img, data):
        h = p - 21
        if img[h + 16] == 0 and img[h + 20] == 0 and struct.unpack_from("<Q", img, h + 8)[0] == len(data):
            struct.pack_into("<Q", img, h + 8, claim)
            blocks.add(h // 16384 * 16384)
    # The inode items whose size is 700 and whose nbytes is 700 (this file and its snapshot copy).
    for p in positions(img, struct.pack("<QQ", 700, 700)):
        struct.pack_into("<Q", img, p, claim)
        blocks.add(p // 16384 * 16384)
    fix(img, blocks)
    return img


def bad_name(img):
    blocks = set()
    for p in positions(img, b"top-file"):
        img[p + 3] = ord("/")
        blocks.add(p // 16384 * 16384)
    fix(img, blocks)
    return img


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    made = {}
    for name, fn in [("inline-bomb", lambda i: inline_bomb(i, 1 << 32)),
                     ("inline-bomb-2^40", lambda i: inline_bomb(i, 1 << 40)),
                     ("bad-name", bad_name)]:
        p = os.path.join(out, f"{name}.img")
        with open(p, "wb") as f:
            f.write(fn(base()))
        made[name] = p
    # A .zst whose data runs 64 MiB past the device the superblock describes.
    img = base()
    p = os.path.join(out, "zst-bomb.img")
    with open(p, "wb") as f:
        f.write(img)
        f.write(hashlib.sha256(b"x").digest() * (64 << 20 >> 5))
    subprocess.run(["zstd", "-q", "-f", "-3", p, "-o", p + ".zst"], check=True)
    os.unlink(p)
    made["zst-bomb"] = p + ".zst"
    if "--measure" not in sys.argv:
        print(json.dumps(made, indent=1))
        return
    binary = sys.argv[sys.argv.index("--measure") + 1]
    rows = []
    for name, path in made.items():
        for cmd in (["inspect"], ["verify"], ["usage"], ["extract"]):
            with tempfile.TemporaryDirectory() as d:
                args = [binary, *cmd, path] + ([os.path.join(d, "out")] if cmd == ["extract"] else [])
                r = subprocess.run(["/usr/bin/time", "-f", "RSS %M", *args], capture_output=True, text=True)
                rss = int(r.stderr.strip().splitlines()[-1].split()[1])
                msg = [l for l in r.stderr.splitlines() if l.startswith("btrfs-compress")]
                big = max((os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(d) for f in fs), default=0)
                rows.append((name, cmd[0], r.returncode, rss, big, msg[-1][:110] if msg else ""))
    print("| attack | command | exit | peak RSS KiB | largest file written | last message |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


if __name__ == "__main__":
    main()
