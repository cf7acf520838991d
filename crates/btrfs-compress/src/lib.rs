//! btrfs compression paths over mapped pages: the dispatchers of compression.c and a library API
//! on [`bytes::Bytes`].
//!
//! * [`Codecs`] holds the workspace managers of the three codecs and dispatches like
//!   `btrfs_compress_folios()`, `btrfs_decompress_bio()` and `btrfs_decompress()`;
//! * [`compress_extent`], [`decompress_extent`], [`decompress_inline`] and [`compress_buffer`]
//!   are the user-facing calls: one extent of at most 128 KiB, or a whole buffer cut into 128 KiB
//!   extents compressed in parallel with rayon, results in order.
//!
//! Every call runs the kernel's page loops over pages of a "physical" memory with the mapping
//! [`Strategy`] and memory [`Backend`] chosen in [`Options`]; the bytes never depend on them.
//!
//! ```
//! use btrfs_compress::{compress_extent, decompress_extent, Options};
//! use btrfs_compression::parse_compress_option;
//! use bytes::Bytes;
//!
//! let data = Bytes::from("hello btrfs ".repeat(12000));
//! let spec = parse_compress_option("zstd:3").unwrap();
//! let ext = compress_extent(&data.slice(..131072), spec, &Options::default()).unwrap();
//! assert!(ext.data.len() < 131072);
//! let back = decompress_extent(spec.alg, &ext.data, 131072, 0, 131072, &Options::default()).unwrap();
//! assert_eq!(back, data.slice(..131072));
//! ```
#![forbid(unsafe_code)]

pub mod kernel;
pub mod replay;
pub mod usage;

use btrfs_compression::Incompressible;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub use btrfs_compression::heuristic;
use btrfs_compression::workspace::WorkspaceManager;
pub use btrfs_compression::{
    compression_saves_sector, parse_compress_option, CompressArgs, CompressResult, CompressSpec, CompressType,
    CompressedBio, CorruptKind, DestRange, Error, Result, BTRFS_MAX_COMPRESSED, BTRFS_MAX_UNCOMPRESSED, SECTORSIZE,
};
pub use btrfs_compression::{Codec, CodecArgs, InlineRead, InputChunk, LoopVariant};
use btrfs_lzo::Lzo;
pub use btrfs_lzo::LzoBackend;
use btrfs_zlib::Zlib;
pub use btrfs_zlib::{KernelEra, ZlibBackend};
use btrfs_zstd::Zstd;
use btrfs_zstd::ZstdWorkspaceManager;
use bytes::Bytes;
use highmem::FolioVec;
pub use highmem::{Backend, KmapPool, MapCounters, MapCtx, PhysMem, Strategy};
use rayon::prelude::*;

/// How the page loops run: memory backend, page size, folio order and mapping strategy, plus
/// the codec variants. None of these change the bytes produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Options {
    /// Mapping strategy of the loops.
    pub strategy: Strategy,
    /// Where the page frames live.
    pub backend: Backend,
    /// Page size (4096, 16384 or 65536).
    pub page_size: usize,
    /// The filesystem's sector size (4096 to 65536, a power of two; the superblock's
    /// `sectorsize`): lzo's segments, the inline limit, the "save a sector" rule.
    pub sectorsize: usize,
    /// Order of the page-cache folios holding the data (clamped to at most 128 KiB).
    pub folio_order: u32,
    /// Order of the output (compressed) folios; 0 as in the kernel.
    pub out_order: u32,
    /// The compression loop: the kernel's, or zstd's 2022 v1-v4 loop that kmaps the output
    /// page too (LIFO re-maps; the other codecs run the kernel's).
    pub compress_loop: LoopVariant,
    /// lzo: which LZO1X encoder.
    pub lzo_backend: LzoBackend,
    /// zlib: which deflate (the kernel's, in an era, or zlib-rs).
    pub zlib_backend: ZlibBackend,
    /// How the zstd and zlib compression loops size the input they hand the library: up to the
    /// end of each page or mapping (6.x), or of each page-cache folio as 7.x does
    /// (`btrfs_calc_input_length()`: with large folios this changes where zlib's sync flushes
    /// fall, hence its bytes, and under HIGHMEM it reads past a one-page mapping).
    pub input_chunk: InputChunk,
    /// The decompression loop: the kernel's, or (zstd and zlib) straight into the mapped
    /// destination pages instead of through the workspace buffer and
    /// `btrfs_decompress_buf2page()` (not a kernel loop; see `btrfs_zstd::in_place::decompress_bio`).
    /// lzo runs the kernel's.
    pub decompress_loop: LoopVariant,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            strategy: Strategy::Direct,
            backend: Backend::Heap,
            page_size: 4096,
            sectorsize: SECTORSIZE,
            folio_order: 0,
            out_order: 0,
            compress_loop: LoopVariant::Kernel,
            lzo_backend: LzoBackend::Kernel,
            zlib_backend: ZlibBackend::default(),
            input_chunk: InputChunk::Page,
            decompress_loop: LoopVariant::Kernel,
        }
    }
}

