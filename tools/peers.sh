#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Cross-check our image reader against independent readers on every fixture image:
#   - btrfs-progs `btrfs restore` (the files) and `inspect-internal dump-tree` (the EXTENT_DATA
#     items), against `btrfs-compress extract` / `inspect`;
#   - grub-common's `grub-fstest IMG cmp /PATH FILE` for every file we extract.
# Needs btrfs-progs, grub-common and zstd (apt-get install btrfs-progs grub-common zstd).
# Prints one line per image and check; exits non-zero if any check disagrees.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/target/release/btrfs-compress"
[ -x "$bin" ] || cargo build --release --bin btrfs-compress --manifest-path "$top/Cargo.toml" >/dev/null
fail=0
for zimg in "$top"/fixtures/*/image.img.zst; do
  fx=$(basename "$(dirname "$zimg")")
  work=$(mktemp -d)
  zstd -q -d "$zimg" -o "$work/img"
  "$bin" extract "$work/img" "$work/ours" 2>/dev/null || { echo "$fx: extract FAILED"; fail=1; }
  mkdir "$work/restore"
  if command -v btrfs >/dev/null; then
    btrfs restore "$work/img" "$work/restore" >/dev/null 2>&1
    # Files btrfs-progs could not restore (old releases fail on some inline extents) are listed,
    # and every file it did restore must equal ours.
    missing=$(cd "$work/ours" && find . -type f | while read -r f; do [ -e "$work/restore/$f" ] || echo "$f"; done | wc -l)
    differ=$(cd "$work/restore" && find . -type f | while read -r f; do cmp -s "$f" "$work/ours/$f" || echo "$f"; done)
    if [ -n "$differ" ]; then echo "$fx: btrfs restore DIFFERS on: $differ"; fail=1; fi
    echo "$fx: btrfs restore agrees on $(cd "$work/restore" && find . -type f | wc -l) files ($missing not restored by btrfs-progs $(btrfs --version | awk '{print $NF}'))"
    ours_items=$("$bin" inspect --json "$work/img" | python3 -c 'import json,sys; print(sum(len(f["extents"]) for f in json.load(sys.stdin)))')
    theirs_items=$(btrfs inspect-internal dump-tree "$work/img" 2>/dev/null | grep -cE "item [0-9]+ key \([0-9]+ EXTENT_DATA")
    if [ "$ours_items" = "$theirs_items" ]; then echo "$fx: dump-tree agrees: $theirs_items EXTENT_DATA items"
    else echo "$fx: dump-tree DIFFERS: ours $ours_items, btrfs $theirs_items"; fail=1; fi
  fi
  if command -v grub-fstest >/dev/null; then
    n=0; bad=0; unread=0
    while read -r f; do
      n=$((n + 1))
      if ! grub-fstest "$work/img" cmp "/${f#./}" "$work/ours/$f" >/dev/null 2>&1; then
        # grub's btrfs driver returns nothing for files with implicit (NO_HOLES) holes or
        # prealloc extents: count those apart from real disagreements.
        if [ "$(grub-fstest "$work/img" cat "/${f#./}" 2>/dev/null | wc -c)" = 0 ] && [ -s "$work/ours/$f" ]; then
          unread=$((unread + 1)); echo "$fx: grub-fstest cannot read $f (returns no data)"
        else
          bad=$((bad + 1)); echo "$fx: grub-fstest DIFFERS on $f"
        fi
      fi
    done < <(cd "$work/ours" && find . -type f)
    echo "$fx: grub-fstest agrees on $((n - bad - unread)) of $n files ($unread it cannot read, $bad differ)"
    [ "$bad" = 0 ] || fail=1
  fi
  rm -rf "$work"
done
exit $fail
