#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Count what a real 32-bit HIGHMEM kernel's btrfs does with kmap, per extent: the lab's oracle.

Boots Debian bookworm's linux-image-6.1.0-*-686-pae (x86-32, PAE, HIGHMEM64G) with a
busybox-static:i386 initramfs under qemu-system-i386 (TCG, 3 GiB, so that page-cache pages come
from HighMem; HighTotal is recorded), mounts a btrfs image, writes the lab's trace files
(`btrfs-compress corpus DIR`) under compress-force for each codec and under compress= for the
heuristic, syncs after each file, then reads everything back after drop_caches. function_graph
tracing is scoped to the codec entry points (set_graph_function) and records only the mapping
functions beneath them (set_ftrace_filter):

  __kmap_local_page_prot   every kmap_local_page()/kmap_local_folio() call
  __kmap_local_pfn_prot    beneath it: a highmem page, i.e. a fixmap slot and a PTE write
  kunmap_local_indexed     every kunmap_local()
  flush_tlb_one_kernel     beneath it: a real unmap (PTE clear + invlpg)
  kmap_high, kunmap_high, flush_all_zero_pkmaps, vmap, vunmap, vm_map_ram, vm_unmap_ram
  __alloc_pages            page allocations (the compressed pages; init_on_alloc zeroes them)

Trace markers delimit each file; per-task call stacks separate the extents. The result is
fixtures/kmap-trace-<kernel>/manifest.json with per-extent counts, the kernel version, the
config lines that matter, HighTotal and the init_on_alloc setting (both settings are booted).

`--arch armhf` does the same with Debian bookworm's linux-image-6.1.0-*-armmp-lpae (ARM32, LPAE,
HIGHMEM) under qemu-system-arm -M virt -cpu cortex-a15 -m 2G (busybox-static:armhf).

