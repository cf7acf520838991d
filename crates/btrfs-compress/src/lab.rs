//! The mapping-strategy lab behind `btrfs-compress bench`.
//!
//! For each codec and level, mapping strategy, memory backend, page size and folio order it runs
//! the kernel's page loops (compress and decompress) over a sample of the corpus and reports:
//! measured throughput, the ratio to one call of the same library on a contiguous buffer
//! (measured in the same run, alternating, median of the repetitions), the compression ratio,
//! and per 128 KiB extent the mapping work (maps, unmaps, LIFO-forced re-maps, pages mapped by
//! range calls, bytes bounce-copied, system calls). Counts are machine-independent; times on the
//! emulated highmem backend are this machine's `mmap` costs, not a kernel's, so each row also
//! carries a *modeled* mapping cost: counts times a per-operation cost the user chooses.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::corpus::{self, Piece};
use crate::{
    compress_buffer, parse_compress_option, shared_mem, with_ctx, Backend, Codecs, CompressArgs, CompressSpec,
    CompressType, CompressedBio, DestRange, Error, Extent, MapCounters, Options, Strategy,
};
use highmem::{FolioVec, MapCtx, PhysMem};

/// Options of `btrfs-compress bench`.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// A smaller matrix and sample (a few seconds).
    #[arg(long)]
    pub quick: bool,
    /// Every page size and folio order, bigger samples (several minutes).
    #[arg(long, conflicts_with = "quick")]
    pub full: bool,
    /// Benchmark the files under DIR instead of the built-in corpus.
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// Print one JSON object per row on standard output (the table goes to standard error).
    #[arg(long)]
    pub json: bool,
    /// Write the Markdown summary, rows.json and SVG plots here.
    #[arg(long, default_value = "bench-report", value_name = "DIR")]
    pub report: PathBuf,
    /// Do not write a report directory.
    #[arg(long)]
    pub no_report: bool,
    /// Modeled cost of one kernel kmap_local map+unmap pair on 32-bit highmem, in ns (a PTE write
    /// plus a local TLB invalidation: tens to a few hundred ns).
    #[arg(long, default_value_t = 100.0, value_name = "NS")]
    pub model_ns: f64,
    /// Only these codecs (comma-separated, e.g. zstd:3,lzo).
    #[arg(long, value_name = "LIST")]
    pub codecs: Option<String>,
    /// Highest thread count of the scaling runs (default: the CPU count, at least 2).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Which loop a row runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabStrategy {
    /// A mapping strategy with the merged kernel loops.
    Map(Strategy),
    /// zstd's 2022 v1-v4 loop (output kmapped too) with kmap_local.
    ZstdLifoRemap,
    /// zstd/zlib decompression straight into the mapped destination (not a kernel loop).
    InPlace(Strategy),
    /// lzo compression with the lzokay-native encoder instead of the kernel's LZO1X-1.
    Lzokay(Strategy),
}

impl LabStrategy {
    /// Name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            LabStrategy::Map(s) => s.name(),
            LabStrategy::ZstdLifoRemap => "zstd-lifo-remap",
            LabStrategy::InPlace(Strategy::Direct) => "direct+inplace",
            LabStrategy::InPlace(Strategy::KmapLocal) => "kmap-local+inplace",
            LabStrategy::InPlace(Strategy::Range) => "range+inplace",
            LabStrategy::InPlace(Strategy::VmapFolio) => "vmap-folio+inplace",
            LabStrategy::InPlace(Strategy::GlobalKmap) => "kmap-pool+inplace",
            LabStrategy::InPlace(Strategy::Bounce) => "bounce+inplace",
            LabStrategy::InPlace(_) => "other+inplace",
            LabStrategy::Lzokay(Strategy::KmapLocal) => "kmap-local+lzokay",
            LabStrategy::Lzokay(_) => "direct+lzokay",
        }
    }

    fn options(self, backend: Backend, page_size: usize, order: u32) -> Options {
        let (strategy, lifo, in_place) = match self {
            LabStrategy::Map(s) => (s, false, false),
            LabStrategy::ZstdLifoRemap => (Strategy::KmapLocal, true, false),
            LabStrategy::InPlace(s) => (s, false, true),
            LabStrategy::Lzokay(s) => (s, false, false),
        };
        let lzo_backend =
            if matches!(self, LabStrategy::Lzokay(_)) { crate::LzoBackend::Lzokay } else { crate::LzoBackend::Kernel };
        Options {
            strategy,
            backend,
            page_size,
            folio_order: order,
            out_order: order,
            zstd_lifo_remap: lifo,
            decompress_in_place: in_place,
            lzo_backend,
        }
    }
}

/// Compress or decompress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `compress_folios`.
    Compress,
    /// `decompress_bio`.
    Decompress,
}

/// One row of the matrix to run.
#[derive(Clone, Copy, Debug)]
pub struct RowSpec {
    /// Codec and level.
    pub spec: CompressSpec,
    /// Loop and mapping strategy.
    pub strategy: LabStrategy,
    /// Memory backend.
    pub backend: Backend,
    /// Page size.
    pub page_size: usize,
    /// Folio order of page cache and compressed folios.
    pub order: u32,
    /// Direction.
    pub op: Op,
}

