//! What the kernel does not have: inflate straight into the destination pages.
use btrfs_compression::in_place::{decompress_in_place, Step, StreamDecoder};
use btrfs_compression::{CompressedBio, CorruptKind, DestRange, Error, Result};
use flate2::{Decompress, FlushDecompress, Status};
use highmem::MapCtx;

use crate::{begin_bio, stream_err, Workspace, CODEC};

/// A variant of [`Zlib::decompress_bio`](crate::Zlib) that the kernel does not have: inflate straight into the
/// destination pages, mapped with the context's strategy above the input mapping, instead of
/// through the page-sized workspace buffer and [`btrfs_decompress_buf2page`](btrfs_compression::btrfs_decompress_buf2page). Output before
/// `dest.start` still goes through the workspace buffer and is dropped. With a destination
/// mapped as one range, inflate also keeps its 32 KiB window in the output itself instead of
/// copying every page of output into a separate window. Same results as [`Zlib::decompress_bio`](crate::Zlib).
pub fn decompress_bio(ws: &mut Workspace, ctx: &mut MapCtx, cb: &CompressedBio, dest: &mut DestRange) -> Result<()> {
    let (ps, strm, skip) = begin_bio(ws, ctx, cb)?;
    let ended = decompress_in_place(&mut Inflate(strm), &mut ws.buf[..ps], skip, ctx, cb, dest)?;
    if !ended && !dest.is_full() {
        return Err(Error::corrupt(CorruptKind::Truncated { codec: CODEC }));
    }
    dest.zero_rest(&mut ctx.frame())
}

/// Raw inflate as the in-place driver calls it.
struct Inflate(Decompress);

impl StreamDecoder for Inflate {
    fn step(&mut self, src: &[u8], dst: &mut [u8]) -> Result<Step> {
        let (i0, o0) = (self.0.total_in(), self.0.total_out());
        let st = self.0.decompress(src, dst, FlushDecompress::None).map_err(stream_err)?;
        let consumed = usize::try_from(self.0.total_in() - i0).unwrap_or(usize::MAX);
        let produced = usize::try_from(self.0.total_out() - o0).unwrap_or(usize::MAX);
        Ok(Step { consumed, produced, end: st == Status::StreamEnd })
    }

    fn stuck(&self) -> Error {
        stream_err("inflate made no progress")
    }
}
