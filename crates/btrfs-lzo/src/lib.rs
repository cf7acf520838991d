//! btrfs lzo compression over mapped pages (models `fs/btrfs/lzo.c`).
//!
//! Format (lzo.c's header comment): `[LE32 total length]` then one segment per sector of input,
//! `[LE32 segment length][LZO1X-1 payload]`. The total includes its own 4 bytes, every segment
//! header and the padding. A segment header never crosses a sector boundary: when 1 to 3 bytes
//! are left in a sector after a payload they are zeroed and skipped. Payloads may cross sector
//! and page boundaries. Inline extents hold exactly one segment.
//!
//! Compression backends ([`LzoBackend`]): the default is the `rust-lzo` crate, a port of the
//! kernel's own `lzo1x_1_compress()` (13 hash bits), which reproduces the kernel's bytes
//! exactly; `lzokay-native` is a second, independent LZO1X encoder (valid LZO1X, better ratio,
//! much slower) selectable at run time. Decompression always uses `rust-lzo`'s port of the
//! kernel's `lzo1x_decompress_safe()`.
#![forbid(unsafe_code)]

mod reference;

pub use reference::*;

use btrfs_compression::workspace::{WorkspaceGuard, WorkspaceManager};
use btrfs_compression::Incompressible;
use btrfs_compression::{
    btrfs_decompress_buf2page, finish_inline, CompressArgs, CompressResult, CompressedBio, CorruptKind, DestRange,
    Error, InlineRead, Result, BTRFS_MAX_COMPRESSED,
};
use btrfs_compression::{Codec, CodecArgs, InputChunk, OutCursor};
use highmem::{FolioVec, Frame, MapCtx};
use rust_lzo::{LZOContext, LZOError};

/// `LZO_LEN`: size of the total and segment length fields.
pub const LZO_LEN: usize = 4;

const CODEC: &str = "lzo";

/// Models `lzo1x_worst_compress()`: the largest LZO1X output for `x` input bytes.
pub const fn lzo1x_worst_compress(x: usize) -> usize {
    x + x / 16 + 64 + 3
}

/// Which LZO1X encoder produces the segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LzoBackend {
    /// `rust-lzo`: the kernel's `lzo1x_1_compress()`, byte-identical output.
    #[default]
    Kernel,
    /// `lzokay-native`: a different valid LZO1X encoder (better ratio, slower).
    Lzokay,
}

impl LzoBackend {
    /// Both backends.
    pub const ALL: [LzoBackend; 2] = [LzoBackend::Kernel, LzoBackend::Lzokay];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            LzoBackend::Kernel => "lzo1x-1",
            LzoBackend::Lzokay => "lzokay",
        }
    }

    /// Parse a name given by [`LzoBackend::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }
}

/// An lzo workspace (`struct workspace` in lzo.c): the compressor's work memory, `cbuf` for one
/// compressed segment and `buf` for one decompressed sector.
pub struct Workspace {
    backend: LzoBackend,
    cbuf: Vec<u8>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("lzo::Workspace").field("backend", &self.backend).finish()
    }
}

impl Workspace {
    /// Models `lzo_alloc_workspace()` for pages of `page_size`.
    pub fn new(page_size: usize, backend: LzoBackend) -> Self {
        let n = lzo1x_worst_compress(page_size);
        Self { backend, cbuf: vec![0; n], buf: vec![0; n] }
    }

    /// The encoder in use.
    pub fn backend(&self) -> LzoBackend {
        self.backend
    }

    /// Switch encoder.
    pub fn set_backend(&mut self, b: LzoBackend) {
        self.backend = b;
    }

    fn ensure(&mut self, page_size: usize) {
        let n = lzo1x_worst_compress(page_size);
        if self.cbuf.len() < n {
            self.cbuf.resize(n, 0);
            self.buf.resize(n, 0);
        }
    }

