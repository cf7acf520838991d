//! btrfs zstd compression over mapped pages (models `fs/btrfs/zstd.c`).
//!
//! The on-disk format is one zstd frame with the content size set, no checksum and a window of at
//! most 128 KiB (`ZSTD_BTRFS_MAX_WINDOWLOG` = 17). Compression uses zstd-safe with its bundled
//! libzstd 1.5.7, the version recent kernels carry, with the row-based match finder switched off
//! (the kernel's build has no SIMD, so libzstd never uses it there): at the same level the bytes
//! are the kernel's.
//!
//! * [`Zstd::compress_folios`](crate::Zstd): the merged loop (input mapped one chunk at a time, output written
//!   through the direct map as `folio_address()` does);
//! * [`compress_folios_lifo_remap`]: the 2022 v1-v4 loop that maps the output page with
//!   kmap_local too, above the input page, and so must unmap and re-map the output page at every
//!   input switch to keep LIFO order;
//! * [`Zstd::decompress_bio`](crate::Zstd) and [`Zstd::decompress`](crate::Zstd) (inline extents).
#![forbid(unsafe_code)]

pub mod in_place;
mod lifo_remap;
mod reference;

pub use lifo_remap::compress_folios_lifo_remap;
pub use reference::*;

mod workspace;

use btrfs_compression::Incompressible;
use btrfs_compression::{
    btrfs_decompress_buf2page, finish_inline, CompressArgs, CompressResult, CompressedBio, CorruptKind, DestRange,
    Error, InlineRead, Result, EARLY_BAIL_INPUT,
};
use btrfs_compression::{Codec, CodecArgs, LoopVariant, OutCursor};
use highmem::{FolioVec, MapCtx};
pub use workspace::{zstd_clip_level, ZstdWorkspaceGuard, ZstdWorkspaceManager, ZSTD_BTRFS_RECLAIM};
use zstd_safe::{CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer, ParamSwitch, ResetDirective};

/// `ZSTD_BTRFS_MAX_WINDOWLOG`.
pub const ZSTD_BTRFS_MAX_WINDOWLOG: u32 = 17;
/// `ZSTD_BTRFS_MAX_INPUT`: the largest window a btrfs zstd frame may need.
pub const ZSTD_BTRFS_MAX_INPUT: u64 = 1 << ZSTD_BTRFS_MAX_WINDOWLOG;
/// `ZSTD_BTRFS_MIN_LEVEL` (6.15+).
pub const ZSTD_BTRFS_MIN_LEVEL: i32 = -15;
/// `ZSTD_BTRFS_MAX_LEVEL`.
pub const ZSTD_BTRFS_MAX_LEVEL: i32 = 15;
/// `ZSTD_BTRFS_DEFAULT_LEVEL`.
pub const ZSTD_BTRFS_DEFAULT_LEVEL: i32 = 3;

const CODEC: &str = "zstd";

/// A zstd workspace (`struct workspace` in zstd.c): compression and decompression contexts and
/// the page-sized bounce buffer decompression writes into.
pub struct Workspace {
    cctx: CCtx<'static>,
    dctx: DCtx<'static>,
    buf: Vec<u8>,
    level: i32,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("zstd::Workspace").field("level", &self.level).finish()
    }
}

impl Workspace {
    /// Models `zstd_alloc_workspace()` for `level`, with a `buf_size` buffer (the page size).
    pub fn new(level: i32, buf_size: usize) -> Self {
        Self { cctx: CCtx::create(), dctx: DCtx::create(), buf: vec![0; buf_size], level }
    }

    fn ensure_buf(&mut self, n: usize) {
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
    }
}

/// zstd.c's workspace manager for workspaces of buffer size `buf_size`.
pub fn workspace_manager(buf_size: usize) -> ZstdWorkspaceManager<Workspace> {
    ZstdWorkspaceManager::new(move |level| Workspace::new(level, buf_size))
}

/// A workspace on loan from [`workspace_manager`].
pub type WorkspaceGuard<'m> = ZstdWorkspaceGuard<'m, Workspace>;

fn lib_err(code: usize) -> Error {
    Error::Library { codec: CODEC, msg: zstd_safe::get_error_name(code).to_string() }
}

/// Models `zstd_get_btrfs_parameters()` + `zstd_init_cstream()`: level, pledged size, window log
/// at most 17, content size on, checksum off; plus the row match finder off (see crate docs).
fn init_cstream(cctx: &mut CCtx<'static>, level: i32, len: usize) -> Result<()> {
    cctx.reset(ResetDirective::SessionAndParameters).map_err(lib_err)?;
    let params = [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(ZSTD_BTRFS_MAX_WINDOWLOG),
        CParameter::ContentSizeFlag(true),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(true),
        CParameter::UseRowMatchFinder(ParamSwitch::Disable),
    ];
    for p in params {
        cctx.set_parameter(p).map_err(lib_err)?;
    }
    cctx.set_pledged_src_size(Some(len as u64)).map_err(lib_err)?;
    Ok(())
}

