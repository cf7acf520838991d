//! Reference functions (not in the kernel): the codec and the btrfs framing over contiguous
//! buffers, for tests and benchmarks.
use crate::*;
use btrfs_compression::Incompressible;

/// The baseline of the benchmarks (not a kernel function): one `lzo1x_1_compress()` call on a
/// contiguous buffer (no per-sector segments).
pub fn reference_compress(src: &[u8], dst: &mut [u8]) -> Result<usize> {
    let need = lzo1x_worst_compress(src.len());
    if dst.len() < need {
        return Err(Error::InvalidArgument(format!("reference buffer of {} < {need}", dst.len())));
    }
    LZO_WRKMEM.with(|ctx| {
        let (out, err) = ctx.borrow_mut().compress_to_slice(src, &mut dst[..need]);
        if err != LZOError::OK {
            return Err(Error::Library { codec: CODEC, msg: "lzo1x_1_compress failed".into() });
        }
        Ok(out.len())
    })
}

/// The baseline of the benchmarks: one `lzo1x_decompress_safe()` call on a contiguous buffer.
pub fn reference_decompress(src: &[u8], dst: &mut [u8]) -> Result<usize> {
    decompress_segment(src, dst)
}

/// A second baseline: btrfs's per-sector segments built from a contiguous buffer into a
/// contiguous output (no pages, no mappings). The difference to [`reference_compress`] is the
/// cost of the format (one LZO1X call per sector, headers, padding); the difference to
/// [`Lzo::compress_folios`](crate::Lzo) on the direct map is the cost of the page loop itself.
pub fn reference_compress_segments(src: &[u8], dst: &mut [u8], sectorsize: usize) -> Result<usize> {
    let mut cur = LZO_LEN;
    for chunk in src.chunks(sectorsize) {
        let need = lzo1x_worst_compress(chunk.len());
        if dst.len() < cur + LZO_LEN + need + LZO_LEN {
            return Err(Error::Incompressible(Incompressible::BufferTooSmall));
        }
        let n = LZO_WRKMEM.with(|ctx| {
            let (out, err) = ctx.borrow_mut().compress_to_slice(chunk, &mut dst[cur + LZO_LEN..cur + LZO_LEN + need]);
            if err != LZOError::OK {
                return Err(Error::Library { codec: CODEC, msg: "lzo1x_1_compress failed".into() });
            }
            Ok(out.len())
        })?;
        dst[cur..cur + LZO_LEN].copy_from_slice(&(n as u32).to_le_bytes());
        cur += LZO_LEN + n;
        let left = cur.next_multiple_of(sectorsize) - cur;
        if left < LZO_LEN {
            dst[cur..cur + left].fill(0);
            cur += left;
        }
    }
    dst[..LZO_LEN].copy_from_slice(&(cur as u32).to_le_bytes());
    Ok(cur)
}

/// A decompression baseline: decode a whole btrfs lzo extent from a contiguous buffer into a
/// contiguous buffer (one `lzo1x_decompress_safe()` call per segment, no pages or mappings).
/// Returns the decompressed length.
pub fn reference_decompress_extent(src: &[u8], dst: &mut [u8], sectorsize: usize) -> Result<usize> {
    let rd = |o: usize| -> Result<usize> {
        src.get(o..o + LZO_LEN)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(Error::corrupt(CorruptKind::TooShort { len: src.len() }))
    };
    let total = rd(0)?.min(src.len());
    let (mut pos, mut out) = (LZO_LEN, 0);
    while pos + LZO_LEN <= total {
        let n = rd(pos)?;
        pos += LZO_LEN;
        let seg = src.get(pos..pos + n).ok_or(Error::corrupt(CorruptKind::Truncated { codec: CODEC }))?;
        let room = dst.len().saturating_sub(out).min(lzo1x_worst_compress(sectorsize));
        out += decompress_segment(seg, &mut dst[out..out + room])?;
        pos += n;
        let left = sectorsize - pos % sectorsize;
        if left < LZO_LEN {
            pos += left;
        }
    }
    Ok(out)
}
