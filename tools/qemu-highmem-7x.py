#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Real 32-bit HIGHMEM 7.2 kernels as the lab's oracle: the shipped fix, the 7.2-rc crash, and the ways out.

Builds x86-32 kernels (HIGHMEM4G, PAE, SMP, TRANSPARENT_HUGEPAGE, btrfs built in, function_graph) from
Debian sid's linux-source-7.2, one per variant, and boots each under qemu-system-i386 TCG (-m 3G, so
page-cache pages come from HighMem) with a busybox-static:i386 initramfs:

  shipped  7.2.13 as Debian ships it: fs/btrfs/disk-io.c sets block_max_order = block_min_order under
           CONFIG_HIGHMEM, so data folios are order 0 (large folios off).
  rc3      that exclusion turned off (what 7.2-rc3 ran): large folios in the page cache, and
           zstd_compress_bio()/zlib_compress_bio() hand the library everything up to the folio's end
           (btrfs_calc_input_length()) from a kmap_local_folio() that maps one page. Expected: the oops
           of kdave/btrfs-progs#1146. Each file is written in its own run until one oopses; the
           console's oops and the list of files and options that faulted go to the fixture.
  step     rc3 plus way out (a), page stepping: btrfs_calc_input_length() stops at the end of the page
           for a highmem folio, so each page is mapped in turn, as 6.x did.
  vmap     rc3 plus way out (b): the input range [cur, cur + len) of a large highmem folio is mapped
           with vm_map_ram() of its pages (vm_unmap_ram() at release); other folios as before.
  range    rc3 plus way out (c): a kmap_local_range() prototype, the pages of a large highmem folio
           in consecutive kmap_local slots (at most the free ones less two), the input chunk cut to
           what is mapped.

The patches are ours, applied by this script to the few tokens they must match (a variant whose
tokens are not found stops the script); the source and build trees stay under --work, outside the
repository. Each traced variant writes the lab's trace files (`btrfs-compress corpus DIR`) with
`dd bs=1M` (one write per MiB, so the page cache takes large folios where the kernel allows) under
compress-force zstd:3, lzo, zlib:3 and compress=zstd:3, syncs after each, drops the caches and reads
them back; function_graph is scoped to the 7.x codec entry points and counts the mapping functions
beneath them (as tools/qemu-kmap-trace.py does for 6.1), and the filemap add-to-page-cache event
records each file's folio orders. Output: fixtures/highmem-7x-<version>/manifest.json (per variant:
per-extent counts, folio orders per file, or the faults and the oops), with the compressed traces.

