#!/bin/bash
# How fast and how close `estimate --sample` is against exact mode on one tree.
#
#   tools/bench-sample.sh [-f FRACTION] [-n SEEDS] [-a LIST] [-c] PATH...
#
# Runs exact mode, then the sampled mode with seeds 1..SEEDS, then exact mode again (the machine
# is shared: the exact time is the mean of the two runs around the samples), and prints per seed
# the time, the speed-up over exact, each option's error against the exact disk bytes and whether
# its 95 % interval covers them; then the medians and the worst case. -c: the options as
# compress= (the heuristic decides, NOCOMPRESS), not compress-force=. No root needed.
set -euo pipefail
frac=0.09 seeds=20 algs=zstd:1,zstd:3,lzo,zlib:3 force=--force
while getopts f:n:a:c o; do
    case $o in
        f) frac=$OPTARG ;;
        n) seeds=$OPTARG ;;
        a) algs=$OPTARG ;;
        c) force= ;;
        *) exit 64 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-f FRACTION] [-n SEEDS] [-a LIST] [-c] PATH..." >&2; exit 64; }
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BTRFS_COMPRESS:-$here/target/release/btrfs-compress}
[ -x "$bin" ] || cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p btrfs-compress-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() { # OUT ARGS...: one run, its wall time in seconds on stdout
    local out=$1 s e
    shift
    s=$(date +%s.%N)
    "$bin" estimate $force -a "$algs" --json "$@" 2>/dev/null >"$out"
    e=$(date +%s.%N)
    awk "BEGIN { print $e - $s }"
}
t1=$(run "$work/exact.json" "$@")
for s in $(seq 1 "$seeds"); do
    echo "$(run "$work/s$s.json" --sample "$frac" --seed "$s" "$@")" >"$work/s$s.time"
done
t2=$(run "$work/exact2.json" "$@")
python3 - "$work" "$seeds" "$frac" "$t1" "$t2" <<'PY'
import json, statistics as st, sys
work, seeds, frac, t1, t2 = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
exact = {d["option"]: d["disk_bytes"] for d in map(json.loads, open(f"{work}/exact.json"))}
again = {d["option"]: d["disk_bytes"] for d in map(json.loads, open(f"{work}/exact2.json"))}
if exact != again:
    sys.exit("the tree changed between the two exact runs")
t_exact = (t1 + t2) / 2
print(f"exact: {t1:.2f} s and {t2:.2f} s; sample {frac}, {seeds} seeds")
worst, speed, missed = [], [], 0
for s in range(1, seeds + 1):
    t = float(open(f"{work}/s{s}.time").read())
    errs, cover = [], []
    for d in map(json.loads, open(f"{work}/s{s}.json")):
        x = exact[d["option"]]
        lo, hi = d["disk_bytes_ci95"]
        errs.append(100 * (d["disk_bytes"] - x) / x)
        cover.append(lo <= x <= hi)
    missed += cover.count(False)
    worst.append(max(map(abs, errs)))
    speed.append(t_exact / t)
    print(f"seed {s}: {t:.2f} s ({t_exact / t:.1f}x) errors {' '.join(f'{e:+.2f}' for e in errs)} %, "
          f"max |error| {worst[-1]:.2f} %, intervals covering {cover.count(True)}/{len(cover)}")
print(f"speed-up median {st.median(speed):.1f}x ({min(speed):.1f}-{max(speed):.1f}); max |error| median "
      f"{st.median(worst):.2f} %, worst {max(worst):.2f} %; seeds within 1 %: {sum(w <= 1 for w in worst)}/{seeds}; "
      f"intervals missing the exact answer: {missed}/{seeds * len(exact)}")
PY
