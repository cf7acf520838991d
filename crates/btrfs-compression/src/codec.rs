//! One interface for the three codecs: the kernel's entry points of `struct btrfs_compress_op`
//! (compression.h) — `compress_folios`, `decompress_bio` and `decompress` (inline extents) — with
//! one argument struct for what is not data (level, sector size, loop variant), so that the
//! dispatcher (`btrfs_compress_folios()` and friends) does not care which codec it calls.

use highmem::{FolioVec, MapCtx};

use crate::{CompressArgs, CompressResult, CompressedBio, DestRange, Result, SECTORSIZE};

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
}

impl Default for CodecArgs {
    fn default() -> Self {
        Self { level: 0, sectorsize: SECTORSIZE, variant: LoopVariant::Kernel }
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
