//! Replays what a kernel does with one file, extent by extent, through the modeled loops: the
//! writeback of a file written once and synced (compress-force, or compress= with the heuristic),
//! and the read of it after the page cache was dropped. Each codec call yields the
//! [`KernelEvents`] the kernel would have had; `tools/qemu-kmap-trace.py` records the same calls
//! of a real 6.1 HIGHMEM kernel, and the lab's rows are built on the same replay.
//!
//! What it follows of 6.1's `compress_file_range()` / `inode_need_compress()` (fs/btrfs/inode.c):
//! delalloc is cut into async chunks of 512 KiB and each into 128 KiB pieces from its start; with
//! compress= the heuristic runs once over the start of the delalloc range
//! (`btrfs_run_delalloc_range()`) and again before each piece; a piece that does not compress ends
//! compression for the rest of its chunk (it is written plain).

use bytes::Bytes;
use highmem::{FolioVec, KernelConfig, KernelEvents, MapCtx, PhysMem, Strategy, Zone};

use crate::{CompressArgs, CompressSpec, CompressedBio, DestRange, Error, Options, Result};

/// Which kernel's loops to run (`--loop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelLoop {
    /// 6.1: zstd v6 (output through page_address), input kmap_local_page per page.
    V6_1,
    /// 6.12: input through kmap_local_folio page by page, output folio_address.
    V6_12,
    /// 7.2.13 as shipped: input chunks to the end of the folio (`btrfs_calc_input_length()`);
    /// large data folios on 64-bit, off under CONFIG_HIGHMEM (`open_ctree()` sets
    /// `block_max_order = block_min_order`), so page-sized chunks there.
    V7_2,
    /// 7.2-rc3 (kdave/btrfs-progs#1146): the 7.2 loops with large data folios under HIGHMEM too.
    /// `kmap_local_folio()` maps one page and the library is handed the rest of the folio:
    /// zstd and zlib compression fault.
    V7_2Rc3,
    /// Our ways out: 7.2-rc3 with each input chunk cut to what its mapping covers. With
    /// kmap_local that is page stepping, way out (a) (`tools/qemu-highmem-7x.py`'s `step`
    /// kernel); with `range-split`, a `kmap_local_range()` of several slots, way out (c).
    V7_2Step,
    /// The June 2022 v4 zstd loop: output kmapped above the input, re-mapped at every input switch.
    V4_2022,
}

impl KernelLoop {
    /// Every loop.
    pub const ALL: [KernelLoop; 6] = [
        KernelLoop::V6_1,
        KernelLoop::V6_12,
        KernelLoop::V7_2,
        KernelLoop::V7_2Rc3,
        KernelLoop::V7_2Step,
        KernelLoop::V4_2022,
    ];

