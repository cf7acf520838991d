//! The mapping-strategy lab behind `btrfs-compress bench`.
//!
//! For each kernel configuration (32-bit HIGHMEM, 64-bit), kernel loop, codec, operation and
//! mapping strategy it replays the kernel's calls over a sample of the corpus
//! ([`btrfs_compress::replay`]: the same replay the kmap trace fixture checks against a real 6.1 HIGHMEM
//! kernel) and reports per 128 KiB extent the events the kernel would have (API calls, highmem
//! and lowmem maps, PTE writes and clears, TLB invalidations, full flushes, IPIs, locks, slab
//! allocations, slots and vmalloc space), their modeled cost from a cost table with its sources
//! (`costs/x86-32.json`, or `--costs FILE`), and the measured speed of the loop on this machine
//! (median, min and max over repetitions, beside one library call on a contiguous buffer). The
//! verdict at the end is computed from the 32-bit rows. Rows of the emulated-highmem backend
//! measure this machine's `mmap` calls, are labelled as emulation and never feed the verdict.

#![forbid(unsafe_code)]

pub mod answer;
pub mod corpus;
mod report;
pub mod svg;
mod verdict;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use highmem::{Backend, Event, KernelConfig, KernelEvents, MapCounters, PhysMem, Strategy};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::corpus::Piece;
use btrfs_compress::replay::{self, KernelLoop, Setup};
use btrfs_compress::{parse_compress_option, CompressSpec, CompressType, Options};

/// Options of `btrfs-compress bench`.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// A smaller sample and fewer repetitions (a few seconds).
    #[arg(long)]
    pub quick: bool,
    /// More codecs and levels, bigger samples.
    #[arg(long, conflicts_with = "quick")]
    pub full: bool,
    /// Benchmark the files under DIR instead of the built-in corpus.
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// Print one JSON object per row on standard output (the table goes to standard error).
    #[arg(long)]
    pub json: bool,
    /// Write summary.md (verdict first), rows.json and SVG plots into DIR [default: bench-report].
    #[arg(long, value_name = "DIR", conflicts_with = "no_report")]
    pub report: Option<PathBuf>,
    /// Do not write a report directory.
    #[arg(long)]
    pub no_report: bool,
    /// Codecs and levels, comma-separated (e.g. zstd:3,lzo,zlib:3).
    #[arg(long, value_name = "LIST")]
    pub codecs: Option<String>,
    /// Kernel loops (comma-separated): 6.1, 6.12, 7.2 (7.2.13 as shipped), 7.2-rc3 (large folios
    /// under HIGHMEM: zstd and zlib compression fault), 7.2-step (7.2-rc3 with each input chunk cut
    /// to its mapping: page stepping with kmap-local, kmap_local_range() with range-split),
    /// v4-2022 [default: 6.1,7.2,7.2-rc3,7.2-step,v4-2022; the 7.2-rc3 and 7.2-step rows are
    /// 32-bit compression rows].
    #[arg(long = "loop", value_name = "LIST")]
    pub loops: Option<String>,
    /// Mapping strategies (comma-separated): direct, kmap-local, range-split, range-fallback,
    /// vm-map-ram, vmap-folio, folio-map-local, kmap-pool, bounce, vm-map-ram-large
    /// [default: all].
    #[arg(long, value_name = "LIST")]
    pub strategies: Option<String>,
    /// Memory backends: heap, highmem (the mmap emulation; measured, never in the verdict).
    #[arg(long, value_name = "LIST", default_value = "heap,highmem")]
    pub backends: String,
    /// Whether the kernel zeroes each newly allocated compressed page (Debian's default: on).
    #[arg(long, value_name = "on|off", default_value = "on")]
    pub init_on_alloc: OnOff,
    /// A cost table of the shape of costs/x86-32.json (ns per event, with sources).
    #[arg(long, value_name = "FILE")]
    pub costs: Option<PathBuf>,
    /// Wider table (more event columns).
    #[arg(long)]
    pub wide: bool,
    /// CPUs of the modeled machines: how many an IPI round of the kmap() pool's or vunmap's
    /// flush reaches.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: u32,
    /// Slots kmap_local_range() leaves for interrupt users.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=14))]
    pub range_reserve: u64,
    /// Share of page-cache pages in HighMem on the 32-bit config, 0 to 1 (the rest come from
    /// Normal, as when HighMem runs low); compressed pages are lowmem whatever this says.
    #[arg(long, default_value_t = 1.0, value_name = "F", value_parser = parse_fraction)]
    pub highmem_fraction: f64,
    /// Assumed context switches per ms of codec time (0: off). Each one finds the loop's
    /// kmap_local slots held: `__kmap_local_sched_out()` clears and invalidates each,
    /// `__kmap_local_sched_in()` rewrites it. The rate is an assumption, not a measurement.
    #[arg(long, default_value_t = 0.0, value_name = "R", value_parser = parse_rate)]
    pub preempt_per_ms: f64,
    /// zlib rows: kernel (lib/zlib_deflate of each loop's era: the kernel's bytes and calls) or
    /// zlib-rs (faster, other bytes, so other output pages and inflate calls).
    #[arg(long, default_value = "kernel", value_name = "kernel|zlib-rs")]
    pub zlib_backend: ZlibChoice,
}

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// The deflate of zlib rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ZlibChoice {
    /// lib/zlib_deflate of each loop's era: the kernel's bytes and calls.
    Kernel,
    /// zlib-rs: faster, other bytes.
    ZlibRs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=1000.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a rate from 0 to 1000 per ms")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a number from 0 to 1")),
    }
}

