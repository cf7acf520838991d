#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# estimate against the kernel route for the same question: for each of four mount options,
# mkfs.btrfs + mount + cp -a + sync + compsize -b on a loop device, against one
# `btrfs-compress estimate` of all four (exact, with 2 threads and with 1; and sampled).
# Usage: sudo tools/bench-estimate.sh TREE [OPTIONS]   (needs root, mkfs.btrfs, compsize)
set -euo pipefail
tree=${1:?usage: bench-estimate.sh TREE [zstd:1,zstd:3,lzo,zlib:3]}
algs=${2:-zstd:1,zstd:3,lzo,zlib:3}
bin=$(dirname "$0")/../target/release/btrfs-compress
[ "$(id -u)" = 0 ] || { echo "SKIPPED: bench-estimate: not root"; exit 0; }
for t in mkfs.btrfs compsize; do command -v $t >/dev/null || { echo "SKIPPED: bench-estimate: $t not installed"; exit 0; }; done
cat "$(find "$tree" -type f | head -1)" >/dev/null  # warm the page cache the same way for both
du -sb "$tree" >/dev/null
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/mnt"
t0=$(date +%s.%N)
for a in ${algs//,/ }; do
  truncate -s 0 "$work/img"; truncate -s 8G "$work/img"
  mkfs.btrfs -q -f "$work/img" >/dev/null 2>&1
  mount -o loop,compress-force="$a" "$work/img" "$work/mnt"
  cp -a "$tree" "$work/mnt/t"
  sync
  echo "kernel compress-force=$a: $(compsize -b "$work/mnt/t" | awk '/TOTAL/{print $3}') disk bytes"
  umount "$work/mnt"
done
t1=$(date +%s.%N)
"$bin" estimate --force -a "$algs" --json "$tree" 2>/dev/null | python3 -c 'import sys,json; [print("estimate", d["option"]+":", d["disk_bytes"], "disk bytes") for d in map(json.loads, sys.stdin)]'
t2=$(date +%s.%N)
"$bin" estimate --force -a "$algs" --json --threads 1 "$tree" >/dev/null 2>&1
t3=$(date +%s.%N)
"$bin" estimate --force -a "$algs" --json --sample "${SAMPLE:-0.09}" "$tree" 2>/dev/null | python3 -c 'import sys,json; [print("sampled", d["option"]+":", d["disk_bytes"], "disk bytes, 95 % interval", [round(x) for x in d["disk_bytes_ci95"]]) for d in map(json.loads, sys.stdin)]'
t4=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" <<'PY'
import sys
t0, t1, t2, t3, t4 = map(float, sys.argv[1:])
k, e2, e1, s = t1 - t0, t2 - t1, t3 - t2, t4 - t3
print(f"kernel route {k:.1f} s; estimate exact {e2:.1f} s with 2 threads ({k / e2:.2f}x the kernel route), "
      f"{e1:.1f} s with 1 ({e1 / e2:.2f}x from 1 to 2 threads); sampled {s:.1f} s ({e2 / s:.1f}x exact)")
PY