Needs root, qemu-system-x86, cpio, zstd, btrfs-progs, gcc, make, bc, flex, bison, libelf-dev and a
built btrfs-compress (cargo build --release). About 6 minutes to build the first kernel on 2 cores,
15 s for each variant after it, 20-60 s per boot under TCG.
Usage: sudo tools/qemu-highmem-7x.py [--work DIR] [--variants shipped,rc3,step,vmap,range]
"""
import argparse
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import fixture_lib as fl  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OPTIONS = fl.TRACE_OPTIONS
ENTRIES = ["zstd_compress_bio", "lzo_compress_bio", "zlib_compress_bio", "zstd_decompress_bio",
           "lzo_decompress_bio", "zlib_decompress_bio", "btrfs_compress_heuristic"]
MAPPING = ["__kmap_local_page_prot", "__kmap_local_pfn_prot", "kunmap_local_indexed", "flush_tlb_one_kernel",
           "kmap_high", "kunmap_high", "vmap", "vunmap", "vm_map_ram", "vm_unmap_ram", "btrfs_alloc_compr_folio",
           "btrfs_decompress_buf2page", "__kmap_local_sched_out", "__kmap_local_sched_in"]
# What the config must end up with (tinyconfig + these, then olddefconfig); checked after.
CONFIG = """HIGHMEM4G X86_PAE SMP TRANSPARENT_HUGEPAGE CC_OPTIMIZE_FOR_PERFORMANCE PRINTK TTY SERIAL_8250
SERIAL_8250_CONSOLE BINFMT_ELF BINFMT_SCRIPT BLK_DEV_INITRD RD_GZIP DEVTMPFS DEVTMPFS_MOUNT PROC_FS SYSFS TMPFS
BLOCK PCI VIRTIO_MENU VIRTIO VIRTIO_PCI VIRTIO_BLK BTRFS_FS MULTIUSER FUTEX EPOLL KALLSYMS FTRACE FUNCTION_TRACER
FUNCTION_GRAPH_TRACER DYNAMIC_FTRACE DEBUG_FS INIT_ON_ALLOC_DEFAULT_ON BUG FILE_LOCKING SYSCTL PROC_SYSCTL""".split()
MUST = ["HIGHMEM", "X86_PAE", "TRANSPARENT_HUGEPAGE", "BTRFS_FS", "FUNCTION_GRAPH_TRACER", "INIT_ON_ALLOC_DEFAULT_ON",
        "VIRTIO_BLK", "SERIAL_8250_CONSOLE"]
CONFIG_KEYS = ["CONFIG_HIGHMEM4G", "CONFIG_HIGHMEM", "CONFIG_X86_PAE", "CONFIG_SMP", "CONFIG_TRANSPARENT_HUGEPAGE",
               "CONFIG_INIT_ON_ALLOC_DEFAULT_ON", "CONFIG_DEBUG_KMAP_LOCAL", "CONFIG_PREEMPT_LAZY",
               "CONFIG_PREEMPT_VOLUNTARY", "CONFIG_VMSPLIT_3G", "CONFIG_HZ"]
PATCHED = ["fs/btrfs/disk-io.c", "fs/btrfs/compression.h", "fs/btrfs/zstd.c", "fs/btrfs/zlib.c"]
UUID = "7c0ffee0-6b1e-4b83-9f6e-1c9a0f2e5d72"
VARIANTS = ["shipped", "rc3", "step", "vmap", "range"]
# dd block sizes: one write per MiB lets the page cache take large folios; 4 KiB writes give order 0.
BIG_WRITE = 1 << 20
SMALL_WRITE = 4096


def kmap_trace():
    spec = importlib.util.spec_from_file_location("kt", os.path.join(os.path.dirname(__file__), "qemu-kmap-trace.py"))
    kt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kt)
    return kt


# ---- the patches (ours; each replaces exactly the tokens it names) ----

def replace_once(text, old, new, what):
    n = text.count(old)
    if n != 1:
        sys.exit(f"patch {what}: expected one match of {old!r}, found {n}")
    return text.replace(old, new)


def within(text, begin, end, old, new, what, count):
    """Replace `old` by `new` `count` times between the first `begin` and the next `end`."""
    a = text.index(begin)
    b = text.index(end, a)
    body = text[a:b]
    if body.count(old) != count:
        sys.exit(f"patch {what}: expected {count} of {old!r} in {begin!r}, found {body.count(old)}")
    return text[:a] + body.replace(old, new) + text[b:]


def patch_input_maps(src, helper, zstd_maps, zlib_map):
    """zstd's and zlib's compress loops: replace their input mappings (`zstd_maps`: (old, new,
    what) pairs in zstd_compress_bio(); `zlib_map`: the same for zlib_compress_bio(), where the
    mapped length is kept in a new local) and release each with `helper(addr, len)`."""
    p = f"{src}/fs/btrfs/zstd.c"
    t = open(p).read()
    b, e = "int zstd_compress_bio(", "int zstd_decompress_bio("
    for old, new, what in zstd_maps:
        t = within(t, b, e, old, new, what, 1)
    t = within(t, b, e, "kunmap_local(workspace->in_buf.src);",
               f"{helper}(workspace->in_buf.src, workspace->in_buf.size);", "zstd unmap", 2)
    open(p, "w").write(t)

    p = f"{src}/fs/btrfs/zlib.c"
    t = open(p).read()
    b, e = "int zlib_compress_bio(", "int zlib_decompress_bio("
    t = within(t, b, e, "\tchar *data_in = NULL;\n", "\tchar *data_in = NULL;\n\tu32 data_in_len = 0;\n", "zlib len", 1)
    t = within(t, b, e, zlib_map[0], zlib_map[1] + "\n\t\t\t\tdata_in_len = cur_len;", "zlib map", 1)
    t = within(t, b, e, "kunmap_local(data_in);", f"{helper}(data_in, data_in_len);", "zlib unmap", 2)
    open(p, "w").write(t)


def large_folios_on(src):
    """7.2-rc3: no HIGHMEM exclusion in open_ctree() (block_max_order from calc_block_max_order())."""
    p = f"{src}/fs/btrfs/disk-io.c"
    t = open(p).read()
    t = replace_once(t, "if (IS_ENABLED(CONFIG_HIGHMEM))\n\t\tfs_info->block_max_order = fs_info->block_min_order;",
                     "if (0) /* btrfs-compress lab: large folios on under HIGHMEM (7.2-rc3) */\n"
                     "\t\tfs_info->block_max_order = fs_info->block_min_order;", "rc3")
    open(p, "w").write(t)


def page_stepping(src):
    """Way out (a): an input chunk of a highmem folio ends at the end of its page."""
    p = f"{src}/fs/btrfs/compression.h"
    t = open(p).read()
    t = replace_once(t, "\treturn umin(range_end, folio_next_pos(folio)) - cur;\n",
                     "\tu64 stop = umin(range_end, folio_next_pos(folio));\n\n"
                     "\t/* btrfs-compress lab, way out (a): kmap_local_folio() maps one page. */\n"
                     "\tif (folio_test_highmem(folio))\n"
                     "\t\tstop = umin(stop, round_down(cur, PAGE_SIZE) + PAGE_SIZE);\n"
                     "\treturn stop - cur;\n", "step")
    open(p, "w").write(t)


VMAP_HELPERS = """
/*
 * btrfs-compress lab, way out (b): map the input range [cur, cur + len) of a folio. A large
 * highmem folio's pages go through vm_map_ram() (lazy TLB flush at release); anything else through
 * kmap_local_folio() as before. A prototype: it BUGs if vm_map_ram() fails.
 */
