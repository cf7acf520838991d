//! The shared parts of btrfs compression (models `fs/btrfs/compression.c` and `compression.h`).
//!
//! * [`CompressType`] and the on-disk codes, [`parse_compress_option`] and
//!   [`btrfs_compress_set_level`] for `compress=ALG[:LEVEL]` strings, clamped as the kernel does;
//! * [`Error`]: typed errors with the kernel's errno classes (`E2BIG`, `EIO`, `EUCLEAN`);
//! * [`workspace`]: the generic workspace manager (zstd's per-level one is in btrfs-zstd);
//! * [`heuristic`]: `btrfs_compress_heuristic()` with the kernel's constants;
//! * [`codec`]: the [`Codec`] trait, the kernel's three entry points per codec, and
//!   [`LoopVariant`];
//! * [`bio`]: the compressed bio and destination range, and `btrfs_decompress_buf2page()`;
//! * [`out`]: [`OutCursor`], the compressed output of one call (pages offered, folios
//!   allocated, `max_out` enforced, `tot_out` known);
//! * [`in_place`]: our in-place decompression driver for zlib and zstd (not in the kernel);
//! * the "must save at least one sector" rule, [`compression_saves_sector`].
#![forbid(unsafe_code)]

pub mod bio;
pub mod codec;
mod error;
pub mod heuristic;
pub mod in_place;
pub mod out;
pub mod workspace;

pub use bio::{btrfs_decompress_buf2page, finish_inline, CompressedBio, DestRange};
pub use codec::{Codec, CodecArgs, InlineRead, InputChunk, LoopVariant};
pub use error::{CorruptKind, Error, Incompressible, Result};
pub use out::OutCursor;

use std::fmt;

/// `BTRFS_MAX_COMPRESSED`: the largest compressed extent, 128 KiB.
pub const BTRFS_MAX_COMPRESSED: usize = 128 * 1024;
/// `BTRFS_MAX_UNCOMPRESSED`: the largest input of one compressed extent, 128 KiB.
pub const BTRFS_MAX_UNCOMPRESSED: usize = 128 * 1024;
/// The sector size this port uses everywhere (btrfs's default `sectorsize`).
pub const SECTORSIZE: usize = 4096;
/// Early-bail threshold of zlib.c and zstd.c: more than this much input consumed while the output
/// is larger than the input gives up with `-E2BIG`.
pub const EARLY_BAIL_INPUT: usize = 8192;

/// `enum btrfs_compression_type` with its on-disk codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompressType {
    /// `BTRFS_COMPRESS_NONE` (0).
    None = 0,
    /// `BTRFS_COMPRESS_ZLIB` (1).
    Zlib = 1,
    /// `BTRFS_COMPRESS_LZO` (2).
    Lzo = 2,
    /// `BTRFS_COMPRESS_ZSTD` (3).
    Zstd = 3,
}

impl CompressType {
    /// The three real algorithms.
    pub const ALGORITHMS: [CompressType; 3] = [CompressType::Zlib, CompressType::Lzo, CompressType::Zstd];

    /// The on-disk code (`btrfs_file_extent_item::compression`).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Type from an on-disk code; `None` for codes the kernel does not know.
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Self::None),
            1 => Some(Self::Zlib),
            2 => Some(Self::Lzo),
            3 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// Name as in the mount option.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zlib => "zlib",
            Self::Lzo => "lzo",
            Self::Zstd => "zstd",
        }
    }

    /// Lowest level (`btrfs_compress_op::min_level`).
    pub fn min_level(self) -> i32 {
        match self {
            Self::Zlib => 1,
            Self::Zstd => -15,
            _ => 0,
        }
    }

    /// Highest level (`max_level`).
    pub fn max_level(self) -> i32 {
        match self {
            Self::Zlib => 9,
            Self::Zstd => 15,
            _ => 0,
        }
    }

    /// Default level (`default_level`).
    pub fn default_level(self) -> i32 {
        match self {
            Self::Zlib | Self::Zstd => 3,
            _ => 0,
        }
    }
}

impl fmt::Display for CompressType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Models `btrfs_compress_set_level()`: level 0 means the default; others are clamped to the
/// algorithm's range. lzo has no level and always gets 0.
pub fn btrfs_compress_set_level(t: CompressType, level: i32) -> i32 {
    match t {
        CompressType::Zlib | CompressType::Zstd => {
            if level == 0 {
                t.default_level()
            } else {
                level.clamp(t.min_level(), t.max_level())
            }
        }
        _ => 0,
    }
}

/// An algorithm with its level as the kernel would use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompressSpec {
    /// The algorithm.
    pub alg: CompressType,
    /// The effective level (after defaulting and clamping).
    pub level: i32,
    /// The level as written, if one was written and it differed from the effective one.
    pub clamped_from: Option<i32>,
}

impl fmt::Display for CompressSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.alg {
            CompressType::Lzo | CompressType::None => f.write_str(self.alg.name()),
            _ => write!(f, "{}:{}", self.alg.name(), self.level),
        }
    }
}

