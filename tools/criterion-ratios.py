#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Print the medians of the `codecs` criterion bench and each page loop's ratio to the library.

Run after: cargo bench -p benches --bench codecs
Reads target/criterion/<codec>_<op>/<function>/new/estimates.json.
A ratio above 1 means the page loop is faster than the baseline.
"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
groups = {}
for g in sorted(os.listdir(root)):
    gdir = os.path.join(root, g)
    if not os.path.isdir(gdir) or "_" not in g:
        continue
    for fn in sorted(os.listdir(gdir)):
        est = os.path.join(gdir, fn)
        # criterion nests BenchmarkId(function, parameter) as <function>/<parameter>
        for sub in sorted(os.listdir(est)) if os.path.isdir(est) else []:
            p = os.path.join(est, sub, "new", "estimates.json")
            if os.path.exists(p):
                with open(p) as f:
                    est_json = json.load(f)
                    # The value criterion prints: the slope of the linear fit (or the mean).
                    pick = est_json.get("slope") or est_json["mean"]
                    groups.setdefault(g, {})[fn] = pick["point_estimate"]
print("| group | function | time | vs library-one-call | vs library-same-format |")
print("|---|---|---|---|---|")
for g, fns in groups.items():
    base = fns.get("library-one-call")
    fmt = fns.get("library-same-format")
    for fn, t in fns.items():
        r1 = f"{base / t:.3f}x" if base and fn != "library-one-call" else ""
        r2 = f"{fmt / t:.3f}x" if fmt and fn.startswith("page-loop") else ""
        unit = f"{t / 1e6:.3f} ms" if t >= 1e6 else f"{t / 1e3:.1f} us"
        print(f"| {g} | {fn} | {unit} | {r1} | {r2} |")