static inline void *btrfs_lab_map_input(struct folio *folio, u64 cur, u32 len)
{
	const size_t off = offset_in_folio(folio, cur);
	const unsigned int nr = DIV_ROUND_UP(offset_in_page(off) + len, PAGE_SIZE);
	struct page *pages[SZ_128K / PAGE_SIZE + 1];
	unsigned int i;
	void *addr;

	if (!folio_test_highmem(folio) || !folio_test_large(folio) || nr == 1)
		return kmap_local_folio(folio, off);
	BUG_ON(nr > ARRAY_SIZE(pages));
	for (i = 0; i < nr; i++)
		pages[i] = folio_page(folio, (off >> PAGE_SHIFT) + i);
	addr = vm_map_ram(pages, nr, NUMA_NO_NODE);
	BUG_ON(!addr);
	return addr + offset_in_page(off);
}

static inline void btrfs_lab_unmap_input(const void *addr, u32 len)
{
	if (is_vmalloc_addr(addr))
		vm_unmap_ram((void *)((unsigned long)addr & PAGE_MASK),
			     DIV_ROUND_UP(offset_in_page(addr) + len, PAGE_SIZE));
	else
		kunmap_local(addr);
}
"""


def vm_map_ram_input(src):
    """Way out (b): zstd's and zlib's compress loops map their input chunk with vm_map_ram()."""
    p = f"{src}/fs/btrfs/compression.h"
    t = open(p).read()
    t = replace_once(t, "#include <linux/pagemap.h>\n", "#include <linux/pagemap.h>\n#include <linux/vmalloc.h>\n"
                     "#include <linux/highmem.h>\n", "vmap include")
    anchor = "\treturn umin(range_end, folio_next_pos(folio)) - cur;\n}\n"
    t = replace_once(t, anchor, anchor + VMAP_HELPERS, "vmap helpers")
    open(p, "w").write(t)

    patch_input_maps(src, "btrfs_lab_unmap_input", [
        ("kmap_local_folio(in_folio, offset_in_folio(in_folio, start));",
         "btrfs_lab_map_input(in_folio, start, btrfs_calc_input_length(in_folio, end, start));", "zstd map"),
        ("kmap_local_folio(in_folio,\n\t\t\t\t\t\t\t offset_in_folio(in_folio, cur));",
         "btrfs_lab_map_input(in_folio, cur, btrfs_calc_input_length(in_folio, end, cur));", "zstd remap"),
    ], ("data_in = kmap_local_folio(in_folio,\n\t\t\t\t\t\t\t   offset_in_folio(in_folio, start));",
        "data_in = btrfs_lab_map_input(in_folio, start, cur_len);"))


RANGE_HELPERS = """
/*
 * btrfs-compress lab, way out (c): a kmap_local_range() prototype. The pages of a large highmem
 * folio go into consecutive kmap_local slots, the last page first, so that the first page lands
 * at the lowest address and the range reads ascending (a higher fixmap index is a lower address);
 * at most the free slots less two kept for interrupts. The chunk is cut to what is mapped.
 * Lowmem and order-0 folios go through kmap_local_folio() as before.
 */
static inline u32 btrfs_lab_range_len(struct folio *folio, u64 cur, u32 len)
{
	const unsigned int free = KM_MAX_IDX - 1 - current->kmap_ctrl.idx;
	const unsigned int nr = free > 3 ? free - 2 : 1;

	if (!folio_test_highmem(folio) || !folio_test_large(folio))
		return len;
	return min_t(u32, len, nr * PAGE_SIZE - offset_in_page(cur));
}

