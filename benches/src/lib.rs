//! Shared set-up of the criterion benchmarks: a fixed sample of the lab corpus, pages built
//! outside the timed loops, and the two things compared (the kernel page loop and one library
//! call on the contiguous buffer).
#![forbid(unsafe_code)]

use btrfs_compress::{with_ctx, CompressArgs, CompressSpec, CompressType, CompressedBio, DestRange, Options};
use btrfs_lab::corpus::{generate, Kind};
use highmem::FolioVec;

/// Eight 128 KiB extents: text, binary and mixed data from the lab corpus.
pub fn sample() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (i, kind) in [Kind::Text, Kind::Binary, Kind::Mixed].into_iter().enumerate() {
        let data = generate(kind, 3 * 131072, 42 + i as u64);
        for c in data.chunks(131072).take(if i == 2 { 2 } else { 3 }) {
            v.push(c.to_vec());
        }
    }
    v
}

/// Compress every extent with the kernel page loop under `opts`; returns total compressed bytes.
pub fn page_loop_compress(spec: CompressSpec, opts: &Options, pages: &[FolioVec], lens: &[usize]) -> usize {
    with_ctx(opts, |ctx| {
        let mut total = 0;
        for (p, &len) in pages.iter().zip(lens) {
            let mut args = CompressArgs::new(p, 0, len)?;
            args.out_order = opts.effective_out_order();
            let mut out = FolioVec::new();
            if let Ok(r) = btrfs_compress::Engine::global().codecs().compress_folios(spec, opts, ctx, &args, &mut out) {
                total += r.total_out;
            }
        }
        Ok(total)
    })
    .expect("page loop")
}

/// Page-cache folios of `sample` in the memory `opts` selects.
pub fn pages_for(opts: &Options, sample: &[Vec<u8>]) -> Vec<FolioVec> {
    with_ctx(opts, |ctx| {
        sample
            .iter()
            .map(|d| FolioVec::from_slice(ctx.mem(), d, opts.effective_folio_order()).map_err(Into::into))
            .collect()
    })
    .expect("pages")
}

/// Compressed bios and destination ranges for decompression rows.
pub fn bios_for(opts: &Options, extents: &[(Vec<u8>, usize)]) -> Vec<(CompressedBio, DestRange)> {
    with_ctx(opts, |ctx| {
        extents
            .iter()
            .map(|(c, len)| {
                Ok((
                    CompressedBio::from_slice_order(ctx.mem(), c, opts.effective_out_order())?,
                    DestRange::new(ctx.mem(), 0, *len, opts.effective_folio_order())?,
                ))
            })
            .collect()
    })
    .expect("bios")
}

/// Decompress every bio with the kernel page loop.
pub fn page_loop_decompress(alg: CompressType, opts: &Options, bios: &mut [(CompressedBio, DestRange)]) {
    with_ctx(opts, |ctx| {
        for (cb, dest) in bios.iter_mut() {
            dest.reset();
            btrfs_compress::Engine::global().codecs().decompress_bio(alg, opts, ctx, cb, dest)?;
        }
        Ok(())
    })
    .expect("decompress");
}

/// The library on the contiguous buffer: one call per extent (zlib with the same deflate as
/// the page loop's default, the kernel's).
pub struct OneCall {
    zstd: btrfs_zstd::Reference,
    zlib: btrfs_compress::ZlibBackend,
    out: Vec<u8>,
}

impl Default for OneCall {
    fn default() -> Self {
        Self { zstd: btrfs_zstd::Reference::default(), zlib: Options::default().zlib_backend, out: vec![0; 1 << 18] }
    }
}

impl OneCall {
    /// One compress call; returns the length.
    pub fn compress(&mut self, spec: CompressSpec, data: &[u8]) -> usize {
        match spec.alg {
            CompressType::Zstd => self.zstd.compress(spec.level, data, &mut self.out),
            CompressType::Zlib => btrfs_zlib::reference_compress_with(self.zlib, spec.level, data, &mut self.out),
            CompressType::Lzo => btrfs_lzo::reference_compress(data, &mut self.out),
            CompressType::None => Ok(0),
        }
        .unwrap_or(0)
    }

    /// The kernel's output format from the contiguous buffer without pages: zlib with a
    /// `Z_SYNC_FLUSH` every 4 KiB, lzo as per-sector segments, zstd streamed 4 KiB at a time
    /// is byte-identical to one call, so it is one call.
    pub fn compress_same_format(&mut self, spec: CompressSpec, data: &[u8]) -> usize {
        match spec.alg {
            CompressType::Zlib => {
                btrfs_zlib::reference_compress_page_flushes(self.zlib, spec.level, data, &mut self.out, 4096)
            }
            CompressType::Lzo => btrfs_lzo::reference_compress_segments(data, &mut self.out, 4096),
            _ => return self.compress(spec, data),
        }
        .unwrap_or(0)
    }

    /// One decompress call; returns the length.
    pub fn decompress(&mut self, alg: CompressType, src: &[u8]) -> usize {
        match alg {
            CompressType::Zstd => self.zstd.decompress(src, &mut self.out),
            CompressType::Zlib => btrfs_zlib::reference_decompress(src, &mut self.out),
            CompressType::Lzo => btrfs_lzo::reference_decompress(src, &mut self.out),
            CompressType::None => Ok(0),
        }
        .unwrap_or(0)
    }

    /// Decode one btrfs extent from a contiguous buffer into a contiguous buffer: one library
    /// call for zstd and zlib, one call per segment for lzo (its format has no single stream).
    pub fn decompress_extent(&mut self, alg: CompressType, src: &[u8]) -> usize {
        if alg == CompressType::Lzo {
            return btrfs_lzo::reference_decompress_extent(src, &mut self.out, 4096).unwrap_or(0);
        }
        self.decompress(alg, src)
    }

    /// The one-call compressed stream of `data` (for decompression baselines).
    pub fn stream(&mut self, spec: CompressSpec, data: &[u8]) -> Vec<u8> {
        let n = self.compress(spec, data);
        self.out[..n].to_vec()
    }
}
