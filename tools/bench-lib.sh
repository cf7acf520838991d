# SPDX-License-Identifier: GPL-2.0-only
# Shared by the bench-*.sh scripts (sourced): the release build and a work directory with a tmpfs
# to write into; wall time of a command in ms, and the median with min and max of a list of times.

# bench_start TMPFS_SIZE: sets top (the repository), bin (the release binary, built), work (a
# fresh directory holding mnt/ and t/, a tmpfs of TMPFS_SIZE). The caller sets its EXIT trap next.
bench_start() {
  top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  bin="$top/target/release/btrfs-compress"
  cargo build -q --release --bin btrfs-compress --manifest-path "$top/Cargo.toml"
  work=$(mktemp -d)
  mkdir "$work/mnt" "$work/t"
  mount -t tmpfs -o size="$1" tmpfs "$work/t"
}
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "median %d ms (min %d, max %d)", v[int((NR+1)/2)], v[1], v[NR]}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
