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
    /// 7.2: input chunks sized to the folio (page-sized under HIGHMEM, large folios on 64-bit).
    V7_2,
    /// The June 2022 v4 zstd loop: output kmapped above the input, re-mapped at every input switch.
    V4_2022,
}

impl KernelLoop {
    /// Every loop.
    pub const ALL: [KernelLoop; 4] = [KernelLoop::V6_1, KernelLoop::V6_12, KernelLoop::V7_2, KernelLoop::V4_2022];

    /// Name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            KernelLoop::V6_1 => "6.1",
            KernelLoop::V6_12 => "6.12",
            KernelLoop::V7_2 => "7.2",
            KernelLoop::V4_2022 => "v4-2022",
        }
    }

    /// Parse a [`KernelLoop::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == s)
    }

    /// Page-cache folio order this kernel uses for data: 6.x has no large data folios; 7.2 has
    /// them on 64-bit (order 5 here: 128 KiB) and turns them off under CONFIG_HIGHMEM.
    pub fn folio_order(self, config: KernelConfig) -> u32 {
        match self {
            KernelLoop::V7_2 if !config.has_highmem() => 5,
            _ => 0,
        }
    }

    /// The library options that run this loop. Under HIGHMEM the 6.1, 6.12 and 7.2 loops make
    /// the same calls page by page (they differ in the folio API and, on 64-bit, in 7.2's
    /// folio-sized chunks), so they share our merged loop; v4-2022 is zstd's LIFO-remap loop.
    pub fn options(self, strategy: Strategy, config: KernelConfig) -> Options {
        let order = self.folio_order(config);
        Options {
            strategy,
            folio_order: order,
            out_order: 0,
            compress_loop: crate::LoopVariant::lifo_remap(self == KernelLoop::V4_2022),
            // The kernel's deflate of the loop's era; 7.2 feeds it a folio at a time.
            zlib_backend: crate::ZlibBackend::Kernel(if self == KernelLoop::V6_1 {
                crate::KernelEra::Before6_3
            } else {
                crate::KernelEra::Since6_3
            }),
            zlib_folio_input: self == KernelLoop::V7_2,
            ..Options::default()
        }
    }
}

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
}

impl Setup {
    /// The library options that run this setup's loop.
    pub fn options(&self) -> Options {
        let mut o = self.kloop.options(self.strategy, self.config);
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

/// Page-cache pages holding `data`: under a HIGHMEM config, `setup.highmem_fraction` of them
/// in HighMem, spread evenly.
pub fn page_cache(mem: &PhysMem, data: &[u8], order: u32, setup: &Setup) -> Result<FolioVec> {
    let mut v = FolioVec::from_slice(mem, data, order)?;
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

/// Compress one piece: the codec call's events, and the extent if the kernel keeps it.
pub fn compress_piece(ctx: &mut MapCtx, setup: &Setup, data: &[u8]) -> Result<Call> {
    let mem = ctx.mem().clone();
    let opts = setup.options();
    let pages = page_cache(&mem, data, opts.effective_folio_order(), setup)?;
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
        Ok(_) | Err(Error::Incompressible(_)) => None,
        Err(e) => return Err(e),
    };
    Ok(Call { entry: entry(setup.spec, false), events, len: data.len(), extent })
}

/// Decompress one extent of `len` bytes: the codec call's events.
pub fn decompress_piece(ctx: &mut MapCtx, setup: &Setup, extent: &[u8], len: usize) -> Result<Call> {
    let mem = ctx.mem().clone();
    let opts = setup.options();
    let cb = CompressedBio::from_slice_order(&mem, extent, 0)?;
    // The read bio covers whole pages: past the end of the data the rest of the last page is
    // zeroed (`zero_fill_bio()`), which maps that page once more.
    let bio_len = len.next_multiple_of(mem.page_size());
    let mut dest = DestRange::new(&mem, 0, bio_len, opts.effective_folio_order())?;
    place_page_cache(&mut dest.pages, setup);
    ctx.reset_events();
    ctx.begin_extent();
    crate::Engine::global().codecs().decompress_bio(setup.spec.alg, &opts, ctx, &cb, &mut dest)?;
    let events = ctx.events();
    Ok(Call { entry: entry(setup.spec, true), events, len, extent: None })
}

/// The heuristic over `[start, start + min(len, 128 KiB))` of the file: its events and verdict.
pub fn heuristic_call(ctx: &mut MapCtx, setup: &Setup, file: &[u8], start: usize) -> Result<(Call, bool)> {
    let mem = ctx.mem().clone();
    let end = (start + PIECE).min(file.len());
    let pages = page_cache(&mem, &file[start..end], 0, setup)?;
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

/// The writeback of `file`: every codec (and heuristic) call, in order.
pub fn write_file(ctx: &mut MapCtx, setup: &Setup, file: &[u8], mount: Mount) -> Result<Vec<Call>> {
    let mut calls = Vec::new();
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
            let c = compress_piece(ctx, setup, &file[start..end])?;
            let kept = c.extent.is_some();
            calls.push(c);
            if !kept {
                break; // the rest of the chunk is written plain
            }
        }
    }
    Ok(calls)
}

/// The read of a file after its writeback: one decompress call per compressed extent.
pub fn read_file(ctx: &mut MapCtx, setup: &Setup, written: &[Call]) -> Result<Vec<Call>> {
    written
        .iter()
        .filter_map(|c| c.extent.as_ref().map(|e| (e, c.len)))
        .map(|(e, len)| decompress_piece(ctx, setup, e, len))
        .collect()
}