/// One cost-table entry.
#[derive(Clone, Debug, serde::Deserialize, Serialize)]
pub struct Cost {
    /// Nanoseconds per event.
    pub ns: f64,
    /// Where the figure comes from.
    pub source: String,
}

/// The cost table: ns per [`KernelEvents`] field.
#[derive(Clone, Debug, serde::Deserialize, Serialize)]
pub struct CostTable {
    /// What the table is.
    #[serde(default)]
    pub about: String,
    /// Entries by event name.
    pub events: BTreeMap<String, Cost>,
}

/// The default table, with its sources.
pub const DEFAULT_COSTS: &str = include_str!("../costs/x86-32.json");

impl CostTable {
    /// Parse a table; every event must be priced, unknown names are refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t: CostTable = serde_json::from_str(text).map_err(|e| format!("cost table: {e}"))?;
        for k in t.events.keys() {
            if Event::from_name(k).is_none() {
                let known: Vec<&str> = Event::ALL.iter().map(|e| e.name()).collect();
                return Err(format!("cost table: unknown event {k:?} (known: {})", known.join(", ")));
            }
        }
        for n in Event::ALL.iter().map(|e| e.name()) {
            match t.events.get(n) {
                Some(c) if c.ns.is_finite() && c.ns >= 0.0 => {}
                Some(_) => return Err(format!("cost table: {n} must be a non-negative number of ns")),
                None => return Err(format!("cost table: no entry for {n}")),
            }
        }
        Ok(t)
    }

    /// The ns of one event (every event is priced: [`CostTable::parse`] checks).
    pub fn of(&self, e: Event) -> f64 {
        self.events.get(e.name()).map_or(0.0, |c| c.ns)
    }

    /// Modeled ns of per-extent event counts, with entry `scale.0` (a name, or `*` for all)
    /// multiplied by `scale.1`.
    pub fn ns(&self, per_extent: &[(Event, f64)], scale: Option<(&str, f64)>) -> f64 {
        per_extent
            .iter()
            .map(|&(e, v)| {
                let f = scale.filter(|s| s.0 == e.name() || s.0 == "*").map_or(1.0, |s| s.1);
                v * self.of(e) * f
            })
            .sum()
    }
}

/// What a row runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// The codec's compress_pages / compress_folios.
    Compress,
    /// The codec's decompress_bio.
    Decompress,
    /// btrfs_compress_heuristic() over each extent (compress= without force).
    Heuristic,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Compress => "compress",
            Op::Decompress => "decompress",
            Op::Heuristic => "heuristic",
        }
    }
}

/// One row of the plan.
#[derive(Clone, Copy, Debug)]
pub struct RowSpec {
    /// Codec and level.
    pub spec: CompressSpec,
    /// Kernel configuration.
    pub config: KernelConfig,
    /// Loop.
    pub kloop: KernelLoop,
    /// Strategy.
    pub strategy: Strategy,
    /// Backend.
    pub backend: Backend,
    /// Operation.
    pub op: Op,
}