static inline void *btrfs_lab_map_range(struct folio *folio, u64 cur, u32 len)
{
	const size_t off = offset_in_folio(folio, cur);
	const unsigned int nr = DIV_ROUND_UP(offset_in_page(off) + len, PAGE_SIZE);
	void *addr = NULL;
	int i;

	if (!folio_test_highmem(folio) || !folio_test_large(folio))
		return kmap_local_folio(folio, off);
	for (i = nr - 1; i >= 0; i--)
		addr = kmap_local_page(folio_page(folio, (off >> PAGE_SHIFT) + i));
	return addr + offset_in_page(off);
}

static inline void btrfs_lab_unmap_range(const void *addr, u32 len)
{
	const unsigned long base = (unsigned long)addr & PAGE_MASK;
	const unsigned int nr = DIV_ROUND_UP(offset_in_page(addr) + len, PAGE_SIZE);
	unsigned int i;

	/* Page 0 holds the top slot: unmapping upwards is LIFO. A lowmem address unmaps nothing. */
	for (i = 0; i < nr; i++)
		kunmap_local((void *)(base + i * PAGE_SIZE));
}
"""


def kmap_range_input(src):
    """Way out (c): zstd's and zlib's compress loops map their input through a kmap_local_range()
    prototype (consecutive fixmap slots) and hand the library what it mapped."""
    p = f"{src}/fs/btrfs/compression.h"
    t = open(p).read()
    t = replace_once(t, "#include <linux/pagemap.h>\n", "#include <linux/pagemap.h>\n#include <linux/highmem.h>\n",
                     "range include")
    anchor = "\treturn umin(range_end, folio_next_pos(folio)) - cur;\n}\n"
    t = replace_once(t, anchor, anchor + RANGE_HELPERS, "range helpers")
    open(p, "w").write(t)

    patch_input_maps(src, "btrfs_lab_unmap_range", [
        ("\tworkspace->in_buf.src = kmap_local_folio(in_folio, offset_in_folio(in_folio, start));\n"
         "\tworkspace->in_buf.pos = 0;\n"
         "\tworkspace->in_buf.size = btrfs_calc_input_length(in_folio, end, start);\n",
         "\tworkspace->in_buf.size = btrfs_lab_range_len(in_folio, start,\n"
         "\t\t\t\t\tbtrfs_calc_input_length(in_folio, end, start));\n"
         "\tworkspace->in_buf.src = btrfs_lab_map_range(in_folio, start, workspace->in_buf.size);\n"
         "\tworkspace->in_buf.pos = 0;\n", "zstd range map"),
        ("\t\t\tworkspace->in_buf.src = kmap_local_folio(in_folio,\n"
         "\t\t\t\t\t\t\t offset_in_folio(in_folio, cur));\n"
         "\t\t\tworkspace->in_buf.pos = 0;\n"
         "\t\t\tworkspace->in_buf.size = btrfs_calc_input_length(in_folio, end, cur);\n",
         "\t\t\tworkspace->in_buf.size = btrfs_lab_range_len(in_folio, cur,\n"
         "\t\t\t\t\t\tbtrfs_calc_input_length(in_folio, end, cur));\n"
         "\t\t\tworkspace->in_buf.src = btrfs_lab_map_range(in_folio, cur, workspace->in_buf.size);\n"
         "\t\t\tworkspace->in_buf.pos = 0;\n", "zstd range remap"),
    ], ("cur_len = btrfs_calc_input_length(in_folio, orig_end, start);\n"
        "\t\t\t\tdata_in = kmap_local_folio(in_folio,\n\t\t\t\t\t\t\t   offset_in_folio(in_folio, start));",
        "cur_len = btrfs_lab_range_len(in_folio, start,\n"
        "\t\t\t\t\t\tbtrfs_calc_input_length(in_folio, orig_end, start));\n"
        "\t\t\t\tdata_in = btrfs_lab_map_range(in_folio, start, cur_len);"))


PATCHES = {"shipped": [], "rc3": [large_folios_on], "step": [large_folios_on, page_stepping],
           "vmap": [large_folios_on, vm_map_ram_input], "range": [large_folios_on, kmap_range_input]}


# ---- source, config, build ----

def fetch(work):
    if not glob.glob(f"{work}/apt/linux-source-7.2_*.deb"):
        fl.Apt(f"{work}/apt", ("sid",)).download(["linux-source-7.2"])
    if not glob.glob(f"{work}/apt-i386/busybox-static_*_i386.deb"):
        fl.Apt(f"{work}/apt-i386", ("sid",), arch="i386").download(["busybox-static:i386"])
    deb = glob.glob(f"{work}/apt/linux-source-7.2_*.deb")[0]
    src = f"{work}/linux-source-7.2"
    if not os.path.isdir(src):
        subprocess.run(f"dpkg-deb --fsys-tarfile {deb} | tar -x -O ./usr/src/linux-source-7.2.tar.xz | tar -xJ -C {work}",
                       shell=True, check=True)
    if not os.path.isdir(f"{work}/bb"):
        subprocess.run(["dpkg-deb", "-x", glob.glob(f"{work}/apt-i386/busybox-static_*_i386.deb")[0], f"{work}/bb"],
                       check=True)
    pristine = f"{work}/pristine"
    if not os.path.isdir(pristine):
        for f in PATCHED:
            os.makedirs(os.path.dirname(f"{pristine}/{f}"), exist_ok=True)
            shutil.copy2(f"{src}/{f}", f"{pristine}/{f}")
    return src, os.path.basename(deb)


def configure(src):
    if os.path.exists(f"{src}/.config") and "CONFIG_BTRFS_FS=y" in open(f"{src}/.config").read():
        return
    frag = f"{src}/../lab.config"
    with open(frag, "w") as f:
        f.writelines(f"CONFIG_{k}=y\n" for k in CONFIG)
    subprocess.run(["make", "ARCH=i386", "tinyconfig"], cwd=src, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["./scripts/kconfig/merge_config.sh", "-m", ".config", frag], cwd=src, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["make", "ARCH=i386", "olddefconfig"], cwd=src, check=True, stdout=subprocess.DEVNULL)
    have = open(f"{src}/.config").read()
    missing = [k for k in MUST if f"CONFIG_{k}=y" not in have]
    if missing:
        sys.exit(f"the config lacks {missing}")


def build(work, src, variant):
    out = f"{work}/bzImage-{variant}"
    for f in PATCHED:
        # Restore the pristine file only where it differs, so make rebuilds what changed (with
        # a new mtime: make must see the restored file as newer than its object).
        if open(f"{work}/pristine/{f}", "rb").read() != open(f"{src}/{f}", "rb").read():
            shutil.copyfile(f"{work}/pristine/{f}", f"{src}/{f}")
    for patch in PATCHES[variant]:
        patch(src)
    # make goes by mtime: when the tree last held another variant, every file a patch may touch
    # is new to it.
    last = f"{work}/last-built-variant"
    if not os.path.exists(last) or open(last).read() != variant:
        for f in PATCHED:
            os.utime(f"{src}/{f}")
    digests = {f: hashlib.sha256(open(f"{src}/{f}", "rb").read()).hexdigest() for f in PATCHED}
    t0 = time.time()
    r = subprocess.run(["make", "ARCH=i386", f"-j{os.cpu_count() + 1}", "bzImage"], cwd=src, capture_output=True,
                       text=True)
    if r.returncode:
        sys.exit(f"build of {variant} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    shutil.copy2(f"{src}/arch/x86/boot/bzImage", out)
    with open(last, "w") as f:
        f.write(variant)
    release = open(f"{src}/include/config/kernel.release").read().strip()
    return out, release, digests, round(time.time() - t0, 1)


# ---- the guest ----

dirname = fl.trace_dirname


def trace_setup():
    return fl.ftrace_setup(ENTRIES, MAPPING) + [
        "echo 1 > $T/events/filemap/mm_filemap_add_to_page_cache/enable || echo NOEVENT",
        "echo 1 > $T/tracing_on",
    ]


def guest_init(writes, trace):
    """The guest's init: mount, (trace,) write each (option, file, block size) with dd and sync,
    then (traced runs) read everything back after drop_caches. A file written with a block size
    other than 1 MiB is stored as FILE.bsN."""
    lines = [
        "#!/bin/sh",
        "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev",
        "mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; T=/sys/kernel/tracing",
        "mkdir -p /out; cat /proc/meminfo > /out/meminfo; uname -a > /out/uname",
        "tar -x -f /dev/vdb -C /corpus || echo CORPUS-FAILED",
        "mount -t btrfs /dev/vda /mnt || { echo MOUNT-FAILED; exit 1; }",
    ]
    if trace:
        lines += trace_setup()
    mounted = None
    for kind, opt, f, bs in writes:
        d, name = dirname(kind, opt), stored_name(f, bs)
        if (kind, opt) != mounted:
            lines.append(f"mount -o remount,{kind}={opt} /mnt; mkdir -p /mnt/{d}")
            mounted = (kind, opt)
        lines.append(f"echo \"BEGIN write {kind}={opt} {name}\" > $T/trace_marker; echo \"W-BEGIN {kind}={opt} {name}\"")
        lines.append(f"dd if=/corpus/{f} of=/mnt/{d}/{name} bs={bs} 2>/dev/null; sync")
        lines.append(f"echo \"END write {kind}={opt} {name}\" > $T/trace_marker; echo \"W-END {kind}={opt} {name}\"")
    if trace:
        lines += ["cd /; umount /mnt; echo 3 > /proc/sys/vm/drop_caches", "mount -t btrfs -o ro /dev/vda /mnt"]
        for kind, opt, f, bs in writes:
            d, name = dirname(kind, opt), stored_name(f, bs)
            lines.append(f"echo \"BEGIN read {kind}={opt} {name}\" > $T/trace_marker; cat /mnt/{d}/{name} > /dev/null; "
                         f"echo \"END read {kind}={opt} {name}\" > $T/trace_marker")
        lines += ["echo 0 > $T/tracing_on", "cat $T/per_cpu/cpu0/stats > /out/stats", "cat $T/trace > /out/trace.txt"]
    else:
        lines += ["cd /; umount /mnt; echo 3 > /proc/sys/vm/drop_caches", "mount -t btrfs -o ro /dev/vda /mnt"]
    # What reads back (after the caches were dropped) against what was written.
    for kind, opt, f, bs in writes:
        d, name = dirname(kind, opt), stored_name(f, bs)
        lines.append(f"cmp -s /corpus/{f} /mnt/{d}/{name} && echo \"CMP-OK {kind}={opt} {name}\" "
                     f"|| echo \"CMP-BAD {kind}={opt} {name}\"")
    lines += ["umount /mnt 2>/dev/null", "tar -c -f /dev/vdc -C /out . && sync && echo GUEST-DONE", "sleep 1000", ""]
    return "\n".join(lines)


def stored_name(f, bs):
    return f if bs == BIG_WRITE else f"{f}.bs{bs}"


def initramfs(work, init_text, out):
    modroot = f"{work}/modroot"
    os.makedirs(f"{modroot}/lib/modules/none/kernel", exist_ok=True)
    with open(f"{work}/init", "w") as f:
        f.write(init_text)
    bb = next(p for p in (f"{work}/bb/usr/bin/busybox", f"{work}/bb/bin/busybox") if os.path.exists(p))
    env = dict(os.environ, BUSYBOX=bb)
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "qemu", "initramfs.py"), modroot, "none",
                    f"{work}/init", out], check=True, stdout=subprocess.DEVNULL, env=env)


def boot(bzimage, initrd, img, corpus, out, log, limit=1800):
    """Run the guest until it says GUEST-DONE, oopses (then 5 s more for the whole report) or
    `limit` seconds pass; returns the console text and the seconds taken."""
    cmd = ["qemu-system-i386", "-accel", "tcg", "-cpu", "max", "-m", "3G", "-smp", "1", "-nographic",
           "-no-reboot", "-kernel", bzimage, "-initrd", initrd,
           "-append", "console=ttyS0 panic=-1 init_on_alloc=1",
           "-drive", f"file={img},if=virtio,format=raw",
           "-drive", f"file={corpus},if=virtio,format=raw,readonly=on",
           "-drive", f"file={out},if=virtio,format=raw"]
    t0 = time.time()
    with open(log, "wb") as logf:
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        oops_at = None
        while p.poll() is None:
            time.sleep(0.5)
            text = open(log, "rb").read().decode("utf-8", "replace")
            if "GUEST-DONE" in text or "MOUNT-FAILED" in text or "CORPUS-FAILED" in text:
                break
            if oops_at is None and re.search(r"BUG: |Oops|Kernel panic", text):
                oops_at = time.time()
            if (oops_at and time.time() - oops_at > 5) or time.time() - t0 > limit:
                break
        p.kill()
        p.wait()
    return open(log, "rb").read().decode("utf-8", "replace"), time.time() - t0


def fresh_disks(work, tag):
    img, out = f"{work}/image-{tag}.img", f"{work}/out-{tag}.tar"
    for p, size in ((img, 1 << 30), (out, 256 << 20)):
        with open(p, "wb") as f:
            f.truncate(size)
    subprocess.run(["mkfs.btrfs", "-q", "-f", "-U", UUID, "-L", "highmem-7x", img], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return img, out


def oops_excerpt(text):
    """The first oops: from its BUG line to the end of its call trace."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if re.search(r"BUG: |Oops", l)), None)
    if start is None:
        return []
    out = []
    for line in lines[start:]:
        out.append(re.sub(r"^\[\s*[\d.]+\]\s?", "", line.rstrip("\r")))
        if "---[ end trace" in line or len(out) > 80:
            break
    return out


