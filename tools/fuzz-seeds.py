#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Seed the fuzz corpora from the kernel fixtures (run after
`cargo build --release -p btrfs-compress`; then `cargo fuzz cmin` each target).

decompress: compressed extents of the fixture images (`btrfs-compress inspect --dump-extents`),
each prefixed with the 8-byte header diff_tests::fuzzing::decompress_any reads (codec, options,
ram_bytes, offset; the inline flag for the small ones). lzo_framing: the lzo extents as they
are. roundtrip: the small plaintexts with a 3-byte header.
"""
import glob
import os
import subprocess
import tempfile

ALG = {"zlib": 0, "lzo": 1, "zstd": 2}
root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
bin_ = os.path.join(root, "target", "release", "btrfs-compress")
out = os.path.join(root, "fuzz", "corpus")
for t in ("decompress", "lzo_framing", "roundtrip"):
    os.makedirs(os.path.join(out, t), exist_ok=True)
for zimg in sorted(glob.glob(os.path.join(root, "fixtures", "*", "image.img.zst"))):
    fx = os.path.basename(os.path.dirname(zimg))
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([bin_, "inspect", "--dump-extents", tmp, zimg], check=True, stdout=subprocess.DEVNULL)
        for n, f in enumerate(sorted(os.listdir(tmp))):
            if n % 4:
                continue  # a quarter of them is plenty for seeds
            alg = f.rsplit(".", 1)[1]
            raw = open(os.path.join(tmp, f), "rb").read()
            inline = len(raw) % 4096 != 0
            ram = (4095 if inline else 131071)
            head = bytes([ALG[alg], 1, 0, ram & 0xFF, (ram >> 8) & 0xFF, (ram >> 16) & 1 | (0x80 if inline else 0), 0, 0])
            open(os.path.join(out, "decompress", f"{fx}-{f}"), "wb").write(head + raw)
            if alg == "lzo":
                open(os.path.join(out, "lzo_framing", f"{fx}-{f}"), "wb").write(raw)
    for p in glob.glob(os.path.join(os.path.dirname(zimg), "plain", "inline-*.zst")):
        data = subprocess.run(["zstd", "-d", "-c", p], capture_output=True, check=True).stdout
        for i in range(3):
            open(os.path.join(out, "roundtrip", f"{fx}-{os.path.basename(p)}-{i}"), "wb").write(bytes([i * 3, 1, 0]) + data)
print("seeded", {t: len(os.listdir(os.path.join(out, t))) for t in ("decompress", "lzo_framing", "roundtrip")})