    /// Name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            KernelLoop::V6_1 => "6.1",
            KernelLoop::V6_12 => "6.12",
            KernelLoop::V7_2 => "7.2",
            KernelLoop::V7_2Rc3 => "7.2-rc3",
            KernelLoop::V7_2Step => "7.2-step",
            KernelLoop::V4_2022 => "v4-2022",
        }
    }

    /// Parse a [`KernelLoop::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == s)
    }

    /// The release whose facts this loop follows ([`crate::kernel::KernelProfile`]). The
    /// 2022 v4 loop ran on 5.19-era trees (deflate before 6.3); 7.2-step is 7.2-rc3 patched.
    pub fn profile(self) -> crate::kernel::KernelProfile {
        use crate::kernel::KernelProfile;
        match self {
            KernelLoop::V6_1 | KernelLoop::V4_2022 => KernelProfile::of(6, 1),
            KernelLoop::V6_12 => KernelProfile::of(6, 12),
            KernelLoop::V7_2 => KernelProfile::of(7, 2),
            KernelLoop::V7_2Rc3 | KernelLoop::V7_2Step => KernelProfile::V7_2_RC3,
        }
    }

    /// `block_max_order` of a 4 KiB-sector filesystem under `config` (0: order-0 folios only).
    pub fn block_max_order(self, config: KernelConfig) -> u32 {
        self.profile().block_max_order(config)
    }

    /// Whether `btrfs_decompress_bio()` zero-fills the rest of the read bio after the codec
    /// returns (7.x), rather than the codec inside its own call (6.1).
    pub fn zero_fill_after_codec(self) -> bool {
        self.profile().zero_fill_after_codec()
    }

    /// Whether the compressor is handed the whole sector-rounded range of a file's last sector.
    pub fn compresses_whole_last_sector(self) -> bool {
        self.profile().compresses_whole_last_sector()
    }

    /// How the compression loops size their input chunks with `strategy` in place of the
    /// kernel's `kmap_local_folio()`. 7.x trusts the folio to be mapped to its end: true of the
    /// kernel's call only on 64-bit and for order-0 or lowmem folios (7.2-rc3's fault). A loop
    /// patched for another mapping call would hand the library what that call maps, so the
    /// other strategies' rows cut each chunk to their mapping.
    pub fn input_chunk(self, strategy: Strategy) -> crate::InputChunk {
        match (self, self.profile().input_chunk()) {
            (KernelLoop::V7_2Step, _) => crate::InputChunk::FolioMapped,
            (_, crate::InputChunk::Folio) if strategy != Strategy::KmapLocal => crate::InputChunk::FolioMapped,
            (_, chunk) => chunk,
        }
    }

    /// The library options that run this loop. Under HIGHMEM the 6.1, 6.12 and 7.2 loops make
    /// the same calls page by page (they differ in the folio API and, with large folios, in
    /// 7.x's folio-sized chunks), so they share our merged loop; v4-2022 is zstd's LIFO-remap
    /// loop. The page-cache folios come from [`PageCacheLayout`], not from `folio_order`.
    pub fn options(self, strategy: Strategy) -> Options {
        Options {
            strategy,
            folio_order: 0,
            out_order: 0,
            compress_loop: crate::LoopVariant::lifo_remap(self == KernelLoop::V4_2022),
            // The kernel's deflate of the loop's era.
            zlib_backend: self.profile().zlib_backend(),
            input_chunk: self.input_chunk(strategy),
            ..Options::default()
        }
    }
}

/// The page-cache folios of a file written once from offset 0 in `write_size` writes (what
/// `dd bs=write_size` does), as 7.2.13 allocates them: `calc_write_bytes()` and
/// `prepare_one_folio()` (fs/btrfs/file.c) ask `__filemap_get_folio()` (mm/filemap.c) for a
/// folio of order `ilog2(write_bytes) - PAGE_SHIFT` (`fgf_set_order()`), at most
/// `block_max_order`, lowered to the alignment of the index; the copy stops at the folio's end
/// and the next one starts there. Memory is assumed plentiful (no fallback to smaller orders).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageCacheLayout {
    /// (byte offset, order) of each folio, in file order.
    pub folios: Vec<(usize, u32)>,
}

impl PageCacheLayout {
    /// The folios of a `len`-byte file written in `write_size` writes with folios of at most
    /// `max_order` (4 KiB pages).
    pub fn of_writes(len: usize, write_size: usize, max_order: u32) -> Self {
        const PAGE_SHIFT: u32 = 12;
        let max_folio = 1usize << (PAGE_SHIFT + max_order);
        let mut folios = Vec::new();
        let mut pos = 0usize;
        while pos < len {
            // One write() call: [pos, min(len, next multiple of write_size)).
            let call_end = (pos / write_size.max(1) + 1) * write_size.max(1);
            let call_end = call_end.min(len);
            while pos < call_end {
                let write_bytes = (max_folio - (pos & (max_folio - 1))).min(call_end - pos);
                let shift = usize::BITS - 1 - write_bytes.leading_zeros();
                let mut order = shift.saturating_sub(PAGE_SHIFT).min(max_order);
                let index = pos >> PAGE_SHIFT;
                if index & ((1 << order) - 1) != 0 {
                    order = index.trailing_zeros();
                }
                let start = index << PAGE_SHIFT;
                folios.push((start, order));
                pos = start + (1 << (PAGE_SHIFT + order));
            }
        }
        Self { folios }
    }