def page_cache_orders(trace):
    """Per file written: its page-cache folios as runs [byte offset, order, count] (from the
    filemap add-to-page-cache event; data inodes only, btrfs's start at 256)."""
    orders, current = {}, None
    for raw in trace.splitlines():
        m = re.search(r"/\* (BEGIN|END) write (\S+) (\S+) \*/", raw)
        if m:
            current = (m.group(2), m.group(3)) if m.group(1) == "BEGIN" else None
            continue
        m = re.search(r"mm_filemap_add_to_page_cache: dev \S+ ino (\w+) pfn=\S+ ofs=(\d+) order=(\d+)", raw)
        if m and current and int(m.group(1), 16) >= 256:
            key = "/".join(current)
            orders.setdefault(key, {}).setdefault(m.group(1), []).append((int(m.group(2)), int(m.group(3))))
    out = {}
    for key, by_ino in orders.items():
        folios = sorted(max(by_ino.values(), key=len))
        runs = []
        for ofs, order in folios:
            if runs and runs[-1][1] == order and runs[-1][0] + runs[-1][2] * (4096 << order) == ofs:
                runs[-1][2] += 1
            else:
                runs.append([ofs, order, 1])
        out[key] = runs
    return out


def run_traced(work, bz, tar, files, variant, kt):
    writes = [(k, o, f, BIG_WRITE) for k, o in OPTIONS for f in files]
    initrd = f"{work}/initrd-{variant}.cpio.gz"
    initramfs(work, guest_init(writes, True), initrd)
    img, out = fresh_disks(work, variant)
    text, secs = boot(bz, initrd, img, tar, out, f"{work}/console-{variant}.log")
    if "GUEST-DONE" not in text:
        sys.exit(f"{variant}: the guest did not finish; console in {work}/console-{variant}.log")
    odir = f"{work}/out-{variant}"
    fl.guest_output(out, odir)
    trace = open(f"{odir}/trace.txt").read()
    overrun = int(re.search(r"overrun: (\d+)", open(f"{odir}/stats").read()).group(1))
    if overrun:
        sys.exit(f"{variant}: trace buffer overran ({overrun} events lost)")
    meminfo = open(f"{odir}/meminfo").read()
    return trace, {
        "vm_seconds": round(secs, 1), "missing_functions": re.findall(r"NOFUNC (\S+)", text),
        "high_total_kb": int(re.search(r"HighTotal:\s+(\d+)", meminfo).group(1)),
        "mem_total_kb": int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)),
        "uname": open(f"{odir}/uname").read().strip(), "trace_lines": trace.count("\n"),
        "extents": kt.parse(trace, ENTRIES), "page_cache_orders": page_cache_orders(trace),
        "read_back_differs": read_back(text)[1],
    }