fn zstd_sys_continue() -> zstd_safe::zstd_sys::ZSTD_EndDirective {
    zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_continue
}

/// The two checks after each `zstd_compress_stream()` call: past 8 KiB in, output larger than
/// input is the early bail; output at the end of its range is `-E2BIG` too.
pub(crate) fn give_up(total_in: usize, total_out: usize, at_limit: bool) -> Result<()> {
    if total_in > EARLY_BAIL_INPUT && total_in < total_out {
        return Err(Error::Incompressible(Incompressible::EarlyBail));
    }
    if at_limit {
        return Err(Error::Incompressible(Incompressible::OutOfOutput));
    }
    Ok(())
}

/// `zstd_end_stream()` until it reports nothing left, adding output folios as needed.
fn end_stream(ws: &mut Workspace, cur: &mut OutCursor<'_>) -> Result<()> {
    loop {
        let remaining = {
            let mut ob = OutBuffer::around(cur.chunk_mut());
            let r = ws.cctx.end_stream(&mut ob).map_err(lib_err)?;
            let n = ob.pos();
            cur.advance(n);
            r
        };
        if end_stream_done(cur, remaining)? {
            return Ok(());
        }
    }
}

/// After one `zstd_end_stream()` call that left `remaining` bytes to flush: done when nothing
/// remains, `-E2BIG` at the output limit, else on to the next output folio once this one is full
/// (a multi-page folio, or one the strategy mapped only in part, takes more calls first).
pub(crate) fn end_stream_done(cur: &mut OutCursor<'_>, remaining: usize) -> Result<bool> {
    if remaining == 0 {
        return Ok(true);
    }
    if cur.at_limit() {
        return Err(Error::Incompressible(Incompressible::OutOfOutput));
    }
    if cur.folio_full() {
        cur.next_folio()?;
    }
    Ok(false)
}

/// Window size a zstd frame header announces, if the header can be read (RFC 8878 3.1.1.1):
/// the window descriptor, or the content size for single-segment frames.
pub fn frame_window_size(src: &[u8]) -> Option<u64> {
    if src.len() < 6 || src[..4] != [0x28, 0xb5, 0x2f, 0xfd] {
        return None;
    }
    let fhd = src[4];
    if fhd & 0x20 != 0 {
        return frame_content_size(src);
    }
    let wd = src[5];
    let exp = u64::from(wd >> 3);
    let mantissa = u64::from(wd & 7);
    let base = 1u64 << (10 + exp);
    Some(base + base / 8 * mantissa)
}

fn stream_err(code: usize, head: &[u8]) -> Error {
    if let Some(w) = frame_window_size(head) {
        if w > ZSTD_BTRFS_MAX_INPUT {
            return Error::corrupt(CorruptKind::ZstdWindowTooLarge { window: w });
        }
    }
    Error::corrupt(CorruptKind::Stream { codec: CODEC, msg: zstd_safe::get_error_name(code).to_string() })
}

/// Models `zstd_init_dstream(ZSTD_BTRFS_MAX_INPUT)`. The kernel's decoder lives in a static
/// workspace sized for a 128 KiB window, so what it can decode is a frame whose buffer need,
/// `min(window, content size)`, fits 128 KiB: a frame announcing a larger window but declaring
/// a content size of at most 128 KiB is read (seen on real kernels), one without a content size
/// or with a larger one is refused ([`CorruptKind::ZstdWindowTooLarge`]). libzstd sizes its
/// buffer the same way, so memory stays bounded by 128 KiB either way.
fn init_dstream(dctx: &mut DCtx<'static>, head: &[u8]) -> Result<()> {
    dctx.reset(ResetDirective::SessionAndParameters).map_err(lib_err)?;
    let mut log = ZSTD_BTRFS_MAX_WINDOWLOG;
    if let Some(w) = frame_window_size(head) {
        if w > ZSTD_BTRFS_MAX_INPUT {
            match frame_content_size(head) {
                Some(c) if c <= ZSTD_BTRFS_MAX_INPUT => {
                    // Allow the announced window (up to the format's 2^31); the buffer is sized
                    // by the content size.
                    log = (64 - (w - 1).leading_zeros()).clamp(ZSTD_BTRFS_MAX_WINDOWLOG, 31);
                }
                _ => return Err(Error::corrupt(CorruptKind::ZstdWindowTooLarge { window: w })),
            }
        }
    }
    dctx.set_parameter(DParameter::WindowLogMax(log)).map_err(lib_err)?;
    Ok(())
}

