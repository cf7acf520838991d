#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Build a busybox initramfs with the modules a kernel needs to mount btrfs on virtio disks.

Usage: initramfs.py MODULES_ROOT KVER INIT_SCRIPT OUT.cpio.gz [HOST_BINARY...]
BUSYBOX (environment) selects the busybox binary (default /bin/busybox); EXTRA_TREE a directory
copied into the root (its usr/lib/ld*.so* also into /lib and /lib64).
Each HOST_BINARY is copied with the shared libraries `ldd` lists for it (e.g. /usr/bin/btrfs).
MODULES_ROOT holds lib/modules/KVER or usr/lib/modules/KVER (an unpacked Debian kernel .deb).
Dependencies are read from each module's .modinfo "depends=" field (the .debs carry no
modules.dep); names that do not exist as modules (built in) are skipped.
"""
import glob
import gzip
import lzma
import os
import shutil
import subprocess
import sys
import tempfile

WANT = ["virtio_pci", "virtio_mmio", "virtio_blk", "crc32c_generic", "crc32c-intel", "xxhash_generic", "sha256_generic",
        "blake2b_generic", "libcrc32c", "btrfs"]


def find_moddir(root, kver):
    for base in ("lib/modules", "usr/lib/modules"):
        d = os.path.join(root, base, kver)
        if os.path.isdir(os.path.join(d, "kernel")):
            return d
    sys.exit(f"no modules for {kver} under {root}")


def index(moddir):
    idx = {}
    for dp, _, files in os.walk(os.path.join(moddir, "kernel")):
        for f in files:
            for ext in (".ko", ".ko.xz", ".ko.zst"):
                if f.endswith(ext):
                    idx[f[: -len(ext)].replace("-", "_")] = os.path.join(dp, f)
    return idx


def load(path):
    data = open(path, "rb").read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-d", "-c", path], capture_output=True, check=True).stdout
    return data


def depends(blob):
    i = blob.find(b"depends=")
    while i >= 0:
        # The .modinfo strings are NUL-separated; the field follows a NUL.
        if i == 0 or blob[i - 1] == 0:
            end = blob.index(b"\0", i)
            v = blob[i + 8:end].decode()
            return [d.replace("-", "_") for d in v.split(",") if d]
        i = blob.find(b"depends=", i + 1)
    return []


def main():
    root, kver, init, out = sys.argv[1:5]
    moddir = find_moddir(root, kver)
    idx = index(moddir)
    order, seen, blobs = [], set(), {}

    def visit(name):
        name = name.replace("-", "_")
        if name in seen or name not in idx:
            return
        seen.add(name)
        blobs[name] = load(idx[name])
        for d in depends(blobs[name]):
            visit(d)
        order.append(name)

    for w in WANT:
        visit(w)
    work = tempfile.mkdtemp()
    try:
        for d in ("bin", "sbin", "proc", "sys", "dev", "mnt", "corpus", "lib", "tmp"):
            os.makedirs(os.path.join(work, d), exist_ok=True)
        # BUSYBOX names another build (e.g. busybox-static:i386 for a 32-bit guest); its applet
        # list is the host's, which the same Debian version shares.
        shutil.copy(os.environ.get("BUSYBOX", "/bin/busybox"), os.path.join(work, "bin", "busybox"))
        for applet in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split():
            p = os.path.join(work, "bin", applet)
            if not os.path.exists(p):
                os.symlink("busybox", p)
        for n in order:
            open(os.path.join(work, "lib", n + ".ko"), "wb").write(blobs[n])
        open(os.path.join(work, "modules.order"), "w").write("\n".join(order) + "\n")
        for b in sys.argv[5:]:
            libs = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
            paths = [b] + [t for t in libs.split() if t.startswith("/")]
            for p in paths:
                dst = os.path.join(work, p.lstrip("/"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(os.path.realpath(p), dst)
        # EXTRA_TREE: a directory copied into the root as it is (e.g. compsize and its libc
        # unpacked from another architecture's .debs); its dynamic loader also goes to /lib,
        # where the binaries' interpreter path points.
        extra = os.environ.get("EXTRA_TREE")
        if extra:
            shutil.copytree(extra, work, symlinks=True, dirs_exist_ok=True)
            for ld in glob.glob(os.path.join(extra, "usr", "lib", "ld*.so*")) + glob.glob(os.path.join(extra, "usr", "lib64", "ld*.so*")):
                shutil.copy2(os.path.realpath(ld), os.path.join(work, "lib", os.path.basename(ld)))
                os.makedirs(os.path.join(work, "lib64"), exist_ok=True)
                shutil.copy2(os.path.realpath(ld), os.path.join(work, "lib64", os.path.basename(ld)))
        shutil.copy(init, os.path.join(work, "init"))
        os.chmod(os.path.join(work, "init"), 0o755)
        files = subprocess.run(["find", "."], cwd=work, capture_output=True, check=True).stdout
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=work, input=files, capture_output=True, check=True).stdout
        with gzip.open(out, "wb", compresslevel=1) as f:
            f.write(cpio)
        print(f"{out}: {len(order)} modules: {' '.join(order)}")
    finally:
        shutil.rmtree(work)


main()