def run_crash(work, bz, tar, files, variant):
    """Write every (option, file) in turn, with 1 MiB and with 4 KiB writes; a run that oopses is
    restarted after the write that did."""
    todo = [(k, o, f, bs) for k, o in OPTIONS for f in files for bs in (BIG_WRITE, SMALL_WRITE)]
    faulted, completed, boots, excerpt, total, differs = [], [], 0, [], 0.0, []
    initrd = f"{work}/initrd-{variant}.cpio.gz"
    while todo:
        initramfs(work, guest_init(todo, False), initrd)
        img, out = fresh_disks(work, f"{variant}-{boots}")
        log = f"{work}/console-{variant}-{boots}.log"
        text, secs = boot(bz, initrd, img, tar, out, log, limit=900)
        total += secs
        boots += 1
        differs += read_back(text)[1]
        done = set(re.findall(r"W-END (\S+) (\S+)", text))
        began = re.findall(r"W-BEGIN (\S+) (\S+)", text)
        oops = oops_excerpt(text)
        step = []
        for k, o, f, bs in todo:
            if (f"{k}={o}", stored_name(f, bs)) in done:
                completed.append(f"{k}={o}/{stored_name(f, bs)}")
                step.append((k, o, f, bs))
        if oops:
            if not began or (began[-1][0], began[-1][1]) in done:
                sys.exit(f"{variant}: an oops outside a write; console in {log}")
            k_o, f = began[-1]
            faulted.append({"write": f"{k_o}/{f}", "boot": boots,
                            "fault_line": next((line for line in oops if "BUG:" in line), oops[0]),
                            "eip": next((line for line in oops if line.startswith("EIP:")), "")})
            excerpt = excerpt or oops
            step.append(next(w for w in todo if f"{w[0]}={w[1]}" == k_o and stored_name(w[2], w[3]) == f))
        elif "GUEST-DONE" not in text:
            sys.exit(f"{variant}: the guest neither finished nor oopsed; console in {log}")
        todo = [w for w in todo if w not in step]
        print(f"{variant}: boot {boots}: {len(step)} writes ({'oops' if oops else 'no oops'}), {len(todo)} left")
    return {"boots": boots, "vm_seconds": round(total, 1), "faulted": faulted, "completed": completed,
            "read_back_differs": differs, "oops": excerpt}


