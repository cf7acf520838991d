//! Reference functions (not in the kernel): one library call over a contiguous buffer, for
//! tests and benchmarks.
use crate::*;
use btrfs_compression::Incompressible;

/// The baseline of the benchmarks (not a kernel function): one zlib-rs deflate call with
/// `Z_FINISH` on a contiguous buffer, fresh stream each time like [`Zlib::compress_folios`](crate::Zlib).
pub fn reference_compress(level: i32, src: &[u8], dst: &mut [u8]) -> Result<usize> {
    reference_compress_with(ZlibBackend::ZlibRs, level, src, dst)
}

/// [`reference_compress`] with the given deflate.
pub fn reference_compress_with(backend: ZlibBackend, level: i32, src: &[u8], dst: &mut [u8]) -> Result<usize> {
    let mut ws = Workspace { backend, deflate: None, buf: Vec::new() };
    let c = ws.deflate_init(level)?;
    match c.compress(src, dst, FlushCompress::Finish)? {
        Status::StreamEnd => Ok(c.total_out() as usize),
        _ => Err(Error::Incompressible(Incompressible::BufferTooSmall)),
    }
}

/// The baseline of the benchmarks: one inflate call on a contiguous buffer.
pub fn reference_decompress(src: &[u8], dst: &mut [u8]) -> Result<usize> {
    let mut d = Decompress::new(true);
    d.decompress(src, dst, FlushDecompress::Finish).map_err(stream_err)?;
    Ok(d.total_out() as usize)
}

/// A second baseline: the contiguous buffer fed to deflate with the kernel's flush pattern
/// (`Z_SYNC_FLUSH` after every `page_size` bytes, then `Z_FINISH`) but no pages or mappings.
/// The difference to [`reference_compress`] is the cost of the flush pattern; the difference
/// to [`Zlib::compress_folios`](crate::Zlib) on the direct map is the cost of the page loop itself.
pub fn reference_compress_page_flushes(
    backend: ZlibBackend,
    level: i32,
    src: &[u8],
    dst: &mut [u8],
    page_size: usize,
) -> Result<usize> {
    let mut ws = Workspace { backend, deflate: None, buf: Vec::new() };
    let c = ws.deflate_init(level)?;
    for chunk in src.chunks(page_size.max(1)) {
        let mut fed = 0;
        while fed < chunk.len() {
            let (i0, o0) = (c.total_in(), c.total_out());
            let out = &mut dst[o0 as usize..];
            if out.is_empty() {
                return Err(Error::Incompressible(Incompressible::BufferTooSmall));
            }
            c.compress(&chunk[fed..], out, FlushCompress::Sync)?;
            fed += (c.total_in() - i0) as usize;
        }
    }
    loop {
        let o0 = c.total_out() as usize;
        if c.compress(&[], &mut dst[o0..], FlushCompress::Finish)? == Status::StreamEnd {
            return Ok(c.total_out() as usize);
        }
        if c.total_out() as usize == o0 {
            return Err(Error::Incompressible(Incompressible::BufferTooSmall));
        }
    }
}
