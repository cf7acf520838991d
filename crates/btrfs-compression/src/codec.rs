//! One interface for the three codecs: the kernel's entry points of `struct btrfs_compress_op`
//! (compression.h) — `compress_folios`, `decompress_bio` and `decompress` (inline extents) — with
//! one argument struct for what is not data (level, sector size, loop variant), so that the
//! dispatcher (`btrfs_compress_folios()` and friends) does not care which codec it calls.

use highmem::{FolioVec, MapCtx};

use crate::{CompressArgs, CompressResult, CompressedBio, DestRange, Result, SECTORSIZE};

/// How a compression loop sizes the input it hands the library at once (zstd and zlib; lzo
/// compresses one sector at a time in every era).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InputChunk {
    /// 6.x (`zstd_compress_pages()` / `zlib_compress_pages()`, then `*_compress_folios()` up to
    /// 6.19): what the mapping presents, and for zlib at most to the end of the page (zlib's
    /// bytes depend on where each sync flush falls, so it feeds a page per call whatever is
    /// mapped).
    #[default]
    Page,
    /// 7.x (`zstd_compress_bio()`, `zlib_compress_bio()`; `btrfs_calc_input_length()` in
    /// compression.h, 7.0 and later): to the end of the folio or of the range, handed to the
    /// library from the address `kmap_local_folio()` returned, whatever that mapped. Where the
    /// mapping covers less (one page of a large highmem folio, as in 7.2-rc with large folios
    /// on under HIGHMEM) the library reads past it: a page fault
    /// ([`highmem::MapError::Fault`]).
    Folio,
    /// Our ways out for 7.x with large folios under HIGHMEM: as [`InputChunk::Folio`], but cut
    /// to what the mapping covers. With `kmap_local_folio()` that is page stepping, way out (a)
    /// (patched into 7.2.13 by `tools/qemu-highmem-7x.py`: a highmem folio's chunk ends at the
    /// end of its page, a lowmem folio's at its end); with a multi-slot `kmap_local_range()` it
    /// is way out (c).
    FolioMapped,
}

impl InputChunk {
    /// The kernel's length of the chunk from `cur` to at most `end` of `pages`
    /// (`btrfs_calc_input_length()`) for the 7.x forms; `None` for [`InputChunk::Page`], which
    /// takes what the mapping presents.
    pub fn trusted_len(self, pages: &FolioVec, cur: usize, end: usize) -> Option<usize> {
        match self {
            InputChunk::Page => None,
            InputChunk::Folio | InputChunk::FolioMapped => Some(pages.folio_end(cur).min(end) - cur),
        }
    }

    /// The bytes a compression loop hands the library from `map`, a mapping made for `want`
    /// bytes: what it presents (6.x), the `want` bytes the folio holds whatever the mapping
    /// covers (7.x: past a one-page mapping the library faults, see
    /// [`highmem::MapRef::check_read`]), or those of them the mapping covers (the ways out).
    pub fn handed<'m>(self, map: &'m highmem::MapRef<'_>, want: usize) -> &'m [u8] {
        match self {
            InputChunk::Page => map,
            InputChunk::Folio => map.handed(want).0,
            InputChunk::FolioMapped => {
                let (b, covers) = map.handed(want);
                &b[..covers]
            }
        }
    }
}

/// Which loop a codec runs: the kernel's, or one of ours kept to measure against it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LoopVariant {
    /// The kernel's loop.
    #[default]
    Kernel,
    /// Decompression straight into the destination pages (zlib, zstd; lzo runs the kernel's).
    InPlace,
    /// zstd's compression loop of v1-v4 of the 2022 kmap_local conversion, which kmaps the
    /// output page too (LIFO forces re-maps).
    LifoRemap2022,
}

impl LoopVariant {
    /// [`LoopVariant::InPlace`] when `on`, else the kernel's.
    pub fn in_place(on: bool) -> Self {
        if on {
            LoopVariant::InPlace
        } else {
            LoopVariant::Kernel
        }
    }

    /// [`LoopVariant::LifoRemap2022`] when `on`, else the kernel's.
    pub fn lifo_remap(on: bool) -> Self {
        if on {
            LoopVariant::LifoRemap2022
        } else {
            LoopVariant::Kernel
        }
    }
}

/// What a codec call needs besides the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodecArgs {
    /// Compression level (ignored by lzo and by decompression).
    pub level: i32,
    /// Sector size (lzo's segments, the inline sector).
    pub sectorsize: usize,
    /// Which loop.
    pub variant: LoopVariant,
    /// How the compression loop sizes its input chunks (zstd, zlib).
    pub input: InputChunk,
}

impl Default for CodecArgs {
    fn default() -> Self {
        Self { level: 0, sectorsize: SECTORSIZE, variant: LoopVariant::Kernel, input: InputChunk::Page }
    }
}

/// A codec: the three entry points of `struct btrfs_compress_op` over its workspace.
pub trait Codec {
    /// Its workspace (`struct workspace` of zlib.c, lzo.c, zstd.c).
    type Workspace;

    /// Models `*_compress_folios()`.
    fn compress_folios(
        ws: &mut Self::Workspace,
        a: &CodecArgs,
        ctx: &mut MapCtx,
        args: &CompressArgs<'_>,
        out: &mut FolioVec,
    ) -> Result<CompressResult>;

    /// Models `*_decompress_bio()`.
    fn decompress_bio(
        ws: &mut Self::Workspace,
        a: &CodecArgs,
        ctx: &mut MapCtx,
        cb: &CompressedBio,
        dest: &mut DestRange,
    ) -> Result<()>;

    /// Models `*_decompress()` (inline extents): `data_in` into `dest` at `dest_off`.
    fn decompress(ws: &mut Self::Workspace, a: &CodecArgs, ctx: &mut MapCtx, inline: InlineRead<'_>) -> Result<()>;
}

/// An inline extent to decompress and where its bytes go: the arguments of `btrfs_decompress()`
/// and `*_decompress()` after the type and workspace.
#[derive(Debug)]
pub struct InlineRead<'a> {
    /// The inline item's data (`srclen` is its length).
    pub data_in: &'a [u8],
    /// The destination folios (`dest_folio`).
    pub dest: &'a mut FolioVec,
    /// Offset of the first byte in `dest` (`dest_pgoff`).
    pub dest_off: usize,
    /// Bytes wanted (`destlen`, the item's `ram_bytes`).
    pub destlen: usize,
}