impl Options {
    /// The sector size, if btrfs has it: a power of two from 4 KiB to 64 KiB.
    pub fn checked_sectorsize(&self) -> Result<usize> {
        match self.sectorsize {
            s if s.is_power_of_two() && (4096..=65536).contains(&s) => Ok(s),
            s => Err(Error::InvalidArgument(format!("sector size {s} (btrfs has 4096 to 65536, a power of two)"))),
        }
    }

    /// The folio order actually used: at least a sector (`block_min_order`: a block never
    /// spans folios), at most 128 KiB per folio.
    pub fn effective_folio_order(&self) -> u32 {
        let min_order = (self.sectorsize / self.page_size.max(1)).max(1).trailing_zeros();
        clamp_order(self.folio_order.max(min_order), self.page_size)
    }

    /// The output folio order actually used.
    pub fn effective_out_order(&self) -> u32 {
        clamp_order(self.out_order, self.page_size)
    }
}

fn clamp_order(order: u32, page_size: usize) -> u32 {
    let max = (BTRFS_MAX_COMPRESSED / page_size.max(1)).max(1).trailing_zeros();
    order.min(max)
}

/// The workspace managers of all three codecs (`btrfs_compress_op` table of compression.c).
pub struct Codecs {
    zlib: WorkspaceManager<btrfs_zlib::Workspace>,
    lzo: WorkspaceManager<btrfs_lzo::Workspace>,
    zstd: ZstdWorkspaceManager<btrfs_zstd::Workspace>,
}

impl Default for Codecs {
    fn default() -> Self {
        Self::new()
    }
}

impl Codecs {
    /// Managers sized for the online CPUs (models `btrfs_init_compress()`).
    pub fn new() -> Self {
        Self {
            zlib: btrfs_zlib::workspace_manager(4096),
            lzo: btrfs_lzo::workspace_manager(4096, LzoBackend::Kernel),
            zstd: btrfs_zstd::workspace_manager(4096),
        }
    }

    /// Workspace statistics: (zlib, lzo, zstd).
    pub fn stats(
        &self,
    ) -> (
        btrfs_compression::workspace::WorkspaceStats,
        btrfs_compression::workspace::WorkspaceStats,
        btrfs_compression::workspace::WorkspaceStats,
    ) {
        (self.zlib.stats(), self.lzo.stats(), self.zstd.stats())
    }

    /// Models `btrfs_compress_folios()`: compress `args` with `spec` into `out`.
    pub fn compress_folios(
        &self,
        spec: CompressSpec,
        opts: &Options,
        ctx: &mut MapCtx,
        args: &CompressArgs<'_>,
        out: &mut FolioVec,
    ) -> Result<CompressResult> {
        let a = CodecArgs {
            level: spec.level,
            sectorsize: args.sectorsize,
            variant: opts.compress_loop,
            input: opts.input_chunk,
        };
        match spec.alg {
            CompressType::Zlib => {
                let mut ws = self.zlib.get();
                ws.set_backend(opts.zlib_backend);
                Zlib::compress_folios(&mut ws, &a, ctx, args, out)
            }
            CompressType::Lzo => {
                let mut ws = self.lzo.get();
                ws.set_backend(opts.lzo_backend);
                Lzo::compress_folios(&mut ws, &a, ctx, args, out)
            }
            CompressType::Zstd => Zstd::compress_folios(&mut self.zstd.get(spec.level), &a, ctx, args, out),
            CompressType::None => Err(Error::InvalidArgument("no compression algorithm".into())),
        }
    }