    /// `lzo1x_1_compress(src)` into `cbuf`; returns the compressed length.
    fn compress_segment(&mut self, src: &[u8]) -> Result<usize> {
        match self.backend {
            LzoBackend::Kernel => {
                let need = lzo1x_worst_compress(src.len());
                let cbuf = &mut self.cbuf[..need];
                LZO_WRKMEM.with(|ctx| {
                    let (out, err) = ctx.borrow_mut().compress_to_slice(src, cbuf);
                    if err != LZOError::OK {
                        return Err(Error::Library { codec: CODEC, msg: "lzo1x_1_compress failed".into() });
                    }
                    Ok(out.len())
                })
            }
            LzoBackend::Lzokay => {
                let v = lzokay_native::compress(src)
                    .map_err(|e| Error::Library { codec: CODEC, msg: format!("lzokay: {e:?}") })?;
                if v.len() > self.cbuf.len() {
                    return Err(Error::Library { codec: CODEC, msg: "lzokay output over the worst case".into() });
                }
                self.cbuf[..v.len()].copy_from_slice(&v);
                Ok(v.len())
            }
        }
    }
}

thread_local! {
    /// The compressor's work memory (`LZO1X_MEM_COMPRESS`). `rust-lzo` keeps it behind a raw
    /// pointer, which cannot move between threads, so each thread keeps its own.
    static LZO_WRKMEM: std::cell::RefCell<LZOContext> = std::cell::RefCell::new(LZOContext::new());
}

/// lzo.c's use of the generic workspace manager.
pub fn workspace_manager(page_size: usize, backend: LzoBackend) -> WorkspaceManager<Workspace> {
    WorkspaceManager::new(move || Workspace::new(page_size, backend))
}

/// A workspace on loan from [`workspace_manager`].
pub type Guard<'m> = WorkspaceGuard<'m, Workspace>;

fn lzo_err_name(e: &LZOError) -> &'static str {
    match e {
        LZOError::OK => "ok",
        LZOError::ERROR => "error",
        LZOError::OUT_OF_MEMORY => "out of memory",
        LZOError::NOT_COMPRESSIBLE => "not compressible",
        LZOError::INPUT_OVERRUN => "input overrun",
        LZOError::OUTPUT_OVERRUN => "output overrun",
        LZOError::LOOKBEHIND_OVERRUN => "lookbehind overrun",
        LZOError::EOF_NOT_FOUND => "end of stream not found",
        LZOError::INPUT_NOT_CONSUMED => "input not consumed",
        LZOError::NOT_YET_IMPLEMENTED => "not yet implemented",
        LZOError::INVALID_ARGUMENT => "invalid argument",
    }
}

/// `lzo1x_decompress_safe(src)` into `dst`; returns the decompressed length.
fn decompress_segment(src: &[u8], dst: &mut [u8]) -> Result<usize> {
    let (out, err) = LZOContext::decompress_to_slice(src, dst);
    if err != LZOError::OK {
        return Err(Error::corrupt(CorruptKind::Stream {
            codec: CODEC,
            msg: format!("lzo1x_decompress_safe: {}", lzo_err_name(&err)),
        }));
    }
    Ok(out.len())
}

/// Models `copy_compressed_data_to_page()`: write the segment header and payload at
/// `*cur_out`, then zero-pad the sector if fewer than 4 bytes are left in it. Output is mapped
/// with the context's strategy, one mapping per contiguous piece it offers.
fn copy_compressed_data_to_page(
    frame: &mut Frame<'_>,
    payload: &[u8],
    out: &mut OutCursor<'_>,
    sectorsize: usize,
    cur_out: &mut usize,
) -> Result<()> {
    let max_out = out.max_out();
    if *cur_out >= max_out {
        return Err(Error::Incompressible(Incompressible::OutOfOutput));
    }
    debug_assert_eq!(*cur_out / sectorsize, (*cur_out + LZO_LEN - 1) / sectorsize);
    out.reserve(*cur_out + LZO_LEN)?;
    {
        let mut m = frame.map_mut(out.folios(), *cur_out, LZO_LEN)?;
        m[..LZO_LEN].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    }
    *cur_out += LZO_LEN;

    // Payload, then the padding if 1..=3 bytes would be left in the sector.
    let end = *cur_out + payload.len();
    let left = end.next_multiple_of(sectorsize) - end;
    let pad = if left < LZO_LEN { left } else { 0 };
    let total = payload.len() + pad;
    let mut done = 0;
    while done < total {
        let at = *cur_out + done;
        if at >= max_out {
            return Err(Error::Incompressible(Incompressible::OutOfOutput));
        }
        out.reserve((at + 1).min(max_out))?;
        let mut m = frame.map_mut(out.folios(), at, total - done)?;
        let n = m.len();
        let from_payload = payload.len().saturating_sub(done).min(n);
        m[..from_payload].copy_from_slice(&payload[done..done + from_payload]);
        m[from_payload..n].fill(0);
        done += n;
    }
    *cur_out += total;
    Ok(())
}

