#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Extract a btrfs image with `btrfs-compress extract` and with `btrfs restore`, same image,
# wall time of each (median of 3), and check the two trees are identical.
# The image: a loop-mounted btrfs (compress-force=${OPT:-zstd:3}) holding a copy of $SRC
# (default /usr/bin and /usr/lib/x86_64-linux-gnu: real binaries and libraries). Needs root.
# Usage: tools/bench-extract.sh [IMAGE]   (an existing image is used as is)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/target/release/btrfs-compress"
[ -x "$bin" ] || cargo build --release --bin btrfs-compress --manifest-path "$top/Cargo.toml"
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
img=${1:-}
if [ -z "$img" ]; then
  img="$work/bench.img"
  truncate -s 3G "$img"
  mkfs.btrfs -q -f "$img"
  mkdir "$work/mnt"
  mount -o loop,compress-force="${OPT:-zstd:3}" "$img" "$work/mnt"
  for s in ${SRC:-/usr/bin /usr/lib/x86_64-linux-gnu}; do cp -a "$s" "$work/mnt/" 2>/dev/null || true; done
  sync
  umount "$work/mnt"
fi
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
med() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
ours=(); theirs=()
for i in 1 2 3; do
  rm -rf "$work/a" "$work/b"; mkdir "$work/b"
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  ours+=("$(ms "$bin" extract "$img" "$work/a")")
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  theirs+=("$(ms btrfs restore "$img" "$work/b")")
done
o=$(med "${ours[@]}"); t=$(med "${theirs[@]}")
echo "image $(du -h --apparent-size "$img" | cut -f1) ($(du -sh "$work/a" | cut -f1) of files)"
echo "btrfs-compress extract: ${o} ms (runs: ${ours[*]})"
echo "btrfs restore:          ${t} ms (runs: ${theirs[*]})"
echo "speedup: $(awk -v a="$t" -v b="$o" 'BEGIN { printf "%.2fx", a / b }')"
diff -r --no-dereference "$work/a" "$work/b" >/dev/null && echo "trees identical" || echo "trees DIFFER"
