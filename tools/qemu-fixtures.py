#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Regenerate fixtures/<kernel>/ with images written by real Debian kernels booted in qemu.

Kernels: bookworm (6.1), bookworm-backports (6.12) and sid (newest 7.x), downloaded with
`apt-get download` through a private sources list whose mirror is read from this machine's apt
configuration, unpacked (never installed), and booted with a busybox initramfs (TCG; KVM is
tried first and used where it works). In the VM the kernel writes the corpus onto a btrfs image
under each compress-force option, plus the special scenarios (overwrite, truncate, holes,
prealloc, a reflink at an offset, one file with all three algorithms), a subvolume, and plain
compress=zstd for the heuristic. Back on
the host the image is loop-mounted read-only and every extent is dumped with
BTRFS_IOC_ENCODED_READ (by the running kernel: the bytes on disk are the writer's).

Needs root, qemu-system-x86, busybox-static, cpio, zstd, btrfs-progs and xfsprogs (btrfs and
xfs_io are copied into the initramfs with their libraries).
Usage: tools/qemu-fixtures.py [bookworm|bookworm-backports|sid ...]   (default: all three)
"""
import glob
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import fixture_lib as fl  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OPTIONS = ["zlib:1", "zlib:3", "zlib:9", "lzo", "zstd:1", "zstd:3", "zstd:15", "zstd:-5", "zstd:-1"]
UUID = "7a1d8a6c-6b1e-4b83-9f6e-1c9a0f2e5d10"


def kernel_packages(apt, suite):
    """(kernel release, packages to download) for the newest kernel of `suite`."""
    out = apt.show("linux-image-amd64")
    best = None
    for stanza in out.split("\n\n"):
        v = re.search(r"^Version: (\S+)", stanza, re.M)
        d = re.search(r"linux-image-(\S+)-amd64 \(=", stanza)
        if not v or not d:
            continue
        ver = v.group(1)
        is_bpo = "bpo" in ver
        major = int(ver.split(".")[0])
        if (suite == "bookworm" and major == 6 and not is_bpo and ver.startswith("6.1.")) or \
           (suite == "bookworm-backports" and is_bpo) or (suite == "sid" and major >= 7):
            best = d.group(1) + "-amd64"
            break
    if not best:
        sys.exit(f"no kernel found for {suite}")
    img_pkg = f"linux-image-{best}"
    deps = apt.show(img_pkg)
    if f"linux-binary-{best}" in deps:
        return best, [f"linux-binary-{best}", f"linux-modules-{best}"]
    return best, [img_pkg]


def unpack(apt, pkgs, dest):
    apt.download(pkgs)
    for p in pkgs:
        deb = glob.glob(f"{apt.work}/{p}_*.deb")[0]
        subprocess.run(["dpkg-deb", "-x", deb, dest], check=True)
    vmlinuz = (glob.glob(f"{dest}/boot/vmlinuz-*") + glob.glob(f"{dest}/usr/lib/modules/*/vmlinuz"))[0]
    return vmlinuz


def corpus_tar(path):
    """The corpus, the special scenarios' inputs and the heuristic files, as a tar the VM reads."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 0
            t.addfile(ti, io.BytesIO(data))
        for name, data in fl.corpus().items():
            add(name, data)
        for name, init, _final, patch, _steps in fl.special_files():
            add(f"{name}.init", init)
            add(f"{name}.patch", patch)
        for name, gen in fl.HEURISTIC:
            add(name, gen())
    data = buf.getvalue()
    data += bytes(-len(data) % 65536)
    with open(path, "wb") as f:
        f.write(data)


def init_script():
    lines = fl.GUEST_INIT_HEAD + [
        "cd /mnt",
    ]
    for opt in OPTIONS:
        d = opt.replace(":", "_")
        lines.append(f"if mount -o remount,compress-force={opt} /mnt 2>/dev/null && grep -q 'compress-force={opt}' /proc/mounts; then")
        lines.append(f"  mkdir {d}; for f in {' '.join(fl.corpus())}; do cp /corpus/$f {d}/$f; done; sync; echo OPTION-OK {opt}")
        lines.append(f"else echo OPTION-REFUSED {opt}; fi")
    lines.append(f"mount -o remount,compress-force={fl.SPECIAL_OPTION} /mnt; mkdir special; cd special")
    for name, _init, _final, _patch, steps in fl.special_files():
        for s in steps:
            m = re.match(r"\{remount (\S+)\}", s)
            if m:
                lines.append(f"sync; mount -o remount,compress-force={m.group(1)} /mnt")
            else:
                lines.append(s.format(n=name) + " || echo STEP-FAILED " + name)
    lines.append("cd /mnt")
    for st in fl.SUBVOLUME_STEPS:
        lines.append(st + " || echo STEP-FAILED subvolume")
    lines.append("cd /mnt; sync; mount -o remount,compress=zstd /mnt; mkdir heuristic")
    lines.append(f"for f in {' '.join(n for n, _ in fl.HEURISTIC)}; do cp /corpus/$f heuristic/$f; done; sync")
    lines += ["cd /", "umount /mnt && echo FIXTURE-DONE", "poweroff -f", ""]
    return "\n".join(lines)


def boot(vmlinuz, initrd, img, tar, log):
    base = ["qemu-system-x86_64", "-machine", "q35", "-m", "512", "-smp", "1", "-nographic", "-no-reboot",
            "-kernel", vmlinuz, "-initrd", initrd, "-append", "console=ttyS0 quiet panic=-1",
            "-drive", f"file={img},if=virtio,format=raw", "-drive", f"file={tar},if=virtio,format=raw,readonly=on"]
    attempts = []
    if os.access("/dev/kvm", os.W_OK):
        attempts.append(("kvm", ["-accel", "kvm", "-cpu", "host"]))
    attempts.append(("tcg", ["-accel", "tcg", "-cpu", "max"]))
    for accel, extra in attempts:
        t0 = time.time()
        try:
            # KVM here may hang in an emulation-failure loop instead of failing: give it 40 s.
            r = subprocess.run(base + extra, capture_output=True, timeout=40 if accel == "kvm" else 900)
        except subprocess.TimeoutExpired:
            continue
        out = r.stdout.decode("utf-8", "replace")
        with open(log, "w") as f:
            f.write(out)
        if "FIXTURE-DONE" in out:
            return accel, out, time.time() - t0
    sys.exit(f"the VM did not finish; console in {log}")


def main():
    suites = sys.argv[1:] or ["bookworm", "bookworm-backports", "sid"]
    if os.geteuid() != 0:
        sys.exit("needs root (loop mounts)")
    work = tempfile.mkdtemp(prefix="btrfs-qemu-")
    try:
        apt = fl.Apt(work, ("bookworm", "bookworm-backports", "sid"))
        tar = f"{work}/corpus.tar"
        corpus_tar(tar)
        with open(f"{work}/init", "w") as f:
            f.write(init_script())
        qemu_ver = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        for suite in suites:
            t0 = time.time()
            kver, pkgs = kernel_packages(apt, suite)
            root = f"{work}/{suite}"
            vmlinuz = unpack(apt, pkgs, root)
            initrd = f"{work}/{suite}.cpio.gz"
            subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "qemu", "initramfs.py"),
                            root, kver, f"{work}/init", initrd, shutil.which("btrfs"), shutil.which("xfs_io")],
                           check=True, stdout=subprocess.DEVNULL)
            img = f"{work}/{suite}.img"
            with open(img, "wb") as f:
                f.truncate(256 << 20)
            subprocess.run(["mkfs.btrfs", "-q", "-f", "-U", UUID, "-L", "btrfs-compress", img], check=True)
            accel, out, vm_secs = boot(vmlinuz, initrd, img, tar, f"{work}/{suite}.log")
            state = {}
            for opt in OPTIONS:
                state[opt] = "ok" if f"OPTION-OK {opt}" in out else "refused by this kernel"
            failed = re.findall(r"STEP-FAILED (\S+)", out)
            version = re.search(r"Linux version (\S+)", out)
            n = fl.dump(img, kver, state, os.path.join(ROOT, "fixtures", kver), "tools/qemu-fixtures.py", {
                "suite": suite, "qemu": qemu_ver, "accel": accel, "vm_seconds": round(vm_secs, 1),
                "failed_steps": failed, "packages": pkgs,
            })
            print(f"{suite}: kernel {kver} ({version.group(1) if version else '?'}), {accel}, VM {vm_secs:.1f} s, "
                  f"{n} extents, total {time.time() - t0:.1f} s, refused: "
                  f"{[o for o, s in state.items() if s != 'ok']}, failed steps: {failed}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