/// One measured row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Always "strategy" (the scaling rows say "scaling").
    pub kind: &'static str,
    /// zlib, lzo or zstd.
    pub codec: String,
    /// Level (0 for lzo).
    pub level: i32,
    /// Strategy name.
    pub strategy: String,
    /// heap or highmem.
    pub backend: String,
    /// Page size in bytes.
    pub page_size: usize,
    /// Folio order.
    pub folio_order: u32,
    /// compress or decompress.
    pub op: Op,
    /// Extents in the sample (decompress: the compressible ones).
    pub extents: usize,
    /// Measured throughput of the page loop, MB/s of uncompressed data (median).
    pub mb_s: f64,
    /// Measured throughput of the one-call library baseline, same data, same run.
    pub raw_mb_s: f64,
    /// Median of per-repetition ratios page loop / library call.
    pub ratio_vs_raw: f64,
    /// Uncompressed bytes / stored bytes (incompressible extents stored plain).
    pub compression_ratio: f64,
    /// Extents the kernel rules stored uncompressed.
    pub incompressible: usize,
    /// Mapping calls per extent (including free direct-map lookups).
    pub map_calls_per_extent: f64,
    /// Mappings made per extent.
    pub maps_per_extent: f64,
    /// Mappings released per extent.
    pub unmaps_per_extent: f64,
    /// Re-maps forced by LIFO order per extent.
    pub forced_remaps_per_extent: f64,
    /// Pages mapped by range/vmap calls per extent.
    pub range_pages_per_extent: f64,
    /// Bytes bounce-copied per extent.
    pub bytes_copied_per_extent: f64,
    /// System calls per extent (emulated highmem).
    pub syscalls_per_extent: f64,
    /// Measured time per extent, microseconds (median repetition).
    pub measured_us_per_extent: f64,
    /// Modeled kernel mapping cost per extent, microseconds: maps x model_ns + bounce copies at
    /// 10 GB/s. Not measured.
    pub modeled_map_us_per_extent: f64,
}

/// Thread-scaling result.
#[derive(Clone, Debug, Serialize)]
pub struct ScalingRow {
    /// Always "scaling".
    pub kind: &'static str,
    /// Codec and level.
    pub codec: String,
    /// Strategy name.
    pub strategy: String,
    /// Backend name.
    pub backend: String,
    /// Threads in the rayon pool.
    pub threads: usize,
    /// Measured MB/s of compressing the whole buffer.
    pub mb_s: f64,
    /// Throughput relative to one thread.
    pub speedup: f64,
    /// Workspace-manager sleeps during the run.
    pub workspace_waits: u64,
    /// Global kmap pool lock acquisitions that found the lock taken.
    pub pool_lock_contended: u64,
    /// Global kmap pool flushes.
    pub pool_flushes: u64,
}

/// Measured cost of one map+unmap pair on this machine's backends.
#[derive(Clone, Debug, Serialize)]
pub struct OpCost {
    /// Strategy name.
    pub strategy: String,
    /// Backend name.
    pub backend: String,
    /// Pages per mapping call.
    pub pages: usize,
    /// Nanoseconds per map+unmap pair (median of 5).
    pub ns_per_pair: f64,
}

/// Per sample extent: our extent bytes (none if the kernel rules store it plain).
type Pair = Option<Bytes>;

const COPY_BYTES_PER_NS: f64 = 10.0; // 10 GB/s modeled memcpy

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Level {
    codecs: Vec<&'static str>,
    sample: usize,
    reps: usize,
    page_sizes: Vec<usize>,
    orders_4k: Vec<u32>,
    subpage_strategies: Vec<Strategy>,
    corpus_mib: usize,
    scaling_codecs: Vec<&'static str>,
}

fn level(args: &BenchArgs) -> Level {
    if args.quick {
        Level {
            codecs: vec!["zlib:3", "lzo", "zstd:3"],
            sample: 8,
            reps: 3,
            page_sizes: vec![4096],
            orders_4k: vec![0, 5],
            subpage_strategies: vec![],
            corpus_mib: 8,
            scaling_codecs: vec!["zstd:3"],
        }
    } else if args.full {
        Level {
            codecs: vec![
                "zlib:1", "zlib:3", "zlib:9", "lzo", "zstd:-5", "zstd:-1", "zstd:1", "zstd:3", "zstd:9", "zstd:15",
            ],
            sample: 32,
            reps: 5,
            page_sizes: vec![4096, 16384, 65536],
            orders_4k: vec![0, 2, 5],
            subpage_strategies: Strategy::ALL.to_vec(),
            corpus_mib: 32,
            scaling_codecs: vec!["zstd:3", "zlib:3", "lzo"],
        }
    } else {
        Level {
            codecs: vec!["zlib:1", "zlib:3", "lzo", "zstd:-1", "zstd:1", "zstd:3", "zstd:9"],
            sample: 16,
            reps: 3,
            page_sizes: vec![4096, 16384, 65536],
            orders_4k: vec![0, 5],
            subpage_strategies: vec![Strategy::Direct, Strategy::KmapLocal, Strategy::Range],
            corpus_mib: 32,
            scaling_codecs: vec!["zstd:3", "lzo"],
        }
    }
}

