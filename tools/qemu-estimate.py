#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The estimate oracle in a kernel of another era: Debian's kernels booted in qemu (as in
tools/qemu-fixtures.py) copy the estimate oracles' tree (`btrfs-compress corpus --estimate-tree`)
onto a fresh btrfs once per mount option (remounted between, with a sync so writeback runs under
that option); back on the host, `btrfs-compress usage` (which equals compsize on every fixture
image) counts each option's directory. The kernel's figures go to
fixtures/estimate-qemu-<kernel>/kernel.json, which `cargo test -p btrfs-estimate --test
estimate_qemu` compares with `estimate --kernel MAJOR.MINOR` on the same tree, without qemu.

Needs root, qemu-system-x86, busybox-static, cpio, zstd, btrfs-progs, a release build.
Usage: tools/qemu-estimate.py [bookworm|bookworm-backports|sid ...]   (default: bookworm, 6.1)
"""
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import fixture_lib as fl  # noqa: E402

qf = fl.qemu_fixtures()

ROOT = qf.ROOT
BIN = os.path.join(ROOT, "target", "release", "btrfs-compress")
# The estimate oracle's options on the running kernel, and zstd:9.
OPTIONS = ["compress-force=zstd:3", "compress-force=lzo", "compress-force=zlib:3", "compress=zstd:1",
           "compress=zlib:6", "compress=lzo", "compress-force=zstd:9"]


def dirname(opt):
    return opt.replace("=", "-").replace(":", "_")


def init_script():
    lines = fl.GUEST_INIT_HEAD + [
    ]
    for opt in OPTIONS:
        d = dirname(opt)
        lines.append(f"sync; if mount -o remount,{opt} /mnt 2>/dev/null && grep -q '{opt}' /proc/mounts; then")
        lines.append(f"  cp -r /corpus/tree /mnt/{d} && sync && echo OPTION-OK {opt}")
        lines.append(f"else echo OPTION-REFUSED {opt}; fi")
    lines += ["sync", "umount /mnt && echo FIXTURE-DONE", "poweroff -f", ""]
    return "\n".join(lines)


def main():
    if os.geteuid() != 0:
        fl.skip("not root", "qemu estimate oracle")
    if not os.access(BIN, os.X_OK):
        sys.exit(f"build first: cargo build --release --bin btrfs-compress ({BIN})")
    suites = sys.argv[1:] or ["bookworm"]
    work = tempfile.mkdtemp(prefix="btrfs-qest-")
    tree = os.path.join(work, "tree")
    subprocess.run([BIN, "corpus", "--estimate-tree", tree], check=True, stdout=subprocess.DEVNULL)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        t.add(tree, arcname="tree")
    tar = os.path.join(work, "corpus.tar")
    data = buf.getvalue()
    open(tar, "wb").write(data + bytes(-len(data) % 65536))
    apt = fl.Apt(work, tuple(suites))
    for suite in suites:
        kver, pkgs = qf.kernel_packages(apt, suite)
        init = os.path.join(work, f"{suite}.init")
        open(init, "w").write(init_script())
        root = os.path.join(work, suite)
        vmlinuz = qf.unpack(apt, pkgs, root)
        initrd = os.path.join(work, f"{suite}.cpio.gz")
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "qemu", "initramfs.py"), root, kver,
                        init, initrd], check=True, stdout=subprocess.DEVNULL)
        img = os.path.join(work, f"{suite}.img")
        with open(img, "wb") as f:
            f.truncate(1 << 30)
        subprocess.run(["mkfs.btrfs", "-q", "-f", img], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        accel, out, secs = qf.boot(vmlinuz, initrd, img, tar, os.path.join(work, f"{suite}.log"))
        results = []
        for opt in OPTIONS:
            if f"OPTION-OK {opt}" not in out:
                print(f"{suite}: {opt} refused by {kver}")
                continue
            r = subprocess.run([BIN, "usage", "--json", img, dirname(opt)], capture_output=True, check=True, text=True)
            u = json.loads(r.stdout)
            total = next(t for t in u["types"] if t["type"] == "TOTAL")
            results.append({"option": opt, "files": u["files"], "regular_extents": u["regular_extents"],
                            "inline": u["inline"], "disk_bytes": total["disk_bytes"],
                            "uncompressed_bytes": total["uncompressed_bytes"],
                            "referenced_bytes": total["referenced_bytes"]})
            print(f"{suite}: {kver} {opt}: {total['disk_bytes']} disk bytes")
        dest = os.path.join(ROOT, "fixtures", f"estimate-qemu-{kver}")
        os.makedirs(dest, exist_ok=True)
        with open(os.path.join(dest, "kernel.json"), "w") as f:
            json.dump({"kernel": kver, "suite": suite, "accel": accel, "vm_seconds": round(secs, 1),
                       "tool": "tools/qemu-estimate.py", "options": results}, f, indent=1)
        print(f"{suite}: kernel {kver}, {accel}, VM {secs:.1f} s: {len(results)} options into {dest}")


if __name__ == "__main__":
    main()