/// One measured row (JSON keys are part of the interface).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Always "strategy".
    pub kind: &'static str,
    /// 32-bit-highmem or 64-bit.
    pub config: &'static str,
    /// Kernel loop.
    #[serde(rename = "loop")]
    pub kloop: &'static str,
    /// Codec and level (none for the heuristic rows). In the JSON: `codec` (zlib, lzo, zstd or
    /// heuristic) and `level` (0 for lzo and the heuristic).
    #[serde(flatten, serialize_with = "codec_and_level")]
    pub spec: Option<CompressSpec>,
    /// zlib rows: kernel (lib/zlib_deflate) or zlib-rs; empty for the other codecs.
    pub zlib_backend: &'static str,
    /// Strategy (its name in the JSON).
    #[serde(serialize_with = "strategy_name")]
    pub strategy: Strategy,
    /// heap, or highmem (the emulation).
    pub backend: String,
    /// Page size.
    pub page_size: usize,
    /// Largest page-cache folio order of the loop and config (`block_max_order`; the folios
    /// themselves follow 1 MiB writes, see `replay::PageCacheLayout`).
    pub folio_order: u32,
    /// compress, decompress or heuristic.
    pub op: Op,
    /// Extents whose codec call faulted: the library read past what its mapping covers, where
    /// the kernel oopses (7.2-rc3's large folios under HIGHMEM). Such a row has no cost.
    pub faulted_extents: usize,
    /// Share of page-cache pages in HighMem (1 on 32-bit unless --highmem-fraction; 0 on 64-bit).
    pub highmem_fraction: f64,
    /// Extents in the sample.
    pub extents: usize,
    /// Measured MB/s of the loop (median over repetitions; includes filling the page cache).
    pub mb_s: f64,
    /// Slowest repetition.
    pub mb_s_min: f64,
    /// Fastest repetition.
    pub mb_s_max: f64,
    /// Measured MB/s of one library call on a contiguous buffer, same data, same run.
    pub raw_mb_s: f64,
    /// Median of per-repetition ratios loop / library call.
    pub ratio_vs_raw: f64,
    /// Uncompressed / stored bytes.
    pub compression_ratio: f64,
    /// Extents stored plain.
    pub incompressible: usize,
    /// Emulation counters per extent: mapping calls.
    pub map_calls_per_extent: f64,
    /// Mappings made (emulation).
    pub maps_per_extent: f64,
    /// Mappings released (emulation).
    pub unmaps_per_extent: f64,
    /// LIFO-forced re-maps.
    pub forced_remaps_per_extent: f64,
    /// Pages mapped by multi-page calls.
    pub range_pages_per_extent: f64,
    /// Bytes bounce-copied.
    pub bytes_copied_per_extent: f64,
    /// System calls of the emulated backend.
    pub syscalls_per_extent: f64,
    /// Kernel events: API calls.
    pub api_calls_per_extent: f64,
    /// Kernel events: highmem pages mapped.
    pub highmem_maps_per_extent: f64,
    /// Kernel events: lowmem pages "mapped" (page_address).
    pub lowmem_maps_per_extent: f64,
    /// Kernel events: PTE writes.
    pub pte_writes_per_extent: f64,
    /// Kernel events: PTE clears.
    pub pte_clears_per_extent: f64,
    /// Kernel events: single-page TLB invalidations.
    pub tlb_single_flushes_per_extent: f64,
    /// Kernel events: full TLB flushes.
    pub tlb_full_flushes_per_extent: f64,
    /// Kernel events: CPUs reached by IPIs.
    pub ipis_per_extent: f64,
    /// Kernel events: lock acquisitions.
    pub locks_per_extent: f64,
    /// Kernel events: slab allocations.
    pub slab_allocs_per_extent: f64,
    /// Kernel events: `vm_map_ram()` / `vmap()` calls.
    pub vmap_calls_per_extent: f64,
    /// Highest kmap_local slots held at once (pages).
    pub slots_high_water: u64,
    /// Highest vmalloc pages in use or awaiting purge.
    pub vmalloc_high_water_pages: u64,
    /// Calls into the compression library per extent (deflate, compress_stream, lzo1x; the
    /// decompress side alike): a strategy that maps more at once hands the library longer
    /// buffers in fewer calls.
    pub library_calls_per_extent: f64,
    /// Mean kmap_local slots holding a PTE while the library works (weighted by the bytes of
    /// each call).
    pub slots_held_in_library: f64,
    /// Context switches per extent at `--preempt-per-ms` over the measured time (0 when off).
    pub preemptions_per_extent: f64,
    /// Measured µs per extent (median repetition, this machine).
    pub measured_us_per_extent: f64,
    /// The code that measured it (`x86_64`, or `x86` for the i686 build): the denominator of
    /// every percentage of codec time.
    pub measured_arch: &'static str,
    /// Modeled kernel mapping ns per extent: events x the cost table. Not measured.
    pub modeled_ns_per_extent: f64,
    /// The same in µs (the earlier key).
    pub modeled_map_us_per_extent: f64,
    /// Every event per extent (for the verdict's sensitivity and the break-even costs).
    #[serde(skip)]
    pub events: Vec<(Event, f64)>,
}

struct Level {
    codecs: Vec<&'static str>,
    sample: usize,
    reps: usize,
    corpus_mib: usize,
}

fn level(args: &BenchArgs) -> Level {
    if args.quick {
        Level { codecs: vec!["zlib:3", "lzo", "zstd:3"], sample: 4, reps: 3, corpus_mib: 4 }
    } else if args.full {
        Level {
            codecs: vec!["zlib:1", "zlib:3", "zlib:9", "lzo", "zstd:-1", "zstd:1", "zstd:3", "zstd:9", "zstd:15"],
            sample: 32,
            reps: 7,
            corpus_mib: 32,
        }
    } else {
        Level { codecs: vec!["zlib:3", "lzo", "zstd:1", "zstd:3"], sample: 16, reps: 5, corpus_mib: 16 }
    }
}

fn list<T>(s: &str, what: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    let v: Vec<T> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| parse(x).ok_or_else(|| format!("unknown {what} {x:?}")))
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err(format!("empty {what} list"));
    }
    Ok(v)
}