    /// Models `btrfs_decompress_bio()`: decompress a whole compressed extent into `dest`, with
    /// the loop variant of `opts`.
    pub fn decompress_bio(
        &self,
        alg: CompressType,
        opts: &Options,
        ctx: &mut MapCtx,
        cb: &CompressedBio,
        dest: &mut DestRange,
    ) -> Result<()> {
        let a = CodecArgs { variant: opts.decompress_loop, sectorsize: opts.sectorsize, ..CodecArgs::default() };
        match alg {
            CompressType::Zlib => Zlib::decompress_bio(&mut self.zlib.get(), &a, ctx, cb, dest),
            CompressType::Lzo => Lzo::decompress_bio(&mut self.lzo.get(), &a, ctx, cb, dest),
            CompressType::Zstd => Zstd::decompress_bio(&mut self.zstd.get(0), &a, ctx, cb, dest),
            CompressType::None => Err(Error::InvalidArgument("extent is not compressed".into())),
        }
    }

    /// Models `btrfs_decompress()`: decompress an inline extent into `dest` at `dest_off`.
    pub fn decompress(
        &self,
        alg: CompressType,
        sectorsize: usize,
        ctx: &mut MapCtx,
        inline: InlineRead<'_>,
    ) -> Result<()> {
        let a = CodecArgs { sectorsize, ..CodecArgs::default() };
        match alg {
            CompressType::Zlib => Zlib::decompress(&mut self.zlib.get(), &a, ctx, inline),
            CompressType::Lzo => Lzo::decompress(&mut self.lzo.get(), &a, ctx, inline),
            CompressType::Zstd => Zstd::decompress(&mut self.zstd.get(0), &a, ctx, inline),
            CompressType::None => Err(Error::InvalidArgument("extent is not compressed".into())),
        }
    }
}

/// CPUs available to this process.
pub fn workspace_cpus() -> usize {
    btrfs_compression::workspace::num_online_cpus()
}

/// Frames per shared physical memory: 64 MiB, enough for well over a hundred extents in flight.
const MEM_BYTES: usize = 64 << 20;

/// One compressed extent.
#[derive(Clone)]
pub struct CompressedExtent {
    /// The exact extent bytes (unpadded; the disk holds them zero-padded to a sector).
    pub data: Bytes,
    /// Bytes of input it holds (`ram_bytes` before sector rounding).
    pub total_in: usize,
    /// What the mapping layer did for this extent.
    pub counters: MapCounters,
}

/// The page-cache folios 7.x on 64-bit holds a file in after it was written once, as the
/// kernel's zlib extents show (7.x feeds deflate a folio at a time, so zlib's bytes depend on
/// them): at each offset the largest naturally aligned folio of at most 64 KiB that ends before the
/// end of the file, single pages after. The orders of the folios covering `[off, off + len)`,
/// sector-rounded.
pub fn page_cache_folios_7x(off: usize, len: usize, file_size: usize) -> Vec<u32> {
    let end = off + len.next_multiple_of(SECTORSIZE);
    let mut p = off;
    let mut orders = Vec::new();
    while p < end {
        let mut order = 4u32;
        while order > 0 && (p % (SECTORSIZE << order) != 0 || p + (SECTORSIZE << order) > file_size) {
            order -= 1;
        }
        orders.push(order);
        p += SECTORSIZE << order;
    }
    orders
}

impl std::fmt::Debug for CompressedExtent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_sized(f, "CompressedExtent", &self.data, ("total_in", self.total_in), &self.counters)
    }
}

/// Debug output of a result holding bytes: their length (not the bytes), one size and the
/// mapping counters.
fn debug_sized(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    data: &Bytes,
    (field, value): (&str, usize),
    counters: &MapCounters,
) -> std::fmt::Result {
    f.debug_struct(name).field("len", &data.len()).field(field, &value).field("counters", counters).finish()
}

/// What a decompression produced.
#[derive(Clone)]
pub struct Decompressed {
    /// The `num_bytes` bytes of file data.
    pub data: Bytes,
    /// How many of them the stream supplied (the rest was zero-filled as the kernel does).
    pub stream_bytes: usize,
    /// What the mapping layer did.
    pub counters: MapCounters,
}

impl std::fmt::Debug for Decompressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_sized(f, "Decompressed", &self.data, ("stream_bytes", self.stream_bytes), &self.counters)
    }
}