Needs root (none of it mounts on the host, but apt-get download and the image need it), qemu-system-x86
(qemu-system-i386) or qemu-system-arm, cpio, zstd, btrfs-progs and a built btrfs-compress.
`--suite trixie` takes Debian 13's kernel of the flavour (6.12: armmp-lpae; trixie has no i386 kernel).
Usage: tools/qemu-kmap-trace.py [--arch i386|armhf] [--suite bookworm|trixie] [--keep DIR]
"""
import glob
import hashlib
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
OPTIONS = fl.TRACE_OPTIONS
# 6.1's compress entry points are *_compress_pages, 6.10-6.19's *_compress_folios.
ENTRIES = ["zstd_compress_pages", "lzo_compress_pages", "zlib_compress_pages", "zstd_compress_folios",
           "lzo_compress_folios", "zlib_compress_folios", "zstd_decompress_bio", "lzo_decompress_bio",
           "zlib_decompress_bio", "btrfs_compress_heuristic"]
MAPPING = ["__kmap_local_page_prot", "__kmap_local_pfn_prot", "kunmap_local_indexed", "flush_tlb_one_kernel",
           "kmap_high", "kunmap_high", "flush_all_zero_pkmaps", "vmap", "vunmap", "vm_map_ram", "vm_unmap_ram",
           "__alloc_pages", "btrfs_decompress_buf2page"]
CONFIG_KEYS = ["CONFIG_HIGHMEM64G", "CONFIG_HIGHMEM4G", "CONFIG_HIGHMEM", "CONFIG_ARM_LPAE", "CONFIG_X86_PAE", "CONFIG_INIT_ON_ALLOC_DEFAULT_ON",
               "CONFIG_DEBUG_KMAP_LOCAL", "CONFIG_PREEMPT", "CONFIG_PREEMPT_VOLUNTARY", "CONFIG_VMSPLIT_3G"]
UUID = "3c0ffee0-6b1e-4b83-9f6e-1c9a0f2e5d11"


dirname = fl.trace_dirname


def init_script(files):
    t = "/sys/kernel/tracing"
    names = " ".join(files)
    lines = [
        "#!/bin/sh",
        "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev",
        "for m in $(cat /modules.order); do insmod /lib/$m.ko 2>/dev/null; done",
        f"mount -t tracefs nodev {t} 2>/dev/null || mount -t debugfs nodev /sys/kernel/debug",
        f"T={t}; [ -e $T/trace ] || T=/sys/kernel/debug/tracing",
        "mkdir -p /out; cat /proc/meminfo > /out/meminfo; cat /proc/cmdline > /out/cmdline; uname -a > /out/uname",
        "tar -x -f /dev/vdb -C /corpus || echo CORPUS-FAILED",
        "mount -t btrfs /dev/vda /mnt || { echo MOUNT-FAILED; poweroff -f; }",
    ]
    lines += fl.ftrace_setup(ENTRIES, MAPPING) + ["echo 1 > $T/tracing_on"]
    for kind, opt in OPTIONS:
        d = dirname(kind, opt)
        lines.append(f"mount -o remount,{kind}={opt} /mnt; grep btrfs /proc/mounts >> /out/mounts; mkdir /mnt/{d}")
        lines.append(f"for f in {names}; do echo \"BEGIN write {kind}={opt} $f\" > $T/trace_marker; "
                     f"cp /corpus/$f /mnt/{d}/$f; sync; echo \"END write {kind}={opt} $f\" > $T/trace_marker; done")
    lines += ["cd /; umount /mnt; echo 3 > /proc/sys/vm/drop_caches", "mount -t btrfs -o ro /dev/vda /mnt"]
    for kind, opt in OPTIONS:
        d = dirname(kind, opt)
        lines.append(f"for f in {names}; do echo \"BEGIN read {kind}={opt} $f\" > $T/trace_marker; "
                     f"cat /mnt/{d}/$f > /dev/null; echo \"END read {kind}={opt} $f\" > $T/trace_marker; done")
    lines += [
        "echo 0 > $T/tracing_on",
        "cat $T/per_cpu/cpu0/stats > /out/stats",
        "cat $T/trace > /out/trace.txt",
        "umount /mnt",
        "tar -c -f /dev/vdc -C /out . && echo TRACE-DONE",
        "poweroff -f", "",
    ]
    return "\n".join(lines)


# Per Debian architecture: the kernel flavour, and the qemu machine that boots it with enough
# memory that the page cache lands in HighMem.
ARCHES = {
    "i386": {"flavour": "686-pae", "console": "ttyS0",
             "qemu": ["qemu-system-i386", "-accel", "tcg", "-cpu", "max", "-m", "3G", "-smp", "1"]},
    "armhf": {"flavour": "armmp-lpae", "console": "ttyAMA0",
              "qemu": ["qemu-system-arm", "-M", "virt", "-cpu", "cortex-a15", "-m", "2G", "-smp", "1"]},
}


def boot(kernel, initrd, img, corpus, out, init_on_alloc, log, arch="i386"):
    a = ARCHES[arch]
    cmd = [*a["qemu"], "-nographic",
           "-no-reboot", "-kernel", kernel, "-initrd", initrd,
           "-append", f"console={a['console']} quiet panic=-1 init_on_alloc={init_on_alloc}",
           "-drive", f"file={img},if=virtio,format=raw",
           "-drive", f"file={corpus},if=virtio,format=raw,readonly=on",
           "-drive", f"file={out},if=virtio,format=raw"]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, timeout=1800)
    text = r.stdout.decode("utf-8", "replace")
    with open(log, "w") as f:
        f.write(text)
    if "TRACE-DONE" not in text:
        sys.exit(f"the VM did not finish; console in {log}")
    return text, time.time() - t0


def parse(trace, entries=None):
    """Per (op, option, file): a list of extents, each a dict of counts, in the order they ended.
    `entries` are the codec entry points (default: 6.1's)."""
    entries = entries or ENTRIES
    results = {}
    current = None
    stacks = {}  # task -> list of [name, counts] frames
    for raw in trace.splitlines():
        if raw.startswith("#"):
            continue
        m = re.search(r"/\* (BEGIN|END) (\w+) (\S+) (\S+) \*/", raw)
        if m:
            current = (m.group(2), m.group(3), m.group(4)) if m.group(1) == "BEGIN" else None
            continue
        # " CPU)  TASK-PID  | DURATION | FUNCTION" (funcgraph-proc on)
        cols = raw.split("|", 2)
        if len(cols) != 3 or not cols[0].strip().split(")")[0].strip().isdigit():
            continue
        task, body = cols[0].split(")", 1)[1].strip(), cols[2].strip()
        st = stacks.setdefault(task, [])
        if body.startswith("}"):
            fn = st.pop() if st else None
            if fn and fn["fn"] in entries and current:
                key = "/".join(current + (fn["fn"],))
                results.setdefault(key, []).append(finish(fn))
            continue
        call = re.match(r"([\w.]+)(?: \[\w+\])?\(\)\s*(\{|;)", body)
        if not call:
            continue
        fn, opens = call.group(1), call.group(2) == "{"
        record(st, fn, entries)
        if opens:
            st.append({"fn": fn, "calls": [], "parent": st[-1]["fn"] if st else None})
        elif fn in entries and current:
            results.setdefault("/".join(current + (fn,)), []).append(finish({"fn": fn, "calls": []}))
    return results


def record(st, fn, entries):
    """Note a call in every open entry frame, with its immediate parent."""
    parent = st[-1]["fn"] if st else None
    for fr in st:
        if fr["fn"] in entries:
            fr["calls"].append((fn, parent))


def finish(fr):
    c = {"entry": fr["fn"], "kmap_local": 0, "highmem_maps": 0, "lowmem_maps": 0, "kunmap_local": 0,
         "real_unmaps": 0, "kmap_high": 0, "vmap": 0, "vm_map_ram": 0, "vm_unmap_ram": 0, "vunmap": 0,
         "page_allocs": 0, "buf2page": 0, "heuristic": 0, "sched_out_flushes": 0}
    for fn, parent in fr["calls"]:
        if fn == "__kmap_local_page_prot":
            c["kmap_local"] += 1
        elif fn == "__kmap_local_pfn_prot":
            c["highmem_maps"] += 1
        elif fn == "kunmap_local_indexed":
            c["kunmap_local"] += 1
        elif fn == "flush_tlb_one_kernel" and parent == "kunmap_local_indexed":
            c["real_unmaps"] += 1
        elif fn == "flush_tlb_one_kernel" and parent == "__kmap_local_sched_out":
            c["sched_out_flushes"] += 1
        elif fn == "kmap_high":
            c["kmap_high"] += 1
        elif fn in ("vmap", "vm_map_ram", "vm_unmap_ram", "vunmap"):
            c[fn] += 1
        elif fn in ("__alloc_pages", "btrfs_alloc_compr_folio"):
            c["page_allocs"] += 1
        elif fn == "btrfs_decompress_buf2page":
            c["buf2page"] += 1
    c["lowmem_maps"] = c["kmap_local"] - c["highmem_maps"]
    return c


def main():
    if "--parse" in sys.argv:
        path = sys.argv[sys.argv.index("--parse") + 1]
        raw = subprocess.run(["zstd", "-dc", path], capture_output=True).stdout if path.endswith(".zst") else open(path, "rb").read()
        ex = parse(raw.decode())
        for k, v in ex.items():
            tot = {c: sum(e[c] for e in v if isinstance(e[c], int)) for c in v[0] if c != "entry"}
            print(k, len(v), tot)
        return
    if os.geteuid() != 0:
        sys.exit("needs root")
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    arch = sys.argv[sys.argv.index("--arch") + 1] if "--arch" in sys.argv else "i386"
    suite = sys.argv[sys.argv.index("--suite") + 1] if "--suite" in sys.argv else "bookworm"
    flavour = ARCHES[arch]["flavour"]
    work = keep or tempfile.mkdtemp(prefix="btrfs-kmap-trace-")
    os.makedirs(work, exist_ok=True)
    try:
        debs = glob.glob(f"{work}/linux-image-*-{flavour}_*.deb")
        if not debs:
            apt = fl.Apt(work, (suite, f"{suite}-updates"), arch=arch)
            vers = re.findall(rf"^Depends: (linux-image-\d+\.\d+\.\S+-{flavour})", apt.show(f"linux-image-{flavour}"), re.M)
            apt.download([vers[0], f"busybox-static:{arch}"])
            debs = glob.glob(f"{work}/linux-image-*-{flavour}_*.deb")
        kroot = f"{work}/kernel"
        if not os.path.isdir(kroot):
            subprocess.run(["dpkg-deb", "-x", debs[0], kroot], check=True)
            subprocess.run(["dpkg-deb", "-x", glob.glob(f"{work}/busybox-static_*_{arch}.deb")[0], f"{work}/bb"],
                           check=True)
        vmlinuz = glob.glob(f"{kroot}/boot/vmlinuz-*")[0]
        kver = os.path.basename(vmlinuz)[len("vmlinuz-"):]
        config = {}
        for line in open(glob.glob(f"{kroot}/boot/config-*")[0]):
            k = line.split("=")[0].strip()
            if k in CONFIG_KEYS:
                config[k] = line.strip().split("=", 1)[1]
        files, tar = fl.trace_corpus(work, ROOT)
        cdir = f"{work}/corpus"
        with open(f"{work}/init", "w") as f:
            f.write(init_script(files))
        initrd = f"{work}/initrd.cpio.gz"
        bb = next(p for p in (f"{work}/bb/usr/bin/busybox", f"{work}/bb/bin/busybox") if os.path.exists(p))
        env = dict(os.environ, BUSYBOX=bb)
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "qemu", "initramfs.py"), kroot, kver,
                        f"{work}/init", initrd], check=True, stdout=subprocess.DEVNULL, env=env)
        qemu_ver = subprocess.run([ARCHES[arch]["qemu"][0], "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        runs = {}
        dest = os.path.join(ROOT, "fixtures", f"kmap-trace-{kver}")
        for ioa in (1, 0):
            img, out = f"{work}/image-{ioa}.img", f"{work}/out-{ioa}.tar"
            for p, size in ((img, 512 << 20), (out, 256 << 20)):
                with open(p, "wb") as f:
                    f.truncate(size)
            subprocess.run(["mkfs.btrfs", "-q", "-f", "-U", UUID, "-L", "kmap-trace", img], check=True)
            text, secs = boot(vmlinuz, initrd, img, tar, out, ioa, f"{work}/console-{ioa}.log", arch)
            nofunc = re.findall(r"NOFUNC (\S+)", text)
            odir = f"{work}/out-{ioa}"
            fl.guest_output(out, odir)
            trace = open(f"{odir}/trace.txt").read()
            meminfo = open(f"{odir}/meminfo").read()
            stats = open(f"{odir}/stats").read()
            overrun = int(re.search(r"overrun: (\d+)", stats).group(1))
            if overrun:
                sys.exit(f"trace buffer overran ({overrun} events lost); raise buffer_size_kb")
            extents = parse(trace)
            os.makedirs(dest, exist_ok=True)
            subprocess.run(["zstd", "-q", "-f", "-19", f"{odir}/trace.txt", "-o", f"{dest}/trace-init_on_alloc={ioa}.txt.zst"],
                           check=True)
            runs[f"init_on_alloc={ioa}"] = {
                "init_on_alloc": ioa, "vm_seconds": round(secs, 1), "missing_functions": nofunc,
                "high_total_kb": int(re.search(r"HighTotal:\s+(\d+)", meminfo).group(1)),
                "mem_total_kb": int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)),
                "uname": open(f"{odir}/uname").read().strip(), "trace_lines": trace.count("\n"),
                "extents": extents,
            }
            n = sum(len(v) for v in extents.values())
            print(f"init_on_alloc={ioa}: {secs:.1f} s in the VM, {n} codec calls traced, missing {nofunc}")
        manifest = {
            "tool": "tools/qemu-kmap-trace.py", "kernel": kver, "package": os.path.basename(debs[0]),
            "qemu": qemu_ver, "machine": " ".join(ARCHES[arch]["qemu"]), "arch": arch, "config": config,
            "options": [f"{k}={o}" for k, o in OPTIONS],
            "files": {f: {"size": os.path.getsize(f"{cdir}/{f}"),
                          "sha256": hashlib.sha256(open(f"{cdir}/{f}", "rb").read()).hexdigest()} for f in files},
            "counted": {"kmap_local": "__kmap_local_page_prot calls", "highmem_maps": "__kmap_local_pfn_prot calls",
                        "lowmem_maps": "kmap_local - highmem_maps", "kunmap_local": "kunmap_local_indexed calls",
                        "real_unmaps": "flush_tlb_one_kernel beneath kunmap_local_indexed",
                        "page_allocs": "__alloc_pages calls", "buf2page": "btrfs_decompress_buf2page calls"},
            "runs": runs,
        }
        fl.write_json(f"{dest}/manifest.json", manifest)
        print(f"wrote {dest}/manifest.json")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