/// The rows a run will measure.
pub fn plan(args: &BenchArgs) -> Result<(Vec<RowSpec>, Vec<CompressSpec>), String> {
    let lv = level(args);
    let names: Vec<String> = match &args.codecs {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        None => lv.codecs.iter().map(|s| s.to_string()).collect(),
    };
    let specs: Vec<CompressSpec> =
        names.iter().map(|n| parse_compress_option(n).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    for op in [Op::Compress, Op::Decompress] {
        for &spec in &specs {
            for &ps in &lv.page_sizes {
                let max_order = (131072 / ps).trailing_zeros();
                let orders: Vec<u32> = if ps == 4096 {
                    lv.orders_4k.clone()
                } else {
                    let mut o = vec![0, max_order];
                    o.dedup();
                    o
                };
                let strategies: Vec<LabStrategy> = if ps == 4096 {
                    let mut v: Vec<_> = Strategy::ALL.iter().map(|&s| LabStrategy::Map(s)).collect();
                    if spec.alg == CompressType::Zstd && op == Op::Compress {
                        v.insert(2, LabStrategy::ZstdLifoRemap);
                    }
                    if spec.alg == CompressType::Lzo && op == Op::Compress {
                        v.push(LabStrategy::Lzokay(Strategy::Direct));
                        v.push(LabStrategy::Lzokay(Strategy::KmapLocal));
                    }
                    if spec.alg != CompressType::Lzo && op == Op::Decompress {
                        for s in [Strategy::Direct, Strategy::KmapLocal, Strategy::Range] {
                            v.push(LabStrategy::InPlace(s));
                        }
                    }
                    v
                } else {
                    lv.subpage_strategies.iter().map(|&s| LabStrategy::Map(s)).collect()
                };
                for order in orders {
                    for &strategy in &strategies {
                        for backend in Backend::ALL {
                            rows.push(RowSpec { spec, strategy, backend, page_size: ps, order, op });
                        }
                    }
                }
            }
        }
    }
    Ok((rows, specs))
}

fn sample_of(pieces: &[Piece], n: usize) -> Vec<Bytes> {
    let n = n.min(pieces.len()).max(1);
    (0..n).map(|i| pieces[i * pieces.len() / n].data.clone()).collect()
}

/// The one-call library baseline.
struct Raw {
    zstd: btrfs_zstd::Reference,
    out: Vec<u8>,
}

impl Raw {
    fn new() -> Self {
        Self { zstd: btrfs_zstd::Reference::default(), out: vec![0; 1 << 18] }
    }

    fn compress(&mut self, spec: CompressSpec, data: &[u8]) -> crate::Result<usize> {
        match spec.alg {
            CompressType::Zstd => self.zstd.compress(spec.level, data, &mut self.out),
            CompressType::Zlib => btrfs_zlib::reference_compress(spec.level, data, &mut self.out),
            CompressType::Lzo => btrfs_lzo::reference_compress(data, &mut self.out),
            CompressType::None => Ok(0),
        }
    }

    /// Decode one of our extents from a contiguous buffer: one library call (lzo: one call per
    /// segment; its format has no single stream).
    fn decompress(&mut self, alg: CompressType, src: &[u8]) -> crate::Result<usize> {
        match alg {
            CompressType::Zstd => self.zstd.decompress(src, &mut self.out),
            CompressType::Zlib => btrfs_zlib::reference_decompress(src, &mut self.out),
            CompressType::Lzo => btrfs_lzo::reference_decompress_extent(src, &mut self.out, 4096),
            CompressType::None => Ok(0),
        }
    }
}

fn per(c: &MapCounters, n: f64) -> [f64; 7] {
    [
        c.map_calls as f64 / n,
        c.maps as f64 / n,
        c.unmaps as f64 / n,
        c.forced_remaps as f64 / n,
        c.range_pages as f64 / n,
        c.bytes_copied as f64 / n,
        c.syscalls as f64 / n,
    ]
}

/// Run one row over `sample` (plaintext extents). `compressed` holds, per sample extent, our
/// extent bytes and the library's one-call stream (for decompress rows).
fn run_row(rs: &RowSpec, sample: &[Bytes], compressed: &[Pair], reps: usize, model_ns: f64) -> Result<Row, String> {
    let opts = rs.strategy.options(rs.backend, rs.page_size, rs.order);
    let codecs = Codecs::global();
    let mut raw = Raw::new();
    let res = with_ctx(&opts, |ctx: &mut MapCtx| {
        let mem: PhysMem = ctx.mem().clone();
        let mut times = Vec::new();
        let mut raw_times = Vec::new();
        let mut ratios = Vec::new();
        let mut counters = MapCounters::default();
        let extents: usize;
        let bytes: u64;
        let mut stored = 0u64;
        let mut incompressible = 0usize;
        match rs.op {
            Op::Compress => {
                let pages: Vec<FolioVec> = sample
                    .iter()
                    .map(|d| FolioVec::from_slice(&mem, d, opts.effective_folio_order()))
                    .collect::<Result<_, _>>()?;
                extents = sample.len();
                bytes = sample.iter().map(|d| d.len() as u64).sum();
                for rep in 0..reps {
                    let t0 = Instant::now();
                    for d in sample {
                        let _ = raw.compress(rs.spec, d);
                    }
                    let t_raw = t0.elapsed().as_secs_f64();
                    ctx.reset_counters();
                    let t0 = Instant::now();
                    for (p, d) in pages.iter().zip(sample) {
                        let mut args = CompressArgs::new(p, 0, d.len())?;
                        args.out_order = opts.effective_out_order();
                        let mut out = FolioVec::new();
                        let r = codecs.compress_folios(rs.spec, &opts, ctx, &args, &mut out);
                        if rep == 0 {
                            match r {
                                Ok(res) if crate::compression_saves_sector(res.total_in, res.total_out, 4096) => {
                                    stored += res.total_out as u64
                                }
                                Ok(_) | Err(Error::Incompressible(_)) => {
                                    incompressible += 1;
                                    stored += d.len() as u64;
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    let t = t0.elapsed().as_secs_f64();
                    if rep == 0 {
                        counters = ctx.counters();
                    }
                    times.push(t);
                    raw_times.push(t_raw);
                    ratios.push(t_raw / t);
                }
            }
            Op::Decompress => {
                let mut jobs = Vec::new();
                for (d, c) in sample.iter().zip(compressed) {
                    let Some(ours) = c else { continue };
                    let cb = CompressedBio::from_slice_order(&mem, ours, opts.effective_out_order())?;
                    let dest = DestRange::new(&mem, 0, d.len(), opts.effective_folio_order())?;
                    jobs.push((cb, dest, ours.clone(), d.len()));
                }
                extents = jobs.len();
                bytes = jobs.iter().map(|j| j.3 as u64).sum();
                stored = jobs.iter().map(|j| j.0.compressed_len as u64).sum();
                for rep in 0..reps {
                    let t0 = Instant::now();
                    for j in &jobs {
                        let _ = raw.decompress(rs.spec.alg, &j.2);
                    }
                    let t_raw = t0.elapsed().as_secs_f64();
                    ctx.reset_counters();
                    let t0 = Instant::now();
                    for j in jobs.iter_mut() {
                        j.1.reset();
                        codecs.decompress_bio_opts(rs.spec.alg, &opts, ctx, &j.0, &mut j.1)?;
                    }
                    let t = t0.elapsed().as_secs_f64();
                    if rep == 0 {
                        counters = ctx.counters();
                    }
                    times.push(t);
                    raw_times.push(t_raw);
                    ratios.push(t_raw / t);
                }
            }
        }
        Ok((times, raw_times, ratios, counters, extents, bytes, stored, incompressible))
    })
    .map_err(|e| format!("{} {} {}: {e}", rs.spec, rs.strategy.name(), rs.backend))?;
    let (mut times, mut raw_times, mut ratios, counters, extents, bytes, stored, incompressible) = res;
    let n = extents.max(1) as f64;
    let t = median(&mut times);
    let tr = median(&mut raw_times);
    let [calls, maps, unmaps, remaps, rpages, copied, sys] = per(&counters, n);
    Ok(Row {
        kind: "strategy",
        codec: rs.spec.alg.name().into(),
        level: rs.spec.level,
        strategy: rs.strategy.name().into(),
        backend: rs.backend.name().into(),
        page_size: rs.page_size,
        folio_order: rs.order,
        op: rs.op,
        extents,
        mb_s: bytes as f64 / t / 1e6,
        raw_mb_s: bytes as f64 / tr / 1e6,
        ratio_vs_raw: median(&mut ratios),
        compression_ratio: if stored > 0 { bytes as f64 / stored as f64 } else { f64::NAN },
        incompressible,
        map_calls_per_extent: calls,
        maps_per_extent: maps,
        unmaps_per_extent: unmaps,
        forced_remaps_per_extent: remaps,
        range_pages_per_extent: rpages,
        bytes_copied_per_extent: copied,
        syscalls_per_extent: sys,
        measured_us_per_extent: t / n * 1e6,
        modeled_map_us_per_extent: (maps * model_ns + copied / COPY_BYTES_PER_NS) / 1000.0,
    })
}

/// Our extents of `sample`, for decompress rows (none where the kernel rules store it plain).
fn compressed_sample(spec: CompressSpec, sample: &[Bytes]) -> Vec<Pair> {
    sample.iter().map(|d| crate::compress_extent(d, spec, &Options::default()).ok().map(|e| e.data)).collect()
}

/// Measure one map+unmap pair per strategy and backend on this machine.
pub fn measure_op_costs() -> Result<Vec<OpCost>, String> {
    let mut out = Vec::new();
    for backend in Backend::ALL {
        let (mem, pool) = shared_mem(backend, 4096).map_err(|e| e.to_string())?;
        let data = vec![0x5au8; 128 * 1024];
        let pages5 = FolioVec::from_slice(&mem, &data, 5).map_err(|e| e.to_string())?;
        for (s, pages) in
            [(Strategy::KmapLocal, 1usize), (Strategy::Range, 32), (Strategy::VmapFolio, 32), (Strategy::GlobalKmap, 1)]
        {
            let mut ctx = match s {
                Strategy::GlobalKmap => MapCtx::with_pool(pool.clone()),
                _ => MapCtx::new(&mem, s),
            }
            .map_err(|e| e.to_string())?;
            let mut samples = Vec::new();
            for _ in 0..5 {
                let n = 200;
                let t0 = Instant::now();
                for i in 0..n {
                    let mut f = ctx.frame();
                    let off = (i * 4096) % (128 * 1024);
                    let m = f
                        .map(&pages5, off, if pages == 1 { 4096 } else { 128 * 1024 - off })
                        .map_err(|e| e.to_string())?;
                    std::hint::black_box(m[0]);
                }
                samples.push(t0.elapsed().as_secs_f64() * 1e9 / n as f64);
            }
            out.push(OpCost {
                strategy: s.name().into(),
                backend: backend.name().into(),
                pages,
                ns_per_pair: median(&mut samples),
            });
        }
    }
    Ok(out)
}

/// Thread scaling of whole-buffer compression.
fn scaling(codecs: &[&str], data: &Bytes, max_threads: usize) -> Result<Vec<ScalingRow>, String> {
    let mut out = Vec::new();
    let configs = [
        (Strategy::Direct, Backend::Heap),
        (Strategy::KmapLocal, Backend::EmulatedHighmem),
        (Strategy::GlobalKmap, Backend::EmulatedHighmem),
    ];
    for name in codecs {
        let spec = parse_compress_option(name).map_err(|e| e.to_string())?;
        for (s, b) in configs {
            let opts = Options { strategy: s, backend: b, ..Options::default() };
            let mut base = 0.0;
            for t in 1..=max_threads {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().map_err(|e| e.to_string())?;
                let ws0 = Codecs::global().stats();
                let (_, kpool) = shared_mem(b, 4096).map_err(|e| e.to_string())?;
                let p0 = kpool.stats();
                // Warm up the per-thread contexts, then measure the median of three runs.
                pool.install(|| compress_buffer(&data.slice(..data.len().min(4 << 20)), spec, &opts))
                    .map_err(|e| e.to_string())?;
                let mut runs = Vec::new();
                for _ in 0..3 {
                    let t0 = Instant::now();
                    let ext: Vec<Extent> =
                        pool.install(|| compress_buffer(data, spec, &opts)).map_err(|e| e.to_string())?;
                    runs.push(t0.elapsed().as_secs_f64());
                    std::hint::black_box(ext.len());
                }
                let secs = median(&mut runs);
                let mb_s = data.len() as f64 / secs / 1e6;
                if t == 1 {
                    base = mb_s;
                }
                let ws1 = Codecs::global().stats();
                let p1 = kpool.stats();
                let waits = (ws1.0.waits + ws1.1.waits + ws1.2.waits) - (ws0.0.waits + ws0.1.waits + ws0.2.waits);
                out.push(ScalingRow {
                    kind: "scaling",
                    codec: spec.to_string(),
                    strategy: s.name().into(),
                    backend: b.name().into(),
                    threads: t,
                    mb_s,
                    speedup: mb_s / base,
                    workspace_waits: waits,
                    pool_lock_contended: p1.contended - p0.contended,
                    pool_flushes: p1.flushes - p0.flushes,
                });
            }
        }
    }
    Ok(out)
}

fn f(v: f64, d: usize) -> String {
    if v.is_finite() {
        format!("{v:.d$}")
    } else {
        "-".into()
    }
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let mut last = String::new();
    for r in rows {
        let head = format!("{} {} ({} B pages)", r.op_name(), r.codec_label(), r.page_size);
        if head != last {
            s.push_str(&format!(
                "\n== {head}\n{:<16} {:<8} {:>5} {:>9} {:>7} {:>6} {:>8} {:>8} {:>7} {:>9} {:>9} {:>10}\n",
                "strategy",
                "backend",
                "order",
                "MB/s",
                "x raw",
                "ratio",
                "maps/ext",
                "remaps",
                "rpages",
                "copied",
                "syscalls",
                "model us"
            ));
            last = head;
        }
        s.push_str(&format!(
            "{:<16} {:<8} {:>5} {:>9} {:>7} {:>6} {:>8} {:>8} {:>7} {:>9} {:>9} {:>10}\n",
            r.strategy,
            r.backend,
            r.folio_order,
            f(r.mb_s, 1),
            f(r.ratio_vs_raw, 3),
            f(r.compression_ratio, 2),
            f(r.maps_per_extent, 1),
            f(r.forced_remaps_per_extent, 1),
            f(r.range_pages_per_extent, 1),
            f(r.bytes_copied_per_extent, 0),
            f(r.syscalls_per_extent, 1),
            f(r.modeled_map_us_per_extent, 2),
        ));
    }
    s
}

impl Row {
    fn op_name(&self) -> &'static str {
        match self.op {
            Op::Compress => "compress",
            Op::Decompress => "decompress",
        }
    }

    /// The codec as written on the command line (`zstd:3`, `lzo`).
    fn codec_label(&self) -> String {
        if self.codec == "lzo" {
            self.codec.clone()
        } else {
            format!("{}:{}", self.codec, self.level)
        }
    }

    fn is(&self, codec: &str, strategy: &str, backend: &str, ps: usize, order: u32, op: Op) -> bool {
        self.codec_label() == codec
            && self.strategy == strategy
            && self.backend == backend
            && self.page_size == ps
            && self.folio_order == order
            && self.op == op
    }
}

fn find<'a>(
    rows: &'a [Row],
    codec: &str,
    strategy: &str,
    backend: &str,
    ps: usize,
    order: u32,
    op: Op,
) -> Option<&'a Row> {
    rows.iter().find(|r| r.is(codec, strategy, backend, ps, order, op))
}

/// The Markdown summary: the answer to the lab's question, with the numbers of this run.
fn summary(
    args: &BenchArgs,
    rows: &[Row],
    specs: &[CompressSpec],
    costs: &[OpCost],
    scaling: &[ScalingRow],
    secs: f64,
) -> String {
    let mut s = String::new();
    let cmd = std::env::args().collect::<Vec<_>>().join(" ");
    s.push_str("# btrfs-compress bench: per-page kmap_local against range mapping\n\n");
    s.push_str(&format!(
        "Command: `{cmd}`  \nRows: {}; wall time {secs:.0} s; machine: {} CPUs. Throughput columns are **measured** \
         on this machine; `model us` is **modeled**: maps per extent x {} ns (a kernel kmap_local map+unmap pair on \
         32-bit highmem, the `--model-ns` choice) plus bounce copies at 10 GB/s.\n\n",
        rows.len(),
        crate::workspace_cpus(),
        args.model_ns
    ));
    s.push_str("## Measured cost of one map+unmap pair on this machine\n\n| strategy | backend | pages | ns per pair |\n|---|---|---|---|\n");
    for c in costs {
        s.push_str(&format!("| {} | {} | {} | {:.0} |\n", c.strategy, c.backend, c.pages, c.ns_per_pair));
    }
    s.push_str("\n## Mapping operations per 128 KiB extent (4 KiB pages)\n\n");
    s.push_str("| codec | op | kmap-local, order 0 | range, order 0 | range, order 5 | saved by range (order 5) | kmap-local MB/s highmem | range MB/s highmem (order 5) | kmap-local MB/s heap | range MB/s heap (order 5) |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for spec in specs {
        let c = spec.to_string();
        for op in [Op::Compress, Op::Decompress] {
            let k0 = find(rows, &c, "kmap-local", "heap", 4096, 0, op);
            let r0 = find(rows, &c, "range", "heap", 4096, 0, op);
            let r5 = find(rows, &c, "range", "heap", 4096, 5, op);
            let kh = find(rows, &c, "kmap-local", "highmem", 4096, 0, op);
            let rh = find(rows, &c, "range", "highmem", 4096, 5, op);
            if let (Some(k0), Some(r0), Some(r5)) = (k0, r0, r5) {
                s.push_str(&format!(
                    "| {c} | {} | {:.1} | {:.1} | {:.1} | {:.1}x fewer | {} | {} | {} | {} |\n",
                    k0.op_name(),
                    k0.maps_per_extent,
                    r0.maps_per_extent,
                    r5.maps_per_extent,
                    k0.maps_per_extent / r5.maps_per_extent.max(1e-9),
                    kh.map_or("-".into(), |r| f(r.mb_s, 1)),
                    rh.map_or("-".into(), |r| f(r.mb_s, 1)),
                    f(k0.mb_s, 1),
                    f(r5.mb_s, 1),
                ));
            }
        }
    }
    s.push_str("\n## zstd's 2022 LIFO-remap loop (output kmapped above the input)\n\n| codec | remaps/extent | maps/extent (merged loop) | maps/extent (lifo loop) | MB/s highmem merged | MB/s highmem lifo | modeled extra us/extent |\n|---|---|---|---|---|---|---|\n");
    for spec in specs.iter().filter(|s| s.alg == CompressType::Zstd) {
        let c = spec.to_string();
        let m = find(rows, &c, "kmap-local", "highmem", 4096, 0, Op::Compress);
        let l = find(rows, &c, "zstd-lifo-remap", "highmem", 4096, 0, Op::Compress);
        if let (Some(m), Some(l)) = (m, l) {
            s.push_str(&format!(
                "| {c} | {:.1} | {:.1} | {:.1} | {} | {} | {:.2} |\n",
                l.forced_remaps_per_extent,
                m.maps_per_extent,
                l.maps_per_extent,
                f(m.mb_s, 1),
                f(l.mb_s, 1),
                l.modeled_map_us_per_extent - m.modeled_map_us_per_extent
            ));
        }
    }
    s.push_str("\n## Decompressing straight into the mapped destination (not a kernel loop)\n\nThe kernel decompresses into a page-sized workspace buffer and copies it out with `btrfs_decompress_buf2page()`. The `+inplace` rows decompress into the destination pages, mapped above the input.\n\n| codec | strategy | order | maps/extent kernel loop | maps/extent in place | forced re-maps in place | MB/s heap kernel loop | MB/s heap in place | MB/s highmem kernel loop | MB/s highmem in place |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for spec in specs.iter().filter(|s| s.alg != CompressType::Lzo) {
        let c = spec.to_string();
        for (st, order) in [("direct", 0u32), ("kmap-local", 0), ("range", 5)] {
            let ip = format!("{st}+inplace");
            let (k, i) = (
                find(rows, &c, st, "heap", 4096, order, Op::Decompress),
                find(rows, &c, &ip, "heap", 4096, order, Op::Decompress),
            );
            let (kh, ih) = (
                find(rows, &c, st, "highmem", 4096, order, Op::Decompress),
                find(rows, &c, &ip, "highmem", 4096, order, Op::Decompress),
            );
            if let (Some(k), Some(i)) = (k, i) {
                s.push_str(&format!(
                    "| {c} | {st} | {order} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |\n",
                    k.maps_per_extent,
                    i.maps_per_extent,
                    i.forced_remaps_per_extent,
                    f(k.mb_s, 1),
                    f(i.mb_s, 1),
                    kh.map_or("-".into(), |r| f(r.mb_s, 1)),
                    ih.map_or("-".into(), |r| f(r.mb_s, 1)),
                ));
            }
        }
    }
    if let (Some(k), Some(z)) = (
        find(rows, "lzo", "direct", "heap", 4096, 0, Op::Compress),
        find(rows, "lzo", "direct+lzokay", "heap", 4096, 0, Op::Compress),
    ) {
        s.push_str(&format!(
            "\nlzo encoders (direct map): kernel LZO1X-1 {:.1} MB/s, ratio {:.2}; lzokay-native {:.1} MB/s, ratio {:.2} ({:.1}x slower).\n",
            k.mb_s, k.compression_ratio, z.mb_s, z.compression_ratio, k.mb_s / z.mb_s
        ));
    }
    s.push_str("\n## Subpage (16K/64K pages, 4K sectors) and large folios\n\n| codec | op | page size | kmap-local order 0 maps/ext | range max order maps/ext | direct MB/s heap |\n|---|---|---|---|---|---|\n");
    for spec in specs {
        let c = spec.to_string();
        for op in [Op::Compress, Op::Decompress] {
            for ps in [4096usize, 16384, 65536] {
                let mo = (131072 / ps).trailing_zeros();
                let k = find(rows, &c, "kmap-local", "heap", ps, 0, op);
                let r = find(rows, &c, "range", "heap", ps, mo, op);
                let d = find(rows, &c, "direct", "heap", ps, 0, op);
                if let (Some(k), Some(r)) = (k, r) {
                    s.push_str(&format!(
                        "| {c} | {} | {ps} | {:.1} | {:.1} | {} |\n",
                        k.op_name(),
                        k.maps_per_extent,
                        r.maps_per_extent,
                        d.map_or("-".into(), |d| f(d.mb_s, 1))
                    ));
                }
            }
        }
    }
    s.push_str("\n## Page loop on the direct map against one library call (same data, same run)\n\n| codec | compress x raw | decompress x raw |\n|---|---|---|\n");
    for spec in specs {
        let c = spec.to_string();
        let a = find(rows, &c, "direct", "heap", 4096, 0, Op::Compress);
        let b = find(rows, &c, "direct", "heap", 4096, 0, Op::Decompress);
        s.push_str(&format!(
            "| {c} | {} | {} |\n",
            a.map_or("-".into(), |r| f(r.ratio_vs_raw, 3)),
            b.map_or("-".into(), |r| f(r.ratio_vs_raw, 3))
        ));
    }
    if !scaling.is_empty() {
        s.push_str("\n## Thread scaling (whole corpus, rayon, 128 KiB extents)\n\n| codec | strategy | backend | threads | MB/s | speedup | workspace waits | pool lock contended | pool flushes |\n|---|---|---|---|---|---|---|---|---|\n");
        for r in scaling {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.1} | {:.2} | {} | {} | {} |\n",
                r.codec,
                r.strategy,
                r.backend,
                r.threads,
                r.mb_s,
                r.speedup,
                r.workspace_waits,
                r.pool_lock_contended,
                r.pool_flushes
            ));
        }
    }
    s.push_str("\nPlots: `throughput-{compress,decompress}-{heap,highmem}.svg` (measured), `mapping-ops.svg` (counted), `scaling.svg` (measured). All rows: `rows.json`.\n");
    s
}