/// One 128 KiB piece of a buffer as btrfs would store it.
#[derive(Clone)]
pub enum Extent {
    /// Stored compressed.
    Compressed(CompressedExtent),
    /// Stored as is (the codec gave up or it would not save a sector).
    Plain(Bytes),
}

impl std::fmt::Debug for Extent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Extent::Compressed(c) => c.fmt(f),
            Extent::Plain(b) => write!(f, "Plain({} bytes)", b.len()),
        }
    }
}

impl Extent {
    /// Bytes this extent occupies (unpadded).
    pub fn stored_len(&self) -> usize {
        match self {
            Extent::Compressed(c) => c.data.len(),
            Extent::Plain(b) => b.len(),
        }
    }
}

/// A "physical memory" and its kmap pool.
type SharedMem = (PhysMem, Arc<KmapPool>);

/// An explicit compression context: the workspace managers of the three codecs (`Codecs`) and
/// the "physical memories" (one per backend and page size, with its kmap pool) the page loops
/// run in. Each thread keeps one mapping context per engine, backend, page size and strategy, so
/// an engine is meant to live long (the free functions use [`Engine::global`]).
pub struct Engine {
    id: u64,
    codecs: Codecs,
    mems: Mutex<HashMap<(Backend, usize), SharedMem>>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    static CTXS: RefCell<HashMap<(u64, Backend, usize, Strategy), MapCtx>> = RefCell::new(HashMap::new());
}