fn read_le32(frame: &mut Frame<'_>, pages: &FolioVec, off: usize) -> Result<usize> {
    let mut b = [0u8; 4];
    frame.memcpy_from_pages(pages, off, &mut b)?;
    Ok(u32::from_le_bytes(b) as usize)
}

/// `lzo_decompress_bio()` for a given sector size (the `LZO_xK` encoded-I/O sizes).
pub fn decompress_bio_sectorsize(
    ws: &mut Workspace,
    ctx: &mut MapCtx,
    cb: &CompressedBio,
    dest: &mut DestRange,
    sectorsize: usize,
) -> Result<()> {
    let ps = ctx.mem().page_size();
    ws.ensure(ps.max(sectorsize));
    let max_segment_len = lzo1x_worst_compress(ps.max(sectorsize));
    let compressed_len = cb.compressed_len;
    if compressed_len < LZO_LEN {
        return Err(Error::corrupt(CorruptKind::TooShort { len: compressed_len }));
    }
    let mut frame = ctx.frame();
    let len_in = read_le32(&mut frame, &cb.folios, 0)?;
    let mut cur_in = LZO_LEN;
    if len_in > BTRFS_MAX_COMPRESSED.min(compressed_len) || len_in.next_multiple_of(sectorsize) < compressed_len {
        return Err(Error::corrupt(CorruptKind::LzoTotalLength { total: len_in, compressed_len }));
    }
    let mut cur_out = 0usize;
    while cur_in < len_in {
        if cur_in / sectorsize != (cur_in + LZO_LEN - 1) / sectorsize || cur_in + LZO_LEN > len_in {
            return Err(Error::corrupt(CorruptKind::LzoHeaderCrossesSector { offset: cur_in }));
        }
        let seg_len = read_le32(&mut frame, &cb.folios, cur_in)?;
        let hdr_at = cur_in;
        cur_in += LZO_LEN;
        if seg_len > max_segment_len || cur_in + seg_len > len_in {
            return Err(Error::corrupt(CorruptKind::LzoSegmentLength {
                offset: hdr_at,
                seg_len,
                limit: max_segment_len.min(len_in - cur_in),
            }));
        }
        // copy_compressed_segment(): gather the payload, one mapping per piece.
        frame.memcpy_from_pages(&cb.folios, cur_in, &mut ws.cbuf[..seg_len])?;
        cur_in += seg_len;
        let cap = lzo1x_worst_compress(sectorsize);
        frame.ctx().note_library_call(sectorsize);
        let out_len = decompress_segment(&ws.cbuf[..seg_len], &mut ws.buf[..cap])?;
        let more = btrfs_decompress_buf2page(&mut frame, &ws.buf[..out_len], cur_out, dest)?;
        cur_out += out_len;
        if !more {
            return Ok(());
        }
        // Skip the sector's padding if a header no longer fits.
        let left = sectorsize - cur_in % sectorsize;
        if left < LZO_LEN {
            cur_in += left;
        }
    }
    dest.zero_rest(&mut frame)?;
    Ok(())
}

/// lzo.c's entry points behind the [`Codec`] interface.
pub struct Lzo;

impl Codec for Lzo {
    type Workspace = Workspace;

