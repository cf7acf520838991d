//! What each compression mount option would store for a set of
//! files, as the kernel would write them (copied once, then synced), with no btrfs filesystem.
//!
//! The write path modeled (fs/btrfs/inode.c `compress_file_range()` and its callers):
//! - a file of at most one sector is a candidate for an inline extent: compressed inline when the
//!   codec succeeds and its bytes are at most `max_inline` (lzo may then store more than the
//!   data), else plain inline when the file is at most `max_inline`, else one plain sector;
//! - otherwise writeback hands the file to compression in 512 KiB async chunks, each cut into
//!   128 KiB pieces from its start; a piece is kept compressed when it saves at least a sector
//!   (and the codec did not bail out), and a piece that is not kept ends compression for the rest
//!   of its chunk, which is written plain;
//! - under `compress=` (no force) the heuristic decides first for the delalloc range and then for
//!   each piece, and a compression attempt that fails sets the inode's NOCOMPRESS flag: the
//!   file's later chunks are written plain;
//! - disk usage is counted as compsize counts it: compressed extents by their sector-rounded
//!   compressed size, plain ranges by their sector-rounded size, inline extents by their data.
//!
//! Kernel eras: from 7.0 the compressor is handed the sector-rounded tail of a file (zeros past
//! the end), and zlib is fed a page-cache folio at a time (64 KiB folios where they fit before
//! the end of the file); zlib's bytes follow the era of `flush_pending()` (6.3).
//!
//! Where the model departs from a real kernel: async chunks run in parallel workers, so a
//! NOCOMPRESS flag set by one chunk may come after a later chunk was already compressed (the model
//! is sequential); writeback may split a large file's delalloc range elsewhere than 128 MiB; plain
//! ranges are counted as one extent per chunk (the allocator may split them).

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use btrfs_compress::kernel::KernelProfile;
use btrfs_compress::usage::{TypeUsage, Usage};
use btrfs_compress::{
    compress_extent_in_folios, compression_saves_sector, decompress_extent, decompress_inline, CompressSpec,
    CompressType, Error, Options,
};

const ASYNC_CHUNK: usize = 512 * 1024;
const PIECE: usize = btrfs_compress::BTRFS_MAX_UNCOMPRESSED;
/// `BTRFS_MAX_EXTENT_SIZE`: the largest plain extent (and delalloc range) writeback makes.
const MAX_EXTENT: u64 = 128 << 20;

/// A mount option: `compress=ALG[:LEVEL]` or `compress-force=ALG[:LEVEL]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountOption {
    /// Codec and level.
    pub spec: CompressSpec,
    /// compress-force.
    pub force: bool,
}

impl std::fmt::Display for MountOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", if self.force { "compress-force" } else { "compress" }, self.spec)
    }
}

/// The kernel's rules the estimate follows.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Kernel major.minor.
    pub kernel: (u32, u32),
    /// max_inline.
    pub max_inline: usize,
    /// Sector size.
    pub sectorsize: usize,
}

impl Rules {
    /// What the kernel of these rules does ([`KernelProfile`]).
    pub fn profile(&self) -> KernelProfile {
        KernelProfile::of(self.kernel.0, self.kernel.1)
    }

    fn options(&self) -> Options {
        let k = self.profile();
        Options {
            zlib_backend: k.zlib_backend(),
            input_chunk: k.input_chunk(),
            sectorsize: self.sectorsize,
            ..Options::default()
        }
    }
}

/// What one option did over some files: compsize's counters and the codec time.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Counters.
    pub usage: Usage,
    /// Seconds spent compressing, and the bytes handed to the codec.
    pub compress: (f64, u64),
    /// Seconds spent decompressing the kept extents, and the bytes they hold.
    pub decompress: (f64, u64),
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.usage.add(&o.usage);
        self.compress.0 += o.compress.0;
        self.compress.1 += o.compress.1;
        self.decompress.0 += o.decompress.0;
        self.decompress.1 += o.decompress.1;
    }
}