impl Engine {
    /// A new engine: codecs sized for the online CPUs (`btrfs_init_compress()`), no memory yet.
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self { id: NEXT.fetch_add(1, Ordering::Relaxed), codecs: Codecs::new(), mems: Mutex::new(HashMap::new()) }
    }

    /// The process-wide engine the free functions use.
    pub fn global() -> &'static Engine {
        static E: OnceLock<Engine> = OnceLock::new();
        E.get_or_init(Engine::new)
    }

    /// Its codecs.
    pub fn codecs(&self) -> &Codecs {
        &self.codecs
    }

    /// Its "physical memory" (and kmap pool) for a backend and page size, made on first use.
    pub fn mem(&self, backend: Backend, page_size: usize) -> Result<(PhysMem, Arc<KmapPool>)> {
        let mut m = self.mems.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = m.get(&(backend, page_size)) {
            return Ok(v.clone());
        }
        let mem = PhysMem::new(backend, page_size, MEM_BYTES / page_size)?;
        let pool = Arc::new(KmapPool::new(&mem)?);
        m.insert((backend, page_size), (mem.clone(), Arc::clone(&pool)));
        Ok((mem, pool))
    }

    /// Run `f` with this thread's mapping context for `opts` (created on first use; the kmap
    /// pool is shared by all threads).
    pub fn with_ctx<T>(&self, opts: &Options, f: impl FnOnce(&mut MapCtx) -> Result<T>) -> Result<T> {
        let key = (self.id, opts.backend, opts.page_size, opts.strategy);
        CTXS.with(|c| {
            let mut map = c.borrow_mut();
            let ctx = match map.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let (mem, pool) = self.mem(opts.backend, opts.page_size)?;
                    v.insert(match opts.strategy {
                        Strategy::GlobalKmap => MapCtx::with_pool(pool)?,
                        s => MapCtx::new(&mem, s)?,
                    })
                }
            };
            f(ctx)
        })
    }

    /// Compress one extent of at most 128 KiB as btrfs would write it: `Incompressible` when the
    /// codec gives up (`-E2BIG`) or when the result would not save at least one sector.
    pub fn compress_extent(&self, data: &[u8], spec: CompressSpec, opts: &Options) -> Result<CompressedExtent> {
        let ext = self.compress_extent_raw(data, spec, opts)?;
        if !compression_saves_sector(ext.total_in, ext.data.len(), opts.sectorsize) {
            return Err(Error::Incompressible(Incompressible::SavesNoSector));
        }
        Ok(ext)
    }

    /// Compress one extent without the caller's "must save a sector" rule (the codec's own
    /// `-E2BIG` rules still apply). Used for inline extents and by benchmarks.
    pub fn compress_extent_raw(&self, data: &[u8], spec: CompressSpec, opts: &Options) -> Result<CompressedExtent> {
        self.compress_extent_in_folios(data, spec, opts, None)
    }

    /// [`compress_extent_raw`] with the page cache in folios of the given orders, in file order
    /// (a real page cache mixes them: 7.x on 64-bit writes 64 KiB folios where they fit before the
    /// end of the file and single pages after). `None`: all of [`Options::folio_order`]. The folios
    /// must cover `data`.
    pub fn compress_extent_in_folios(
        &self,
        data: &[u8],
        spec: CompressSpec,
        opts: &Options,
        orders: Option<&[u32]>,
    ) -> Result<CompressedExtent> {
        if data.is_empty() || data.len() > BTRFS_MAX_UNCOMPRESSED {
            return Err(Error::InvalidArgument(format!(
                "extent input of {} bytes (must be 1..={BTRFS_MAX_UNCOMPRESSED})",
                data.len()
            )));
        }
        self.with_ctx(opts, |ctx| {
            let before = ctx.counters();
            let pages = match orders {
                None => FolioVec::from_slice(ctx.mem(), data, opts.effective_folio_order())?,
                Some(orders) => {
                    let mut v = FolioVec::new();
                    for &o in orders {
                        v.push(ctx.mem().alloc_folio(clamp_order(o, opts.page_size))?);
                    }
                    if v.len() < data.len() {
                        return Err(Error::InvalidArgument(format!(
                            "folios of {} bytes for {} bytes",
                            v.len(),
                            data.len()
                        )));
                    }
                    v.write_direct(0, data);
                    v
                }
            };
            let mut args = CompressArgs::new(&pages, 0, data.len())?;
            args.out_order = opts.effective_out_order();
            args.sectorsize = opts.checked_sectorsize()?;
            let mut out = FolioVec::new();
            let res = self.codecs.compress_folios(spec, opts, ctx, &args, &mut out)?;
            let bytes = Bytes::from(out.to_vec(0, res.total_out));
            Ok(CompressedExtent { data: bytes, total_in: res.total_in, counters: ctx.counters().since(&before) })
        })
    }

    /// Compress data for an inline extent (file offset 0, the whole file, at most one sector), as
    /// `compress_file_range()` does: whatever the codec returns without an error is stored inline
    /// if it is no more than `max_inline` (the mount option, default 2048) — even when it is larger
    /// than the data, which lzo (no final size check) does for short inputs: the running 6.18 kernel
    /// stores a 300-byte text file as 302 bytes of lzo inline (the estimate oracle test).
    pub fn compress_inline(
        &self,
        data: &[u8],
        spec: CompressSpec,
        max_inline: usize,
        opts: &Options,
    ) -> Result<CompressedExtent> {
        if data.len() > opts.checked_sectorsize()? {
            return Err(Error::InvalidArgument(format!("inline data of {} bytes is larger than a sector", data.len())));
        }
        let ext = self.compress_extent_raw(data, spec, opts)?;
        if ext.data.len() > max_inline {
            return Err(Error::Incompressible(Incompressible::InlineTooLarge));
        }
        Ok(ext)
    }

    /// Decompress a regular extent (`btrfs_decompress_bio()`): `disk` is the on-disk data
    /// (sector padding allowed), `ram_bytes` the decompressed size of the whole extent, and the
    /// file uses bytes `[offset, offset + num_bytes)` of it. Output the stream does not cover is
    /// zero-filled; output past `ram_bytes` is dropped.
    pub fn decompress_extent(
        &self,
        alg: CompressType,
        disk: &[u8],
        ram_bytes: usize,
        offset: usize,
        num_bytes: usize,
        opts: &Options,
    ) -> Result<Bytes> {
        self.decompress_extent_full(alg, disk, ram_bytes, offset, num_bytes, opts).map(|d| d.data)
    }

    /// [`decompress_extent`] with the details.
    pub fn decompress_extent_full(
        &self,
        alg: CompressType,
        disk: &[u8],
        ram_bytes: usize,
        offset: usize,
        num_bytes: usize,
        opts: &Options,
    ) -> Result<Decompressed> {
        opts.checked_sectorsize()?;
        if ram_bytes == 0 || ram_bytes > BTRFS_MAX_UNCOMPRESSED {
            return Err(Error::InvalidArgument(format!(
                "ram_bytes {ram_bytes} (a compressed extent holds 1..={BTRFS_MAX_UNCOMPRESSED} bytes)"
            )));
        }
        if num_bytes == 0 || offset.checked_add(num_bytes).is_none_or(|e| e > ram_bytes) {
            return Err(Error::InvalidArgument(format!(
                "range offset {offset} + num_bytes {num_bytes} outside ram_bytes {ram_bytes}"
            )));
        }
        self.with_ctx(opts, |ctx| {
            let before = ctx.counters();
            let cb = CompressedBio::from_slice(ctx.mem(), disk)?;
            let mut dest = DestRange::new(ctx.mem(), offset, num_bytes, opts.effective_folio_order())?;
            self.codecs.decompress_bio(alg, opts, ctx, &cb, &mut dest)?;
            Ok(Decompressed {
                data: Bytes::from(dest.to_vec()),
                stream_bytes: dest.stream_bytes(),
                counters: ctx.counters().since(&before),
            })
        })
    }

    /// Decompress an inline extent (`btrfs_decompress()`): the item's data and its `ram_bytes`
    /// (at most one sector: 16 KiB and 64 KiB sectors hold inline extents of more than 4 KiB).
    /// Newer kernels store a full sector; the output is cut to `ram_bytes`.
    pub fn decompress_inline(&self, alg: CompressType, data: &[u8], ram_bytes: usize, opts: &Options) -> Result<Bytes> {
        let ss = opts.checked_sectorsize()?;
        if ram_bytes == 0 || ram_bytes > ss {
            return Err(Error::InvalidArgument(format!("inline ram_bytes {ram_bytes} (must be 1..={ss})")));
        }
        if data.is_empty() || data.len() > BTRFS_MAX_COMPRESSED {
            return Err(Error::InvalidArgument(format!("inline data of {} bytes", data.len())));
        }
        self.with_ctx(opts, |ctx| {
            let mut dest = FolioVec::alloc(ctx.mem(), ram_bytes, 0)?;
            self.codecs.decompress(
                alg,
                ss,
                ctx,
                InlineRead { data_in: data, dest: &mut dest, dest_off: 0, destlen: ram_bytes },
            )?;
            Ok(Bytes::from(dest.to_vec(0, ram_bytes)))
        })
    }

    /// Compress a whole buffer in 128 KiB extents, in parallel with rayon, results in order.
    /// Errors other than `Incompressible` are returned.
    pub fn compress_buffer(&self, data: &Bytes, spec: CompressSpec, opts: &Options) -> Result<Vec<Extent>> {
        let chunks: Vec<Bytes> = (0..data.len())
            .step_by(BTRFS_MAX_UNCOMPRESSED)
            .map(|o| data.slice(o..(o + BTRFS_MAX_UNCOMPRESSED).min(data.len())))
            .collect();
        chunks
            .into_par_iter()
            .map(|c| match self.compress_extent(&c, spec, opts) {
                Ok(e) => Ok(Extent::Compressed(e)),
                Err(Error::Incompressible(_)) => Ok(Extent::Plain(c)),
                Err(e) => Err(e),
            })
            .collect()
    }
}