/// A strategy as the JSON spells it (its command-line name).
fn strategy_name<S: serde::Serializer>(s: &Strategy, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.name())
}

/// A row's codec and level as the JSON spells them: `codec` and `level` keys.
fn codec_and_level<S: serde::Serializer>(spec: &Option<CompressSpec>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("CodecAndLevel", 2)?;
    st.serialize_field("codec", spec.map_or("heuristic", |c| c.alg.name()))?;
    st.serialize_field("level", &spec.map_or(0, |c| c.level))?;
    st.end()
}

impl Row {
    /// The codec as the mount option spells it (`zstd:3`, `lzo`), or `heuristic`.
    pub fn codec_label(&self) -> String {
        self.spec.map_or_else(|| "heuristic".into(), |s| s.to_string())
    }
}

/// Everything decided before a run: the rows, the cost table, the report directory.
pub struct Plan {
    /// Rows in run order.
    pub rows: Vec<RowSpec>,
    /// Codecs.
    pub specs: Vec<CompressSpec>,
    /// Cost table.
    pub costs: CostTable,
    /// Report directory, if any.
    pub report: Option<PathBuf>,
    /// init_on_alloc.
    pub init_on_alloc: bool,
    /// Slots kmap_local_range() leaves free.
    pub range_reserve: usize,
    /// Share of the page cache in HighMem (32-bit config).
    pub highmem_fraction: f64,
    /// Assumed context switches per ms of codec time.
    pub preempt_per_ms: f64,
    /// zlib-rs instead of the kernel's deflate for zlib rows.
    pub zlib_rs: bool,
}