/// Parse `ALG[:LEVEL]` as the `compress=`/`compress-force=` mount option does
/// (models `btrfs_compress_str2level()`): `zlib` 1..9 default 3, `zstd` -15..15 default 3, `lzo`
/// without level: a level given to lzo is ignored (6.18's `btrfs_parse_param()` matches the first
/// three letters and sets level 0: `compress=lzo:3` mounts as `compress=lzo`), recorded in
/// `clamped_from`. Out-of-range levels are clamped (recorded in `clamped_from`); a level that is
/// not a number is an error.
pub fn parse_compress_option(s: &str) -> Result<CompressSpec> {
    let (name, lvl) = match s.split_once(':') {
        Some((n, l)) => (n, Some(l)),
        None => (s, None),
    };
    let alg = match name {
        "zlib" => CompressType::Zlib,
        "lzo" => CompressType::Lzo,
        "zstd" => CompressType::Zstd,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "unknown compression algorithm '{name}' (expected zlib, lzo or zstd)"
            )))
        }
    };
    let Some(l) = lvl else {
        return Ok(CompressSpec { alg, level: btrfs_compress_set_level(alg, 0), clamped_from: None });
    };
    let written: i32 = l
        .trim()
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("compression level '{l}' of {name} is not a number")))?;
    let level = btrfs_compress_set_level(alg, written);
    let clamped_from = (written != 0 && written != level).then_some(written);
    Ok(CompressSpec { alg, level, clamped_from })
}

/// The caller's rule in `compress_file_range()` (inode.c): a compressed extent is kept only if
/// it saves at least one sector, i.e. `round_up(total_out, sectorsize) + sectorsize <=
/// round_up(total_in, sectorsize)`.
pub fn compression_saves_sector(total_in: usize, total_out: usize, sectorsize: usize) -> bool {
    total_out.next_multiple_of(sectorsize) + sectorsize <= total_in.next_multiple_of(sectorsize)
}

/// Number of output folios a compress call may use: the pages the input range spans, at most
/// `BTRFS_MAX_COMPRESSED` worth (the caller's `nr_folios` in `compress_file_range()`).
pub fn max_compressed_folios(start: usize, len: usize, page_size: usize) -> usize {
    let first = start / page_size;
    let last = (start + len.max(1) - 1) / page_size;
    (last - first + 1).min(BTRFS_MAX_COMPRESSED / page_size)
}

/// What a successful `compress_folios` call reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressResult {
    /// Input bytes consumed (`*total_in`).
    pub total_in: usize,
    /// Compressed bytes produced (`*total_out`).
    pub total_out: usize,
}

/// The input and limits of one `compress_folios` call.
#[derive(Clone, Copy, Debug)]
pub struct CompressArgs<'a> {
    /// The page cache pages holding the file range (models the inode's `address_space`).
    pub input: &'a highmem::FolioVec,
    /// Offset of the range inside `input` (the file offset `start`).
    pub start: usize,
    /// Bytes to compress (at most 128 KiB; the caller's `*total_out` on entry).
    pub len: usize,
    /// Output capacity in bytes (`nr_dest_folios * PAGE_SIZE`).
    pub max_out: usize,
    /// Order of the output folios (0 as `btrfs_alloc_compr_folio()` allocates them; larger
    /// orders let range strategies map more output at once).
    pub out_order: u32,
    /// The filesystem's sector size.
    pub sectorsize: usize,
}

impl<'a> CompressArgs<'a> {
    /// Compress `len` bytes of `input` at `start` with the kernel's limits: output capacity of the
    /// pages the range spans (at most 128 KiB), order-0 output folios, 4 KiB sectors.
    pub fn new(input: &'a highmem::FolioVec, start: usize, len: usize) -> Result<Self> {
        let ps = input.folios().first().map_or(4096, |f| f.mem().page_size());
        if len == 0 || len > BTRFS_MAX_UNCOMPRESSED {
            return Err(Error::InvalidArgument(format!(
                "compress input of {len} bytes (must be 1..={BTRFS_MAX_UNCOMPRESSED})"
            )));
        }
        if start.checked_add(len).is_none_or(|e| e > input.len()) {
            return Err(Error::InvalidArgument(format!(
                "range {start}+{len} outside the {} bytes of input pages",
                input.len()
            )));
        }
        Ok(Self {
            input,
            start,
            len,
            max_out: max_compressed_folios(start, len, ps) * ps,
            out_order: 0,
            sectorsize: SECTORSIZE,
        })
    }

    /// Page size of the input pages.
    pub fn page_size(&self) -> usize {
        self.input.folios().first().map_or(4096, |f| f.mem().page_size())
    }
}

/// Allocate the next output folio of a compress call (models `btrfs_alloc_compr_folio()`),
/// sized so the output never exceeds `max_out`. Returns the new folio's size.
pub fn alloc_compr_folio(
    mem: &highmem::PhysMem,
    out: &mut highmem::FolioVec,
    order: u32,
    max_out: usize,
) -> Result<usize> {
    if out.len() >= max_out {
        return Err(Error::Incompressible(Incompressible::OutOfOutput));
    }
    // Shrink the order until the folio fits the remaining capacity.
    let mut o = order;
    while o > 0 && out.len() + (mem.page_size() << o) > max_out {
        o -= 1;
    }
    let f = mem.alloc_folio(o)?;
    let n = f.size();
    out.push(f);
    Ok(n)
}