/// The "physical memory" of [`Engine::global`] for a backend and page size.
pub fn shared_mem(backend: Backend, page_size: usize) -> Result<(PhysMem, Arc<KmapPool>)> {
    Engine::global().mem(backend, page_size)
}

/// Run `f` with this thread's mapping context of [`Engine::global`] for `opts`.
pub fn with_ctx<T>(opts: &Options, f: impl FnOnce(&mut MapCtx) -> Result<T>) -> Result<T> {
    Engine::global().with_ctx(opts, f)
}

/// Compress one extent of at most 128 KiB as btrfs would write it: `Incompressible` when the
/// codec gives up (`-E2BIG`) or when the result would not save at least one sector.
///
/// On [`Engine::global`].
pub fn compress_extent(data: &[u8], spec: CompressSpec, opts: &Options) -> Result<CompressedExtent> {
    Engine::global().compress_extent(data, spec, opts)
}

/// Compress one extent without the caller's "must save a sector" rule (the codec's own
/// `-E2BIG` rules still apply). Used for inline extents and by benchmarks.
///
/// On [`Engine::global`].
pub fn compress_extent_raw(data: &[u8], spec: CompressSpec, opts: &Options) -> Result<CompressedExtent> {
    Engine::global().compress_extent_raw(data, spec, opts)
}

