//! Reference functions (not in the kernel): one library call over a contiguous buffer, for
//! tests and benchmarks.
use crate::*;

/// The baseline of the benchmarks (not a kernel function): one library call on a contiguous
/// buffer with the same parameters as [`Zstd::compress_folios`](crate::Zstd).
pub struct Reference {
    cctx: CCtx<'static>,
    dctx: DCtx<'static>,
}

impl Default for Reference {
    fn default() -> Self {
        Self { cctx: CCtx::create(), dctx: DCtx::create() }
    }
}

impl Reference {
    /// Compress `src` in one call into `dst`; returns the length.
    pub fn compress(&mut self, level: i32, src: &[u8], dst: &mut [u8]) -> Result<usize> {
        init_cstream(&mut self.cctx, level, src.len())?;
        self.cctx.compress2(dst, src).map_err(lib_err)
    }

    /// Decompress one frame in one call into `dst`; returns the length.
    pub fn decompress(&mut self, src: &[u8], dst: &mut [u8]) -> Result<usize> {
        self.dctx.decompress(dst, src).map_err(|c| stream_err(c, src))
    }
}
