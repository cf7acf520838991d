# SPDX-License-Identifier: GPL-2.0-only
"""Shared parts of the fixture generators: the deterministic corpus, the special scenarios with
their expected contents, and the ENCODED_READ dump of a mounted image into fixtures/<kernel>/."""
import contextlib
import ctypes
import fcntl
import glob
import re
import hashlib
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

ENCODED_READ = 0x80809440
ENC_NAMES = {0: "none", 1: "zlib", 2: "zstd", 3: "lzo-4k", 4: "lzo-8k", 5: "lzo-16k", 6: "lzo-32k", 7: "lzo-64k"}


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class EncodedArgs(ctypes.Structure):
    _fields_ = [
        ("iov", ctypes.c_void_p),
        ("iovcnt", ctypes.c_ulong),
        ("offset", ctypes.c_int64),
        ("flags", ctypes.c_uint64),
        ("len", ctypes.c_uint64),
        ("unencoded_len", ctypes.c_uint64),
        ("unencoded_offset", ctypes.c_uint64),
        ("compression", ctypes.c_uint32),
        ("encryption", ctypes.c_uint32),
        ("reserved", ctypes.c_uint8 * 64),
    ]


assert ctypes.sizeof(EncodedArgs) == 128


class Xorshift:
    """xorshift64*; the Rust tests do not regenerate data, they read plain/*.zst."""

    def __init__(self, seed):
        self.s = seed or 1

    def next(self):
        x = self.s
        x ^= (x >> 12)
        x ^= (x << 25) & 0xFFFFFFFFFFFFFFFF
        x ^= (x >> 27)
        self.s = x
        return (x * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF


WORDS = ("the of and to in is was that for on are with as his they be at one have this from or had by hot "
         "word but what some we can out other were all there when up use your how said an each she which do "
         "their time if will way about many then them write would like so these her long make thing see him "
         "extent btrfs folio page kmap compress zstd zlib lzo sector inode").split()


def text(n, seed):
    r = Xorshift(seed)
    out = []
    size = 0
    while size < n:
        w = WORDS[r.next() % len(WORDS)]
        sep = "\n" if r.next() % 13 == 0 else " "
        out.append(w + sep)
        size += len(w) + 1
    return "".join(out).encode()[:n]


def binary(n, seed):
    r = Xorshift(seed)
    b = bytearray()
    while len(b) < n:
        v = r.next()
        rec = (len(b) // 16).to_bytes(4, "little") + (v & 0xFFFF).to_bytes(2, "little") + bytes(6) + (v >> 48).to_bytes(2, "little") + b"\x7f\x00"
        b += rec
    return bytes(b[:n])


def random_bytes(n, seed):
    r = Xorshift(seed)
    return b"".join(r.next().to_bytes(8, "little") for _ in range((n + 7) // 8))[:n]


def corpus():
    return {
        "text-128k": text(131072, 1),
        "mixed-300k": text(100000, 3) + random_bytes(4096, 4) + binary(100000, 5) + bytes(96000),
        "unaligned-100000": text(100000, 6),
        "inline-300": text(300, 7),
        "inline-1500": binary(1500, 8),
        "inline-3900": text(3900, 9),
        "zeros-64k": bytes(65536),
    }


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def write_json(path, obj):
    """OBJ as a fixture's JSON: keys sorted, one space of indent, a final newline."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def guest_output(tar_path, odir):
    """Unpack the tar a guest wrote on its output disk into ODIR (emptied first)."""
    import tarfile
    shutil.rmtree(odir, ignore_errors=True)
    os.makedirs(odir)
    with tarfile.open(tar_path) as t:
        t.extractall(odir)


def skip(why, what="live-kernel extents"):
    print(f"SKIPPED: {what}: {why}")
    sys.exit(0)


@contextlib.contextmanager
def scratch_btrfs(size, what, prefix="btrfs-live-", mkfs_args=()):
    """A fresh btrfs image of SIZE bytes loop-mounted by the running kernel, for a tool named WHAT.

    Prints SKIPPED and exits 0 without root, loop devices, mkfs.btrfs or zstd, or when the kernel
    refuses the mount. Yields (work, img, mnt); afterwards nothing stays mounted and the work
    directory is gone."""
    if os.geteuid() != 0:
        skip("not root", what)
    for tool in ("mkfs.btrfs", "zstd"):
        if shutil.which(tool) is None:
            skip(f"{tool} not installed", what)
    if not os.path.exists("/dev/loop-control"):
        skip("no loop devices", what)
    work = tempfile.mkdtemp(prefix=prefix)
    img, mnt = os.path.join(work, "img"), os.path.join(work, "mnt")
    os.mkdir(mnt)
    try:
        with open(img, "wb") as f:
            f.truncate(size)
        run("mkfs.btrfs", "-q", "-f", *mkfs_args, img)
        try:
            run("mount", "-o", "loop", img, mnt)
        except subprocess.CalledProcessError as e:
            skip(f"mount refused: {e.stderr.decode().strip()}", what)
        yield work, img, mnt
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["umount", mnt])
        shutil.rmtree(work, ignore_errors=True)


def encoded_read_all(path, size):
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        off = 0
        while off < size:
            buf = ctypes.create_string_buffer(131072)
            iov = Iovec(ctypes.cast(buf, ctypes.c_void_p), 131072)
            args = EncodedArgs()
            args.iov = ctypes.addressof(iov)
            args.iovcnt = 1
            args.offset = off
            n = fcntl.ioctl(fd, ENCODED_READ, args, True)
            if n < 0 or args.len == 0:
                raise OSError(f"ENCODED_READ at {off} returned {n}")
            raw = bytes(buf.raw[:n])
            out.append({
                "file_offset": off,
                "len": args.len,
                "unencoded_len": args.unencoded_len,
                "unencoded_offset": args.unencoded_offset,
                "compression": ENC_NAMES.get(args.compression, str(args.compression)),
                "raw": raw,
            })
            off += args.len
    finally:
        os.close(fd)
    return out



SPECIAL_OPTION = "zstd:3"


def special_files():
    """Scenarios beyond plain writes, as (name, final content, shell steps for busybox).

    Steps run in the VM (or on the host) inside the target directory with the file's initial
    data at /corpus/NAME.init and extra data at /corpus/NAME.patch; {remount X} lines switch the
    compress-force option (with a sync first: compression happens at writeback).
    """
    t = text(131072, 21)
    patch = binary(4096, 22)
    over = bytearray(t)
    over[65536:65536 + 4096] = patch
    holes = bytearray(524288)
    holes[0:8192] = text(8192, 23)
    holes[262144:262144 + 8192] = text(8192, 24)
    three = text(131072, 25) + text(131072, 26) + text(131072, 27)
    return [
        ("overwrite-in-extent", t, bytes(over), patch,
         ["cp /corpus/{n}.init {n}", "sync", "dd if=/corpus/{n}.patch of={n} bs=4096 seek=16 conv=notrunc 2>/dev/null", "sync"]),
        ("truncate-in-extent", t, t[:100000], b"",
         ["cp /corpus/{n}.init {n}", "sync", "truncate -s 100000 {n}", "sync"]),
        ("holes", bytes(holes[:8192]), bytes(holes), bytes(holes[262144:262144 + 8192]),
         ["cp /corpus/{n}.init {n}", "dd if=/corpus/{n}.patch of={n} bs=8192 seek=32 conv=notrunc 2>/dev/null",
          "truncate -s 524288 {n}", "sync"]),
        ("three-algorithms", three[:131072], three, three[131072:],
         ["{remount zlib:3}", "cp /corpus/{n}.init {n}", "sync", "{remount zstd:3}",
          "dd if=/corpus/{n}.patch of={n} bs=131072 count=1 seek=1 conv=notrunc 2>/dev/null", "sync",
          "{remount lzo}", "dd if=/corpus/{n}.patch of={n} bs=131072 skip=1 seek=2 conv=notrunc 2>/dev/null", "sync",
          "{remount zstd:3}"]),
        ("prealloc", b"", bytes(text(16384, 28)) + bytes(65536 - 16384), text(16384, 28),
         ["fallocate -l 65536 {n}", "dd if=/corpus/{n}.patch of={n} bs=16384 conv=notrunc 2>/dev/null", "sync"]),
        # A reflink of the middle of a compressed extent: the new file references the source's
        # extent at a non-zero offset (xfs_io's FICLONERANGE).
        ("reflink-at-offset", text(131072, 29), text(131072, 29)[65536:], b"",
         ["cp /corpus/{n}.init {n}.src", "sync", "xfs_io -f -c 'reflink {n}.src 65536 0 65536' {n}", "sync"]),
    ]


SUBVOLUME = [("subvol/inner", "text-128k"), ("subvol/d/small", "inline-300")]
SUBVOLUME_STEPS = ["btrfs subvolume create subvol >/dev/null", "cp /corpus/text-128k subvol/inner",
                   "mkdir subvol/d", "cp /corpus/inline-300 subvol/d/small", "sync"]


HEURISTIC = [
    ("heuristic-text", lambda: text(131072, 31)),
    ("heuristic-random", lambda: random_bytes(131072, 32)),
    ("heuristic-half-random", lambda: random_bytes(65536, 33) + text(65536, 34)),
]


def identical_expected(kernel):
    """Which codecs should reproduce this kernel's bytes: lzo always (the kernel's own lzo1x_1);
    zstd from 6.15 on (libzstd 1.5.7); zlib never."""
    parts = kernel.replace("-", ".").replace("+", ".").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        major, minor = 0, 0
    return {"lzo": True, "zstd": (major, minor) >= (6, 15), "zlib": False}


def dump(img, kernel, options_state, outdir, tool, extra=None):
    """Mount IMG read-only, ENCODED_READ every file, write fixtures into OUTDIR."""
    work = tempfile.mkdtemp(prefix="btrfs-dump-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    staged = os.path.join(work, "out")
    os.makedirs(os.path.join(staged, "plain"))
    files = corpus()
    manifest = {"kernel": kernel, "tool": tool, "options": options_state, "files": {}, "special": [],
                "identical_expected": identical_expected(kernel)}
    if extra:
        manifest.update(extra)
    mounted = False
    try:
        run("mount", "-o", "loop,ro", img, mnt)
        mounted = True

        def plain(name, data):
            p = os.path.join(staged, "plain", name)
            with open(p, "wb") as f:
                f.write(data)
            run("zstd", "-q", "-19", "--rm", p)
            manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

        for name, data in files.items():
            plain(name, data)
        todo = []
        for opt, state in options_state.items():
            if state == "ok":
                for name in files:
                    todo.append((opt, opt.replace(":", "_"), name))
        if os.path.isdir(os.path.join(mnt, "special")):
            for name, _init, final, _patch, _steps in special_files():
                plain(name, final)
                manifest["special"].append({"path": f"special/{name}", "plain": name})
                todo.append(("special:" + SPECIAL_OPTION, "special", name))
        if os.path.isdir(os.path.join(mnt, "subvol")):
            for path, name in SUBVOLUME:
                manifest["special"].append({"path": path, "plain": name})
        if os.path.isdir(os.path.join(mnt, "heuristic")):
            for name, gen in HEURISTIC:
                plain(name, gen())
                manifest["special"].append({"path": f"heuristic/{name}", "plain": name})
                todo.append(("heuristic:zstd", "heuristic", name))
        extents = []
        for opt, d, name in todo:
            size = manifest["files"][name]["size"]
            for i, e in enumerate(encoded_read_all(os.path.join(mnt, d, name), size)):
                # The raw bytes are not stored twice: they are in the image; the tests read them
                # from there with our reader and check them against this sha256.
                raw = e.pop("raw")
                extents.append({"option": opt, "dir": d, "file": name, "index": i,
                                "encoded_len": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), **e})
        manifest["extents"] = extents
        run("umount", mnt)
        mounted = False
        run("zstd", "-q", "-19", "-T0", img, "-o", os.path.join(staged, "image.img.zst"))
        manifest["image"] = {"file": "image.img.zst", "size": os.path.getsize(img),
                             "mkfs": subprocess.run(["mkfs.btrfs", "--version"], capture_output=True,
                                                    text=True).stdout.strip()}
        with open(os.path.join(staged, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        if os.path.exists(outdir):
            shutil.rmtree(outdir)
        shutil.copytree(staged, outdir)
        return len(extents)
    finally:
        if mounted:
            subprocess.run(["umount", mnt])
        shutil.rmtree(work, ignore_errors=True)


def mirror():
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for line in open(f):
            if line.startswith("URIs:") and "debian-security" not in line:
                return line.split()[1]
    for f in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(f):
            for line in open(f):
                m = re.match(r"deb\s+(\[[^\]]*\]\s+)?(\S+)\s+\S+", line)
                if m and "security" not in m.group(2):
                    return m.group(2)
    sys.exit("no Debian mirror in the apt configuration")


class Apt:
    """apt-get with a private sources list of `suites` (mirror from this machine's apt
    configuration) and private lists and cache under `work`; `arch` e.g. "i386"."""

    def __init__(self, work, suites, arch=None):
        self.work = work
        os.makedirs(f"{work}/lists/partial", exist_ok=True)
        os.makedirs(f"{work}/cache/archives/partial", exist_ok=True)
        key = "/usr/share/keyrings/debian-archive-keyring.gpg"
        with open(f"{work}/sources.list", "w") as f:
            a = f"arch={arch} " if arch else ""
            for suite in suites:
                f.write(f"deb [{a}signed-by={key}] {mirror()} {suite} main\n")
        self.opts = ["-o", f"Dir::Etc::sourcelist={work}/sources.list", "-o", "Dir::Etc::sourceparts=-",
                     "-o", f"Dir::State::Lists={work}/lists", "-o", f"Dir::Cache={work}/cache"]
        if arch:
            self.opts += ["-o", f"APT::Architecture={arch}", "-o", f"APT::Architectures={arch}"]
        subprocess.run(["apt-get", *self.opts, "update", "-qq"], check=True)

    def show(self, pkg):
        return subprocess.run(["apt-cache", *self.opts, "show", "-a", pkg], capture_output=True, text=True).stdout

    def download(self, pkgs):
        subprocess.run(["apt-get", *self.opts, "download", "-qq", *pkgs], cwd=self.work, check=True,
                       stderr=subprocess.DEVNULL)


def qemu_fixtures():
    """tools/qemu-fixtures.py as a module (its kernels, images and qemu runner), for the other
    qemu tools."""
    spec = importlib.util.spec_from_file_location("qf", os.path.join(os.path.dirname(__file__), "qemu-fixtures.py"))
    qf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(qf)
    return qf


# The first lines of every qemu guest's init: mount the pseudo filesystems, load the modules,
# unpack the corpus from the second disk and mount the btrfs image of the first.
GUEST_INIT_HEAD = [
    "#!/bin/sh",
    "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev",
    "for m in $(cat /modules.order); do insmod /lib/$m.ko 2>/dev/null; done",
    "tar -x -f /dev/vdb -C /corpus || echo CORPUS-FAILED",
    "mount -t btrfs /dev/vda /mnt || { echo MOUNT-FAILED; poweroff -f; }",
]


# The mount options the kmap trace tools write under, and each one's directory.
TRACE_OPTIONS = [("compress-force", "zstd:3"), ("compress-force", "lzo"), ("compress-force", "zlib:3"),
                 ("compress", "zstd:3")]


def trace_dirname(kind, opt):
    return ("f_" if kind == "compress-force" else "h_") + opt.replace(":", "_")


def ftrace_setup(entries, mapping):
    """Guest shell lines (tracefs at $T) for function_graph scoped to the codec `entries`,
    recording only the `mapping` functions beneath them; missing functions print NOFUNC."""
    lines = ["echo 0 > $T/tracing_on"]
    for f in entries:
        lines.append(f"echo {f} >> $T/set_graph_function 2>/dev/null || echo NOFUNC {f}")
    for f in entries + mapping:
        lines.append(f"echo {f} >> $T/set_ftrace_filter 2>/dev/null || echo NOFUNC {f}")
    return lines + [
        "cp $T/set_ftrace_filter /out/filter; cp $T/set_graph_function /out/graph",
        "echo 0 > $T/options/funcgraph-irqs; echo 1 > $T/options/funcgraph-proc",
        "echo 131072 > $T/buffer_size_kb",
        "echo function_graph > $T/current_tracer",
    ]


def trace_corpus(work, root):
    """The lab's trace files (`btrfs-compress corpus`, from ROOT's release build) in WORK/corpus
    and as a tar padded to 64 KiB (a virtio disk for the guest); returns (file names, tar path)."""
    cdir = f"{work}/corpus"
    shutil.rmtree(cdir, ignore_errors=True)
    binary = os.path.join(root, "target", "release", "btrfs-compress")
    subprocess.run([binary, "corpus", cdir], check=True, stdout=subprocess.DEVNULL)
    files = sorted(os.listdir(cdir))
    tar = f"{work}/corpus.tar"
    subprocess.run(["tar", "-c", "-f", tar, "-C", cdir, *files], check=True)
    with open(tar, "ab") as f:
        f.write(bytes(-os.path.getsize(tar) % 65536))
    return files, tar


def kind(st):
    for k, f in (("file", stat.S_ISREG), ("dir", stat.S_ISDIR), ("symlink", stat.S_ISLNK), ("fifo", stat.S_ISFIFO),
                 ("socket", stat.S_ISSOCK), ("chardev", stat.S_ISCHR), ("blockdev", stat.S_ISBLK)):
        if f(st.st_mode):
            return k
    return "other"


def describe(mnt, tolerant=False):
    """What the kernel shows of every path under MNT (kind, mode, owner, times, size, link count,
    inode, sha256 of the data, link target, rdev, xattrs). With TOLERANT, a file the kernel cannot
    read gets `error` (its strerror) instead of `sha256`."""
    out = {}
    top = mnt.encode()
    for dirpath, dirs, files in os.walk(top):
        for n in sorted(files + dirs):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            e = {"path": rel.decode("utf-8", "backslashreplace"), "kind": kind(st), "mode": st.st_mode & 0o7777,
                 "uid": st.st_uid, "gid": st.st_gid, "atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns,
                 "size": st.st_size, "nlink": st.st_nlink, "ino": st.st_ino, "dev": st.st_dev}
            if e["kind"] == "file":
                try:
                    with open(p, "rb") as f:
                        e["sha256"] = hashlib.sha256(f.read()).hexdigest()
                except OSError as err:
                    if not tolerant:
                        raise
                    e["error"] = err.strerror
            if e["kind"] == "symlink":
                e["target"] = os.readlink(p).hex()
            if e["kind"] in ("chardev", "blockdev"):
                e["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
            e["xattrs"] = {x: os.getxattr(p, x, follow_symlinks=False).hex()
                           for x in sorted(os.listxattr(p, follow_symlinks=False))}
            out[rel.hex()] = e
    return out


def compsize(path):
    r = subprocess.run(["compsize", "-b", path], capture_output=True, text=True, check=True)
    return r.stdout