/// [`compress_extent_raw`] with the page cache in folios of the given orders, in file order
/// (a real page cache mixes them: 7.x on 64-bit writes 64 KiB folios where they fit before the
/// end of the file and single pages after). `None`: all of [`Options::folio_order`]. The folios
/// must cover `data`.
///
/// On [`Engine::global`].
pub fn compress_extent_in_folios(
    data: &[u8],
    spec: CompressSpec,
    opts: &Options,
    orders: Option<&[u32]>,
) -> Result<CompressedExtent> {
    Engine::global().compress_extent_in_folios(data, spec, opts, orders)
}

/// Compress data for an inline extent (file offset 0, the whole file, at most one sector), as
/// `compress_file_range()` does: whatever the codec returns without an error is stored inline
/// if it is no more than `max_inline` (the mount option, default 2048) — even when it is larger
/// than the data, which lzo (no final size check) does for short inputs: the running 6.18 kernel
/// stores a 300-byte text file as 302 bytes of lzo inline (the estimate oracle test).
///
/// On [`Engine::global`].
pub fn compress_inline(data: &[u8], spec: CompressSpec, max_inline: usize, opts: &Options) -> Result<CompressedExtent> {
    Engine::global().compress_inline(data, spec, max_inline, opts)
}

/// Decompress a regular extent (`btrfs_decompress_bio()`): `disk` is the on-disk data
/// (sector padding allowed), `ram_bytes` the decompressed size of the whole extent, and the
/// file uses bytes `[offset, offset + num_bytes)` of it. Output the stream does not cover is
/// zero-filled; output past `ram_bytes` is dropped.
///
/// On [`Engine::global`].
pub fn decompress_extent(
    alg: CompressType,
    disk: &[u8],
    ram_bytes: usize,
    offset: usize,
    num_bytes: usize,
    opts: &Options,
) -> Result<Bytes> {
    Engine::global().decompress_extent(alg, disk, ram_bytes, offset, num_bytes, opts)
}

/// [`decompress_extent`] with the details.
///
/// On [`Engine::global`].
pub fn decompress_extent_full(
    alg: CompressType,
    disk: &[u8],
    ram_bytes: usize,
    offset: usize,
    num_bytes: usize,
    opts: &Options,
) -> Result<Decompressed> {
    Engine::global().decompress_extent_full(alg, disk, ram_bytes, offset, num_bytes, opts)
}

/// Decompress an inline extent (`btrfs_decompress()`): the item's data and its `ram_bytes`
/// (at most one page). Newer kernels store a full sector; the output is cut to `ram_bytes`.
///
/// On [`Engine::global`].
pub fn decompress_inline(alg: CompressType, data: &[u8], ram_bytes: usize, opts: &Options) -> Result<Bytes> {
    Engine::global().decompress_inline(alg, data, ram_bytes, opts)
}

/// Compress a whole buffer in 128 KiB extents, in parallel with rayon, results in order.
/// Errors other than `Incompressible` are returned.
///
/// On [`Engine::global`].
pub fn compress_buffer(data: &Bytes, spec: CompressSpec, opts: &Options) -> Result<Vec<Extent>> {
    Engine::global().compress_buffer(data, spec, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_engine_gives_the_global_ones_bytes_with_its_own_workspaces() {
        let data: Vec<u8> = (0..131072u32).map(|i| (i / 7 % 251) as u8).collect();
        let spec = parse_compress_option("zstd:3").unwrap();
        let opts = Options::default();
        let mine = Engine::new();
        let a = mine.compress_extent(&data, spec, &opts).unwrap();
        let b = compress_extent(&data, spec, &opts).unwrap();
        assert_eq!(a.data, b.data);
        let back = mine.decompress_extent(spec.alg, &a.data, data.len(), 0, data.len(), &opts).unwrap();
        assert_eq!(&back[..], &data[..]);
        // The explicit engine used its own zstd workspaces, not the global ones.
        assert!(mine.codecs().stats().2.gets >= 2);
        let other = Engine::new();
        let (m1, _) = mine.mem(Backend::Heap, 4096).unwrap();
        let (m2, _) = other.mem(Backend::Heap, 4096).unwrap();
        let before = m2.frames_in_use();
        let held = m1.alloc_folio(3).unwrap();
        assert_eq!(m2.frames_in_use(), before, "each engine has its own physical memory");
        drop(held);
    }
}