    /// The orders of the folios a compression range `[start, end)` sees: each folio that
    /// overlaps it, a folio larger than the range (which `btrfs_calc_input_length()` clips at
    /// the range's end) as a folio of the range's size.
    pub fn range_orders(&self, start: usize, end: usize) -> Vec<u32> {
        let range_order = (end - start).next_power_of_two().trailing_zeros().saturating_sub(12);
        self.folios
            .iter()
            .filter(|&&(off, order)| off < end && off + (4096 << order) > start)
            .map(|&(_, order)| order.min(range_order))
            .collect()
    }
}

/// How the lab's default write fills the page cache: 1 MiB writes, as `dd bs=1M` does in
/// `tools/qemu-highmem-7x.py`.
pub const DEFAULT_WRITE_SIZE: usize = 1 << 20;

/// Write-path mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mount {
    /// `compress-force=`: every piece goes to the codec.
    Force,
    /// `compress=`: the heuristic decides first.
    Heuristic,
}

/// One codec call of the replay.
#[derive(Clone, Debug)]
pub struct Call {
    /// The kernel function the call stands for (`zstd_compress_pages`, ...).
    pub entry: &'static str,
    /// Events of the call.
    pub events: KernelEvents,
    /// Uncompressed bytes of the piece.
    pub len: usize,
    /// The compressed extent, when the call compressed and the kernel would keep it.
    pub extent: Option<Bytes>,
}

/// Everything the replay needs to know besides the data.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Codec and level.
    pub spec: CompressSpec,
    /// Loop.
    pub kloop: KernelLoop,
    /// Kernel configuration.
    pub config: KernelConfig,
    /// Mapping strategy.
    pub strategy: Strategy,
    /// init_on_alloc=1.
    pub init_on_alloc: bool,
    /// Slots `kmap_local_range()` keeps for interrupts.
    pub range_reserve: usize,
    /// Under a HIGHMEM config, the share of page-cache pages that come from HighMem (1.0: all,
    /// as on the traced 3 GiB machine; less when HighMem runs low and the allocator falls back
    /// to Normal). Compressed pages are always lowmem.
    pub highmem_fraction: f64,
    /// The deflate of zlib rows: `None` is the kernel's of the loop's era, `Some` another one
    /// (zlib-rs writes other bytes, so its calls and pages are not the kernel's).
    pub zlib_backend: Option<crate::ZlibBackend>,
    /// The size of the write() calls that filled the page cache (decides its folios where the
    /// loop has large folios; [`DEFAULT_WRITE_SIZE`]).
    pub write_size: usize,
}

impl Setup {
    /// The page-cache folios of a `len`-byte file under this setup.
    pub fn page_cache_layout(&self, len: usize) -> PageCacheLayout {
        PageCacheLayout::of_writes(len, self.write_size, self.kloop.block_max_order(self.config))
    }

    /// The library options that run this setup's loop.
    pub fn options(&self) -> Options {
        let mut o = self.kloop.options(self.strategy);
        if let Some(b) = self.zlib_backend {
            o.zlib_backend = b;
        }
        o
    }
}

const ASYNC_CHUNK: usize = 512 * 1024;
const PIECE: usize = crate::BTRFS_MAX_UNCOMPRESSED;

fn entry(spec: CompressSpec, decompress: bool) -> &'static str {
    use crate::CompressType::*;
    match (spec.alg, decompress) {
        (Zlib, false) => "zlib_compress_pages",
        (Lzo, false) => "lzo_compress_pages",
        (Zstd, false) => "zstd_compress_pages",
        (Zlib, true) => "zlib_decompress_bio",
        (Lzo, true) => "lzo_decompress_bio",
        (Zstd, true) => "zstd_decompress_bio",
        (None, _) => "none",
    }
}

