#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# The lab's denominator in 32-bit code: the same page loops built for i686-unknown-linux-gnu run
# natively on this x86-64 host (real timing of 32-bit code, no emulation), beside the x86-64
# build, in one run. Per codec and operation of the 32-bit HIGHMEM 6.1 kmap_local rows: the
# codec's measured µs per 128 KiB extent in each build (median, min-max over the repetitions),
# their ratio, and kmap_local's modeled cost as a share of each.
# Needs: rustup's i686-unknown-linux-gnu target and gcc-multilib (zstd-sys builds libzstd for i686).
# Usage: tools/bench-i686.sh [bench options, e.g. --quick]
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -q i686-unknown-linux-gnu || rustup target add i686-unknown-linux-gnu
cargo build --release --locked --bin btrfs-compress
cargo build --release --locked --target i686-unknown-linux-gnu --bin btrfs-compress
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
loops=(--loop 6.1 --strategies kmap-local --backends heap)
./target/i686-unknown-linux-gnu/release/btrfs-compress bench "${loops[@]}" --json --no-report "$@" > "$tmp/x86.jsonl" 2>/dev/null
./target/release/btrfs-compress bench "${loops[@]}" --json --no-report "$@" > "$tmp/x86_64.jsonl" 2>/dev/null
python3 - "$tmp/x86.jsonl" "$tmp/x86_64.jsonl" <<'PY'
import json, sys
def rows(p):
    out = {}
    for line in open(p):
        r = json.loads(line)
        if r["config"] == "32-bit-highmem" and r["strategy"] == "kmap-local" and r["extents"] > 0:
            key = (f'{r["codec"]}:{r["level"]}' if r["codec"] not in ("lzo", "heuristic") else r["codec"], r["op"])
            out[key] = r
    return out
a, b = rows(sys.argv[1]), rows(sys.argv[2])
def us(r):
    # µs per extent: the median, and the spread from the slowest and fastest repetitions' MB/s.
    per = r["measured_us_per_extent"]
    return per, per * r["mb_s"] / r["mb_s_max"], per * r["mb_s"] / r["mb_s_min"]
print("| codec, op | i686 code µs/extent (min-max) | x86-64 code µs/extent (min-max) | i686 / x86-64 | kmap_local share, i686 | x86-64 |")
print("|---|---|---|---|---|---|")
for k in sorted(a):
    if k not in b:
        continue
    (m32, l32, h32), (m64, l64, h64) = us(a[k]), us(b[k])
    ns = a[k]["modeled_ns_per_extent"]
    print(f"| {k[0]} {k[1]} | {m32:.0f} ({l32:.0f}-{h32:.0f}) | {m64:.0f} ({l64:.0f}-{h64:.0f}) | {m32 / m64:.2f}x "
          f"| {100 * ns / (m32 * 1e3):.2f} % | {100 * ns / (m64 * 1e3):.2f} % |")
PY
