//! What the kernel does not have: decompress straight into the destination pages.
use btrfs_compression::in_place::{decompress_in_place, Step, StreamDecoder};
use btrfs_compression::{CompressedBio, CorruptKind, DestRange, Error, Result};
use highmem::MapCtx;
use zstd_safe::{DCtx, InBuffer, OutBuffer};

use crate::{begin_bio, stream_err, Workspace, CODEC};

/// A variant of [`Zstd::decompress_bio`](crate::Zstd) that the kernel does not have: decompress straight into the
/// destination pages, mapped with the context's strategy above the input mapping, instead of
/// through the page-sized workspace buffer and [`btrfs_decompress_buf2page`](btrfs_compression::btrfs_decompress_buf2page). Output before
/// `dest.start` still goes to the workspace buffer and is dropped. This is what mapping the
/// destination as one range enables: with `range` over large folios the whole extent is two
/// mappings and no copy. With per-page kmap_local the destination page sits above the input
/// page, so an input switch while a destination page is half full must unmap both and map the
/// destination page again (counted as forced re-maps). Same results as [`Zstd::decompress_bio`](crate::Zstd).
pub fn decompress_bio(ws: &mut Workspace, ctx: &mut MapCtx, cb: &CompressedBio, dest: &mut DestRange) -> Result<()> {
    let (ps, head, hn) = begin_bio(ws, ctx, cb)?;
    let mut dec = ZstdStream { dctx: &mut ws.dctx, head: &head[..hn] };
    // A frame that stops early leaves the rest zero, as the kernel's loop does.
    decompress_in_place(&mut dec, &mut ws.buf[..ps], 0, ctx, cb, dest)?;
    dest.zero_rest(&mut ctx.frame())
}

/// zstd's decoder as the in-place driver calls it.
struct ZstdStream<'a, 'd> {
    dctx: &'a mut DCtx<'d>,
    head: &'a [u8],
}

impl StreamDecoder for ZstdStream<'_, '_> {
    fn step(&mut self, src: &[u8], dst: &mut [u8]) -> Result<Step> {
        let mut ob = OutBuffer::around(dst);
        let mut ib = InBuffer::around(src);
        let ret = self.dctx.decompress_stream(&mut ob, &mut ib).map_err(|c| stream_err(c, self.head))?;
        Ok(Step { consumed: ib.pos, produced: ob.pos(), end: ret == 0 })
    }

    fn stuck(&self) -> Error {
        Error::corrupt(CorruptKind::Truncated { codec: CODEC })
    }
}