/// A mapping context for `setup` over `mem`.
pub fn context(mem: &PhysMem, setup: &Setup) -> Result<MapCtx> {
    let mut ctx = MapCtx::new(mem, setup.strategy)?;
    ctx.set_config(setup.config);
    ctx.set_init_on_alloc(setup.init_on_alloc);
    ctx.set_range_reserve(setup.range_reserve);
    Ok(ctx)
}

/// Page-cache folios of the given orders holding `data`: under a HIGHMEM config,
/// `setup.highmem_fraction` of them in HighMem, spread evenly.
pub fn page_cache(mem: &PhysMem, data: &[u8], orders: &[u32], setup: &Setup) -> Result<FolioVec> {
    let mut v = FolioVec::from_slice_orders(mem, data, orders)?;
    place_page_cache(&mut v, setup);
    Ok(v)
}

fn place_page_cache(v: &mut FolioVec, setup: &Setup) {
    if setup.config.has_highmem() {
        v.set_highmem_fraction(setup.highmem_fraction);
    } else {
        v.set_zone(Zone::Normal);
    }
}

/// Compress one piece held in page-cache folios of `orders` (see
/// [`PageCacheLayout::range_orders`]): the codec call's events, and the extent if the kernel
/// keeps it. A fault (the library read past its mapping: 7.2-rc3's oops) is a call with
/// `events.faults` set and no extent.
pub fn compress_piece(ctx: &mut MapCtx, setup: &Setup, data: &[u8], orders: &[u32]) -> Result<Call> {
    let mem = ctx.mem().clone();
    let opts = setup.options();
    let pages = page_cache(&mem, data, orders, setup)?;
    let args = CompressArgs::new(&pages, 0, data.len())?;
    let mut out = FolioVec::new();
    ctx.reset_events();
    ctx.begin_extent();
    let r = crate::Engine::global().codecs().compress_folios(setup.spec, &opts, ctx, &args, &mut out);
    ctx.note_page_allocs(out.folios().iter().map(|f| f.nr_pages() as u64).sum());
    let events = ctx.events();
    let extent = match r {
        Ok(res) if crate::compression_saves_sector(res.total_in, res.total_out, crate::SECTORSIZE) => {
            Some(Bytes::from(out.to_vec(0, res.total_out)))
        }
        Ok(_) | Err(Error::Incompressible(_)) | Err(Error::Map(highmem::MapError::Fault { .. })) => None,
        Err(e) => return Err(e),
    };
    Ok(Call { entry: entry(setup.spec, false), events, len: data.len(), extent })
}

/// Decompress one extent of `len` bytes: the codec call's events, with the zero-fill of the
/// rest of the bio's last page (see [`decompress_calls`]).
pub fn decompress_piece(ctx: &mut MapCtx, setup: &Setup, extent: &[u8], len: usize) -> Result<Call> {
    let mut calls = decompress_calls(ctx, setup, extent, len)?;
    let mut first = calls.remove(0);
    for c in calls {
        first.events.add(&c.events);
    }
    Ok(first)
}

