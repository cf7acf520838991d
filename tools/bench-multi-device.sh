#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# `btrfs-compress extract` of the same tree on one device (single data, DUP metadata), on RAID1
# over two devices, on RAID1 with one device withheld (degraded), on RAID5 over three devices
# and on RAID5 with one withheld (every stripe of that device rebuilt from parity), into tmpfs;
# runs alternate, median of ${RUNS:-5} each with min and max of wall time and of CPU time (user +
# system), and peak RSS (GNU time); CASES selects some of them. Checks the
# trees agree. The tree: a copy of $SRC (default /usr/lib/x86_64-linux-gnu) written by the running
# kernel under compress-force=${OPT:-zstd:3}. Needs root, loop devices, btrfs-progs, GNU time.
# Usage: sudo tools/bench-multi-device.sh
set -euo pipefail
# shellcheck source=tools/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
bench_start 8G
loops=()
cleanup() {
  umount "$work/mnt" 2>/dev/null || true
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  btrfs device scan --forget 2>/dev/null || true
  umount "$work/t" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
make() { # NAME DEVICES MKFS-ARGS...
  local name=$1 n=$2; shift 2
  local files=() devs=()
  for i in $(seq "$n"); do truncate -s 1500M "$work/$name$i.img"; files+=("$work/$name$i.img"); done
  mkfs.btrfs -q -f "$@" "${files[@]}"
  for f in "${files[@]}"; do l=$(losetup --find --show "$f"); loops+=("$l"); devs+=("$l"); done
  btrfs device scan "${devs[@]}" >/dev/null
  mount -o compress-force="${OPT:-zstd:3}" "${devs[0]}" "$work/mnt"
  for s in ${SRC:-/usr/lib/x86_64-linux-gnu}; do cp -a "$s" "$work/mnt/" 2>/dev/null || true; done
  sync
  umount "$work/mnt"
  for d in "${devs[@]}"; do losetup -d "$d"; done
  loops=()
  btrfs device scan --forget 2>/dev/null || true
}
make single 1 -d single -m dup
make raid1_ 2 -d raid1 -m raid1
make raid5_ 3 -d raid5 -m raid5
declare -A cases=(
  [single]="$work/single1.img"
  [raid1]="$work/raid1_1.img --device $work/raid1_2.img"
  [raid1-degraded]="$work/raid1_2.img"
  [raid5]="$work/raid5_1.img --device $work/raid5_2.img --device $work/raid5_3.img"
  [raid5-degraded]="$work/raid5_1.img --device $work/raid5_3.img"
)
read -r -a order <<< "${CASES:-single raid1 raid1-degraded raid5 raid5-degraded}"
declare -A times cpu
for i in $(seq "${RUNS:-5}"); do
  for c in "${order[@]}"; do
    rm -rf "$work/t/$c"
    sync
    # shellcheck disable=SC2086
    times[$c]+="$(ms "$bin" extract ${cases[$c]} "$work/t/$c") "
    # CPU time (user + system, ms) of a second run: less noisy than wall time on a shared machine.
    rm -rf "$work/t/$c"
    # shellcheck disable=SC2086
    cpu[$c]+="$(/usr/bin/time -f '%U %S' "$bin" extract ${cases[$c]} "$work/t/$c" 2>&1 >/dev/null | tail -1 | awk '{printf "%d", ($1 + $2) * 1000}') "
  done
done
echo "tree: $(du -sh --apparent-size "$work/t/single" | cut -f1) in $(find "$work/t/single" -type f | wc -l) files"
base=$(median ${times[single]})
for c in "${order[@]}"; do
  # shellcheck disable=SC2086
  rss=$(/usr/bin/time -f %M "$bin" extract ${cases[$c]} "$work/t/rss-$c" 2>&1 >/dev/null | tail -1)
  rm -rf "$work/t/rss-$c"
  # shellcheck disable=SC2086
  echo "$c: wall $(stats ${times[$c]}), $(awk -v a="$(median ${times[$c]})" -v b="$base" 'BEGIN { printf "%.2fx", a / b }') of single; CPU $(stats ${cpu[$c]}), $(awk -v a="$(median ${cpu[$c]})" -v b="$(median ${cpu[single]})" 'BEGIN { printf "%.2fx", a / b }') of single; peak RSS ${rss} KiB"
  diff -r --no-dereference "$work/t/single" "$work/t/$c" >/dev/null && echo "$c: tree identical to single" || echo "$c: tree DIFFERS from single"
  [ "$c" = single ] || rm -rf "$work/t/$c"
done