fn write_report(
    dir: &Path,
    args: &BenchArgs,
    rows: &[Row],
    specs: &[CompressSpec],
    costs: &[OpCost],
    scale: &[ScalingRow],
    secs: f64,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot write report to {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    let put = |name: &str, data: &str| -> Result<(), String> {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, data).map_err(io)?;
        std::fs::rename(&tmp, dir.join(name)).map_err(io)
    };
    put("rows.json", &serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?)?;
    put("scaling.json", &serde_json::to_string_pretty(scale).map_err(|e| e.to_string())?)?;
    put("op-costs.json", &serde_json::to_string_pretty(costs).map_err(|e| e.to_string())?)?;
    put("summary.md", &summary(args, rows, specs, costs, scale, secs))?;
    let cats: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
    let strategies = [
        "direct",
        "kmap-local",
        "zstd-lifo-remap",
        "range",
        "vmap-folio",
        "kmap-pool",
        "bounce",
        "range+inplace",
        "direct+lzokay",
    ];
    for (op, name) in [(Op::Compress, "compress"), (Op::Decompress, "decompress")] {
        for backend in ["heap", "highmem"] {
            let mut series = Vec::new();
            for st in strategies {
                let order = if matches!(st, "range" | "vmap-folio" | "range+inplace") { 5 } else { 0 };
                let vals: Vec<f64> = cats
                    .iter()
                    .map(|c| find(rows, c, st, backend, 4096, order, op).map_or(f64::NAN, |r| r.mb_s))
                    .collect();
                if vals.iter().any(|v| v.is_finite()) {
                    let label = if order > 0 { format!("{st} (order {order})") } else { st.to_string() };
                    series.push((label, vals));
                }
            }
            put(
                &format!("throughput-{name}-{backend}.svg"),
                &crate::svg::bars(
                    &format!("{name}, {backend} backend: MB/s per strategy (4 KiB pages; measured)"),
                    "MB/s",
                    &cats,
                    &series,
                ),
            )?;
        }
    }
    let mut series = Vec::new();
    for st in strategies {
        for order in [0u32, 5] {
            let vals: Vec<f64> = cats
                .iter()
                .map(|c| find(rows, c, st, "heap", 4096, order, Op::Compress).map_or(f64::NAN, |r| r.maps_per_extent))
                .collect();
            if vals.iter().any(|v| v.is_finite() && *v > 0.0) {
                series.push((format!("{st} order {order}"), vals));
            }
        }
    }
    put(
        "mapping-ops.svg",
        &crate::svg::bars("compress: mappings per 128 KiB extent (counted)", "maps per extent", &cats, &series),
    )?;
    let mut lines = Vec::new();
    let mut keys: Vec<(String, String, String)> =
        scale.iter().map(|r| (r.codec.clone(), r.strategy.clone(), r.backend.clone())).collect();
    keys.dedup();
    for k in keys {
        let pts: Vec<(f64, f64)> = scale
            .iter()
            .filter(|r| (&r.codec, &r.strategy, &r.backend) == (&k.0, &k.1, &k.2))
            .map(|r| (r.threads as f64, r.mb_s))
            .collect();
        lines.push((format!("{} {} {}", k.0, k.1, k.2), pts));
    }
    put("scaling.svg", &crate::svg::lines("parallel compression (measured)", "threads", "MB/s", &lines))?;
    Ok(())
}

