#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# `btrfs-compress extract` (all metadata) against `btrfs restore -S -m -x` (symlinks, metadata,
# xattrs) of the same image into tmpfs (so that the destination disk does not decide), runs
# alternating, median of ${RUNS:-5} each with min and max; then the same on the small fixture
# image (fixtures/6.1.0-50-amd64, raw) with ${SMALL_RUNS:-11} runs. Checks the trees agree on
# file contents. Needs root and btrfs-progs.
# The large image: a loop-mounted btrfs (compress-force=${OPT:-zstd:3}) holding a copy of $SRC
# (default /usr/bin and /usr/lib/x86_64-linux-gnu). With OLD=BINARY (an earlier build of
# btrfs-compress), that build's extract runs alternating too, and the ratio of the two is printed.
# Usage: tools/bench-extract.sh [IMAGE]
set -euo pipefail
# shellcheck source=tools/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
bench_start 12G
trap 'umount "$work/mnt" 2>/dev/null || true; umount "$work/t" 2>/dev/null || true; rm -rf "$work"' EXIT
img=${1:-}
if [ -z "$img" ]; then
  img="$work/bench.img"
  truncate -s 3G "$img"
  mkfs.btrfs -q -f "$img"
  mount -o loop,compress-force="${OPT:-zstd:3}" "$img" "$work/mnt"
  for s in ${SRC:-/usr/bin /usr/lib/x86_64-linux-gnu}; do cp -a "$s" "$work/mnt/" 2>/dev/null || true; done
  sync
  umount "$work/mnt"
fi
compare() { # IMAGE RUNS LABEL
  local img=$1 runs=$2 ours=() theirs=() old=()
  for i in $(seq "$runs"); do
    # One tree in tmpfs at a time (three would crowd the image out of the page cache), the last
    # run's two kept for the diff; with OLD, the two builds take turns going first.
    rm -rf "$work/t/a" "$work/t/b" "$work/t/c"; mkdir "$work/t/b"
    if [ -n "${OLD:-}" ] && [ $((i % 2)) = 0 ]; then
      old+=("$(ms "$OLD" extract "$img" "$work/t/c")"); rm -rf "$work/t/c"
    fi
    ours+=("$(ms "$bin" extract "$img" "$work/t/a")")
    if [ -n "${OLD:-}" ] && [ $((i % 2)) = 1 ]; then
      old+=("$(ms "$OLD" extract "$img" "$work/t/c")"); rm -rf "$work/t/c"
    fi
    [ "$i" = "$runs" ] || rm -rf "$work/t/a"
    theirs+=("$(ms btrfs restore -S -m -x "$img" "$work/t/b")")
  done
  echo "$3: btrfs-compress extract: $(stats "${ours[@]}")"
  if [ -n "${OLD:-}" ]; then
    echo "$3: $OLD extract: $(stats "${old[@]}")"
    echo "$3: ratio (old / this build, medians): $(awk -v a="$(median "${old[@]}")" -v b="$(median "${ours[@]}")" 'BEGIN { printf "%.2fx", a / b }')"
  fi
  echo "$3: btrfs restore -S -m -x: $(stats "${theirs[@]}")"
  echo "$3: ratio (restore / extract, medians): $(awk -v a="$(median "${theirs[@]}")" -v b="$(median "${ours[@]}")" 'BEGIN { printf "%.2fx", a / b }')"
  diff -r --no-dereference "$work/t/a" "$work/t/b" >/dev/null && echo "$3: trees identical" || echo "$3: trees DIFFER (diff -r)"
}
echo "image $(du -h --apparent-size "$img" | cut -f1)"
compare "$img" "${RUNS:-5}" large
zstd -q -d -f "$top/fixtures/6.1.0-50-amd64/image.img.zst" -o "$work/small.img"
compare "$work/small.img" "${SMALL_RUNS:-11}" small
