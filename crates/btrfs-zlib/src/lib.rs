//! btrfs zlib compression over mapped pages (models `fs/btrfs/zlib.c`).
//!
//! The on-disk format is one zlib stream (2-byte header, deflate data, adler32). Compression
//! calls deflate with `Z_SYNC_FLUSH` once per input page piece (at least once per page, as the
//! kernel does) and then `Z_FINISH`. The deflate is chosen by [`ZlibBackend`]: by default
//! [`kernel_deflate`], our port of the kernel's lib/zlib_deflate, which writes the kernel's
//! bytes (in the era given); or zlib-rs through flate2, valid zlib but other bytes (every
//! userspace deflate differs from the kernel's). Decompression skips a valid 2-byte header and
//! inflates raw like the kernel (the adler32 trailer is not checked), else inflates with the zlib
//! wrapper; any valid inflater reads both backends' streams.
#![forbid(unsafe_code)]

pub mod in_place;
mod reference;

pub use reference::*;

use btrfs_compression::workspace::{WorkspaceGuard, WorkspaceManager};
use btrfs_compression::Incompressible;
use btrfs_compression::{
    btrfs_decompress_buf2page, finish_inline, CompressArgs, CompressResult, CompressedBio, CorruptKind, DestRange,
    Error, InlineRead, Result, EARLY_BAIL_INPUT,
};
use btrfs_compression::{Codec, CodecArgs, InputChunk, LoopVariant, OutCursor};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use highmem::{FolioVec, MapCtx};
pub use kernel_deflate::KernelEra;

/// Lowest zlib level.
pub const BTRFS_ZLIB_MIN_LEVEL: i32 = 1;
/// Highest zlib level.
pub const BTRFS_ZLIB_MAX_LEVEL: i32 = 9;
/// Default zlib level.
pub const BTRFS_ZLIB_DEFAULT_LEVEL: i32 = 3;

const CODEC: &str = "zlib";
const PRESET_DICT: u8 = 0x20;
const Z_DEFLATED: u8 = 8;

/// Which deflate writes the extents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZlibBackend {
    /// The kernel's lib/zlib_deflate ([`kernel_deflate`]): the kernel's bytes, in the era of
    /// `flush_pending()` given.
    Kernel(KernelEra),
    /// zlib-rs through flate2: fast, valid zlib, not the kernel's bytes.
    ZlibRs,
}

impl Default for ZlibBackend {
    fn default() -> Self {
        ZlibBackend::Kernel(KernelEra::Since6_3)
    }
}

impl ZlibBackend {
    /// All backends.
    pub const ALL: [ZlibBackend; 3] =
        [ZlibBackend::Kernel(KernelEra::Since6_3), ZlibBackend::Kernel(KernelEra::Before6_3), ZlibBackend::ZlibRs];

    /// Name on command lines: `kernel` (6.3 and later), `kernel-pre-6.3`, `zlib-rs`.
    pub fn name(self) -> &'static str {
        match self {
            ZlibBackend::Kernel(KernelEra::Since6_3) => "kernel",
            ZlibBackend::Kernel(KernelEra::Before6_3) => "kernel-pre-6.3",
            ZlibBackend::ZlibRs => "zlib-rs",
        }
    }

    /// Parse a [`ZlibBackend::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }

    /// The kernel backend of the era of kernel `major.minor`.
    pub fn kernel_of(major: u32, minor: u32) -> Self {
        ZlibBackend::Kernel(KernelEra::of_kernel(major, minor))
    }
}

/// A deflate stream of either backend, driven like `zlib_deflate()`.
enum Deflater {
    Kernel(Box<kernel_deflate::Deflate>),
    ZlibRs(Box<Compress>),
}

impl Deflater {
    fn compress(&mut self, src: &[u8], dst: &mut [u8], flush: FlushCompress) -> Result<Status> {
        match self {
            Deflater::Kernel(d) => {
                let f = match flush {
                    FlushCompress::Sync => kernel_deflate::Flush::SyncFlush,
                    FlushCompress::Full => kernel_deflate::Flush::FullFlush,
                    FlushCompress::Finish => kernel_deflate::Flush::Finish,
                    _ => kernel_deflate::Flush::NoFlush,
                };
                Ok(match d.compress(src, dst, f).map_err(lib_err)? {
                    kernel_deflate::Status::Ok => Status::Ok,
                    kernel_deflate::Status::StreamEnd => Status::StreamEnd,
                    kernel_deflate::Status::BufError => Status::BufError,
                })
            }
            Deflater::ZlibRs(c) => c.compress(src, dst, flush).map_err(lib_err),
        }
    }

    fn total_in(&self) -> u64 {
        match self {
            Deflater::Kernel(d) => d.total_in(),
            Deflater::ZlibRs(c) => c.total_in(),
        }
    }