    /// Models `lzo_compress_folios()`: one LZO1X-1 segment per sector of input, each written with
    /// its header into the output folios; `Incompressible` after two sectors if the output is
    /// larger than the input, or when the output folios run out. Like the kernel, no final size
    /// test: the caller's "must save a sector" rule decides.
    fn compress_folios(
        ws: &mut Workspace,
        a: &CodecArgs,
        ctx: &mut MapCtx,
        args: &CompressArgs<'_>,
        out: &mut FolioVec,
    ) -> Result<CompressResult> {
        let mem = ctx.mem().clone();
        let ss = args.sectorsize;
        ws.ensure(mem.page_size().max(ss));
        let start = args.start;
        let end = start + args.len;
        let mut cur_in = start;
        let mut cur_out = LZO_LEN; // the total is written last
        let mut frame = ctx.frame();
        let mut cur = OutCursor::lazy(&mem, out, args.out_order, args.max_out);
        cur.reserve(LZO_LEN)?;

        while cur_in < end {
            // 6.x maps the input page and compresses its sectors; 7.x (`lzo_compress_bio()`)
            // maps one sector's bytes at a time with `kmap_local_folio()`.
            let want = match a.input {
                InputChunk::Page => end - cur_in,
                _ => (end - cur_in).min(ss - (cur_in - start) % ss),
            };
            let mut in_map = frame.map(args.input, cur_in, want)?;
            let map_start = cur_in;
            let map_end = cur_in + in_map.len();
            let (src, mut above) = in_map.split();
            while cur_in < map_end {
                let sector_off = (cur_in - start) % ss;
                let in_len = (end - cur_in).min(ss - sector_off).min(map_end - cur_in);
                let seg = &src[cur_in - map_start..cur_in - map_start + in_len];
                above.ctx().note_library_call(in_len);
                let out_len = ws.compress_segment(seg)?;
                copy_compressed_data_to_page(&mut above, &ws.cbuf[..out_len], &mut cur, ss, &mut cur_out)?;
                cur_in += in_len;
                // Making it bigger after two sectors? Give up.
                if cur_in - start > ss * 2 && cur_in - start < cur_out {
                    return Err(Error::Incompressible(Incompressible::EarlyBail));
                }
            }
        }
        // Store the total size.
        {
            let mut m = frame.map_mut(cur.folios(), 0, LZO_LEN)?;
            m[..LZO_LEN].copy_from_slice(&(cur_out as u32).to_le_bytes());
        }
        Ok(CompressResult { total_in: cur_in - start, total_out: cur_out })
    }

    fn decompress_bio(
        ws: &mut Workspace,
        a: &CodecArgs,
        ctx: &mut MapCtx,
        cb: &CompressedBio,
        dest: &mut DestRange,
    ) -> Result<()> {
        decompress_bio_sectorsize(ws, ctx, cb, dest, a.sectorsize)
    }

    /// Models `lzo_decompress()` for inline extents: the data must be exactly one segment
    /// (`total == srclen`, `seg_len == srclen - 8`, else `-EUCLEAN`); it decompresses into at most
    /// one sector, and fewer than `destlen` bytes is `-EIO` (the rest zero-filled). Newer kernels
    /// store a whole sector; only `destlen` bytes are kept.
    fn decompress(ws: &mut Workspace, a: &CodecArgs, ctx: &mut MapCtx, inline: InlineRead<'_>) -> Result<()> {
        let InlineRead { data_in, dest, dest_off, destlen } = inline;
        let sectorsize = a.sectorsize;
        let ps = ctx.mem().page_size();
        ws.ensure(ps.max(sectorsize));
        // A segment of a sector at most (7.2's `workspace_buf_length()`: the worst case of a
        // sector; a page in kernels whose sectors were never larger).
        let max_segment_len = lzo1x_worst_compress(ps.max(sectorsize));
        let srclen = data_in.len();
        if srclen < 2 * LZO_LEN || srclen > max_segment_len + 2 * LZO_LEN {
            return Err(Error::corrupt(CorruptKind::LzoInline(format!(
                "inline extent of {srclen} bytes (must be 8..={})",
                max_segment_len + 2 * LZO_LEN
            ))));
        }
        let le = |o: usize| u32::from_le_bytes([data_in[o], data_in[o + 1], data_in[o + 2], data_in[o + 3]]) as usize;
        let total = le(0);
        if total != srclen {
            return Err(Error::corrupt(CorruptKind::LzoInline(format!("total length {total} != {srclen}"))));
        }
        let seg = le(LZO_LEN);
        if seg != srclen - 2 * LZO_LEN {
            return Err(Error::corrupt(CorruptKind::LzoInline(format!(
                "segment length {seg} != {}",
                srclen - 2 * LZO_LEN
            ))));
        }
        let mut frame = ctx.frame();
        let out_len = match decompress_segment(&data_in[2 * LZO_LEN..], &mut ws.buf[..sectorsize]) {
            Ok(n) => n,
            Err(e) => {
                frame.memzero_pages(dest, dest_off, destlen)?;
                return Err(e);
            }
        };
        finish_inline(&mut frame, dest, dest_off, destlen, &ws.buf[..out_len], CODEC, None)
    }
}