/// Run `btrfs-compress bench`.
pub fn run(args: BenchArgs) -> Result<(), String> {
    let t_start = Instant::now();
    let lv = level(&args);
    let pieces = match &args.corpus {
        Some(dir) => {
            corpus::from_dir(dir, 64 << 20).map_err(|e| format!("cannot read corpus {}: {e}", dir.display()))?
        }
        None => corpus::builtin(lv.corpus_mib),
    };
    if pieces.is_empty() {
        return Err("the corpus is empty".into());
    }
    let (plan, specs) = plan(&args)?;
    let sample = sample_of(&pieces, lv.sample);
    eprintln!(
        "btrfs-compress bench: {} rows, {} extents ({} KiB) per row, {} repetitions; corpus {} MiB",
        plan.len(),
        sample.len(),
        sample.iter().map(|d| d.len()).sum::<usize>() / 1024,
        lv.reps,
        pieces.iter().map(|p| p.data.len()).sum::<usize>() >> 20
    );
    let costs = measure_op_costs()?;
    let bar = ProgressBar::new(plan.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {msg} [{elapsed_precise}<{eta_precise}]")
            .map_err(|e| e.to_string())?,
    );
    let mut compressed: Vec<(CompressSpec, Vec<Pair>)> = Vec::new();
    let mut rows = Vec::new();
    for rs in &plan {
        bar.set_message(format!("{} {} {}", rs.spec, rs.strategy.name(), rs.backend));
        if rs.op == Op::Decompress && !compressed.iter().any(|(s, _)| *s == rs.spec) {
            compressed.push((rs.spec, compressed_sample(rs.spec, &sample)));
        }
        let empty = Vec::new();
        let comp = compressed.iter().find(|(s, _)| *s == rs.spec).map_or(&empty, |c| &c.1);
        let row = run_row(rs, &sample, comp, lv.reps, args.model_ns)?;
        if args.json {
            println!("{}", serde_json::to_string(&row).map_err(|e| e.to_string())?);
        }
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let max_threads = args.threads.unwrap_or_else(|| crate::workspace_cpus().max(2));
    let all: Vec<u8> = pieces.iter().flat_map(|p| p.data.iter().copied()).collect();
    let data = Bytes::from(all);
    eprintln!("thread scaling: {} MiB, 1..={max_threads} threads", data.len() >> 20);
    let scale = scaling(&lv.scaling_codecs, &data, max_threads)?;
    if args.json {
        for r in &scale {
            println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
        }
    }
    eprint!("{}", table(&rows));
    eprintln!("\n== thread scaling");
    for r in &scale {
        eprintln!(
            "{:<8} {:<11} {:<8} threads {:>2}: {:>8.1} MB/s  x{:.2}  ws waits {}  pool contended {}",
            r.codec, r.strategy, r.backend, r.threads, r.mb_s, r.speedup, r.workspace_waits, r.pool_lock_contended
        );
    }
    let secs = t_start.elapsed().as_secs_f64();
    if !args.no_report {
        write_report(&args.report, &args, &rows, &specs, &costs, &scale, secs)?;
        eprintln!("report: {}/summary.md (plots: *.svg), {secs:.0} s", args.report.display());
    }
    Ok(())
}