    fn total_out(&self) -> u64 {
        match self {
            Deflater::Kernel(d) => d.total_out(),
            Deflater::ZlibRs(c) => c.total_out(),
        }
    }
}

/// A zlib workspace (`struct workspace` in zlib.c): deflate and inflate state and the
/// page-sized buffer inflate writes into.
pub struct Workspace {
    backend: ZlibBackend,
    deflate: Option<Deflater>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("zlib::Workspace").field("backend", &self.backend).field("buf", &self.buf.len()).finish()
    }
}

impl Workspace {
    /// Models `zlib_alloc_workspace()` with a `buf_size` buffer (the page size).
    pub fn new(buf_size: usize) -> Self {
        Self { backend: ZlibBackend::default(), deflate: None, buf: vec![0; buf_size] }
    }

    /// Choose the deflate for the next extents.
    pub fn set_backend(&mut self, backend: ZlibBackend) {
        self.backend = backend;
    }

    /// `zlib_deflateInit(level)`: a stream that starts over for every extent, as the kernel
    /// initialises one per call. The kernel backend reuses its memory through a reset (its
    /// output does not depend on the workspace's history); zlib-rs gets a fresh stream, since
    /// its `deflateReset()` was measured to change the output (level 9 on a 128 KiB text
    /// extent: 29006 bytes after a reset, 29007 from a fresh stream).
    fn deflate_init(&mut self, level: i32) -> Result<&mut Deflater> {
        let lvl = level.clamp(BTRFS_ZLIB_MIN_LEVEL, BTRFS_ZLIB_MAX_LEVEL);
        match (self.backend, &mut self.deflate) {
            (ZlibBackend::Kernel(era), Some(Deflater::Kernel(d))) => {
                d.set_era(era);
                d.reset(lvl).map_err(lib_err)?;
            }
            (ZlibBackend::Kernel(era), slot) => {
                *slot = Some(Deflater::Kernel(Box::new(kernel_deflate::Deflate::new(lvl, era).map_err(lib_err)?)));
            }
            (ZlibBackend::ZlibRs, slot) => {
                *slot = Some(Deflater::ZlibRs(Box::new(Compress::new(Compression::new(lvl as u32), true))));
            }
        }
        Ok(self.deflate.as_mut().expect("just set"))
    }

    /// Room for the inline decompression output (at least `n` bytes).
    fn ensure_buf(&mut self, n: usize) {
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
    }
}

/// zlib.c's use of the generic workspace manager.
pub fn workspace_manager(buf_size: usize) -> WorkspaceManager<Workspace> {
    WorkspaceManager::new(move || Workspace::new(buf_size))
}

/// A workspace on loan from [`workspace_manager`].
pub type Guard<'m> = WorkspaceGuard<'m, Workspace>;

fn lib_err(e: impl std::fmt::Display) -> Error {
    Error::Library { codec: CODEC, msg: e.to_string() }
}

/// Bytes left in the output page holding `pos` (output folios may span several pages).
/// The kernel's header test: a 2-byte zlib header without preset dictionary. Returns the raw
/// inflate window bits to use after skipping it, or `None` to inflate with the zlib wrapper.
fn raw_window_bits(head: &[u8], srclen: usize) -> Option<Result<u8>> {
    if srclen <= 2 || head.len() < 2 {
        return None;
    }
    let (b0, b1) = (head[0], head[1]);
    if b1 & PRESET_DICT != 0 || b0 & 0x0f != Z_DEFLATED || (u16::from(b0) << 8 | u16::from(b1)) % 31 != 0 {
        return None;
    }
    let bits = (b0 >> 4) + 8;
    if bits > 15 {
        // inflateInit2() refuses windows over 32 KiB.
        return Some(Err(Error::corrupt(CorruptKind::Stream {
            codec: CODEC,
            msg: format!("zlib header announces a window of 2^{bits} bytes"),
        })));
    }
    // A 256-byte window (bits 8) is decoded with 512 bytes, the smallest flate2 offers.
    Some(Ok(bits.max(9)))
}

fn new_inflate(head: &[u8], srclen: usize) -> Result<(Decompress, usize)> {
    match raw_window_bits(head, srclen) {
        Some(Ok(bits)) => Ok((Decompress::new_with_window_bits(false, bits), 2)),
        Some(Err(e)) => Err(e),
        None => Ok((Decompress::new(true), 0)),
    }
}

/// The start of `zlib_decompress_bio()`: the page-sized workspace buffer, and the stream set up
/// from the extent's first two bytes. The page size, the stream and the header bytes to skip.
fn begin_bio(ws: &mut Workspace, ctx: &MapCtx, cb: &CompressedBio) -> Result<(usize, Decompress, usize)> {
    let ps = ctx.mem().page_size();
    ws.ensure_buf(ps);
    let mut head = [0u8; 2];
    let hn = cb.compressed_len.min(2);
    cb.folios.read_direct(0, &mut head[..hn]);
    let (strm, skip) = new_inflate(&head[..hn], cb.compressed_len)?;
    Ok((ps, strm, skip))
}