/// Decompress one extent of `len` bytes: the codec call, and for the 7.x loops the zero-fill
/// that `btrfs_decompress_bio()` does after it returns as a call of its own (`zero_fill_bio`,
/// outside the codec's entry point; 6.1's codecs zero-fill inside theirs).
pub fn decompress_calls(ctx: &mut MapCtx, setup: &Setup, extent: &[u8], len: usize) -> Result<Vec<Call>> {
    let mem = ctx.mem().clone();
    let opts = setup.options();
    let cb = CompressedBio::from_slice_order(&mem, extent, 0)?;
    // The read bio covers whole pages: past the end of the data the rest of the last page is
    // zeroed (`zero_fill_bio()`), which maps that page once more. Its pages are reached one at
    // a time whatever the folios' order: `btrfs_decompress_buf2page()` walks the bio with
    // `bio_iter_iovec()`, whose bvecs never cross a page (compression.c, 7.2.13).
    let bio_len = len.next_multiple_of(mem.page_size());
    let after = setup.kloop.zero_fill_after_codec();
    let mut dest = DestRange::new(&mem, 0, if after { len } else { bio_len }, 0)?;
    place_page_cache(&mut dest.pages, setup);
    ctx.reset_events();
    ctx.begin_extent();
    crate::Engine::global().codecs().decompress_bio(setup.spec.alg, &opts, ctx, &cb, &mut dest)?;
    let mut calls = vec![Call { entry: entry(setup.spec, true), events: ctx.events(), len, extent: None }];
    if after && bio_len > len {
        ctx.reset_events();
        ctx.frame().memzero_pages(&mut dest.pages, len, bio_len - len)?;
        calls.push(Call { entry: "zero_fill_bio", events: ctx.events(), len: bio_len - len, extent: None });
    }
    Ok(calls)
}

/// The heuristic over `[start, start + min(len, 128 KiB))` of the file: its events and verdict.
pub fn heuristic_call(ctx: &mut MapCtx, setup: &Setup, file: &[u8], start: usize) -> Result<(Call, bool)> {
    let mem = ctx.mem().clone();
    let end = (start + PIECE).min(file.len());
    let pages = page_cache(&mem, &file[start..end], &[0], setup)?;
    ctx.reset_events();
    ctx.begin_extent();
    let verdict = {
        let mut frame = ctx.frame();
        btrfs_compression::heuristic::btrfs_compress_heuristic(&mut frame, &pages, 0, end - start)?
    };
    let events = ctx.events();
    let call = Call { entry: "btrfs_compress_heuristic", events, len: end - start, extent: None };
    Ok((call, verdict.compress()))
}

/// The writeback of `file`: every codec (and heuristic) call, in order. A call that faults
/// ends the writeback (the kernel's worker died in the oops; the writer hangs).
pub fn write_file(ctx: &mut MapCtx, setup: &Setup, file: &[u8], mount: Mount) -> Result<Vec<Call>> {
    let mut calls = Vec::new();
    let layout = setup.page_cache_layout(file.len());
    if mount == Mount::Heuristic {
        let (c, yes) = heuristic_call(ctx, setup, file, 0)?;
        calls.push(c);
        if !yes {
            return Ok(calls);
        }
    }
    for chunk in (0..file.len()).step_by(ASYNC_CHUNK) {
        let chunk_end = (chunk + ASYNC_CHUNK).min(file.len());
        for start in (chunk..chunk_end).step_by(PIECE) {
            if mount == Mount::Heuristic {
                let (c, yes) = heuristic_call(ctx, setup, file, start)?;
                calls.push(c);
                if !yes {
                    break;
                }
            }
            let end = (start + PIECE).min(chunk_end);
            let padded;
            let mut piece = &file[start..end];
            if setup.kloop.compresses_whole_last_sector() && piece.len() % crate::SECTORSIZE != 0 {
                padded = [piece, &vec![0; piece.len().next_multiple_of(crate::SECTORSIZE) - piece.len()]].concat();
                piece = &padded;
            }
            let c = compress_piece(ctx, setup, piece, &layout.range_orders(start, end))?;
            let kept = c.extent.is_some();
            let faulted = c.events.faults > 0;
            calls.push(c);
            if faulted {
                return Ok(calls);
            }
            if !kept {
                break; // the rest of the chunk is written plain
            }
        }
    }
    Ok(calls)
}

/// The read of a file after its writeback: one decompress call per compressed extent.
pub fn read_file(ctx: &mut MapCtx, setup: &Setup, written: &[Call]) -> Result<Vec<Call>> {
    let mut calls = Vec::new();
    for (e, len) in written.iter().filter_map(|c| c.extent.as_ref().map(|e| (e, c.len))) {
        calls.extend(decompress_calls(ctx, setup, e, len)?);
    }
    Ok(calls)
}