/// The start of `zstd_decompress_bio()`: the page-sized workspace buffer, and the decoder set up
/// from the frame header. The page size, and the header bytes read (up to 18) and their count.
fn begin_bio(ws: &mut Workspace, ctx: &MapCtx, cb: &CompressedBio) -> Result<(usize, [u8; 18], usize)> {
    let ps = ctx.mem().page_size();
    ws.ensure_buf(ps);
    let mut head = [0u8; 18];
    let hn = head.len().min(cb.compressed_len);
    cb.folios.read_direct(0, &mut head[..hn]);
    init_dstream(&mut ws.dctx, &head[..hn])?;
    Ok((ps, head, hn))
}

/// Content size a zstd frame header declares, if any (RFC 8878 3.1.1.1.4).
pub fn frame_content_size(src: &[u8]) -> Option<u64> {
    if src.len() < 6 || src[..4] != [0x28, 0xb5, 0x2f, 0xfd] {
        return None;
    }
    let fhd = src[4];
    let single_segment = fhd & 0x20 != 0;
    let fcs_flag = fhd >> 6;
    let fcs_bytes = match (fcs_flag, single_segment) {
        (0, false) => return None,
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let dict_id_bytes = [0usize, 1, 2, 4][(fhd & 3) as usize];
    let at = 5 + usize::from(!single_segment) + dict_id_bytes;
    let b = src.get(at..at + fcs_bytes)?;
    let mut v = 0u64;
    for (i, &x) in b.iter().enumerate() {
        v |= u64::from(x) << (8 * i);
    }
    if fcs_bytes == 2 {
        v += 256;
    }
    Some(v)
}

/// zstd.c's entry points behind the [`Codec`] interface.
pub struct Zstd;

impl Codec for Zstd {
    type Workspace = Workspace;

    /// Models `zstd_compress_folios()` (6.15 merged form; under HIGHMEM it makes the calls of 6.1's
    /// `zstd_compress_pages()` v6, 6.12 and 7.2 page by page, which the kmap trace fixture checks against
    /// 6.1): each input chunk is mapped with the
    /// context's strategy (`kmap_local_folio()` in the kernel), output pages are written through the
    /// direct map. Returns `Incompressible` (`-E2BIG`) on the early bail, when the output folios run
    /// out, or when the output is not smaller than the input.
    fn compress_folios(
        ws: &mut Workspace,
        a: &CodecArgs,
        ctx: &mut MapCtx,
        args: &CompressArgs<'_>,
        out: &mut FolioVec,
    ) -> Result<CompressResult> {
        if a.variant == LoopVariant::LifoRemap2022 {
            return compress_folios_lifo_remap(ws, a.level, ctx, args, out);
        }
        let level = a.level;
        let mem = ctx.mem().clone();
        let input = args.input;
        init_cstream(&mut ws.cctx, level, args.len)?;
        let mut frame = ctx.frame();

        let mut start = args.start;
        let mut len = args.len;
        let end = args.start + args.len;
        let mut tot_in = 0usize;
        // The length the loop hands the library: what was mapped (6.x), or its own
        // `btrfs_calc_input_length()` (7.x), which a one-page mapping may not cover.
        let chunk_len = |start: usize, len: usize| a.input.trusted_len(input, start, end).unwrap_or(len);

        // Map the first input chunk.
        let mut want = chunk_len(start, len);
        let mut in_map = frame.map(input, start, want)?;
        let mut cur_len = a.input.handed(&in_map, want).len();
        let mut in_pos = 0usize;

        // Allocate the first output folio.
        let mut cur = OutCursor::new(&mem, out, args.out_order, args.max_out)?;

        loop {
            {
                // One output page at a time, as the kernel offers it.
                let src = a.input.handed(&in_map, want);
                let mut ob = OutBuffer::around(cur.chunk_mut());
                let mut ib = InBuffer { src: &src[..cur_len], pos: in_pos };
                in_map.ctx().note_library_call(cur_len - in_pos);
                ws.cctx.compress_stream2(&mut ob, &mut ib, zstd_sys_continue()).map_err(lib_err)?;
                in_pos = ib.pos;
                let n = ob.pos();
                cur.advance(n);
            }
            // Did the library read past what the mapping covers (7.2-rc's fault)?
            in_map.check_read(cur_len, in_pos)?;
            give_up(tot_in + in_pos, cur.tot_out(), cur.at_limit())?;
            // Need more output space?
            if cur.folio_full() {
                cur.next_folio()?;
            }
            // End of the input?
            if in_pos >= len {
                tot_in += in_pos;
                break;
            }
            // More input?
            if in_pos == cur_len {
                tot_in += cur_len;
                drop(in_map);
                start += cur_len;
                len -= cur_len;
                want = chunk_len(start, len);
                in_map = frame.map(input, start, want)?;
                cur_len = a.input.handed(&in_map, want).len();
                in_pos = 0;
            }
        }
        drop(in_map);
        end_stream(ws, &mut cur)?;
        let tot_out = cur.tot_out();
        if tot_out >= tot_in {
            return Err(Error::Incompressible(Incompressible::NotSmaller));
        }
        Ok(CompressResult { total_in: tot_in, total_out: tot_out })
    }

    /// Models `zstd_decompress_bio()`: stream the compressed pages (each mapped with the context's
    /// strategy) through the page-sized workspace buffer into `dest` with
    /// [`btrfs_decompress_buf2page`]. A frame that ends early is not an error (the rest of `dest` is
    /// zero-filled); a frame that needs more input than the extent holds is `-EIO`.
    fn decompress_bio(
        ws: &mut Workspace,
        a: &CodecArgs,
        ctx: &mut MapCtx,
        cb: &CompressedBio,
        dest: &mut DestRange,
    ) -> Result<()> {
        if a.variant == LoopVariant::InPlace {
            return in_place::decompress_bio(ws, ctx, cb, dest);
        }
        let (ps, head, hn) = begin_bio(ws, ctx, cb)?;

        let mut frame = ctx.frame();
        let mut srclen = cb.compressed_len;
        let mut in_off = 0usize;
        let mut total_out = 0usize;
        let mut in_map = frame.map(&cb.folios, in_off, srclen)?;
        let mut in_size = in_map.len();
        let mut in_pos = 0usize;
        loop {
            let (ret, produced) = {
                let (src, above) = in_map.split();
                let mut ob = OutBuffer::around(&mut ws.buf[..ps]);
                let mut ib = InBuffer { src: &src[..in_size], pos: in_pos };
                above.ctx().note_library_call(ps);
                let r = ws.dctx.decompress_stream(&mut ob, &mut ib).map_err(|c| stream_err(c, &head[..hn]));
                in_pos = ib.pos;
                (r, ob.pos())
            };
            let ret = ret?;
            let buf_start = total_out;
            total_out += produced;
            let more = {
                let (_, mut above) = in_map.split();
                btrfs_decompress_buf2page(&mut above, &ws.buf[..produced], buf_start, dest)?
            };
            if !more {
                break;
            }
            if in_pos >= srclen {
                break;
            }
            if ret == 0 {
                break; // end of the frame
            }
            if in_pos == in_size {
                drop(in_map);
                in_off += in_size;
                srclen -= in_size;
                if in_off >= cb.folios.len() || srclen == 0 {
                    return Err(Error::corrupt(CorruptKind::Truncated { codec: CODEC }));
                }
                in_map = frame.map(&cb.folios, in_off, srclen)?;
                in_size = in_map.len();
                in_pos = 0;
            }
        }
        drop(in_map);
        dest.zero_rest(&mut frame)?;
        Ok(())
    }

    /// Models `zstd_decompress()` for inline extents: one `decompress_stream` call into a
    /// sector-sized buffer, copied to `dest` at `dest_off`; fewer than `destlen` bytes is `-EIO`
    /// (the rest is zero-filled first). Newer kernels store a whole sector in compressed inline
    /// extents; only `destlen` bytes are kept.
    fn decompress(ws: &mut Workspace, a: &CodecArgs, ctx: &mut MapCtx, inline: InlineRead<'_>) -> Result<()> {
        let InlineRead { data_in, dest, dest_off, destlen } = inline;
        let sectorsize = a.sectorsize;
        ws.ensure_buf(sectorsize);
        let mut frame = ctx.frame();
        if let Err(e) = init_dstream(&mut ws.dctx, data_in) {
            frame.memzero_pages(dest, dest_off, destlen)?;
            return Err(e);
        }
        let res = {
            let mut ob = OutBuffer::around(&mut ws.buf[..sectorsize]);
            let mut ib = InBuffer::around(data_in);
            frame.ctx().note_library_call(sectorsize);
            let r = ws.dctx.decompress_stream(&mut ob, &mut ib).map_err(|c| stream_err(c, data_in));
            r.map(|_| ob.pos())
        };
        match res {
            Ok(n) => finish_inline(&mut frame, dest, dest_off, destlen, &ws.buf[..n], CODEC, None),
            Err(e) => {
                frame.memzero_pages(dest, dest_off, destlen)?;
                Err(e)
            }
        }
    }
}