fn stream_err(e: impl std::fmt::Display) -> Error {
    Error::corrupt(CorruptKind::Stream { codec: CODEC, msg: e.to_string() })
}

/// zlib.c's entry points behind the [`Codec`] interface.
pub struct Zlib;

impl Codec for Zlib {
    type Workspace = Workspace;

    /// Models `zlib_compress_folios()`: each input chunk is mapped with the context's strategy
    /// (`kmap_local_folio()`), and deflate is fed one page piece at a time with `Z_SYNC_FLUSH`, so
    /// the bytes do not depend on how much the strategy maps at once. Output goes through the
    /// direct map. `Incompressible` on the early bail (more than 8 KiB in and output larger than
    /// input), when the output folios run out, or when the result is not smaller than the input.
    fn compress_folios(
        ws: &mut Workspace,
        a: &CodecArgs,
        ctx: &mut MapCtx,
        args: &CompressArgs<'_>,
        out: &mut FolioVec,
    ) -> Result<CompressResult> {
        let level = a.level;
        let mem = ctx.mem().clone();
        let ps = mem.page_size();
        let input = args.input;
        let len = args.len;
        let input_chunk = a.input;
        let end = args.start + len;
        let strm = ws.deflate_init(level)?;
        let mut frame = ctx.frame();

        let mut cur = OutCursor::new(&mem, out, args.out_order, args.max_out)?;

        let mut start = args.start;
        // The mapped chunk, what the loop hands deflate from it (6.x: what is mapped; 7.x: its
        // own `btrfs_calc_input_length()`, which a one-page mapping may not cover) and how far
        // deflate has been fed.
        let mut want = input_chunk.trusted_len(input, start, end).unwrap_or(len);
        let mut in_map = frame.map(input, start, want)?;
        let mut map_len = input_chunk.handed(&in_map, want).len();
        let mut map_pos = 0usize;
        let mut avail_in = 0usize;

        while (strm.total_in() as usize) < len {
            if avail_in == 0 {
                if map_pos == map_len {
                    // Refill: unmap the previous chunk, map the next one.
                    drop(in_map);
                    want = input_chunk.trusted_len(input, start, end).unwrap_or(len - strm.total_in() as usize);
                    in_map = frame.map(input, start, want)?;
                    map_len = input_chunk.handed(&in_map, want).len();
                    map_pos = 0;
                }
                // Feed up to the end of the current page (6.x's cur_len), or the whole chunk
                // (7.x's btrfs_calc_input_length(): to the end of the folio).
                let cur = start + map_pos;
                let chunk_end = if input_chunk == InputChunk::Page { ps - cur % ps + cur } else { start + map_len };
                avail_in = (map_len - map_pos).min(chunk_end - cur);
            }
            let src = &input_chunk.handed(&in_map, want)[map_pos..map_pos + avail_in];
            let (in0, out0) = (strm.total_in(), strm.total_out());
            // Output is offered one page at a time as in the kernel: zlib's bytes depend on where
            // avail_out runs out during a flush.
            in_map.ctx().note_library_call(src.len());
            let st = strm.compress(src, cur.chunk_mut(), FlushCompress::Sync)?;
            let consumed = (strm.total_in() - in0) as usize;
            let produced = (strm.total_out() - out0) as usize;
            if st == Status::BufError && consumed == 0 && produced == 0 {
                return Err(lib_err("deflate made no progress"));
            }
            map_pos += consumed;
            avail_in -= consumed;
            // Did deflate read past what the mapping covers (7.2-rc's fault)?
            in_map.check_read(map_len, map_pos)?;
            if avail_in == 0 && map_pos == map_len {
                start += map_len;
            }
            cur.advance(produced);
            let (t_in, t_out) = (strm.total_in() as usize, strm.total_out() as usize);
            // We're making it bigger, give up.
            if t_in > EARLY_BAIL_INPUT && t_in < t_out {
                return Err(Error::Incompressible(Incompressible::EarlyBail));
            }
            // Another output folio, tested before the end so the stream end has room.
            if cur.folio_full() {
                cur.next_folio()?;
            }
            if t_in >= len {
                break;
            }
        }
        drop(in_map);

        // Z_FINISH until Z_STREAM_END, adding output folios as needed.
        loop {
            let out0 = strm.total_out();
            let dst = cur.chunk_mut();
            frame.ctx().note_library_call(dst.len());
            let st = strm.compress(&[], dst, FlushCompress::Finish)?;
            cur.advance((strm.total_out() - out0) as usize);
            if st == Status::StreamEnd {
                break;
            }
            if cur.folio_full() {
                cur.next_folio()?;
            } else if strm.total_out() == out0 {
                return Err(lib_err("deflate(Z_FINISH) made no progress"));
            }
        }
        let total_in = strm.total_in() as usize;
        let total_out = strm.total_out() as usize;
        if total_out >= total_in {
            return Err(Error::Incompressible(Incompressible::NotSmaller));
        }
        Ok(CompressResult { total_in, total_out })
    }

