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

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use btrfs_compress::usage::{TypeUsage, Usage};
use btrfs_compress::{
    compress_extent_in_folios, compression_saves_sector, decompress_extent, decompress_inline, CompressSpec,
    CompressType, Error, Options, ZlibBackend,
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
    fn seven(&self) -> bool {
        self.kernel.0 >= 7
    }

    fn options(&self) -> Options {
        Options {
            zlib_backend: ZlibBackend::kernel_of(self.kernel.0, self.kernel.1),
            zlib_folio_input: self.seven(),
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
        let input: std::borrow::Cow<'_, [u8]> = if self.rules.seven() && data.len() % ss != 0 {
            let mut v = data.to_vec();
            v.resize(data.len().next_multiple_of(ss), 0);
            v.into()
        } else {
            data.into()
        };
        let orders = (self.rules.seven() && self.opt.spec.alg == CompressType::Zlib)
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
            let input: std::borrow::Cow<'_, [u8]> = if self.rules.seven() {
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
                Ok(e) if self.rules.seven() && e.data.len() >= size => {}
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

/// The regular files under `paths`, each once (by device and inode), with their sizes; the
/// number of other entries skipped (special files, unreadable ones).
pub fn collect_files(paths: &[PathBuf]) -> io::Result<(Vec<(PathBuf, u64)>, u64)> {
    for p in paths {
        std::fs::symlink_metadata(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    }
    let mut seen = HashSet::new();
    let (mut files, mut skipped) = (Vec::new(), 0u64);
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            skipped += 1;
            continue;
        };
        if md.is_dir() {
            match std::fs::read_dir(&p) {
                Ok(rd) => {
                    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    entries.sort();
                    stack.extend(entries.into_iter().rev());
                }
                Err(_) => skipped += 1,
            }
        } else if md.is_file() {
            if seen.insert((md.dev(), md.ino())) {
                files.push((p, md.len()));
            }
        } else if !md.file_type().is_symlink() {
            skipped += 1;
        }
    }
    Ok((files, skipped))
}

/// Estimate one file under every option.
fn estimate_file(path: &Path, size: u64, opts: &[MountOption], rules: &Rules) -> io::Result<Vec<Tally>> {
    let f = File::open(path)?;
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

/// A unit of the sample: a small file (at most a sector), or one 512 KiB async chunk of a file.
#[derive(Clone, Copy, Debug)]
struct Unit {
    file: usize,
    start: usize,
    len: usize,
    /// Two cheap predictions of its compressed size (see [`Probe`]): the auxiliary variables of
    /// the ratio estimators.
    z: Prediction,
}

/// What [`Probe`] predicts of a unit's compressed size, in bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Prediction {
    /// From lzo on 4 KiB slices: btrfs's lzo compresses each sector on its own, so these slices
    /// are a sample of the very segments lzo will write. It also sorts the units into strata.
    lzo: f64,
    /// From zstd level 1 on the middle quarter of each 128 KiB piece (16 KiB): matches reach
    /// farther than a sector, as they do for zstd and zlib (32 KiB window) at every level.
    lz77: f64,
    /// The two ratios of each 128 KiB piece of the unit (lzo's, zstd's), which tell the pieces
    /// that may not compress (see [`nocompress_scan`]).
    pieces: [[f32; 2]; ASYNC_CHUNK / PIECE],
}

impl Prediction {
    /// The predicted compressed share of piece `p` for an option of codec `alg`.
    fn piece_ratio(&self, p: usize, alg: CompressType) -> f32 {
        self.pieces[p][usize::from(alg != CompressType::Lzo)]
    }

    /// The auxiliary variable for an option: the lzo prediction for lzo, the other for zlib and
    /// zstd (lzo's 4 KiB slices see none of the longer matches that make zstd and zlib
    /// differ from lzo from one chunk to the next).
    fn for_codec(&self, alg: CompressType) -> f64 {
        if alg == CompressType::Lzo {
            self.lzo
        } else {
            self.lz77
        }
    }
}

impl Unit {
    /// The kind of unit: small file, whole chunk, partial chunk (a file's tail).
    fn kind(&self, ss: usize) -> usize {
        match self.len {
            n if self.start == 0 && n <= ss => 0,
            ASYNC_CHUNK => 1,
            _ => 2,
        }
    }
}

/// Bytes of each slice the lzo probe compresses.
const PROBE: usize = 4096;
/// Slices the lzo probe compresses per unit, evenly spread: one per this many bytes...
pub const PROBE_SPACING: usize = 64 * 1024;
/// ...and at most this many.
pub const PROBE_SLICES: usize = 8;
/// Bytes of each piece the zstd probe compresses (its middle): a quarter of the piece, at least
/// a sector and at most this.
pub const PROBE_WINDOW: usize = 16 * 1024;
/// Quantiles of the lzo probe's ratio each kind of unit is stratified into.
pub const QUANTILES: usize = 8;
/// Units sampled at least per stratum (where it has them), so that its variance is estimated
/// from more than a pair.
pub const MIN_PER_STRATUM: usize = 6;
/// A sampled unit in this many decompresses what it keeps, to measure the speed.
pub const DECOMPRESS_EVERY: usize = 8;

/// The probe of a unit, with its buffers and a zstd context of its own (one per rayon task).
struct Probe {
    buf: Vec<u8>,
    out: Vec<u8>,
    cctx: zstd_safe::CCtx<'static>,
}

impl Probe {
    fn new() -> Self {
        let out = zstd_safe::compress_bound(PROBE_WINDOW).max(btrfs_lzo::lzo1x_worst_compress(PROBE));
        Probe { buf: vec![0; PROBE_WINDOW], out: vec![0; out], cctx: zstd_safe::CCtx::create() }
    }

    /// Predict the unit `[start, start + len)` of `f`: its length times the lzo ratio of 4 KiB
    /// slices spread over it (one per 64 KiB, at most eight: 6 % of a chunk, at lzo's speed),
    /// and the sum over its 128 KiB pieces of each piece's length times the zstd:1 ratio of the
    /// middle quarter of the piece (at most 16 KiB: 12.5 % of a chunk), a ratio at most 1 (a
    /// piece that does not compress is stored as is).
    fn predict(&mut self, f: &File, start: usize, len: usize) -> io::Result<Prediction> {
        let other = |e: btrfs_compress::Error| io::Error::other(e.to_string());
        let mut per_piece = [(0usize, 0usize); ASYNC_CHUNK / PIECE];
        let slices = (len / PROBE_SPACING).clamp(1, PROBE_SLICES);
        for at in (0..slices).map(|i| start + i * (len / slices)) {
            let n = PROBE.min(len).min(start + len - at);
            f.read_exact_at(&mut self.buf[..n], at as u64)?;
            let c = btrfs_lzo::reference_compress(&self.buf[..n], &mut self.out).map_err(other)?;
            let p = &mut per_piece[((at - start) / PIECE).min(per_piece.len() - 1)];
            *p = (p.0 + n, p.1 + c);
        }
        let (inb, outb) = per_piece.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
        let ratio = (outb as f64 / inb.max(1) as f64).min(1.05);
        let mut z = Prediction { lzo: len as f64 * ratio, ..Prediction::default() };
        for (i, piece) in (start..start + len).step_by(PIECE).enumerate() {
            let pl = PIECE.min(start + len - piece);
            let n = (pl / 4).clamp(PROBE.min(pl), PROBE_WINDOW);
            f.read_exact_at(&mut self.buf[..n], (piece + (pl - n) / 2) as u64)?;
            let c = self
                .cctx
                .compress(&mut self.out[..], &self.buf[..n], 1)
                .map_err(|code| io::Error::other(zstd_safe::get_error_name(code)))?;
            let r = (c as f64 / n as f64).min(1.0);
            z.lz77 += pl as f64 * r;
            let (pin, pout) = per_piece[i];
            let lzo = if pin > 0 { pout as f64 / pin as f64 } else { ratio };
            z.pieces[i] = [lzo as f32, r as f32];
        }
        Ok(z)
    }
}

/// One option's sampled estimate: compsize's counters expanded from the sample, and a 95 %
/// confidence interval for the disk bytes.
#[derive(Clone, Debug)]
pub struct Sampled {
    /// The expanded counters (files counted exactly).
    pub usage: Usage,
    /// The 95 % interval of the disk bytes.
    pub disk_ci95: (f64, f64),
    /// Codec time and bytes of the sample.
    pub tally: Tally,
}

/// Evaluate one unit under every option, `nocompress[k]` saying whether an earlier chunk of its
/// file set NOCOMPRESS under option `k` (see [`nocompress_scan`]). `measure_decompress`:
/// decompress what is kept, to measure the speed.
fn evaluate_unit(
    files: &[(PathBuf, u64)],
    u: Unit,
    opts: &[MountOption],
    rules: &Rules,
    nocompress: &[bool],
    measure_decompress: bool,
) -> io::Result<Vec<Tally>> {
    let (path, size) = &files[u.file];
    let size = *size as usize;
    let f = File::open(path)?;
    let to_io = |e: Error| io::Error::other(e.to_string());
    let mut passes: Vec<FilePass<'_>> = opts.iter().map(|&opt| FilePass::new(opt, rules, measure_decompress)).collect();
    for (p, &n) in passes.iter_mut().zip(nocompress) {
        p.nocompress = n;
    }
    let mut chunk = vec![0u8; u.len];
    f.read_exact_at(&mut chunk, u.start as u64)?;
    if u.kind(rules.sectorsize) == 0 {
        passes.par_iter_mut().try_for_each(|p| p.small_file(&chunk)).map_err(to_io)?;
    } else {
        let mut plain_range = vec![false; passes.len()];
        if opts.iter().any(|o| !o.force) {
            let range_start = u.start - u.start % MAX_EXTENT as usize;
            let mut head = vec![0u8; (size - range_start).min(PIECE)];
            f.read_exact_at(&mut head, range_start as u64)?;
            delalloc_range(&passes, &head, &mut plain_range).map_err(to_io)?;
        }
        process_chunk(&mut passes, &chunk, u.start, size, &plain_range).map_err(to_io)?;
    }
    Ok(passes.into_iter().map(|p| p.tally).collect())
}

/// Pieces whose probe ratio (of the option's kind) is at least this may fail to save a sector;
/// [`nocompress_scan`] compresses them, and takes the others as kept.
pub const MAY_FAIL: f32 = 0.6;

/// Under `compress=` (no force) a compression attempt that fails sets the inode's NOCOMPRESS
/// flag, and every later chunk of the file is written plain: a sampled chunk needs to know
/// whether an earlier one of its file failed. `earlier` are the file's units before the last
/// sampled one, in order. For each option, the start of the chunk whose failure sets the flag
/// (`None`: not before the end of `earlier`, or a force option). As the kernel does, the delalloc
/// range's heuristic can write a whole range plain and a piece's heuristic the rest of its chunk,
/// neither setting the flag; but only the pieces the probe says may fail ([`MAY_FAIL`]) are
/// read and compressed, the others are taken as passing the heuristic and kept. (A piece the
/// probe calls compressible that does not save a sector is missed; such a miss lets the file's
/// later chunks count as compressed.)
fn nocompress_scan(
    path: &Path,
    size: usize,
    earlier: &[Unit],
    opts: &[MountOption],
    rules: &Rules,
) -> io::Result<Vec<Option<usize>>> {
    let to_io = |e: Error| io::Error::other(e.to_string());
    let f = File::open(path)?;
    let mut passes: Vec<FilePass<'_>> = opts.iter().map(|&opt| FilePass::new(opt, rules, false)).collect();
    let mut flag: Vec<Option<usize>> = vec![None; opts.len()];
    let mut plain_range = vec![false; opts.len()];
    let mut piece = vec![0u8; PIECE];
    for u in earlier {
        let open = |k: usize, plain_range: &[bool], flag: &[Option<usize>]| {
            !opts[k].force && !plain_range[k] && flag[k].is_none()
        };
        if u.start as u64 % MAX_EXTENT == 0 && opts.iter().any(|o| !o.force) {
            let n = PIECE.min(u.len);
            f.read_exact_at(&mut piece[..n], u.start as u64)?;
            delalloc_range(&passes, &piece[..n], &mut plain_range).map_err(to_io)?;
        }
        // Options still attempting pieces of this chunk.
        let mut trying: Vec<bool> = (0..opts.len()).map(|k| open(k, &plain_range, &flag)).collect();
        for (i, at) in (u.start..u.start + u.len).step_by(PIECE).enumerate() {
            let may_fail: Vec<usize> =
                (0..opts.len()).filter(|&k| trying[k] && u.z.piece_ratio(i, opts[k].spec.alg) >= MAY_FAIL).collect();
            let Some(&first) = may_fail.first() else { continue };
            let n = PIECE.min(u.start + u.len - at);
            f.read_exact_at(&mut piece[..n], at as u64)?;
            if !passes[first].heuristic(&piece[..n], 0).map_err(to_io)? {
                // The rest of the chunk is written plain, for every option still trying.
                trying.iter_mut().for_each(|t| *t = false);
                continue;
            }
            for k in may_fail {
                if passes[k].piece(&piece[..n], at, size).map_err(to_io)?.is_none() {
                    flag[k] = Some(u.start);
                    trying[k] = false;
                }
            }
        }
        if opts.iter().zip(&flag).all(|(o, fl)| o.force || fl.is_some()) {
            break;
        }
    }
    Ok(flag)
}

/// [`nocompress_scan`] for every file with a sampled unit past its first chunk, when some option
/// is not forced: the file's units up to its last sampled one, scanned in parallel by file.
fn nocompress_flags(
    files: &[(PathBuf, u64)],
    strata: &[Vec<Unit>],
    jobs: &[(usize, usize)],
    opts: &[MountOption],
    rules: &Rules,
) -> HashMap<usize, io::Result<Vec<Option<usize>>>> {
    if opts.iter().all(|o| o.force) {
        return HashMap::new();
    }
    let mut last: HashMap<usize, usize> = HashMap::new();
    for &(h, i) in jobs {
        let u = strata[h][i];
        if u.start > 0 {
            let e = last.entry(u.file).or_insert(0);
            *e = (*e).max(u.start);
        }
    }
    let mut earlier: HashMap<usize, Vec<Unit>> = HashMap::new();
    for u in strata.iter().flatten() {
        if last.get(&u.file).is_some_and(|&l| u.start < l) {
            earlier.entry(u.file).or_default().push(*u);
        }
    }
    // Longest scans first, one file at a time from a shared queue.
    let mut earlier: Vec<(usize, Vec<Unit>)> = earlier.into_iter().collect();
    earlier.sort_by_key(|e| std::cmp::Reverse(e.1.len()));
    earlier
        .into_par_iter()
        .with_max_len(1)
        .map(|(file, mut units)| {
            units.sort_by_key(|u| u.start);
            let (path, size) = &files[file];
            (file, nocompress_scan(path, *size as usize, &units, opts, rules))
        })
        .collect()
}

/// splitmix64, for a reproducible sample.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Every unit of `files`, probed (files that cannot be read drop out here, counted; small files
/// are not opened until sampled), stratified by kind and, within a kind, into [`QUANTILES`] of
/// the lzo probe's ratio (small files: of their size): units of one stratum compress alike.
fn strata(files: &[(PathBuf, u64)], ss: usize) -> (Vec<Vec<Unit>>, HashSet<usize>) {
    let mut units: Vec<Unit> = Vec::new();
    for (i, (_, size)) in files.iter().enumerate() {
        let size = *size as usize;
        if size == 0 {
            continue;
        }
        let step = if size <= ss { size } else { ASYNC_CHUNK };
        for start in (0..size).step_by(step) {
            units.push(Unit { file: i, start, len: (size - start).min(step), z: Prediction::default() });
        }
    }
    let probed: Vec<Option<Unit>> = units
        .par_iter()
        .map_init(Probe::new, |probe, u| {
            if u.kind(ss) == 0 {
                // A small file is not opened here: probing it would cost about as much as
                // compressing it. Its prediction is its length, its stratum its size.
                let len = u.len as f64;
                return Some(Unit { z: Prediction { lzo: len, lz77: len, ..Prediction::default() }, ..*u });
            }
            let f = File::open(&files[u.file].0).ok()?;
            probe.predict(&f, u.start, u.len).ok().map(|z| Unit { z, ..*u })
        })
        .collect();
    let mut unreadable_files: HashSet<usize> = HashSet::new();
    let mut strata: Vec<Vec<Unit>> = vec![Vec::new(); 3 * QUANTILES];
    let mut by_kind: [Vec<Unit>; 3] = Default::default();
    for (u, p) in units.iter().zip(probed) {
        match p {
            Some(p) => by_kind[p.kind(ss)].push(p),
            None => {
                unreadable_files.insert(u.file);
            }
        }
    }
    for (k, mut v) in by_kind.into_iter().enumerate() {
        if k == 0 {
            v.sort_by_key(|u| u.len);
        } else {
            v.sort_by(|a, b| (a.z.lzo / a.len as f64).total_cmp(&(b.z.lzo / b.len as f64)));
        }
        let q = v.len().div_ceil(QUANTILES).max(1);
        for (i, chunk) in v.chunks(q).enumerate() {
            strata[k * QUANTILES + i].extend_from_slice(chunk);
        }
    }
    (strata, unreadable_files)
}

/// The weights of a stratum's sampled units in the regression estimator of any counter `y`,
/// `N (ȳ + b (X̄ - x̄))` with `b` the least-squares slope of `y` on the prediction `x`: as `b` is
/// linear in `y`, the estimate is `Σ wᵢ yᵢ` with `wᵢ = N/m + N (X̄ - x̄)(xᵢ - x̄) / Σ (xⱼ - x̄)²`,
/// the same weights for every counter (so the types add up to the TOTAL). Also a residual
/// variance of `ys`, for the interval. Fewer than three units, or predictions
/// all alike: the plain expansion `N/m` and the variance of `ys`.
fn regression_weights(n_pop: usize, xs: &[f64], x_pop_mean: f64, ys: &[f64]) -> (Vec<f64>, f64) {
    let (n, m) = (n_pop as f64, xs.len() as f64);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / m;
    let (xbar, ybar) = (mean(xs), mean(ys));
    let sxx: f64 = xs.iter().map(|x| (x - xbar).powi(2)).sum();
    if xs.len() < 3 || sxx <= 0.0 {
        let s2 = if xs.len() > 1 { ys.iter().map(|y| (y - ybar).powi(2)).sum::<f64>() / (m - 1.0) } else { 0.0 };
        return (vec![n / m; xs.len()], s2);
    }
    let b = xs.iter().zip(ys).map(|(x, y)| (x - xbar) * y).sum::<f64>() / sxx;
    let w: Vec<f64> = xs.iter().map(|x| n / m + n * (x_pop_mean - xbar) * (x - xbar) / sxx).collect();
    // The interval takes the larger of the residual variances about the fitted line and about
    // the line through the origin (the ratio estimator's): the first alone is too optimistic in
    // small strata (on a generated tree of 400 files, 24 of 30 intervals at 95 % covered the
    // exact answer; with this, 28).
    let s2_line = xs.iter().zip(ys).map(|(x, y)| (y - ybar - b * (x - xbar)).powi(2)).sum::<f64>() / (m - 2.0);
    let r = ys.iter().sum::<f64>() / xs.iter().sum::<f64>();
    let s2_ratio = xs.iter().zip(ys).map(|(x, y)| (y - r * x).powi(2)).sum::<f64>() / (m - 1.0);
    let s2 = s2_line.max(s2_ratio);
    (w, s2)
}

/// compsize's counters as weighted sums of the sampled units' counters.
#[derive(Clone, Debug, Default)]
struct Expanded {
    regular_extents: f64,
    refs: f64,
    inline: f64,
    disk: [f64; btrfs_compress::usage::TYPES],
    uncompressed: [f64; btrfs_compress::usage::TYPES],
    referenced: [f64; btrfs_compress::usage::TYPES],
}

impl Expanded {
    fn add(&mut self, u: &Usage, w: f64) {
        self.regular_extents += w * u.regular_extents as f64;
        self.refs += w * u.refs as f64;
        self.inline += w * u.inline as f64;
        for t in 0..btrfs_compress::usage::TYPES {
            self.disk[t] += w * u.disk[t] as f64;
            self.uncompressed[t] += w * u.uncompressed[t] as f64;
            self.referenced[t] += w * u.referenced[t] as f64;
        }
    }

    /// Add the sums, rounded (a counter cannot go below zero), to `u`.
    fn add_to(&self, u: &mut Usage) {
        let r = |x: f64| x.max(0.0).round() as u64;
        u.regular_extents += r(self.regular_extents);
        u.refs += r(self.refs);
        u.inline += r(self.inline);
        for t in 0..btrfs_compress::usage::TYPES {
            u.disk[t] += r(self.disk[t]);
            u.uncompressed[t] += r(self.uncompressed[t]);
            u.referenced[t] += r(self.referenced[t]);
        }
    }
}

/// Stratified random sampling of units (`fraction` of each stratum, at least
/// [`MIN_PER_STRATUM`] where the stratum has them; strata are the three kinds of unit times
/// [`QUANTILES`] of the lzo probe's ratio): per option the regression estimator of every counter
/// on that option's probe (zstd:1 on the middle of each piece for zstd and zlib, lzo slices for
/// lzo), and a 95 % interval of the disk bytes (normal approximation with the finite population
/// correction).
pub fn estimate_sampled(
    files: &[(PathBuf, u64)],
    opts: &[MountOption],
    rules: &Rules,
    fraction: f64,
    seed: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<(Vec<Sampled>, u64)> {
    let ss = rules.sectorsize;
    let (mut strata, unreadable_files) = strata(files, ss);
    let mut seed = seed;
    let mut out: Vec<Sampled> = opts
        .iter()
        .map(|_| Sampled {
            usage: Usage { files: files.len() as u64, ..Usage::default() },
            disk_ci95: (0.0, 0.0),
            tally: Tally::default(),
        })
        .collect();
    let mut var = vec![0.0f64; opts.len()];
    let mut acc = vec![Expanded::default(); opts.len()];
    let mut unreadable = unreadable_files.len() as u64;
    // Choose every stratum's sample first (a partial Fisher-Yates shuffle picks n units without
    // replacement), then evaluate all of them as one parallel job, largest first, so that no
    // stratum waits for another.
    let mut chosen = Vec::with_capacity(strata.len());
    for units in &mut strata {
        let n_pop = units.len();
        let n = ((n_pop as f64 * fraction).ceil() as usize).clamp(n_pop.min(MIN_PER_STRATUM), n_pop);
        for i in 0..n {
            let j = i + (next(&mut seed) % (n_pop - i) as u64) as usize;
            units.swap(i, j);
        }
        chosen.push(n);
    }
    let mut jobs: Vec<(usize, usize)> =
        strata.iter().zip(&chosen).enumerate().flat_map(|(h, (_, &n))| (0..n).map(move |i| (h, i))).collect();
    jobs.sort_by(|a, b| strata[b.0][b.1].len.cmp(&strata[a.0][a.1].len));
    let flags = nocompress_flags(files, &strata, &jobs, opts, rules);
    type Evaluated = ((usize, usize), io::Result<Vec<Tally>>);
    let evaluated: Vec<Evaluated> = jobs
        .par_iter()
        .enumerate()
        .with_max_len(1)
        .map(|(job, &(h, i))| {
            let u = strata[h][i];
            let r = match flags.get(&u.file) {
                Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
                state => {
                    let set: Vec<bool> = match state {
                        Some(Ok(flag)) => flag.iter().map(|f| f.is_some_and(|at| at < u.start)).collect(),
                        _ => vec![false; opts.len()],
                    };
                    evaluate_unit(files, u, opts, rules, &set, job % DECOMPRESS_EVERY == 0)
                }
            };
            progress(u.len as u64);
            ((h, i), r)
        })
        .collect();
    let mut results: Vec<Vec<Option<io::Result<Vec<Tally>>>>> =
        chosen.iter().map(|&n| (0..n).map(|_| None).collect()).collect();
    for ((h, i), r) in evaluated {
        results[h][i] = Some(r);
    }
    for (units, results) in strata.iter().zip(results) {
        let (n_pop, n) = (units.len(), results.len());
        if n_pop == 0 {
            continue;
        }
        let results = results.into_iter().map(|r| r.unwrap_or_else(|| Err(io::Error::other("not evaluated"))));
        let ok: Vec<(Unit, Vec<Tally>)> = units[..n]
            .iter()
            .zip(results)
            .filter_map(|(u, r)| r.map_err(|_| unreadable += 1).ok().map(|t| (*u, t)))
            .collect();
        let m = ok.len();
        if m == 0 {
            continue;
        }
        for (k, o) in out.iter_mut().enumerate() {
            let x = |u: &Unit| u.z.for_codec(opts[k].spec.alg);
            let xs: Vec<f64> = ok.iter().map(|(u, _)| x(u)).collect();
            let ys: Vec<f64> = ok.iter().map(|(_, t)| t[k].usage.disk_bytes() as f64).collect();
            let x_pop_mean = units.iter().map(x).sum::<f64>() / n_pop as f64;
            let (w, s2) = regression_weights(n_pop, &xs, x_pop_mean, &ys);
            var[k] += (n_pop as f64).powi(2) * (1.0 - m as f64 / n_pop as f64) * s2 / m as f64;
            for ((_, t), w) in ok.iter().zip(&w) {
                acc[k].add(&t[k].usage, *w);
                o.tally.add(&Tally { usage: Usage::default(), ..t[k].clone() });
            }
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        a.add_to(&mut o.usage);
    }
    for (o, v) in out.iter_mut().zip(&var) {
        let d = o.usage.disk_bytes() as f64;
        let h = 1.96 * v.sqrt();
        o.disk_ci95 = (d - h, d + h);
    }
    Ok((out, unreadable))
}