def read_back(text):
    """The writes that read back equal to what was written, and those that did not (cmp after
    the caches were dropped)."""
    ok = [f"{k}/{f}" for k, f in re.findall(r"CMP-OK (\S+) (\S+)", text)]
    bad = [f"{k}/{f}" for k, f in re.findall(r"CMP-BAD (\S+) (\S+)", text)]
    return ok, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/var/tmp/btrfs-highmem-7x")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    variants = a.variants.split(",")
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    kt = kmap_trace()
    src, package = fetch(work)
    configure(src)
    files, tar = fl.trace_corpus(work, ROOT)
    cdir = f"{work}/corpus"
    config = {}
    for line in open(f"{src}/.config"):
        k = line.split("=")[0].strip()
        if k in CONFIG_KEYS:
            config[k] = line.strip().split("=", 1)[1]
    qemu_ver = subprocess.run(["qemu-system-i386", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    gcc_ver = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    version = re.search(r"linux-source-7\.2_([\d.]+)", package).group(1)
    dest = os.path.join(ROOT, "fixtures", f"highmem-7x-{version}")
    os.makedirs(dest, exist_ok=True)
    mpath = f"{dest}/manifest.json"
    manifest = json.load(open(mpath)) if os.path.exists(mpath) else {"variants": {}}
    manifest.update({
        "tool": "tools/qemu-highmem-7x.py", "source": package, "qemu": qemu_ver, "compiler": gcc_ver,
        "machine": "qemu-system-i386 -accel tcg -cpu max -m 3G -smp 1", "config": config,
        "options": [f"{k}={o}" for k, o in OPTIONS],
        "writes": "dd bs=1M (rc3 also bs=4096, stored as FILE.bs4096), then sync, one file at a time",
        "files": {f: {"size": os.path.getsize(f"{cdir}/{f}"),
                      "sha256": hashlib.sha256(open(f"{cdir}/{f}", "rb").read()).hexdigest()} for f in files},
        "counted": {"kmap_local": "__kmap_local_page_prot calls", "highmem_maps": "__kmap_local_pfn_prot calls",
                    "lowmem_maps": "kmap_local - highmem_maps", "kunmap_local": "kunmap_local_indexed calls",
                    "real_unmaps": "flush_tlb_one_kernel beneath kunmap_local_indexed",
                    "sched_out_flushes": "flush_tlb_one_kernel beneath __kmap_local_sched_out: a context switch "
                                         "while slots were held (the slots held, once per switch)",
                    "vm_map_ram": "vm_map_ram calls", "vm_unmap_ram": "vm_unmap_ram calls",
                    "page_allocs": "btrfs_alloc_compr_folio calls", "buf2page": "btrfs_decompress_buf2page calls"},
    })
    for v in variants:
        bz, release, digests, build_s = build(work, src, v)
        print(f"{v}: built {release} in {build_s} s")
        entry = {"release": release, "build_seconds": build_s, "patched_files_sha256": digests,
                 "patch": (PATCHES[v][-1].__doc__ or "") if PATCHES[v] else "none: Debian's source as shipped"}
        if v == "rc3":
            entry.update(run_crash(work, bz, tar, files, v))
            print(f"{v}: {len(entry['faulted'])} writes faulted, {len(entry['completed'])} completed")
        else:
            trace, run = run_traced(work, bz, tar, files, v, kt)
            subprocess.run(["zstd", "-q", "-f", "-19", "-o", f"{dest}/trace-{v}.txt.zst", "-"], input=trace.encode(),
                           check=True)
            entry.update(run)
            n = sum(len(x) for x in run["extents"].values())
            print(f"{v}: {run['vm_seconds']} s in the VM, {n} codec calls traced, missing {run['missing_functions']}")
        manifest["variants"][v] = entry
        fl.write_json(mpath, manifest)
    print(f"wrote {mpath}")


if __name__ == "__main__":
    main()