/// One option's pass over one file.
struct FilePass<'a> {
    opt: MountOption,
    rules: &'a Rules,
    opts: Options,
    tally: Tally,
    /// The inode's NOCOMPRESS flag.
    nocompress: bool,
    /// Decompress the kept extents to measure the speed (a sample measures it on a share of its
    /// units).
    measure_decompress: bool,
}

fn round(n: usize, ss: usize) -> u64 {
    n.next_multiple_of(ss) as u64
}

impl<'a> FilePass<'a> {
    fn new(opt: MountOption, rules: &'a Rules, measure_decompress: bool) -> Self {
        FilePass { opt, rules, opts: rules.options(), tally: Tally::default(), nocompress: false, measure_decompress }
    }

    /// `btrfs_compress_heuristic()` over `[at, at + 128 KiB)` of `data` (a chunk, or the whole
    /// small file: the kernel's range ends there), read from the bytes as 4 KiB pages hold them.
    fn heuristic(&self, data: &[u8], at: usize) -> btrfs_compress::Result<bool> {
        Ok(btrfs_compress::heuristic::verdict_of_bytes(&data[at..(at + PIECE).min(data.len())]).compress())
    }

    /// Compress one piece at `off` of the file; the kept extent, if the kernel keeps it.
    fn piece(&mut self, data: &[u8], off: usize, file_size: usize) -> btrfs_compress::Result<Option<Vec<u8>>> {
        let ss = self.rules.sectorsize;
        // 7.x hands the compressor the sector-rounded tail, zeros past the end of file.
        let input: std::borrow::Cow<'_, [u8]> =
            if self.rules.profile().compresses_whole_last_sector() && data.len() % ss != 0 {
                let mut v = data.to_vec();
                v.resize(data.len().next_multiple_of(ss), 0);
                v.into()
            } else {
                data.into()
            };
        let orders = (self.rules.profile().bio_era() && self.opt.spec.alg == CompressType::Zlib)
            .then(|| btrfs_compress::page_cache_folios_7x(off, data.len(), file_size));
        let t0 = Instant::now();
        let r = compress_extent_in_folios(&input, self.opt.spec, &self.opts, orders.as_deref());
        self.tally.compress.0 += t0.elapsed().as_secs_f64();
        self.tally.compress.1 += data.len() as u64;
        match r {
            Ok(e) if compression_saves_sector(e.total_in, e.data.len(), ss) => {
                if self.measure_decompress {
                    let t0 = Instant::now();
                    let back = decompress_extent(self.opt.spec.alg, &e.data, input.len(), 0, data.len(), &self.opts)?;
                    self.tally.decompress.0 += t0.elapsed().as_secs_f64();
                    self.tally.decompress.1 += back.len() as u64;
                }
                Ok(Some(e.data.to_vec()))
            }
            Ok(_) | Err(Error::Incompressible(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A file of at most one sector: inline, compressed or not, or one plain sector.
    fn small_file(&mut self, file: &[u8]) -> btrfs_compress::Result<()> {
        let ss = self.rules.sectorsize;
        let size = file.len();
        if self.opt.force || self.heuristic(file, 0)? {
            let input: std::borrow::Cow<'_, [u8]> = if self.rules.profile().compresses_whole_last_sector() {
                let mut v = file.to_vec();
                v.resize(ss, 0);
                v.into()
            } else {
                file.into()
            };
            let t0 = Instant::now();
            let r = btrfs_compress::compress_inline(&input, self.opt.spec, self.rules.max_inline, &self.opts);
            self.tally.compress.0 += t0.elapsed().as_secs_f64();
            self.tally.compress.1 += size as u64;
            match r {
                // 7.x compresses the whole sector and keeps a compressed inline extent only when
                // it is smaller than the file (the 7.2 kernel in qemu stores a 300-byte file as
                // 300 plain bytes where lzo makes 334; 6.x keeps lzo's 302 bytes for it).
                Ok(e) if self.rules.profile().inline_only_if_smaller() && e.data.len() >= size => {}
                Ok(e) => {
                    if self.measure_decompress {
                        let t0 = Instant::now();
                        let back = decompress_inline(self.opt.spec.alg, &e.data, size, &self.opts)?;
                        self.tally.decompress.0 += t0.elapsed().as_secs_f64();
                        self.tally.decompress.1 += back.len() as u64;
                    }
                    self.tally.usage.inline_extent(self.opt.spec.alg, e.data.len() as u64, size as u64);
                    return Ok(());
                }
                Err(Error::Incompressible(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if size <= self.rules.max_inline {
            self.tally.usage.inline_extent(CompressType::None, size as u64, size as u64);
        } else {
            self.tally.usage.regular(CompressType::None, round(size, ss), round(size, ss));
        }
        Ok(())
    }

    /// One 512 KiB async chunk `[start, start + chunk.len())` of a file of `file_size` bytes.
    fn chunk(&mut self, chunk: &[u8], start: usize, file_size: usize) -> btrfs_compress::Result<()> {
        let ss = self.rules.sectorsize;
        let end = start + chunk.len();
        let mut at = start;
        while at < end && !self.nocompress {
            if !self.opt.force && !self.heuristic(chunk, at - start)? {
                break;
            }
            let n = (end - at).min(PIECE);
            match self.piece(&chunk[at - start..at - start + n], at, file_size)? {
                Some(ext) => {
                    self.tally.usage.regular(self.opt.spec.alg, round(ext.len(), ss), round(n, ss));
                    at += n;
                }
                None => {
                    if !self.opt.force {
                        self.nocompress = true; // inode_need_compress() says no from now on
                    }
                    break;
                }
            }
        }
        if at < end {
            self.tally.usage.regular(CompressType::None, round(end - at, ss), round(end - at, ss));
        }
        Ok(())
    }
}

/// What [`collect_files`] found.
#[derive(Clone, Debug, Default)]
pub struct Collected {
    /// The regular files, each once (by device and inode), with their sizes.
    pub files: Vec<(PathBuf, u64)>,
    /// Special files (devices, fifos, sockets) passed over.
    pub special: u64,
    /// Entries that could not be read (a directory that cannot be listed, an entry that cannot
    /// be looked at): `path: error`, at most [`Collected::SHOWN`]; `unreadable_count` has them all.
    pub unreadable: Vec<String>,
    /// How many entries could not be read.
    pub unreadable_count: u64,
}

impl Collected {
    /// Unreadable entries named (the rest are counted).
    pub const SHOWN: usize = 100;

    fn unreadable(&mut self, p: &Path, e: &io::Error) {
        self.unreadable_count += 1;
        if self.unreadable.len() < Self::SHOWN {
            let s = p.as_os_str().as_bytes();
            // A path deeper than a line is shown by its end.
            let tail = &s[s.len().saturating_sub(300)..];
            let dots = if tail.len() < s.len() { "…" } else { "" };
            self.unreadable.push(format!("{dots}{}: {e}", tail.escape_ascii()));
        }
    }
}

/// The regular files under `paths`, each once (by device and inode), with their sizes; special
/// files counted, and what could not be read named. Paths of any length are followed (see
/// `hostfs`): a tree deeper than PATH_MAX is read whole. Symlinks are not followed.
pub fn collect_files(paths: &[PathBuf]) -> io::Result<Collected> {
    for p in paths {
        hostfs::lstat(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    }
    let mut seen = HashSet::new();
    let mut c = Collected::default();
    for top in paths {
        let mut found = |x: hostfs::Found<'_>| match x {
            hostfs::Found::Unreadable(p, e) => c.unreadable(p, &e),
            hostfs::Found::Entry(p, md) => match md.kind {
                hostfs::Kind::File => {
                    if seen.insert((md.dev, md.ino)) {
                        c.files.push((p.to_path_buf(), md.len));
                    }
                }
                hostfs::Kind::Other => c.special += 1,
                hostfs::Kind::Dir | hostfs::Kind::Symlink => {}
            },
        };
        match hostfs::lstat(top) {
            Ok(md) if md.kind == hostfs::Kind::Dir => hostfs::walk(top, found),
            Ok(md) => found(hostfs::Found::Entry(top, md)),
            Err(e) => found(hostfs::Found::Unreadable(top, e)),
        }
    }
    Ok(c)
}

/// Estimate one file under every option.
fn estimate_file(path: &Path, size: u64, opts: &[MountOption], rules: &Rules) -> io::Result<Vec<Tally>> {
    let f = hostfs::open(path)?;
    let size = usize::try_from(size).map_err(|_| io::Error::other("file too large"))?;
    let mut passes: Vec<FilePass<'_>> = opts.iter().map(|&opt| FilePass::new(opt, rules, true)).collect();
    for p in &mut passes {
        p.tally.usage.files = 1;
    }
    let to_io = |e: Error| io::Error::other(e.to_string());
    if size == 0 {
        return Ok(passes.into_iter().map(|p| p.tally).collect());
    }
    if size <= rules.sectorsize {
        let mut buf = vec![0u8; size];
        f.read_exact_at(&mut buf, 0)?;
        passes.par_iter_mut().try_for_each(|p| p.small_file(&buf)).map_err(to_io)?;
        return Ok(passes.into_iter().map(|p| p.tally).collect());
    }
    let mut plain_range = vec![false; passes.len()];
    for start in (0..size).step_by(ASYNC_CHUNK) {
        let len = (size - start).min(ASYNC_CHUNK);
        let mut chunk = vec![0u8; len];
        f.read_exact_at(&mut chunk, start as u64)?;
        if start as u64 % MAX_EXTENT == 0 {
            delalloc_range(&passes, &chunk, &mut plain_range).map_err(to_io)?;
        }
        process_chunk(&mut passes, &chunk, start, size, &plain_range).map_err(to_io)?;
    }
    Ok(passes.into_iter().map(|p| p.tally).collect())
}

/// compress= runs the heuristic over each delalloc range (at most 128 MiB) first, on its first
/// 128 KiB (`head`): a "no" writes the whole range plain.
fn delalloc_range(passes: &[FilePass<'_>], head: &[u8], plain_range: &mut [bool]) -> btrfs_compress::Result<()> {
    for (plain, p) in plain_range.iter_mut().zip(passes) {
        *plain = !p.opt.force && !p.heuristic(head, 0)?;
    }
    Ok(())
}

/// One async chunk under every option.
fn process_chunk(
    passes: &mut [FilePass<'_>],
    chunk: &[u8],
    start: usize,
    size: usize,
    plain_range: &[bool],
) -> btrfs_compress::Result<()> {
    passes.par_iter_mut().zip(plain_range.par_iter()).try_for_each(|(p, &plain)| {
        if plain {
            let ss = p.rules.sectorsize;
            p.tally.usage.plain(round(chunk.len(), ss), start as u64 % MAX_EXTENT == 0);
            return Ok(());
        }
        p.chunk(chunk, start, size)
    })
}

/// A mount option's algorithm and level as kernel `kernel` takes it: zstd came in 4.14, zlib
/// levels in 4.14 and zstd levels in 5.1 (`btrfs_compress_str2level()` parses levels for zlib only
/// before 5.1: `compress=zstd:9` mounts and compresses at level 3). The second value says what
/// was changed; an algorithm the kernel lacks is an error.
pub fn spec_for_kernel(
    spec: btrfs_compress::CompressSpec,
    kernel: (u32, u32),
) -> Result<(btrfs_compress::CompressSpec, Option<String>), String> {
    use btrfs_compress::CompressType;
    let (k, v) = (kernel, format!("{}.{}", kernel.0, kernel.1));
    match spec.alg {
        CompressType::Zstd if k < (4, 14) => Err(format!("kernel {v} has no zstd (it came in 4.14)")),
        CompressType::Zstd | CompressType::Zlib
            if spec.level != 3 && k < if spec.alg == CompressType::Zstd { (5, 1) } else { (4, 14) } =>
        {
            let note = format!(
                "kernel {v} takes no {} level: {}:{} compresses at level 3",
                spec.alg.name(),
                spec.alg.name(),
                spec.level
            );
            Ok((btrfs_compress::CompressSpec { level: 3, clamped_from: None, ..spec }, Some(note)))
        }
        _ => Ok((spec, None)),
    }
}

/// The kernel `MAJOR.MINOR` of `--kernel`, or of the running kernel (6.18 when unknown).
pub fn kernel_version(arg: Option<&str>) -> Result<(u32, u32), String> {
    let text = match arg {
        Some(a) => a.to_string(),
        None => std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_else(|_| "6.18".into()),
    };
    let mut it = text.trim().split(|c: char| !c.is_ascii_digit()).map(str::parse::<u32>);
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) if (4..=9).contains(&a) => Ok((a, b)),
        _ => Err(format!("--kernel {text:?} is not MAJOR.MINOR (e.g. 6.12)")),
    }
}

/// One option's result (the JSON keys are part of the interface).
#[derive(Clone, Debug, Serialize)]
pub struct OptionResult {
    /// The mount option.
    pub option: String,
    /// Regular files.
    pub files: u64,
    /// Disk bytes.
    pub disk_bytes: u64,
    /// Uncompressed bytes.
    pub uncompressed_bytes: u64,
    /// Referenced bytes.
    pub referenced_bytes: u64,
    /// Per type, TOTAL first.
    pub types: Vec<TypeUsage>,
    /// Regular extents.
    pub extents: u64,
    /// Inline extents.
    pub inline_extents: u64,
    /// Measured compression MB/s per core (codec calls on this data).
    pub compress_mb_s: f64,
    /// Measured decompression MB/s per core (of the kept extents).
    pub decompress_mb_s: f64,
    /// Seconds of codec time (both directions, all cores).
    pub seconds: f64,
    /// With --sample: the 95 % interval of disk_bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_bytes_ci95: Option<[f64; 2]>,
    /// compsize's report for this option (not in the JSON).
    #[serde(skip)]
    pub report: String,
}

/// The report of one option from its tally.
pub fn result_of(opt: MountOption, t: &Tally) -> OptionResult {
    let rate = |(secs, bytes): (f64, u64)| if secs > 0.0 { bytes as f64 / secs / 1e6 } else { f64::NAN };
    OptionResult {
        option: opt.to_string(),
        files: t.usage.files,
        disk_bytes: t.usage.disk_bytes(),
        uncompressed_bytes: t.usage.uncompressed_bytes(),
        referenced_bytes: t.usage.referenced_bytes(),
        types: t.usage.types(),
        extents: t.usage.regular_extents,
        inline_extents: t.usage.inline,
        compress_mb_s: rate(t.compress),
        decompress_mb_s: rate(t.decompress),
        seconds: t.compress.0 + t.decompress.0,
        disk_bytes_ci95: None,
        report: t.usage.compsize_report(false),
    }
}

/// Estimate `files` under `opts`: one tally per option.
pub fn estimate(
    files: &[(PathBuf, u64)],
    opts: &[MountOption],
    rules: &Rules,
    progress: &(dyn Fn(u64) + Sync),
) -> (Vec<Tally>, u64) {
    let zero = || (vec![Tally::default(); opts.len()], 0u64);
    // Largest files first, one at a time from a shared queue: the last tasks are small, so both
    // cores stay busy to the end (counters are sums: the order does not change them).
    let mut order: Vec<&(PathBuf, u64)> = files.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.1));
    order
        .par_iter()
        .with_max_len(1)
        .fold(zero, |(mut acc, mut unreadable), (path, size)| {
            match estimate_file(path, *size, opts, rules) {
                Ok(t) => acc.iter_mut().zip(&t).for_each(|(a, b)| a.add(b)),
                Err(_) => unreadable += 1,
            }
            progress(*size);
            (acc, unreadable)
        })
        .reduce(zero, |(mut a, ua), (b, ub)| {
            a.iter_mut().zip(&b).for_each(|(x, y)| x.add(y));
            (a, ua + ub)
        })
}

mod hostfs;
mod sample;
pub use sample::{
    estimate_sampled, Sampled, DECOMPRESS_EVERY, MAY_FAIL, MIN_PER_STRATUM, PROBE_SLICES, PROBE_SPACING, PROBE_WINDOW,
    PROXY_KEPT, QUANTILES,
};
