#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Seed the fuzz corpora from the kernel fixtures.

decompress: every inline extent and up to two regular extents per option, each prefixed with
the 8-byte header diff_tests::fuzzing::decompress_any reads (codec, options, ram_bytes, offset).
lzo_framing: the lzo extents as they are. roundtrip: small plaintexts with a 3-byte header.
"""
import glob
import json
import os

ALG = {"zlib": 0, "lzo-4k": 1, "zstd": 2}
root = os.path.join(os.path.dirname(__file__), "..")
out = os.path.join(root, "fuzz", "corpus")
for t in ("decompress", "lzo_framing", "roundtrip"):
    os.makedirs(os.path.join(out, t), exist_ok=True)
for mf in glob.glob(os.path.join(root, "fixtures", "*", "manifest.json")):
    d = os.path.dirname(mf)
    m = json.load(open(mf))
    per_option = {}
    for e in m["extents"]:
        if not e["path"] or e["compression"] not in ALG:
            continue
        raw = open(os.path.join(d, e["path"]), "rb").read()
        inline = e["unencoded_len"] % 4096 != 0
        if not inline:
            n = per_option.get(e["option"], 0)
            if n >= 2:
                continue
            per_option[e["option"]] = n + 1
        ram = (e["len"] if inline else e["unencoded_len"]) - 1
        flags = (ram >> 16) & 1 | (0x80 if inline else 0)
        head = bytes([ALG[e["compression"]], 1, 0, ram & 0xFF, (ram >> 8) & 0xFF, flags, 0, 0])
        name = f"{e['option'].replace(':', '_')}-{e['file']}-{e['index']}"
        open(os.path.join(out, "decompress", name), "wb").write(head + raw)
        if e["compression"] == "lzo-4k":
            open(os.path.join(out, "lzo_framing", name), "wb").write(raw)
    for f in glob.glob(os.path.join(d, "plain", "inline-*.zst")):
        import subprocess
        data = subprocess.run(["zstd", "-d", "-c", f], capture_output=True, check=True).stdout
        for i in range(3):
            name = f"{os.path.basename(f)}-{i}"
            open(os.path.join(out, "roundtrip", name), "wb").write(bytes([i * 3, 1, 0]) + data)
print("seeded", {t: len(os.listdir(os.path.join(out, t))) for t in ("decompress", "lzo_framing", "roundtrip")})