/// Check the command line and build the plan (errors are command-line errors: exit 64).
pub fn plan(args: &BenchArgs) -> Result<Plan, (u8, String)> {
    let usage = |m: String| (64u8, m);
    let lv = level(args);
    let names = args.codecs.clone().unwrap_or_else(|| lv.codecs.join(","));
    let specs = list(&names, "codec", |n| parse_compress_option(n).ok()).map_err(usage)?;
    for s in specs.iter().filter(|s| s.clamped_from.is_some()) {
        eprintln!(
            "btrfs-compress: note: {} level {} clamped to {} as the kernel does",
            s.alg.name(),
            s.clamped_from.unwrap_or_default(),
            s.level
        );
    }
    let loops =
        list(args.loops.as_deref().unwrap_or("6.1,7.2,7.2-rc3,7.2-step,v4-2022"), "loop", KernelLoop::from_name)
            .map_err(usage)?;
    let strategies = match &args.strategies {
        Some(s) => list(s, "strategy", Strategy::from_name).map_err(usage)?,
        None => Strategy::ALL.to_vec(),
    };
    let backends = list(&args.backends, "backend", Backend::from_name).map_err(usage)?;
    let costs = match &args.costs {
        // A costs file that cannot be read is an I/O failure (1); one that does not parse, a
        // bad argument (64).
        Some(p) => CostTable::parse(&std::fs::read_to_string(p).map_err(|e| (1, format!("{}: {e}", p.display())))?)
            .map_err(usage)?,
        None => CostTable::parse(DEFAULT_COSTS).map_err(usage)?,
    };
    let report = if args.no_report { None } else { Some(args.report.clone().unwrap_or("bench-report".into())) };
    if let Some(r) = &report {
        std::fs::create_dir_all(r).map_err(|e| (1, format!("report directory {}: {e}", r.display())))?;
    }
    let mut rows = Vec::new();
    let configs = [
        KernelConfig::Highmem32 { pae: true, debug_kmap_local: false, cpus: args.cpus },
        KernelConfig::Arm32Lpae { cpus: args.cpus },
        KernelConfig::Bit64 { cpus: args.cpus },
    ];
    for config in configs {
        for &kloop in &loops {
            for &spec in &specs {
                for op in [Op::Compress, Op::Decompress, Op::Heuristic] {
                    if kloop == KernelLoop::V4_2022 && (spec.alg != CompressType::Zstd || op != Op::Compress) {
                        continue;
                    }
                    // Large folios under HIGHMEM change only what compression maps (reads and the
                    // heuristic go page by page); on 64-bit these loops are 7.2's.
                    let large_highmem = matches!(kloop, KernelLoop::V7_2Rc3 | KernelLoop::V7_2Step);
                    if large_highmem && (!config.has_highmem() || op != Op::Compress) {
                        continue;
                    }
                    // ARM32: the 6.1 loops (its traced kernel), the main strategies.
                    let arm = matches!(config, KernelConfig::Arm32Lpae { .. });
                    if arm && kloop != KernelLoop::V6_1 {
                        continue;
                    }
                    if op == Op::Heuristic && spec != specs[0] {
                        continue; // the heuristic does not depend on the codec
                    }
                    for &strategy in &strategies {
                        if !strategy.exists_on(config) {
                            continue;
                        }
                        if kloop == KernelLoop::V4_2022 && strategy != Strategy::KmapLocal {
                            continue;
                        }
                        // vm-map-ram-large is way out (b) for large folios only, and vmap_folio() was
                        // proposed for large folios under HIGHMEM only (on 64-bit a folio is
                        // folio_address(); on order-0 folios it is a one-page vmap).
                        if matches!(strategy, Strategy::VmMapRamLarge | Strategy::VmapFolio)
                            && kloop != KernelLoop::V7_2Rc3
                        {
                            continue;
                        }
                        // The ways out of 7.2-rc3: (a) kmap-local and (c) range-split with
                        // chunks cut to the mapping; (b) and Wilcox's proposals on 7.2-rc3's loop.
                        let way_out = match kloop {
                            KernelLoop::V7_2Rc3 => matches!(
                                strategy,
                                Strategy::KmapLocal
                                    | Strategy::VmMapRamLarge
                                    | Strategy::VmapFolio
                                    | Strategy::FolioMapLocal
                            ),
                            KernelLoop::V7_2Step => matches!(strategy, Strategy::KmapLocal | Strategy::Range),
                            _ => true,
                        };
                        // On 64-bit every map is page_address(): the kernel's calls and
                        // folio_map_local() are the rows that say something there.
                        let b64 = !config.has_highmem();
                        if !way_out
                            || (arm && !matches!(strategy, Strategy::KmapLocal | Strategy::Range | Strategy::VmMapRam))
                            || (b64
                                && !matches!(
                                    strategy,
                                    Strategy::Direct | Strategy::KmapLocal | Strategy::FolioMapLocal
                                ))
                        {
                            continue;
                        }
                        for &backend in &backends {
                            // The emulation only where it means something: highmem, page-sized
                            // strategies that use its slot window.
                            if backend == Backend::EmulatedHighmem
                                && (!config.has_highmem()
                                    || arm
                                    || large_highmem
                                    || !matches!(strategy, Strategy::KmapLocal | Strategy::Range))
                            {
                                continue;
                            }
                            rows.push(RowSpec { spec, config, kloop, strategy, backend, op });
                        }
                    }
                }
            }
        }
    }
    Ok(Plan {
        rows,
        specs,
        costs,
        report,
        init_on_alloc: args.init_on_alloc == OnOff::On,
        range_reserve: args.range_reserve as usize,
        highmem_fraction: args.highmem_fraction,
        preempt_per_ms: args.preempt_per_ms,
        zlib_rs: args.zlib_backend == ZlibChoice::ZlibRs,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The one-call library baseline.
struct Raw {
    zstd: btrfs_zstd::Reference,
    zlib: btrfs_compress::ZlibBackend,
    out: Vec<u8>,
}

impl Raw {
    /// The baseline with the same zlib deflate as the loop (one call, no page flushes).
    fn new(zlib: btrfs_compress::ZlibBackend) -> Self {
        Self { zstd: btrfs_zstd::Reference::default(), zlib, out: vec![0; 1 << 18] }
    }

    fn run(&mut self, spec: CompressSpec, op: Op, plain: &[u8], extent: Option<&Bytes>) {
        let out = &mut self.out;
        let _ = match (op, spec.alg, extent) {
            (Op::Compress | Op::Heuristic, CompressType::Zstd, _) => self.zstd.compress(spec.level, plain, out),
            (Op::Compress | Op::Heuristic, CompressType::Zlib, _) => {
                btrfs_zlib::reference_compress_with(self.zlib, spec.level, plain, out)
            }
            (Op::Compress | Op::Heuristic, CompressType::Lzo, _) => btrfs_lzo::reference_compress(plain, out),
            (Op::Decompress, CompressType::Zstd, Some(e)) => self.zstd.decompress(e, out),
            (Op::Decompress, CompressType::Zlib, Some(e)) => btrfs_zlib::reference_decompress(e, out),
            (Op::Decompress, CompressType::Lzo, Some(e)) => btrfs_lzo::reference_decompress_extent(e, out, 4096),
            _ => Ok(0),
        };
    }
}

/// Our extent of each sample piece (none where the kernel rules store it plain).
fn extents_of(spec: CompressSpec, sample: &[Bytes], zlib_rs: bool) -> Vec<Option<Bytes>> {
    let o = Options { zlib_backend: zlib_backend(zlib_rs), ..Options::default() };
    sample.iter().map(|d| btrfs_compress::compress_extent(d, spec, &o).ok().map(|e| e.data)).collect()
}

/// The deflate of the zlib rows' baseline and extents.
fn zlib_backend(zlib_rs: bool) -> btrfs_compress::ZlibBackend {
    if zlib_rs {
        btrfs_compress::ZlibBackend::ZlibRs
    } else {
        btrfs_compress::ZlibBackend::default()
    }
}

fn per(c: &MapCounters, n: f64) -> [f64; 7] {
    [c.map_calls, c.maps, c.unmaps, c.forced_remaps, c.range_pages, c.bytes_copied, c.syscalls].map(|v| v as f64 / n)
}

/// What the repetitions of one row measured.
struct Measured {
    times: Vec<f64>,
    raw_times: Vec<f64>,
    ratios: Vec<f64>,
    /// Kernel events over all repetitions.
    ev: KernelEvents,
    /// Emulation counters of the first repetition.
    counters: MapCounters,
    stored: usize,
    plain: usize,
    /// Extents whose call faulted (first repetition).
    faulted: usize,
}

/// Run the row's jobs `reps` times, each repetition timing the library baseline and then the
/// replayed kernel calls.
fn measure(
    rs: &RowSpec,
    ctx: &mut highmem::MapCtx,
    setup: &Setup,
    jobs: &[(&Bytes, Option<&Bytes>)],
    reps: usize,
) -> btrfs_compress::Result<Measured> {
    let (mut times, mut raw_times, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut ev = KernelEvents::default();
    let mut counters = MapCounters::default();
    let (mut stored, mut plain, mut faulted) = (0usize, 0usize, 0usize);
    let mut raw = Raw::new(setup.options().zlib_backend);
    for rep in 0..reps {
        let t0 = Instant::now();
        for (d, e) in jobs {
            raw.run(rs.spec, rs.op, d, *e);
        }
        let t_raw = t0.elapsed().as_secs_f64();
        let c0 = ctx.counters();
        let t0 = Instant::now();
        for (d, e) in jobs {
            let call = match (rs.op, e) {
                (Op::Compress, _) => {
                    // A sample piece in the page cache as a file of its own written in 1 MiB writes.
                    let orders = setup.page_cache_layout(d.len()).range_orders(0, d.len());
                    replay::compress_piece(ctx, setup, d, &orders)
                }
                (Op::Decompress, Some(e)) => replay::decompress_piece(ctx, setup, e, d.len()),
                _ => replay::heuristic_call(ctx, setup, d, 0).map(|r| r.0),
            }?;
            ev.add(&call.events);
            if rep == 0 && call.events.faults > 0 {
                faulted += 1;
            }
            if rep == 0 {
                match (&call.extent, rs.op) {
                    (Some(x), Op::Compress) => stored += x.len(),
                    (None, Op::Compress) => {
                        stored += d.len();
                        plain += 1;
                    }
                    _ => {}
                }
            }
        }
        let t = t0.elapsed().as_secs_f64();
        if rep == 0 {
            counters = ctx.counters().since(&c0);
        }
        times.push(t);
        raw_times.push(t_raw);
        ratios.push(t_raw / t);
    }
    Ok(Measured { times, raw_times, ratios, ev, counters, stored, plain, faulted })
}

/// Kernel events per extent: over every repetition (the kmap() pool reaches its steady state
/// of wraps; and the pool is then charged at its steady state, see below), the lazy vunmap
/// purge charged pro rata (once per lazy_max_pages freed pages), and
/// the context switches at the assumed rate over `secs_per_extent`. Also the mean slots held
/// during library work and the context switches per extent.
fn per_extent_events(
    rs: &RowSpec,
    plan: &Plan,
    ev: &KernelEvents,
    counters: &MapCounters,
    nx: f64,
    secs_per_extent: f64,
) -> (Vec<(Event, f64)>, f64, f64) {
    let mut events: Vec<(Event, f64)> = Event::ALL.iter().map(|&e| (e, ev.get(e) as f64 / nx)).collect();
    if rs.strategy == Strategy::GlobalKmap {
        pool_steady_state(&mut events, rs.config);
    }
    let purges = ev.vunmap_lazy_pages as f64 / nx / rs.config.lazy_max_pages() as f64;
    for e in events.iter_mut() {
        match e.0 {
            Event::TlbFullFlushes | Event::IpiRounds => e.1 += purges,
            Event::IpiCpus => e.1 += purges * f64::from(rs.config.cpus().saturating_sub(1)),
            _ => {}
        }
    }
    // Context switches during the codec's work (assumed rate, off by default): each held slot
    // is cleared and invalidated at sched_out and rewritten at sched_in.
    let held = if counters.library_bytes > 0 {
        counters.library_slot_bytes as f64 / counters.library_bytes as f64
    } else {
        0.0
    };
    let preemptions = plan.preempt_per_ms * secs_per_extent * 1e3;
    for e in events.iter_mut() {
        if matches!(e.0, Event::PteClears | Event::TlbSingleFlushes | Event::PteWrites) {
            e.1 += preemptions * held;
        }
    }
    (events, held, preemptions)
}

/// The `kmap()` pool in its steady state, whatever the sample's length (a short sample may never
/// wrap the pool, a long one wraps it a whole number of times): each new mapping (a PTE write) is
/// cleared once by a later wrap, and a wrap (`flush_all_zero_pkmaps()`: an IPI to every other
/// CPU and a full flush) comes once per `LAST_PKMAP` new mappings. Locks (mm/highmem.c, x86-32
/// HASHED_PAGE_VIRTUAL): `kmap_high()` and `kunmap_high()` each take `kmap_lock` and the page's
/// hash-bucket lock; a new mapping and its clearing each set the page's address under the
/// bucket lock once more.
fn pool_steady_state(events: &mut [(Event, f64)], config: KernelConfig) {
    let (new, maps) = (event(events, Event::PteWrites), event(events, Event::HighmemMaps));
    let wraps = new / config.last_pkmap() as f64;
    for e in events.iter_mut() {
        e.1 = match e.0 {
            Event::PteClears => new,
            Event::TlbFullFlushes | Event::IpiRounds => wraps,
            Event::IpiCpus => wraps * f64::from(config.cpus().saturating_sub(1)),
            Event::LockAcquisitions => 4.0 * maps + 2.0 * new,
            _ => e.1,
        };
    }
}

/// Run one row.
fn run_row(rs: &RowSpec, plan: &Plan, sample: &[Bytes], extents: &[Option<Bytes>], reps: usize) -> Result<Row, String> {
    let err = |e: btrfs_compress::Error| format!("{} {} {}: {e}", rs.spec, rs.strategy, rs.backend);
    let mem = PhysMem::new(rs.backend, 4096, 4096).map_err(|e| err(e.into()))?;
    let setup = Setup {
        spec: rs.spec,
        kloop: rs.kloop,
        config: rs.config,
        strategy: rs.strategy,
        init_on_alloc: plan.init_on_alloc,
        range_reserve: plan.range_reserve,
        highmem_fraction: plan.highmem_fraction,
        zlib_backend: plan.zlib_rs.then_some(btrfs_compress::ZlibBackend::ZlibRs),
        write_size: replay::DEFAULT_WRITE_SIZE,
    };
    let mut ctx = replay::context(&mem, &setup).map_err(err)?;
    let jobs: Vec<(&Bytes, Option<&Bytes>)> = match rs.op {
        Op::Decompress => sample.iter().zip(extents).filter_map(|(d, e)| e.as_ref().map(|e| (d, Some(e)))).collect(),
        _ => sample.iter().map(|d| (d, None)).collect(),
    };
    let n = jobs.len().max(1) as f64;
    let bytes: usize = jobs.iter().map(|j| j.0.len()).sum();
    let Measured { mut times, mut raw_times, mut ratios, ev, counters, stored, plain, faulted } =
        measure(rs, &mut ctx, &setup, &jobs, reps).map_err(err)?;
    let rates: Vec<f64> = times.iter().map(|t| bytes as f64 / t / 1e6).collect();
    let t = median(&mut times);
    let [calls, maps, unmaps, remaps, rpages, copied, sys] = per(&counters, n);
    let (events, held, preemptions) = per_extent_events(rs, plan, &ev, &counters, n * reps as f64, t / n);
    let get = |e: Event| event(&events, e);
    // A row whose calls fault has no cost: the kernel oopses.
    let modeled = if faulted > 0 { f64::NAN } else { plan.costs.ns(&events_priced(&events), None) };
    Ok(Row {
        kind: "strategy",
        config: rs.config.name(),
        kloop: rs.kloop.name(),
        spec: (rs.op != Op::Heuristic).then_some(rs.spec),
        zlib_backend: match (rs.spec.alg, plan.zlib_rs) {
            (CompressType::Zlib, true) => "zlib-rs",
            (CompressType::Zlib, false) => "kernel",
            _ => "",
        },
        strategy: rs.strategy,
        backend: rs.backend.name().into(),
        page_size: 4096,
        folio_order: rs.kloop.block_max_order(rs.config),
        op: rs.op,
        faulted_extents: faulted,
        highmem_fraction: if rs.config.has_highmem() { plan.highmem_fraction } else { 0.0 },
        extents: jobs.len(),
        mb_s: if jobs.is_empty() { f64::NAN } else { bytes as f64 / t / 1e6 },
        mb_s_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
        mb_s_max: rates.iter().copied().fold(0.0, f64::max),
        raw_mb_s: bytes as f64 / median(&mut raw_times) / 1e6,
        ratio_vs_raw: median(&mut ratios),
        compression_ratio: if stored > 0 { bytes as f64 / stored as f64 } else { f64::NAN },
        incompressible: plain,
        map_calls_per_extent: calls,
        maps_per_extent: maps,
        unmaps_per_extent: unmaps,
        forced_remaps_per_extent: remaps,
        range_pages_per_extent: rpages,
        bytes_copied_per_extent: copied,
        syscalls_per_extent: sys,
        api_calls_per_extent: get(Event::ApiCalls),
        highmem_maps_per_extent: get(Event::HighmemMaps),
        lowmem_maps_per_extent: get(Event::LowmemMaps),
        pte_writes_per_extent: get(Event::PteWrites),
        pte_clears_per_extent: get(Event::PteClears),
        tlb_single_flushes_per_extent: get(Event::TlbSingleFlushes),
        tlb_full_flushes_per_extent: get(Event::TlbFullFlushes),
        ipis_per_extent: get(Event::IpiCpus),
        locks_per_extent: get(Event::LockAcquisitions),
        slab_allocs_per_extent: get(Event::SlabAllocs),
        vmap_calls_per_extent: get(Event::VmapCalls),
        slots_high_water: ev.slots_high_water,
        vmalloc_high_water_pages: ev.vmalloc_high_water_pages,
        library_calls_per_extent: counters.library_calls as f64 / n,
        slots_held_in_library: held,
        preemptions_per_extent: preemptions,
        measured_us_per_extent: t / n * 1e6,
        measured_arch: std::env::consts::ARCH,
        modeled_ns_per_extent: modeled,
        modeled_map_us_per_extent: modeled / 1000.0,
        events,
    })
}

/// High-water marks are resources, not per-extent counts: they are not summed into time.
fn events_priced(events: &[(Event, f64)]) -> Vec<(Event, f64)> {
    events.iter().filter(|e| !e.0.is_resource()).copied().collect()
}

/// One event's per-extent count in a row's events (all are there: they are made from
/// [`Event::ALL`]).
fn event(events: &[(Event, f64)], e: Event) -> f64 {
    events.iter().find(|x| x.0 == e).map_or(0.0, |x| x.1)
}

/// `btrfs-compress bench`. Errors: (exit code, message).
pub fn run(args: BenchArgs) -> Result<(), (u8, String)> {
    let plan = plan(&args)?;
    let lv = level(&args);
    let pieces: Vec<Piece> = match &args.corpus {
        Some(dir) => corpus::from_dir(dir, lv.corpus_mib << 20).map_err(|e| (1, format!("{}: {e}", dir.display())))?,
        None => corpus::builtin(lv.corpus_mib),
    };
    if pieces.is_empty() {
        return Err((1, "the corpus is empty".into()));
    }
    let n = lv.sample.min(pieces.len()).max(1);
    let sample: Vec<Bytes> = (0..n).map(|i| pieces[i * pieces.len() / n].data.clone()).collect();
    let mut extents: BTreeMap<String, Vec<Option<Bytes>>> = BTreeMap::new();
    for s in &plan.specs {
        extents.insert(s.to_string(), extents_of(*s, &sample, plan.zlib_rs));
    }
    let pb = ProgressBar::new(plan.rows.len() as u64);
    pb.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} rows {msg}").expect("template"));
    let stdout = std::io::stdout();
    let mut table_out: Box<dyn Write> = if args.json { Box::new(std::io::stderr()) } else { Box::new(stdout.lock()) };
    // The table goes to the report, and to the terminal only with --wide (or --json: stderr).
    let show_table = args.wide || args.json;
    if show_table {
        let _ = writeln!(table_out, "{}", report::legend(args.wide));
        let _ = writeln!(table_out, "{}", report::header(args.wide));
    }
    let mut rows = Vec::new();
    for rs in &plan.rows {
        pb.set_message(format!("{} {} {}", rs.spec, rs.strategy, rs.op.name()));
        let row = run_row(rs, &plan, &sample, &extents[&rs.spec.to_string()], lv.reps).map_err(|m| (1, m))?;
        pb.suspend(|| {
            if show_table {
                let _ = writeln!(table_out, "{}", report::line(&row, args.wide));
            }
            if args.json {
                println!("{}", serde_json::to_string(&row).expect("row serializes"));
            }
        });
        rows.push(row);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let be = answer::break_even(&rows, &plan.costs);
    let short = answer::short_answer(&rows, &be);
    let v = verdict::verdict(&rows, &plan.costs);
    if show_table {
        let _ = writeln!(table_out, "\n{v}");
    }
    let _ = write!(table_out, "{}{short}", if show_table { "\n" } else { "" });
    match &plan.report {
        Some(dir) => {
            let grid = answer::joint_grid(&rows, &plan.costs);
            let text = format!(
                "{}\n{short}\n{}\n{}",
                v.trim_end(),
                answer::break_even_markdown(&be),
                answer::joint_grid_markdown(&grid)
            );
            report::write(dir, &rows, &plan.costs, &text, &be, &grid)
                .map_err(|e| (1, format!("{}: {e}", dir.display())))?;
            let _ = writeln!(
                table_out,
                "The tables, the full verdict, the break-even costs, a joint grid and the plots: {}/summary.md{}",
                dir.display(),
                if show_table { "" } else { " (--wide prints the tables here)" }
            );
        }
        None if !show_table => {
            let _ = writeln!(table_out, "(--wide prints the tables and the full verdict; --report DIR writes them)");
        }
        None => {}
    }
    Ok(())
}
