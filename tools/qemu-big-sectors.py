#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Filesystems with sectors larger than 4 KiB, written by real kernels whose page is that large,
and what those kernels show of them (fixtures/big-sectors-<kernel>/): the oracle for 16 KiB and
64 KiB sectors, which this machine's kernel (4 KiB pages) does not mount.

Kernels: Debian trixie's linux-image-*-arm64-16k (16 KiB pages; qemu-system-aarch64 -M virt
-cpu max) and linux-image-*-powerpc64le-64k (64 KiB pages; qemu-system-ppc64 -M pseries), both
under TCG, with a busybox-static initramfs of the same architecture (and compsize with its libc
where the mirror has both). Packages come with `apt-get download` through a private sources list
(the mirror of this machine's apt configuration), unpacked, never installed.

For each sector size the kernel lists in /sys/fs/btrfs/features/supported_sectorsizes among 4 KiB
and its page size, a 256 MiB image made here by mkfs.btrfs -s SECTOR (nodesize at least the
sector) gets the fixture corpus (fixture_lib.corpus(), plus files whose compressed form fits
inline at big sectors: up to a sector of data in one inline extent) under compress-force=zstd:3,
lzo and zlib:3 and under compress=zstd:3 (the heuristic). After a remount, the guest records
every path (find), the size and sha256 of every file as the kernel reads it back, the sector
size the kernel mounted with (sysfs), and `compsize -b` of the mount and of each directory.

fixtures/big-sectors-<kernel>/: image-<sector>.img.zst per sector size, plain/<file>.zst (the
inputs), manifest.json.

Needs root, qemu-system-arm (aarch64) or qemu-system-ppc, cpio, zstd, btrfs-progs.
Usage: tools/qemu-big-sectors.py --arch arm64|ppc64el [--keep DIR]
"""
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import fixture_lib as fl  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OPTIONS = [("compress-force", "zstd:3"), ("compress-force", "lzo"), ("compress-force", "zlib:3"), ("compress", "zstd:3")]
ARCHES = {
    "arm64": {"flavour": "arm64-16k", "page": 16384, "console": "ttyAMA0", "config": "CONFIG_ARM64_16K_PAGES",
              "qemu": ["qemu-system-aarch64", "-M", "virt", "-cpu", "max", "-m", "2G", "-smp", "2"]},
    "ppc64el": {"flavour": "powerpc64le-64k", "page": 65536, "console": "hvc0", "config": "CONFIG_PPC_64K_PAGES",
                "qemu": ["qemu-system-ppc64", "-M", "pseries", "-cpu", "power9", "-m", "2G", "-smp", "2"]},
}


def files():
    """The corpus, and files that fit inline only when the sector is larger than 4 KiB (their
    compressed form under max_inline's 2048 bytes, their length above 4096)."""
    c = fl.corpus()
    c["inline-zeros-12000"] = bytes(12000)
    c["inline-text-9000"] = (fl.text(300, 40) * 30)[:9000]
    c["inline-rep-60000"] = (fl.text(1000, 41) * 60)[:60000]
    c["unaligned-70001"] = fl.text(70001, 42)
    return c


def init_script(sectors):
    lines = list(fl.GUEST_INIT_HEAD[:3]) + [
        "mkdir -p /out /corpus; tar -x -f /dev/vdc -C /corpus || echo CORPUS-FAILED",
        "cat /sys/fs/btrfs/features/supported_sectorsizes > /out/supported 2>&1; uname -a > /out/uname",
        "cat /proc/meminfo > /out/meminfo",
    ]
    for dev, s in zip(("vda", "vdb"), sectors):
        m = f"/mnt/s{s}"
        lines += [f"mkdir -p {m}", f"mount -t btrfs /dev/{dev} {m} 2> /out/mount-{s} || echo MOUNT-FAILED-{s}"]
        for kind, opt in OPTIONS:
            d = fl.trace_dirname(kind, opt)
            lines += [f"mount -o remount,{kind}={opt} {m}; mkdir {m}/{d}", f"cp /corpus/* {m}/{d}/", "sync"]
        lines += [
            f"umount {m}; mount -t btrfs -o ro /dev/{dev} {m}",
            f"cat /sys/fs/btrfs/*/sectorsize > /out/sectorsize-{s}",
            f"cd {m}; find . > /out/paths-{s}; find . -type f | while read f; do "
            f"echo \"$(stat -c %s \"$f\") $(sha256sum \"$f\")\"; done > /out/files-{s}; cd /",
            f"[ -x /usr/sbin/compsize ] && {{ /usr/sbin/compsize -b {m} > /out/compsize-{s}; "
            f"for d in {' '.join(fl.trace_dirname(k, o) for k, o in OPTIONS)}; do "
            f"/usr/sbin/compsize -b {m}/$d > /out/compsize-{s}-$d; done; }}",
            f"umount {m}",
        ]
    lines += ["tar -c -f /dev/vdd -C /out .", "echo BIGSEC-DONE", "poweroff -f"]
    return "\n".join(lines) + "\n"


def download(apt, arch, flavour, work):
    """The newest kernel of the flavour that the mirror serves, busybox, and compsize with libc
    where it has them; returns the kernel .deb."""
    names = sorted(set(re.findall(rf"^Package: (linux-image-[\d.]+\S*-{flavour})$",
                                  apt.show(f"linux-image-*-{flavour}"), re.M)), reverse=True)
    names += re.findall(rf"^Depends: (linux-image-\S+-{flavour})", apt.show(f"linux-image-{flavour}"), re.M)
    for pkg in [f"busybox-static:{arch}", f"btrfs-compsize:{arch}", f"libc6:{arch}"]:
        try:
            apt.download([pkg])
        except subprocess.CalledProcessError:
            print(f"{pkg}: not on the mirror")
    for name in dict.fromkeys(names):
        try:
            apt.download([name])
            return glob.glob(f"{work}/{name}_*.deb")[0]
        except subprocess.CalledProcessError:
            print(f"{name}: not on the mirror")
    sys.exit(f"no linux-image-*-{flavour} on the mirror")


def main():
    if os.geteuid() != 0:
        sys.exit("needs root")
    arch = sys.argv[sys.argv.index("--arch") + 1] if "--arch" in sys.argv else "arm64"
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    a = ARCHES[arch]
    if shutil.which(a["qemu"][0]) is None:
        sys.exit(f"{a['qemu'][0]} not installed")
    work = keep or tempfile.mkdtemp(prefix="btrfs-big-sectors-")
    os.makedirs(work, exist_ok=True)
    try:
        deb = next(iter(glob.glob(f"{work}/linux-image-*-{a['flavour']}_*.deb")), None)
        if deb is None:
            deb = download(fl.Apt(work, ("trixie", "trixie-updates"), arch=arch), arch, a["flavour"], work)
        kroot, extra = f"{work}/kernel", f"{work}/extra"
        if not os.path.isdir(kroot):
            subprocess.run(["dpkg-deb", "-x", deb, kroot], check=True)
            subprocess.run(["dpkg-deb", "-x", glob.glob(f"{work}/busybox-static_*_{arch}.deb")[0], f"{work}/bb"],
                           check=True)
            have = [glob.glob(f"{work}/{p}_*_{arch}.deb") for p in ("btrfs-compsize", "libc6")]
            if all(have):
                for d in have:
                    subprocess.run(["dpkg-deb", "-x", d[0], extra], check=True)
        vmlinuz = glob.glob(f"{kroot}/boot/vmlinu*-*")[0]
        kver = re.sub(r"^vmlinu[xz]-", "", os.path.basename(vmlinuz))
        config = open(glob.glob(f"{kroot}/boot/config-*")[0]).read()
        if f"{a['config']}=y" not in config:
            sys.exit(f"{kver}: {a['config']} is not set")
        sectors = [4096, a["page"]]
        corpus = files()
        cdir = f"{work}/corpus"
        shutil.rmtree(cdir, ignore_errors=True)
        os.makedirs(cdir)
        for n, d in corpus.items():
            open(f"{cdir}/{n}", "wb").write(d)
        tar = f"{work}/corpus.tar"
        subprocess.run(["tar", "-c", "-f", tar, "-C", cdir, *sorted(corpus)], check=True)
        with open(tar, "ab") as f:
            f.write(bytes(-os.path.getsize(tar) % 65536))
        with open(f"{work}/init", "w") as f:
            f.write(init_script(sectors))
        initrd = f"{work}/initrd.cpio.gz"
        bb = next(p for p in (f"{work}/bb/usr/bin/busybox", f"{work}/bb/bin/busybox") if os.path.exists(p))
        env = dict(os.environ, BUSYBOX=bb)
        if os.path.isdir(extra):
            env["EXTRA_TREE"] = extra
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "qemu", "initramfs.py"), kroot, kver,
                        f"{work}/init", initrd], check=True, stdout=subprocess.DEVNULL, env=env)
        imgs = []
        for s in sectors:
            img = f"{work}/image-{s}.img"
            with open(img, "wb") as f:
                f.truncate(256 << 20)
            subprocess.run(["mkfs.btrfs", "-q", "-f", "-s", str(s), "-n", str(max(s, 16384)), "-L", f"sector-{s}", img],
                           check=True, stderr=subprocess.DEVNULL)
            imgs.append(img)
        out = f"{work}/out.tar"
        with open(out, "wb") as f:
            f.truncate(64 << 20)
        cmd = [*a["qemu"], "-nographic", "-no-reboot", "-kernel", vmlinuz, "-initrd", initrd,
               "-append", f"console={a['console']} quiet panic=-1",
               *[x for img in imgs for x in ("-drive", f"file={img},if=virtio,format=raw")],
               "-drive", f"file={tar},if=virtio,format=raw,readonly=on",
               "-drive", f"file={out},if=virtio,format=raw"]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, timeout=3600)
        secs = time.time() - t0
        text = r.stdout.decode("utf-8", "replace")
        open(f"{work}/console.log", "w").write(text)
        if "BIGSEC-DONE" not in text:
            sys.exit(f"the VM did not finish; console in {work}/console.log")
        odir = f"{work}/out"
        fl.guest_output(out, odir)
        supported = [int(x) for x in open(f"{odir}/supported").read().split()]
        dest = os.path.join(ROOT, "fixtures", f"big-sectors-{kver}")
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(f"{dest}/plain")
        for n, d in corpus.items():
            p = f"{dest}/plain/{n}"
            open(p, "wb").write(d)
            subprocess.run(["zstd", "-q", "-19", "--rm", p], check=True)
        images = {}
        for s, img in zip(sectors, imgs):
            seen = open(f"{odir}/sectorsize-{s}").read().split()
            if s not in supported or not seen:
                print(f"sector {s}: not mounted ({open(f'{odir}/mount-{s}').read().strip()})")
                continue
            fl_ = {}
            for line in open(f"{odir}/files-{s}"):
                size, sha, path = line.split(maxsplit=2)
                fl_[path.strip()[2:]] = {"size": int(size), "sha256": sha}
            paths = sorted(p.strip()[2:] for p in open(f"{odir}/paths-{s}") if p.strip() not in (".", ""))
            cs = {}
            for p in sorted(glob.glob(f"{odir}/compsize-{s}*")):
                key = "/" if p.endswith(f"compsize-{s}") else p[len(f"{odir}/compsize-{s}-"):]
                cs[key] = open(p).read()
            subprocess.run(["zstd", "-q", "-19", "-f", img, "-o", f"{dest}/image-{s}.img.zst"], check=True)
            images[str(s)] = {"file": f"image-{s}.img.zst", "sectorsize_mounted": int(seen[0]), "paths": paths,
                              "files": fl_, "compsize": cs}
            print(f"sector {s}: {len(fl_)} files, compsize {'yes' if cs else 'no'}")
        manifest = {
            "tool": "tools/qemu-big-sectors.py", "kernel": kver, "arch": arch, "package": os.path.basename(deb),
            "page_size": a["page"], "supported_sectorsizes": supported, "vm_seconds": round(secs, 1),
            "qemu": subprocess.run([a["qemu"][0], "--version"], capture_output=True, text=True).stdout.split("\n")[0],
            "machine": " ".join(a["qemu"]), "options": [f"{k}={o}" for k, o in OPTIONS],
            "dirs": {fl.trace_dirname(k, o): f"{k}={o}" for k, o in OPTIONS},
            "plain": {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in corpus.items()},
            "uname": open(f"{odir}/uname").read().strip(), "images": images,
        }
        fl.write_json(f"{dest}/manifest.json", manifest)
        print(f"wrote {dest} ({secs:.0f} s in the VM)")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
