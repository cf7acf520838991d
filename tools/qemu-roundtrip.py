#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The live-kernel round trip inside Debian's 6.1, 6.12 and 7.x kernels (qemu, as in
tools/qemu-fixtures.py).

On the host, `btrfs-compress encoded-write --send-stream` turns a varied corpus (inline-sized
files, several extents, an unaligned end, incompressible data) into send streams for every
algorithm and level the kernel accepts, with several mapping strategies. In the VM, `btrfs
receive` (the host's btrfs-progs, copied into the initramfs with its libraries) applies them to a
fresh btrfs image: each ENCODED_WRITE stores our extents as they are. Back on the host the image is
checked with our reader: every file equals its input and every extent of a file is compressed
with the algorithm it was written with (a receive that fell back to plain writes would leave
uncompressed extents on this compress-less mount).

Needs root, qemu-system-x86, busybox-static, cpio, zstd, btrfs-progs, a release build.
Usage: tools/qemu-roundtrip.py [bookworm|bookworm-backports|sid ...]
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
RUNS = [(s, "direct", 0) for s in ["zlib:1", "zlib:3", "zlib:9", "lzo", "zstd:1", "zstd:3", "zstd:15", "zstd:-5"]] + \
       [("zstd:3", "kmap-local", 0), ("zstd:3", "range", 5), ("lzo", "kmap-local", 0), ("lzo", "range", 5)]


def corpus():
    c = dict(fl.corpus())
    c["random-64k"] = fl.random_bytes(65536, 77)
    return c


def main():
    suites = sys.argv[1:] or ["bookworm", "bookworm-backports", "sid"]
    work = tempfile.mkdtemp(prefix="btrfs-qrt-")
    files = corpus()
    for name, data in files.items():
        open(os.path.join(work, name), "wb").write(data)
    apt = fl.Apt(work, tuple(suites))
    for suite in suites:
        kver, pkgs = qf.kernel_packages(apt, suite)
        major_minor = tuple(int(x) for x in kver.split(".")[:2])
        runs = [r for r in RUNS if not (r[0].startswith("zstd:-") and major_minor < (6, 15))]
        buf = io.BytesIO()
        planned = 0
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
            for i, (alg, strategy, order) in enumerate(runs):
                for name in files:
                    out = os.path.join(work, "s")
                    r = subprocess.run([BIN, "encoded-write", "-f", "-a", alg, "--strategy", strategy,
                                        "--folio-order", str(order), "--send-stream", out, os.path.join(work, name),
                                        f"{i}-{name}"], check=True, capture_output=True, text=True)
                    planned += int(r.stderr.split(": ")[-1].split(" encoded")[0])
                    t.add(out, arcname=f"{i}-{name}.stream")
        tar = os.path.join(work, f"{suite}.tar")
        data = buf.getvalue()
        open(tar, "wb").write(data + bytes(-len(data) % 65536))
        init = os.path.join(work, f"{suite}.init")
        open(init, "w").write("\n".join([
            "#!/bin/sh",
            "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev",
            "for m in $(cat /modules.order); do insmod /lib/$m.ko 2>/dev/null; done",
            "tar -x -f /dev/vdb -C /corpus || echo CORPUS-FAILED",
            "mount -t btrfs /dev/vda /mnt || { echo MOUNT-FAILED; poweroff -f; }",
            "n=0; for s in /corpus/*.stream; do /usr/bin/btrfs receive -e -f $s /mnt >/dev/null 2>&1 && n=$((n+1)) || echo RECEIVE-FAILED $s; done",
            "echo RECEIVED $n", "sync", "umount /mnt && echo FIXTURE-DONE", "poweroff -f", ""]))
        root = os.path.join(work, suite)
        vmlinuz = qf.unpack(apt, pkgs, root)
        initrd = os.path.join(work, f"{suite}.cpio.gz")
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "qemu", "initramfs.py"), root, kver,
                        init, initrd, "/usr/bin/btrfs"], check=True, stdout=subprocess.DEVNULL)
        img = os.path.join(work, f"{suite}.img")
        with open(img, "wb") as f:
            f.truncate(1 << 30)
        subprocess.run(["mkfs.btrfs", "-q", "-f", img], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        accel, out, secs = qf.boot(vmlinuz, initrd, img, tar, os.path.join(work, f"{suite}.log"))
        failed = [line for line in out.splitlines() if "RECEIVE-FAILED" in line]
        info = json.loads(subprocess.run([BIN, "inspect", "--json", img], capture_output=True, check=True).stdout)
        by_path = {f["path"]: f for f in info}
        checked = encoded = bad = 0
        with tempfile.TemporaryDirectory() as ex:
            subprocess.run([BIN, "extract", img, ex], check=True, stderr=subprocess.DEVNULL)
            for i, (alg, strategy, order) in enumerate(runs):
                for name, data in files.items():
                    rel = next((p for p in by_path if p.endswith(f"/{i}-{name}")), None)
                    if rel is None or open(os.path.join(ex, rel), "rb").read() != data:
                        bad += 1
                        print(f"{suite}: {i}-{name} ({alg} {strategy}) MISSING OR DIFFERENT")
                        continue
                    checked += 1
                    exts = by_path[rel]["extents"]
                    want = alg.split(":")[0]
                    for e in exts:
                        if e["compression"] == want:
                            encoded += 1
                        elif e["compression"] != "none":
                            bad += 1
                            print(f"{suite}: {rel} has a {e['compression']} extent, expected {want}")
        print(f"{suite}: kernel {kver}, {accel}, VM {secs:.1f} s: {checked} files read back equal, "
              f"{encoded} of {planned} encoded extents stored with their codec, {len(failed)} receive failures, "
              f"{bad} problems")
        if failed or bad or encoded != planned:
            sys.exit(1)


if __name__ == "__main__":
    main()