    /// Models `zlib_decompress_bio()`: inflate the compressed pages (each mapped with the context's
    /// strategy) through the page-sized workspace buffer into `dest`. Stops successfully once `dest`
    /// is full; otherwise the stream must reach its end (`-EIO` if not).
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
        let (ps, mut strm, skip) = begin_bio(ws, ctx, cb)?;
        let srclen = cb.compressed_len;

        let mut frame = ctx.frame();
        let mut in_off = 0usize;
        let mut in_map = frame.map(&cb.folios, 0, srclen)?;
        let mut in_size = in_map.len();
        let mut in_pos = skip.min(in_size);
        let mut total_out = 0usize;
        let mut last = Status::Ok;
        let mut satisfied = false;
        let mut err: Option<String> = None;
        while in_off + in_pos < srclen {
            let (st, produced) = {
                let src = &in_map[in_pos..in_size];
                let (i0, o0) = (strm.total_in(), strm.total_out());
                in_map.ctx().note_library_call(ps);
                let r = strm.decompress(src, &mut ws.buf[..ps], FlushDecompress::None);
                match r {
                    Ok(st) => {
                        in_pos += (strm.total_in() - i0) as usize;
                        (st, (strm.total_out() - o0) as usize)
                    }
                    Err(e) => {
                        // inflate() failed: the kernel breaks out and reports -EIO.
                        err = Some(e.to_string());
                        break;
                    }
                }
            };
            last = st;
            if produced == 0 {
                break; // no progress: done
            }
            let buf_start = total_out;
            total_out += produced;
            let more = {
                let (_, mut above) = in_map.split();
                btrfs_decompress_buf2page(&mut above, &ws.buf[..produced], buf_start, dest)?
            };
            if !more {
                satisfied = true;
                break;
            }
            if st == Status::StreamEnd {
                break;
            }
            if in_pos == in_size {
                if in_off + in_size >= srclen {
                    in_pos = in_size;
                    break; // past the last page
                }
                drop(in_map);
                in_off += in_size;
                in_map = frame.map(&cb.folios, in_off, srclen - in_off)?;
                in_size = in_map.len();
                in_pos = 0;
            }
        }
        drop(in_map);
        if let Some(msg) = err {
            return Err(stream_err(msg));
        }
        if !satisfied && last != Status::StreamEnd {
            if in_off + in_pos >= srclen {
                return Err(Error::corrupt(CorruptKind::Truncated { codec: CODEC }));
            }
            return Err(stream_err("inflate made no progress before the end of the stream"));
        }
        dest.zero_rest(&mut frame)?;
        Ok(())
    }

    /// Models `zlib_decompress()` for inline extents: one `inflate(Z_FINISH)` into the workspace
    /// buffer; the output must cover `destlen` (`-EIO` otherwise, the rest zero-filled). Newer
    /// kernels store a whole sector; only `destlen` bytes are kept.
    fn decompress(ws: &mut Workspace, a: &CodecArgs, ctx: &mut MapCtx, inline: InlineRead<'_>) -> Result<()> {
        let InlineRead { data_in, dest, dest_off, destlen } = inline;
        // Newer kernels store a whole sector, which may be larger than a page.
        let buf_size = ctx.mem().page_size().max(a.sectorsize).max(destlen);
        ws.ensure_buf(buf_size);
        let mut frame = ctx.frame();
        let res = new_inflate(data_in, data_in.len()).and_then(|(mut strm, skip)| {
            let src = data_in.get(skip..).unwrap_or(&[]);
            frame.ctx().note_library_call(buf_size);
            let st = strm.decompress(src, &mut ws.buf[..buf_size], FlushDecompress::Finish).map_err(stream_err)?;
            Ok((st, strm.total_out() as usize))
        });
        let (st, total_out) = match res {
            Ok(v) => v,
            Err(e) => {
                frame.memzero_pages(dest, dest_off, destlen)?;
                return Err(e);
            }
        };
        // Like the kernel, a stream that did not reach its end but gave all `destlen` bytes is read.
        let short = (st != Status::StreamEnd).then_some(CorruptKind::Truncated { codec: CODEC });
        finish_inline(&mut frame, dest, dest_off, destlen, &ws.buf[..total_out.min(buf_size)], CODEC, short)
    }
}
